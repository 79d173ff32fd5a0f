"""The CIFAR-10 CNN initialization study: glorot, He, random normal, orthogonal, LSUV and zeros.

Conv(32, 3x3, relu) -> MaxPool -> Conv(64, 3x3, relu) -> MaxPool -> Dense(64, relu) ->
Dense(10, softmax), as in the Keras seed study: Adam (lr 1e-3), batch 32, 5 epochs, the last 20%
of the training set held out for validation, test accuracy on the 10,000 test images. Every
(initializer, seed) pair is one model of one program (`lax.map` on CPU, `vmap` elsewhere); the
initializer is applied to every Conv and Dense kernel (biases zero).

    python experiments/cifar10_cnn.py --data-dir ../shared/data
    python experiments/cifar10_cnn.py --data-dir ../shared/data --quick

Writes ``results.json`` and ``val_accuracy.png`` to ``--out`` (default ``runs/cifar10_cnn``);
resumes from its last finished epoch when restarted with the same arguments. This is the
study's main; its config, input pipeline and training are in ``experiments/cifar10/``.
"""

from __future__ import annotations

import sys

from experiments import default_host_devices, use_host_devices_from_argv
from experiments.cifar10.config import DEFAULT_INITS, Config
from experiments.common.sweep import sweep_devices


def default_devices(argv) -> int:
    """XLA CPU devices for the sweep that ``argv`` asks for (``host_devices_for``): no
    padded models where the cores allow (3 models on 2 cores: 3 devices)."""
    return sweep_devices(argv, DEFAULT_INITS, Config().seeds, default_host_devices())


if __name__ == "__main__":  # before jax starts; --host-devices N wins
    use_host_devices_from_argv(default=default_devices(sys.argv))

from experiments import common  # noqa: E402
from experiments.cifar10 import config, train  # noqa: E402
from experiments.data import cifar10  # noqa: E402


def parse_args(argv=None):
    """``(args, Config)`` from the command line; exits naming the flag on a bad value."""
    d = config.Config()
    p = common.base_parser(
        __doc__.splitlines()[0], "runs/cifar10_cnn", ("data-dir", "restart", "models-per-chunk")
    )
    common.add_sweep_args(
        p,
        config.INIT_NAMES,
        config.DEFAULT_INITS,
        d.seeds,
        epochs=d.epochs,
        batch_size=d.batch_size,
    )
    p.add_argument(
        "--conv-impl",
        default="auto",
        choices=config.CONV_IMPLS,
        help="how convolutions run: im2col matmuls, XLA's convolution, or auto (im2col on CPU, "
        "where XLA's convolution loses its fast path inside loops; XLA's elsewhere)",
    )
    args = p.parse_args(argv)
    common.check_host_devices(args)
    cfg = config.get_config(
        args.inits,
        args.seeds,
        quick=args.quick,
        epochs=args.epochs,
        batch_size=args.batch_size,
        conv_impl=args.conv_impl,
    )
    return args, cfg


def main(argv=None):
    args, cfg = parse_args(argv)
    try:
        results = train.train_and_evaluate(args, cfg)
    except (cifar10.DataNotFoundError, cifar10.CorruptDataError) as e:  # data, not a crash
        raise SystemExit(f"error: {e}") from None
    common.print_study(results, args.out)
    return results


if __name__ == "__main__":
    main()
