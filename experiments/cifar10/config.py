"""The CIFAR-10 CNN study's configuration: the Keras seed study's hyper-parameters, and --quick."""

from __future__ import annotations

import dataclasses

from experiments import with_overrides

# Kernel initializers compared (built in train.INITIALIZERS), applied to every Conv and Dense
# kernel (biases zero).
INIT_NAMES = ("glorot_uniform", "he_normal", "random_normal", "orthogonal", "lsuv", "zeros")
DEFAULT_INITS = INIT_NAMES
CONV_IMPLS = ("auto", "im2col", "xla")


@dataclasses.dataclass(frozen=True)
class Config:
    inits: tuple[str, ...] = DEFAULT_INITS
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    adam_eps: float = 1e-7  # Keras's Adam epsilon (optax's default is 1e-8)
    validation_split: float = 0.2
    train_limit: int | None = None  # --quick: use this many training images
    test_limit: int | None = None
    steps_per_call: int = 50
    eval_batch_size: int = 500
    lsuv_batch_size: int = 256  # training images the LSUV arm normalizes on
    conv_impl: str = "auto"  # im2col on CPU, XLA's convolution elsewhere (train.conv_impl)


# --quick: a smoke run of seconds (640 training images, 200 test images, one epoch).
QUICK = {
    "epochs": 1,
    "train_limit": 640,
    "test_limit": 200,
    "steps_per_call": 5,
    "eval_batch_size": 100,
    "lsuv_batch_size": 64,
}


def get_config(
    inits=DEFAULT_INITS,
    seeds=(0, 1, 2),
    *,
    quick: bool = False,
    epochs: int | None = None,
    batch_size: int | None = None,
    conv_impl: str = "auto",
) -> Config:
    """The study's :class:`Config`; ``quick`` applies :data:`QUICK`, then explicit values win."""
    cfg = Config(inits=tuple(inits), seeds=tuple(seeds), conv_impl=conv_impl)
    return with_overrides(cfg, QUICK, quick, epochs=epochs, batch_size=batch_size)
