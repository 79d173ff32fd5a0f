"""CIFAR-10 from the official *binary* version (``cifar-10-batches-bin``), never from pickles.

Each ``data_batch_{1..5}.bin`` / ``test_batch.bin`` holds 10,000 records of 3073 bytes: one
label byte (0-9), then 1024 red, 1024 green and 1024 blue bytes, each plane a row-major 32x32
image. The reader takes the files from a folder or straight from the official
``cifar-10-binary.tar.gz``; the python version of the dataset is pickle, which can execute code
from an untrusted file, so it is never read. Without a local copy it falls back to
tensorflow-datasets (``cifar10``), and stops with a message saying where to put the archive
when that fails too.

Never partial data: every file must hold exactly 10,000 records (30,730,000 bytes), the full
training set 5,000 images per class and the test set 1,000; a truncated or corrupt file or
archive raises an error naming the file and what was wrong.

Images are returned NHWC float32 in [0, 1] (the seed study's ``x / 255``), labels int32.

Reference: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from experiments.data import CorruptDataError, DataNotFoundError, read_tar

RECORD = 3073
RECORDS_PER_FILE = 10_000  # published: 5 training batches + 1 test batch of 10,000 images
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
ARCHIVE_NAMES = ("cifar-10-binary.tar.gz",)
LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class Cifar10:
    """``x_*``: float32 ``(n, 32, 32, 3)`` in [0, 1]; ``y_*``: int32 ``(n,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def decode_records(buf: bytes, name: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Decodes binary CIFAR records into uint8 NHWC images and int32 labels.

    Raises:
      CorruptDataError: naming ``name`` and the byte offset, if the length is not a whole number of
        3073-byte records (a truncated file) or a label byte is not in 0..9.
    """
    if len(buf) == 0 or len(buf) % RECORD:
        whole = len(buf) // RECORD
        raise CorruptDataError(
            f"{name}: {len(buf)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records "
            f"(truncated or corrupt at offset {whole * RECORD}, after {whole} whole records)"
        )
    rec = np.frombuffer(buf, np.uint8).reshape(-1, RECORD)
    labels = rec[:, 0].astype(np.int32)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise CorruptDataError(
            f"{name}: label byte {labels[bad[0]]} at offset {bad[0] * RECORD} is not in 0..9 "
            f"(record {bad[0]}): not a CIFAR-10 binary file"
        )
    images = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes -> NHWC
    return images, labels


def find_local_copy(data_dir: str | os.PathLike) -> pathlib.Path | None:
    """The ``cifar-10-batches-bin`` folder or binary archive in ``data_dir`` (or ``cifar10/``)."""
    data_dir = pathlib.Path(data_dir)
    for folder in (data_dir / "cifar10", data_dir):
        if (folder / "cifar-10-batches-bin" / TEST_FILES[0]).is_file():
            return folder / "cifar-10-batches-bin"
        if (folder / TEST_FILES[0]).is_file():
            return folder
        for name in ARCHIVE_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def _read_files(source: pathlib.Path) -> dict[str, bytes]:
    wanted = set(TRAIN_FILES + TEST_FILES)
    if source.is_dir():
        missing = sorted(f for f in wanted if not (source / f).is_file())
        if missing:
            raise CorruptDataError(f"{source}: missing CIFAR-10 binary files {missing}")
        return {f: (source / f).read_bytes() for f in wanted}
    base = lambda name: pathlib.PurePosixPath(name).name  # noqa: E731
    out = {base(n): data for n, data in read_tar(source, lambda n: base(n) in wanted)}
    missing = sorted(wanted - set(out))
    if missing:
        raise CorruptDataError(
            f"{source}: archive lacks CIFAR-10 binary files {missing} (truncated or incomplete)"
        )
    return out


def _decode(raw: bytes, name: str, records: int | None) -> tuple[np.ndarray, np.ndarray]:
    # decode first: a length that is not whole records is reported with its byte offset.
    images, labels = decode_records(raw, name)
    if records is not None and len(labels) != records:
        raise CorruptDataError(
            f"{name}: {len(raw)} bytes = {len(labels)} records, expected {records * RECORD} "
            f"bytes ({records} records of {RECORD} bytes); the file is truncated"
        )
    return images, labels


def _decode_all(
    raw: dict[str, bytes], where: str, records_per_file: int | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decodes every file, checking that each holds ``records_per_file`` records (``None``: the
    same number in every file, for tiny fixtures)."""
    n = records_per_file
    if n is None:
        n = max(len(b) for b in raw.values()) // RECORD
    return {f: _decode(raw[f], f"{where}/{f}", n) for f in TRAIN_FILES + TEST_FILES}


def read_file(path: str | os.PathLike, records: int | None = RECORDS_PER_FILE):
    """uint8 NHWC images and int32 labels of one binary file, checked to hold ``records``
    records (the published 10,000; ``None``: any whole number).

    Raises:
      CorruptDataError: naming the file, if it is truncated or corrupt.
    """
    return _decode(pathlib.Path(path).read_bytes(), str(path), records)


def check_balance(y_train: np.ndarray, y_test: np.ndarray, source: str) -> None:
    """Raises CorruptDataError naming ``source`` unless the full dataset's classes are as published
    (50,000 training images, 5,000 per class; 10,000 test images, 1,000 per class)."""
    for split, y, n in (("train", y_train, 5000), ("test", y_test, 1000)):
        counts = np.bincount(np.asarray(y), minlength=10).tolist()
        if counts != [n] * 10:
            raise CorruptDataError(
                f"{source}: {split} class counts {counts}, expected {n} per class "
                f"({10 * n} images): not the official CIFAR-10 {split} set"
            )


def read_split(
    source: str | os.PathLike,
    files: tuple[str, ...],
    *,
    records_per_file: int | None = RECORDS_PER_FILE,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and labels of ``files`` (in order) from a folder or archive."""
    parts = _decode_all(_read_files(pathlib.Path(source)), str(source), records_per_file)
    return (
        np.concatenate([parts[f][0] for f in files]),
        np.concatenate([parts[f][1] for f in files]),
    )


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    allow_download: bool = True,
    records_per_file: int | None = RECORDS_PER_FILE,
) -> Cifar10:
    """Loads CIFAR-10 (50,000 train + 10,000 test, official order), scaled to [0, 1].

    Args:
      data_dir: folder with ``cifar-10-batches-bin/`` (directly or under ``cifar10/``) or
        ``cifar-10-binary.tar.gz``; default ``$JINIT_DATA_DIR``, then ``~/.cache/jinit/data``.
        A folder that is given (here or as ``$JINIT_DATA_DIR``) must exist and hold a copy.
      allow_download: fall back to tensorflow-datasets, only when no folder was given and the
        default folder holds no copy.
      records_per_file: records expected in each of the six files (the published 10,000, with
        the published class counts); ``None`` for tiny test fixtures (equal files).

    Raises:
      CorruptDataError: (a ValueError) a truncated, corrupt or incomplete file or archive,
        naming the file and what was wrong.
      DataNotFoundError: a given folder that does not exist or holds no copy (naming it); no
        local copy and no download.
    """
    from experiments.data.imdb import default_data_dir

    given = data_dir is not None or bool(os.environ.get("JINIT_DATA_DIR"))
    data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    if given and not data_dir.is_dir():
        raise DataNotFoundError(
            f"data_dir={str(data_dir)!r} does not exist or is not a folder. "
            + _missing(data_dir, None)
        )
    local = find_local_copy(data_dir)
    if local is not None:
        parts = _decode_all(_read_files(local), str(local), records_per_file)
        xtr = np.concatenate([parts[f][0] for f in TRAIN_FILES])
        ytr = np.concatenate([parts[f][1] for f in TRAIN_FILES])
        xte, yte = parts[TEST_FILES[0]]
        source = str(local)
    elif allow_download and not given:
        try:
            (xtr, ytr), (xte, yte) = _tfds()
        except Exception as e:
            raise DataNotFoundError(_missing(data_dir, e)) from e
        source = "tfds:cifar10"
        records_per_file = RECORDS_PER_FILE
    else:
        raise DataNotFoundError(_missing(data_dir, None))
    if records_per_file == RECORDS_PER_FILE:
        check_balance(ytr, yte, source)
    scale = np.float32(1 / 255)
    return Cifar10(xtr.astype(np.float32) * scale, ytr, xte.astype(np.float32) * scale, yte, source)


def _tfds():
    import tensorflow_datasets as tfds  # optional; only without a local copy

    out = []
    for split in ("train", "test"):
        ds = tfds.data_source("cifar10", split=split, download=True)
        out.append(
            (np.stack([ex["image"] for ex in ds]), np.array([ex["label"] for ex in ds], np.int32))
        )
    return out


def _missing(data_dir: pathlib.Path, err: Exception | None) -> str:
    why = f" (tensorflow-datasets download failed: {type(err).__name__}: {err})" if err else ""
    return (
        f"CIFAR-10 not found in data_dir={str(data_dir)!r}{why}. Put the official binary version "
        "(cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, or its extracted "
        f"cifar-10-batches-bin/ folder) in {data_dir} or {data_dir / 'cifar10'}, or pass --data-dir."
    )


def encode_records(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Inverse of :func:`decode_records` (uint8 NHWC images): for tests and tiny fixtures."""
    images = np.asarray(images, np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], planes], axis=1).tobytes()
