"""The IMDB RNN initialization study: which embedding initialization trains a SimpleRNN best?

Embedding(10000, 32) -> SimpleRNN(32) -> Dense(1, sigmoid) on the Large Movie Review Dataset
(Maas et al. 2011), as in the Keras seed study: Adam (lr 1e-3), batch 32, binary
cross-entropy, 5 epochs, the last 20% of the training set held out for validation, final
accuracy on the 25,000 test reviews. Every (initializer, seed) pair is one model of ONE
program (`lax.map` on CPU, `vmap` on accelerators); the seed fixes the RNN/Dense weights and the data order, so initializers
are compared paired, seed by seed.

    python experiments/imdb_rnn.py --data-dir ../shared/data            # full study
    python experiments/imdb_rnn.py --data-dir ../shared/data --quick    # smoke run
    python experiments/imdb_rnn.py --coordinator HOST:PORT --num-processes N --process-id I
                                   # one sweep over N processes' devices (docs/sweeps.md)

Writes ``results.json`` and ``val_accuracy.png`` to ``--out`` (default ``runs/imdb_rnn``) and
checkpoints after every epoch there: stopped and restarted with the same arguments, it resumes
from its last finished epoch. This is the study's main; its config, input pipeline and training
are in ``experiments/imdb/``.
"""

from __future__ import annotations

import sys

from experiments import default_host_devices, use_host_devices_from_argv
from experiments.common.sweep import sweep_devices
from experiments.imdb.config import DEFAULT_INITS, Config


def default_devices(argv) -> int:
    """XLA CPU devices for the sweep that ``argv`` asks for (``host_devices_for``): no
    padded models where the cores allow (3 models on 2 cores: 3 devices)."""
    return sweep_devices(argv, DEFAULT_INITS, Config().seeds, default_host_devices())


if __name__ == "__main__":  # before jax starts; --host-devices N wins
    use_host_devices_from_argv(default=default_devices(sys.argv))

from experiments import common  # noqa: E402
from experiments.common.sweep import use_compilation_cache  # noqa: E402
from experiments.data import imdb  # noqa: E402
from experiments.imdb import config, train  # noqa: E402


def parse_args(argv=None):
    """``(args, Config)`` from the command line; exits naming the flag on a bad value."""
    d = config.Config()
    p = common.base_parser(__doc__.splitlines()[0], "runs/imdb_rnn", common.STUDY_FLAGS)
    common.add_sweep_args(
        p,
        config.INIT_NAMES,
        config.DEFAULT_INITS,
        d.seeds,
        epochs=d.epochs,
        batch_size=d.batch_size,
    )
    common.add_distributed_args(p)
    p.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="compile every program afresh (default: jax's persistent compilation cache in "
        "--cache-dir/xla; a rerun loads the compiled programs)",
    )
    args = p.parse_args(argv)
    if not args.no_compile_cache:
        use_compilation_cache(args.cache_dir or imdb.default_cache_dir())
    common.init_distributed(args)  # before check_host_devices, which starts jax's backend
    common.check_host_devices(args)
    cfg = config.get_config(
        args.inits, args.seeds, quick=args.quick, epochs=args.epochs, batch_size=args.batch_size
    )
    return args, cfg


def main(argv=None):
    args, cfg = parse_args(argv)
    try:
        results = train.train_and_evaluate(args, cfg)
    except (imdb.DataNotFoundError, imdb.CorruptDataError) as e:  # data, not a crash
        raise SystemExit(f"error: {e}") from None
    common.print_study(results, args.out)


if __name__ == "__main__":
    main()
