"""The IMDB RNN initialization study: which embedding initialization trains a SimpleRNN best?

Embedding(10000, 32) -> SimpleRNN(32) -> Dense(1, sigmoid) on the Large Movie Review Dataset
(Maas et al. 2011), as in the Keras seed study: Adam (lr 1e-3), batch 32, binary
cross-entropy, 5 epochs, the last 20% of the training set held out for validation, final
accuracy on the 25,000 test reviews. Every (initializer, seed) pair is one model of ONE
program (`lax.map` on CPU, `vmap` on accelerators); the seed fixes the RNN/Dense weights and the data order, so initializers
are compared paired, seed by seed.

    python experiments/imdb_rnn.py --data-dir ../shared/data            # full study
    python experiments/imdb_rnn.py --data-dir ../shared/data --quick    # smoke run

Writes ``results.json`` and ``val_accuracy.png`` to ``--out`` (default ``runs/imdb_rnn``) and
checkpoints after every epoch there: stopped and restarted with the same arguments, it resumes
from its last finished epoch.
"""

from __future__ import annotations

from experiments import default_host_devices, use_host_devices_from_argv

if __name__ == "__main__":  # one XLA CPU device per core unless --host-devices N; before jax
    use_host_devices_from_argv(default=default_host_devices())

import dataclasses
import time

import jax
import jax.numpy as jnp
import optax

import jinit
from experiments import common
from experiments.data import imdb
from experiments.models import ImdbRNN

# Embedding initializers compared. 'uniform' is Keras's Embedding default RandomUniform(-0.05,
# 0.05); the fans of the (10000, 32) embedding matrix are fan_in=10000, fan_out=32 as in Keras.
INITIALIZERS = {
    "uniform": jinit.uniform_symmetric(0.05),
    "glorot_uniform": jinit.glorot_uniform(),
    "he_normal": jinit.he_normal(),
    "orthogonal": jinit.orthogonal(),
    # LSUV arm: orthonormal embedding (the RNN's own kernels are already orthogonal/glorot),
    # then jinit.lsuv on a batch of training reviews scales every layer to unit output
    # variance in forward order (Mishkin & Matas 2015).
    "lsuv": jinit.lsuv_ready_orthogonal(),
}
DEFAULT_INITS = ("uniform", "glorot_uniform", "he_normal")


@dataclasses.dataclass(frozen=True)
class Config:
    inits: tuple[str, ...] = DEFAULT_INITS
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    adam_eps: float = 1e-7  # Keras's Adam epsilon (optax's default is 1e-8)
    num_words: int = 10_000
    maxlen: int = 200
    embed_dim: int = 32
    hidden: int = 32
    validation_split: float = 0.2
    train_limit: int | None = None  # --quick: use this many training reviews
    test_limit: int | None = None
    steps_per_call: int = 25
    eval_batch_size: int = 1000
    lsuv_batch_size: int = 256  # training reviews the LSUV arm normalizes on


def parse_args(argv=None):
    """``(args, Config)`` from the command line; exits naming the flag on a bad value."""
    d = Config()
    p = common.base_parser(__doc__.splitlines()[0], "runs/imdb_rnn", common.STUDY_FLAGS)
    common.add_sweep_args(
        p, INITIALIZERS, DEFAULT_INITS, d.seeds, epochs=d.epochs, batch_size=d.batch_size
    )
    args = p.parse_args(argv)
    common.check_host_devices(args)
    cfg = Config(inits=args.inits, seeds=args.seeds)
    if args.quick:
        cfg = dataclasses.replace(
            cfg, epochs=1, train_limit=500, test_limit=250, steps_per_call=5, eval_batch_size=250
        )
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.batch_size is not None:
        cfg = dataclasses.replace(cfg, batch_size=args.batch_size)
    return args, cfg


def make_functions(cfg: Config):
    model = ImdbRNN(cfg.num_words, cfg.embed_dim, cfg.hidden)

    def loss_fn(params, batch):
        logits = model.apply(params, batch["x"])
        y = batch["y"].astype(jnp.float32)
        loss = optax.sigmoid_binary_cross_entropy(logits, y).mean()
        return loss, {"accuracy": jnp.mean((logits > 0) == (y > 0.5))}

    def metric_fn(params, batch):
        logits = model.apply(params, batch["x"])
        y = batch["y"].astype(jnp.float32)
        return {
            "loss": optax.sigmoid_binary_cross_entropy(logits, y),
            "accuracy": ((logits > 0) == (y > 0.5)).astype(jnp.float32),
        }

    def init_params(name: str, key: jax.Array):
        m = ImdbRNN(cfg.num_words, cfg.embed_dim, cfg.hidden, embedding_init=INITIALIZERS[name])
        return m.init(key, jnp.zeros((1, cfg.maxlen), jnp.int32))

    return loss_fn, metric_fn, init_params


def run(args, cfg: Config) -> dict:
    t_start = time.perf_counter()
    data = imdb.load_imdb(
        args.data_dir, num_words=cfg.num_words, maxlen=cfg.maxlen, cache_dir=args.cache_dir
    )
    t_data = time.perf_counter() - t_start
    train, val, test = (jax.tree.map(jnp.asarray, d) for d in common.keras_split(data, cfg))
    optimizer = optax.adam(cfg.learning_rate, eps=cfg.adam_eps)
    loss_fn, metric_fn, init_params = make_functions(cfg)
    lsuv_batch = train["x"][: cfg.lsuv_batch_size]

    def init_state_fn(name, key):
        params = init_params(name, key)
        if name == "lsuv":  # orthonormal pre-init everywhere, then LSUV on a training batch
            params = jinit.lsuv(
                ImdbRNN(cfg.num_words, cfg.embed_dim, cfg.hidden), params, lsuv_batch
            )[0]
        return jinit.init_state(params, optimizer)

    results = common.run_study(
        args,
        cfg,
        train=train,
        val=val,
        test=test,
        source=data.source,
        t_start=t_start,
        t_data=t_data,
        title="IMDB SimpleRNN: embedding init",
        extra=None,
        init_state_fn=init_state_fn,
        loss_fn=loss_fn,
        metric_fn=metric_fn,
        optimizer=optimizer,
    )
    return results


def main(argv=None):
    args, cfg = parse_args(argv)
    try:
        results = run(args, cfg)
    except (imdb.DataNotFoundError, imdb.CorruptDataError) as e:  # data, not a crash
        raise SystemExit(f"error: {e}") from None
    common.print_study(results, args.out)


if __name__ == "__main__":
    main()
