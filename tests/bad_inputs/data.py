"""Bad inputs of the studies' data loaders: bad arguments, missing folders, and local copies
that are truncated, corrupt or incomplete (each built on the fly in a temporary folder)."""

from __future__ import annotations

import io
import pathlib
import tarfile
import tempfile

import numpy as np

from experiments.data import CorruptDataError, DataNotFoundError, cifar10, imdb
from tests.bad_inputs import Row

MISSING = "/nonexistent/jinit-data"


def _reviews(per_class=2):
    return {
        s: [(lab, i, 8 if lab else 2, f"review {i}") for lab in (1, 0) for i in range(per_class)]
        for s in ("train", "test")
    }


def in_tmp(build, call):
    """``call(folder)`` after ``build(folder)`` in a fresh temporary folder."""

    def run():
        with tempfile.TemporaryDirectory() as d:
            d = pathlib.Path(d)
            build(d)
            return call(d)

    return run


def _archive(reviews, name="aclImdb_v1.tar.gz", cut=None):
    def build(d):
        imdb.write_tiny_archive(d / name, reviews)
        if cut is not None:
            raw = (d / name).read_bytes()
            (d / name).write_bytes(raw[: int(len(raw) * cut)])

    return build


def _bad_utf8(d):
    data = b"caf\xe9"
    with tarfile.open(d / "aclImdb_v1.tar.gz", "w:gz") as tar:
        for split, rows in _reviews().items():
            for lab, i, rating, text in rows:
                raw = data if (split, lab, i) == ("test", 1, 1) else text.encode()
                info = tarfile.TarInfo(
                    f"aclImdb/{split}/{'pos' if lab else 'neg'}/{i}_{rating}.txt"
                )
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))


def _unbalanced():
    r = _reviews(3)
    r["train"] = r["train"][:-1]  # train/neg id 2 missing
    return r


def _bad_rating():
    r = _reviews()
    r["test"][0] = (1, 0, 4, "rated 4 in pos")
    return r


def _cifar(records=3, truncate=None, label=None):
    def build(d):
        folder = d / "cifar-10-batches-bin"
        folder.mkdir()
        for f in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
            raw = bytearray(cifar10.encode_records(np.zeros((records, 32, 32, 3)), [1] * records))
            if f == "data_batch_4.bin" and truncate is not None:
                raw = raw[:truncate]
            if f == "test_batch.bin" and label is not None:
                raw[0] = label
            (folder / f).write_bytes(bytes(raw))

    return build


def _read(**kw):
    return lambda d: imdb.read_reviews(d / "aclImdb_v1.tar.gz", **kw)


def _load_cifar(**kw):
    return lambda d: cifar10.load_cifar10(d, allow_download=False, **kw)


ROWS: list[Row] = [
    Row(
        "data/load_imdb/num_words=4",
        lambda: imdb.load_imdb(MISSING, num_words=4),
        ValueError,
        ("num_words", "4"),
    ),
    Row(
        "data/load_imdb/maxlen=0",
        lambda: imdb.load_imdb(MISSING, maxlen=0),
        ValueError,
        ("maxlen", "0"),
    ),
    Row(
        "data/load_imdb/data_dir=missing",
        lambda: imdb.load_imdb(MISSING, cache_dir=tempfile.gettempdir()),
        DataNotFoundError,
        ("data_dir", MISSING, "does not exist"),
    ),
    Row(
        "data/load_imdb/data_dir=empty",
        in_tmp(lambda d: None, lambda d: imdb.load_imdb(d, cache_dir=d)),
        DataNotFoundError,
        ("data_dir", "aclImdb_v1.tar.gz", "not found"),
    ),
    Row(
        "data/read_reviews/archive=truncated",
        in_tmp(_archive(_reviews(30), cut=0.5), _read(per_class=30)),
        CorruptDataError,
        ("aclImdb_v1.tar.gz", "truncated or corrupt archive"),
    ),
    Row(
        "data/read_reviews/archive=not-gzip",
        in_tmp(lambda d: (d / "aclImdb_v1.tar.gz").write_bytes(b"<html>404</html>"), _read()),
        CorruptDataError,
        ("aclImdb_v1.tar.gz", "truncated or corrupt archive"),
    ),
    Row(
        "data/read_reviews/archive=short-count",
        in_tmp(_archive(_reviews(2)), _read()),
        CorruptDataError,
        ("aclImdb_v1.tar.gz", "holds 2 reviews, expected 12500"),
    ),
    Row(
        "data/read_reviews/archive=unbalanced",
        in_tmp(_archive(_unbalanced()), _read(per_class=None)),
        CorruptDataError,
        ("train/neg", "expected 3", "ids [2]"),
    ),
    Row(
        "data/read_reviews/member=bad-utf8",
        in_tmp(_bad_utf8, _read(per_class=2)),
        CorruptDataError,
        ("'aclImdb/test/pos/1_8.txt'", "not valid UTF-8"),
    ),
    Row(
        "data/read_reviews/member=bad-rating",
        in_tmp(_archive(_bad_rating()), _read(per_class=2)),
        CorruptDataError,
        ("'aclImdb/test/pos/0_4.txt'", "rating 4", "7-10"),
    ),
    Row(
        "data/read_reviews/archive=no-reviews",
        in_tmp(_archive({"train": []}), _read(per_class=None)),
        CorruptDataError,
        ("holds no labelled reviews", "aclImdb/{train,test}/{pos,neg}"),
    ),
    Row(
        "data/check_counts/tfds=short",
        lambda: imdb.check_counts(
            {"train": [(1, 0, "x")], "test": []}, "tfds:imdb_reviews", 12_500
        ),
        CorruptDataError,
        ("tfds:imdb_reviews", "train holds 1 positive and 0 negative", "12500"),
    ),
    Row(
        "data/decode_records/truncated",
        lambda: cifar10.decode_records(b"\x01" * 4000, "data_batch_1.bin"),
        CorruptDataError,
        ("data_batch_1.bin", "4000 bytes", "offset 3073"),
    ),
    Row(
        "data/decode_records/empty",
        lambda: cifar10.decode_records(b"", "test_batch.bin"),
        CorruptDataError,
        ("test_batch.bin", "0 bytes"),
    ),
    Row(
        "data/decode_records/label=10",
        lambda: cifar10.decode_records(bytes([10]) + bytes(3072), "test_batch.bin"),
        CorruptDataError,
        ("test_batch.bin", "label byte 10", "0..9"),
    ),
    Row(
        "data/load_cifar10/data_dir=missing",
        lambda: cifar10.load_cifar10(MISSING),
        DataNotFoundError,
        ("data_dir", MISSING, "does not exist"),
    ),
    Row(
        "data/load_cifar10/data_dir=empty",
        in_tmp(lambda d: None, lambda d: cifar10.load_cifar10(d)),
        DataNotFoundError,
        ("data_dir", "cifar-10-binary.tar.gz"),
    ),
    Row(
        "data/load_cifar10/file=short-count",
        in_tmp(_cifar(), _load_cifar()),
        CorruptDataError,
        ("data_batch_1.bin", "expected 30730000 bytes"),
    ),
    Row(
        "data/load_cifar10/file=whole-records-missing",
        in_tmp(_cifar(truncate=2 * 3073), _load_cifar(records_per_file=3)),
        CorruptDataError,
        ("data_batch_4.bin", "2 records", "truncated"),
    ),
    Row(
        "data/load_cifar10/file=truncated-mid-record",
        in_tmp(_cifar(truncate=3073 + 5), _load_cifar(records_per_file=None)),
        CorruptDataError,
        ("data_batch_4.bin", "offset 3073"),
    ),
    Row(
        "data/load_cifar10/label=200",
        in_tmp(_cifar(label=200), _load_cifar(records_per_file=None)),
        CorruptDataError,
        ("test_batch.bin", "label byte 200"),
    ),
    Row(
        "data/load_cifar10/archive=not-gzip",
        in_tmp(
            lambda d: (d / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b garbage"), _load_cifar()
        ),
        CorruptDataError,
        ("cifar-10-binary.tar.gz", "truncated or corrupt archive"),
    ),
    Row(
        "data/check_balance/unbalanced",
        lambda: cifar10.check_balance(np.zeros(50_000, int), np.repeat(np.arange(10), 1000), "src"),
        CorruptDataError,
        ("src", "train class counts", "5000 per class"),
    ),
]
