"""IMDB review text as one byte stream per split, for byte-level language models.

Reads the labelled reviews of the ``aclImdb`` archive with ``experiments.data.imdb`` (same
file discovery), joins each split's reviews in (label, id) order with ``\\n`` (``<br />``
tags become spaces) and keeps the UTF-8 bytes (vocabulary 256). The arrays are cached as
``imdb_bytes_v1.npz`` keyed by the archive's fingerprint; a cache that does not match is
rebuilt.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from experiments.data import imdb

N_REVIEWS = 25_000  # per split, in the official archive
_VERSION = 1


def _text(reviews) -> bytes:
    parts = [t.replace("<br />", " ").replace("<br/>", " ") for _, _, t in reviews]
    return "\n".join(parts).encode("utf-8")


def load_imdb_bytes(
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    expect_reviews: int | None = N_REVIEWS,
) -> dict:
    """``{"train": uint8 (n,), "test": uint8 (m,), "source": str, "reviews": int}``.

    Raises:
      imdb.DataNotFoundError: no local archive or folder in ``data_dir``.
      ValueError: a split does not hold ``expect_reviews`` reviews (a partial archive).
    """
    data_dir = pathlib.Path(data_dir) if data_dir else imdb.default_data_dir()
    src = imdb.find_local_copy(data_dir)
    if src is None:
        raise imdb.DataNotFoundError(imdb._missing_message(data_dir, None))
    cache = pathlib.Path(cache_dir) if cache_dir else imdb.default_cache_dir()
    fp = imdb._fingerprint(src)
    path = cache / f"imdb_bytes_v{_VERSION}.npz"
    if path.exists():
        with np.load(path) as z:
            if str(z["fingerprint"]) == fp:
                return {
                    "train": z["train"],
                    "test": z["test"],
                    "source": str(src),
                    "reviews": int(z["reviews"]),
                }
    reviews = imdb.read_reviews(src)
    n = {k: len(v) for k, v in reviews.items()}
    if expect_reviews is not None and any(v != expect_reviews for v in n.values()):
        raise ValueError(f"{src}: expected {expect_reviews} reviews per split, found {n}")
    train = np.frombuffer(_text(reviews["train"]), np.uint8)
    test = np.frombuffer(_text(reviews["test"]), np.uint8)
    _save(path, train=train, test=test, fingerprint=np.asarray(fp), reviews=np.asarray(n["train"]))
    return {"train": train, "test": test, "source": str(src), "reviews": n["train"]}


def _save(path: pathlib.Path, **arrays) -> None:
    """Writes the cache through a temporary file and ``os.replace`` (never a partial cache)."""
    tmp = imdb._tmp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
