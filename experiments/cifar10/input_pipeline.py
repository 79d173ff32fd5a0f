"""The CIFAR-10 study's input pipeline: the official binary batches, split as Keras's
``fit(validation_split=...)`` does, as device arrays."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp

from experiments import common
from experiments.cifar10.config import Config
from experiments.data import cifar10


def get_datasets(cfg: Config, data_dir=None) -> dict[str, Any]:
    """``{"train", "val", "test"}`` dicts of ``x`` float32 ``(n, 32, 32, 3)`` and ``y`` int
    ``(n,)``, plus ``source`` (the files read) and ``load_s`` (seconds to read and check them).

    Raises:
      cifar10.DataNotFoundError, cifar10.CorruptDataError: no usable copy of the dataset.
    """
    t0 = time.perf_counter()
    data = cifar10.load_cifar10(data_dir)
    load_s = time.perf_counter() - t0
    train, val, test = (jax.tree.map(jnp.asarray, d) for d in common.keras_split(data, cfg))
    return {"train": train, "val": val, "test": test, "source": data.source, "load_s": load_s}
