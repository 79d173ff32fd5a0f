"""IMDB Large Movie Review Dataset (Maas et al. 2011), tokenized as Keras's ``imdb.load_data``.

Reads the official ``aclImdb`` layout, ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``,
straight from a ``.tar.gz`` archive or an extracted folder in a data directory. When no local
copy exists it falls back to tensorflow-datasets (``imdb_reviews``); when that fails too, it
stops with a message that says where to put the archive.

Preprocessing follows ``keras.datasets.imdb.load_data`` + ``pad_sequences`` so the study
matches the Keras original:

* text: lowercase, ``<br />`` removed, split into words (runs of letters and digits, with
  inner apostrophes kept: ``don't``);
* vocabulary: words ranked by frequency in the *training* reviews (ties broken by first
  appearance, deterministic); as in Keras (``index_from=3``) the most frequent word has id 4,
  and with ``num_words=10000`` only ids below 10000 are kept (so 9,996 words);
* ids 0 = padding, 1 = start of review, 2 = out of vocabulary, 3 = unused (Keras's layout);
* each review is ``[1] + ids``, then padded and truncated at the front (``'pre'``) to
  ``maxlen`` tokens, as ``pad_sequences`` does by default;
* the training and test sets are shuffled with ``numpy.random.RandomState(113)`` as Keras
  does, so Keras's ``validation_split=0.2`` (the *last* 20% of the training set) is a random,
  class-balanced-in-expectation subset.

The tokenized arrays are cached (atomic write) in a cache directory, since the data directory
may be read-only; a second load takes seconds.

Reference: A. L. Maas et al., "Learning Word Vectors for Sentiment Analysis", ACL 2011.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import tarfile
import tempfile

import numpy as np

PAD, START, OOV = 0, 1, 2
INDEX_FROM = 3
ARCHIVE_NAMES = ("aclImdb_v1.tar.gz", "aclImdb_v1_labelled.tar.gz")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_FILE = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_CACHE_VERSION = 1


class DataNotFoundError(FileNotFoundError):
    """Raised when neither a local copy nor a download of the dataset is available."""


@dataclasses.dataclass(frozen=True)
class ImdbArrays:
    """Tokenized IMDB reviews.

    Attributes:
      x_train: int32 ``(n_train, maxlen)`` token ids, Keras-shuffled order.
      y_train: int32 ``(n_train,)`` labels, 1 = positive.
      x_test: int32 ``(n_test, maxlen)``.
      y_test: int32 ``(n_test,)``.
      source: where the text came from (a path, or ``"tfds:imdb_reviews"``).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def default_data_dir() -> pathlib.Path:
    """``$JINIT_DATA_DIR``, else ``$XDG_CACHE_HOME/jinit/data`` (``~/.cache/jinit/data``)."""
    if os.environ.get("JINIT_DATA_DIR"):
        return pathlib.Path(os.environ["JINIT_DATA_DIR"])
    return _user_cache() / "data"


def default_cache_dir() -> pathlib.Path:
    """``$JINIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/jinit`` (``~/.cache/jinit``)."""
    if os.environ.get("JINIT_CACHE_DIR"):
        return pathlib.Path(os.environ["JINIT_CACHE_DIR"])
    return _user_cache()


def _user_cache() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "jinit"


def tokenize(text: str) -> list[str]:
    """Lowercase, drop ``<br />`` tags, split into words."""
    text = text.lower().replace("<br />", " ").replace("<br/>", " ").replace("<br>", " ")
    return _WORD.findall(text)


def find_local_copy(data_dir: str | os.PathLike) -> pathlib.Path | None:
    """The first ``aclImdb`` archive or folder found in ``data_dir`` or ``data_dir/imdb``."""
    data_dir = pathlib.Path(data_dir)
    for folder in (data_dir / "imdb", data_dir):
        for name in ARCHIVE_NAMES:
            if (folder / name).is_file():
                return folder / name
        if (folder / "aclImdb" / "train").is_dir():
            return folder / "aclImdb"
    return None


def read_reviews(source: str | os.PathLike) -> dict[str, list[tuple[int, int, str]]]:
    """Reads labelled reviews from an ``aclImdb`` archive or folder.

    Args:
      source: a ``.tar.gz`` holding ``aclImdb/...`` or the extracted ``aclImdb`` folder.

    Returns:
      ``{"train": [...], "test": [...]}``, each a list of ``(label, id, text)`` sorted by
      (label, id) with label 0 = neg, 1 = pos. Unlabelled reviews (``unsup``) are ignored.

    Raises:
      ValueError: if ``source`` holds no labelled review files.
    """
    source = pathlib.Path(source)
    out: dict[str, list[tuple[int, int, str]]] = {"train": [], "test": []}

    def add(name: str, read) -> None:
        m = _FILE.search(name)
        if m:
            split, polarity, idx, _ = m.groups()
            out[split].append((int(polarity == "pos"), int(idx), read().decode("utf-8")))

    if source.is_dir():
        root = source.parent
        for path in sorted(source.glob("*/*/*.txt")):
            add(path.relative_to(root).as_posix(), path.read_bytes)
    else:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    add(member.name, lambda m=member: tar.extractfile(m).read())
    if not out["train"] or not out["test"]:
        raise ValueError(
            f"source={str(source)!r} holds no labelled reviews in the aclImdb layout "
            "aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt"
        )
    for split in out:
        out[split].sort(key=lambda r: (r[0], r[1]))
    return out


def build_vocab(texts: list[list[str]], num_words: int) -> dict[str, int]:
    """Word -> id, ids from ``INDEX_FROM + 1`` by descending training frequency, below num_words."""
    counts = collections.Counter()
    for words in texts:
        counts.update(words)
    # Counter.most_common breaks ties by first insertion: deterministic for a fixed order.
    ranked = [w for w, _ in counts.most_common(max(num_words - INDEX_FROM - 1, 0))]
    return {w: i + INDEX_FROM + 1 for i, w in enumerate(ranked)}


def encode(words: list[str], vocab: dict[str, int]) -> list[int]:
    return [START] + [vocab.get(w, OOV) for w in words]


def pad_sequences(seqs: list[list[int]], maxlen: int) -> np.ndarray:
    """Keras ``pad_sequences(padding='pre', truncating='pre')``: keep the last maxlen ids."""
    out = np.zeros((len(seqs), maxlen), np.int32)
    for i, s in enumerate(seqs):
        s = s[-maxlen:]
        if s:
            out[i, maxlen - len(s) :] = s
    return out


def _to_arrays(reviews, num_words: int, maxlen: int, seed: int, source: str) -> ImdbArrays:
    words = {split: [tokenize(t) for _, _, t in reviews[split]] for split in reviews}
    vocab = build_vocab(words["train"], num_words)
    arrays = {}
    for split in ("train", "test"):
        x = pad_sequences([encode(w, vocab) for w in words[split]], maxlen)
        y = np.array([label for label, _, _ in reviews[split]], np.int32)
        # keras.datasets.imdb shuffles each split with RandomState(seed) (seed=113).
        perm = np.arange(len(x))
        np.random.RandomState(seed).shuffle(perm)
        arrays[split] = (x[perm], y[perm])
    return ImdbArrays(*arrays["train"], *arrays["test"], source=source)


def _atomic_save(path: pathlib.Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _fingerprint(path: pathlib.Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"


def _tfds_reviews():
    """Labelled reviews through tensorflow-datasets (``imdb_reviews``); raises on failure."""
    import tensorflow_datasets as tfds  # noqa: PLC0415 — optional, only when no local copy.

    out = {}
    for split in ("train", "test"):
        ds = tfds.data_source("imdb_reviews", split=split, download=True)
        out[split] = [(int(ex["label"]), i, ex["text"].decode("utf-8")) for i, ex in enumerate(ds)]
    return out


def load_imdb(
    data_dir: str | os.PathLike | None = None,
    *,
    num_words: int = 10_000,
    maxlen: int = 200,
    seed: int = 113,
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
) -> ImdbArrays:
    """Loads IMDB as Keras's ``imdb.load_data(num_words) + pad_sequences(maxlen)``.

    Args:
      data_dir: folder holding ``aclImdb_v1.tar.gz`` / ``aclImdb_v1_labelled.tar.gz`` or an
        extracted ``aclImdb/`` (directly or under ``imdb/``); default ``default_data_dir()``.
      num_words: ids are kept below this (Keras semantics); 10,000 in the study.
      maxlen: sequence length after 'pre' padding/truncation.
      seed: shuffle seed (Keras's 113).
      cache_dir: where tokenized arrays are cached; default ``default_cache_dir()``.
      allow_download: fall back to tensorflow-datasets when no local copy exists.

    Returns:
      ``ImdbArrays`` with 25,000 training and 25,000 test reviews (for the full dataset).

    Raises:
      ValueError: for ``num_words <= INDEX_FROM + 1`` or ``maxlen < 1``.
      DataNotFoundError: no local copy and the download failed or was not allowed.
    """
    if num_words <= INDEX_FROM + 1:
        raise ValueError(f"num_words must be > {INDEX_FROM + 1}, got {num_words}")
    if maxlen < 1:
        raise ValueError(f"maxlen must be >= 1, got {maxlen}")
    data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    local = find_local_copy(data_dir)
    origin = _fingerprint(local) if local is not None else "tfds:imdb_reviews"
    params = json.dumps([_CACHE_VERSION, origin, num_words, maxlen, seed])
    cache = cache_dir / f"imdb-{hashlib.sha256(params.encode()).hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return ImdbArrays(
                z["x_train"], z["y_train"], z["x_test"], z["y_test"], str(z["source"])
            )

    if local is not None:
        reviews, source = read_reviews(local), str(local)
    elif allow_download:
        try:
            reviews, source = _tfds_reviews(), "tfds:imdb_reviews"
        except Exception as e:  # offline, tfds missing, ...: say where the data should go.
            raise DataNotFoundError(_missing_message(data_dir, e)) from e
    else:
        raise DataNotFoundError(_missing_message(data_dir, None))
    arrays = _to_arrays(reviews, num_words, maxlen, seed, source)
    _atomic_save(cache, **dataclasses.asdict(arrays))
    return arrays


def _missing_message(data_dir: pathlib.Path, err: Exception | None) -> str:
    why = f" (tensorflow-datasets download failed: {type(err).__name__}: {err})" if err else ""
    return (
        f"IMDB reviews not found in data_dir={str(data_dir)!r}{why}. Put the official archive "
        f"aclImdb_v1.tar.gz (https://ai.stanford.edu/~amaas/data/sentiment/) or an extracted "
        f"aclImdb/ folder in {data_dir} or {data_dir / 'imdb'}, or pass --data-dir / set "
        "JINIT_DATA_DIR."
    )


def write_tiny_archive(
    path: str | os.PathLike, reviews: dict[str, list[tuple[int, int, int, str]]]
):
    """Writes ``reviews`` (split -> [(label, id, rating, text)]) as an aclImdb ``.tar.gz``.

    For tests and smoke runs: the same layout as the official archive.
    """
    with tarfile.open(path, "w:gz") as tar:
        for split, rows in reviews.items():
            for label, idx, rating, text in rows:
                data = text.encode("utf-8")
                info = tarfile.TarInfo(
                    f"aclImdb/{split}/{'pos' if label else 'neg'}/{idx}_{rating}.txt"
                )
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
