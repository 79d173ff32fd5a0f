"""The CIFAR-10 CNN initialization study: glorot, He, random normal, orthogonal, LSUV and zeros.

Conv(32, 3x3, relu) -> MaxPool -> Conv(64, 3x3, relu) -> MaxPool -> Dense(64, relu) ->
Dense(10, softmax), as in the Keras seed study: Adam (lr 1e-3), batch 32, 5 epochs, the last 20%
of the training set held out for validation, test accuracy on the 10,000 test images. Every
(initializer, seed) pair is one model of one program (`lax.map` on CPU, `vmap` elsewhere); the initializer is applied to
every Conv and Dense kernel (biases zero).

    python experiments/cifar10_cnn.py --data-dir ../shared/data
    python experiments/cifar10_cnn.py --data-dir ../shared/data --quick

Writes ``results.json`` and ``val_accuracy.png`` to ``--out`` (default ``runs/cifar10_cnn``);
resumes from its last finished epoch when restarted with the same arguments.
"""

from __future__ import annotations

import dataclasses
import time

from experiments import default_host_devices, use_host_devices_from_argv

if __name__ == "__main__":  # one XLA CPU device per core unless --host-devices N; before jax
    use_host_devices_from_argv(default=default_host_devices())

import jax
import jax.numpy as jnp
import optax

import jinit
from experiments import common
from experiments.data import cifar10
from experiments.models import CifarCNN

INITIALIZERS = {
    "glorot_uniform": jinit.glorot_uniform(),
    "he_normal": jinit.he_normal(),
    "random_normal": jinit.normal(0.05),  # Keras RandomNormal(stddev=0.05)
    "orthogonal": jinit.orthogonal(),
    "lsuv": jinit.lsuv_ready_orthogonal(),  # + jinit.lsuv on one training batch
    "zeros": jinit.zeros(),
}
DEFAULT_INITS = tuple(INITIALIZERS)


@dataclasses.dataclass(frozen=True)
class Config:
    inits: tuple[str, ...] = DEFAULT_INITS
    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    adam_eps: float = 1e-7  # Keras's Adam epsilon
    validation_split: float = 0.2
    train_limit: int | None = None
    test_limit: int | None = None
    steps_per_call: int = 50
    eval_batch_size: int = 500
    lsuv_batch_size: int = 256
    conv_impl: str = "auto"  # im2col on CPU, XLA's convolution elsewhere


def conv_impl(cfg: Config) -> str:
    if cfg.conv_impl != "auto":
        return cfg.conv_impl
    return "im2col" if jax.default_backend() == "cpu" else "xla"


def parse_args(argv=None):
    """``(args, Config)`` from the command line; exits naming the flag on a bad value."""
    d = Config()
    p = common.base_parser(
        __doc__.splitlines()[0], "runs/cifar10_cnn", ("data-dir", "restart", "models-per-chunk")
    )
    common.add_sweep_args(
        p, INITIALIZERS, DEFAULT_INITS, d.seeds, epochs=d.epochs, batch_size=d.batch_size
    )
    p.add_argument("--conv-impl", default="auto", choices=["auto", "im2col", "xla"])
    args = p.parse_args(argv)
    common.check_host_devices(args)
    cfg = Config(inits=args.inits, seeds=args.seeds, conv_impl=args.conv_impl)
    if args.quick:
        cfg = dataclasses.replace(
            cfg,
            epochs=1,
            train_limit=640,
            test_limit=200,
            steps_per_call=5,
            eval_batch_size=100,
            lsuv_batch_size=64,
        )
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.batch_size is not None:
        cfg = dataclasses.replace(cfg, batch_size=args.batch_size)
    return args, cfg


def classification_fns(model):
    """Softmax cross-entropy loss and per-example metrics for a model without state."""

    def loss_fn(params, batch):
        logits = model.apply(params, batch["x"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}

    def metric_fn(params, batch):
        logits = model.apply(params, batch["x"])
        return {
            "loss": optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]),
            "accuracy": (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32),
        }

    return loss_fn, metric_fn


def run(args, cfg: Config) -> dict:
    t_start = time.perf_counter()
    data = cifar10.load_cifar10(args.data_dir)
    t_data = time.perf_counter() - t_start
    train, val, test = (jax.tree.map(jnp.asarray, d) for d in common.keras_split(data, cfg))
    optimizer = optax.adam(cfg.learning_rate, eps=cfg.adam_eps)
    impl = conv_impl(cfg)
    loss_fn, metric_fn = classification_fns(CifarCNN(conv_impl=impl))
    lsuv_batch = train["x"][: cfg.lsuv_batch_size]

    def init_state_fn(name, key):
        model = CifarCNN(kernel_init=INITIALIZERS[name], conv_impl=impl)
        params = model.init(key, train["x"][:1])
        if name == "lsuv":
            params = jinit.lsuv(model, params, lsuv_batch)[0]
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
        title="CIFAR-10 CNN: initializers",
        extra={"conv_impl": impl},
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
    except (cifar10.DataNotFoundError, cifar10.CorruptDataError) as e:  # data, not a crash
        raise SystemExit(f"error: {e}") from None
    common.print_study(results, args.out)
    return results


if __name__ == "__main__":
    main()
