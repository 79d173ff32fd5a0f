"""The IMDB study's input pipeline: the reviews as Keras's IMDB loader gives them, split as
Keras's ``fit(validation_split=...)`` does, as device arrays."""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp

from experiments import common
from experiments.data import imdb
from experiments.imdb.config import Config


def get_datasets(cfg: Config, data_dir=None, cache_dir=None) -> dict[str, Any]:
    """``{"train", "val", "test"}`` dicts of ``x`` int32 ``(n, maxlen)`` and ``y`` ``(n,)``,
    plus ``source`` (the archive read) and ``load_s`` (seconds to load and tokenize).

    Raises:
      imdb.DataNotFoundError, imdb.CorruptDataError: no usable copy of the dataset.
    """
    t0 = time.perf_counter()
    data = imdb.load_imdb(data_dir, num_words=cfg.num_words, maxlen=cfg.maxlen, cache_dir=cache_dir)
    load_s = time.perf_counter() - t0
    train, val, test = (jax.tree.map(jnp.asarray, d) for d in common.keras_split(data, cfg))
    return {"train": train, "val": val, "test": test, "source": data.source, "load_s": load_s}
