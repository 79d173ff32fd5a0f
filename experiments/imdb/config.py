"""The IMDB RNN study's configuration: the Keras seed study's hyper-parameters, and --quick."""

from __future__ import annotations

import dataclasses

from experiments import with_overrides

# Embedding initializers compared (built in train.INITIALIZERS). 'uniform' is Keras's Embedding
# default RandomUniform(-0.05, 0.05).
INIT_NAMES = ("uniform", "glorot_uniform", "he_normal", "orthogonal", "lsuv")
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


# --quick: a smoke run of seconds (500 training reviews, 250 test reviews, one epoch).
QUICK = {
    "epochs": 1,
    "train_limit": 500,
    "test_limit": 250,
    "steps_per_call": 5,
    "eval_batch_size": 250,
}


def get_config(
    inits=DEFAULT_INITS,
    seeds=(0, 1, 2),
    *,
    quick: bool = False,
    epochs: int | None = None,
    batch_size: int | None = None,
) -> Config:
    """The study's :class:`Config`; ``quick`` applies :data:`QUICK`, then explicit values win."""
    cfg = Config(inits=tuple(inits), seeds=tuple(seeds))
    return with_overrides(cfg, QUICK, quick, epochs=epochs, batch_size=batch_size)
