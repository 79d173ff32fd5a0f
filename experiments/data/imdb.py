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

Never partial data: a local copy must hold the published 12,500 reviews per split and class
(ids 0..12499, ratings 7-10 for pos and 1-4 for neg), a truncated or corrupt archive raises an
error naming the file, and a review that is not valid UTF-8 raises an error naming the member
(the official files are all UTF-8; nothing is silently replaced).

The tokenized arrays are cached (atomic write) in a cache directory, since the data directory
may be read-only; a second load takes seconds. Each cache file stores a SHA-256 of its arrays: a
corrupt or stale cache is reported in one line and rebuilt, and temporary files left by a killed
write are removed on the next load.

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
import socket
import sys
import tarfile
import time

import numpy as np

from experiments.data import CorruptDataError, DataNotFoundError, read_tar

PAD, START, OOV = 0, 1, 2
INDEX_FROM = 3
ARCHIVE_NAMES = ("aclImdb_v1.tar.gz", "aclImdb_v1_labelled.tar.gz")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_FILE = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_CACHE_VERSION = 2  # 2: counts checked; caches of version 1 may hold a truncated archive.
REVIEWS_PER_CLASS = 12_500  # the published count per split (train, test) and class (pos, neg)
_RATINGS = {"pos": range(7, 11), "neg": range(1, 5)}
_TMP = re.compile(r"^\.imdb-[0-9a-f]+\.(\d+)@(.+)\.tmp$")
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


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


def read_reviews(
    source: str | os.PathLike, *, per_class: int | None = REVIEWS_PER_CLASS
) -> dict[str, list[tuple[int, int, str]]]:
    """Reads labelled reviews from an ``aclImdb`` archive or folder, and checks they are all there.

    Args:
      source: a ``.tar.gz`` holding ``aclImdb/...`` or the extracted ``aclImdb`` folder.
      per_class: reviews expected in each of train/pos, train/neg, test/pos, test/neg (the
        published 12,500). ``None`` (tiny test archives) only requires each split to be
        balanced, with ids ``0..n-1`` in each of its two folders.

    Returns:
      ``{"train": [...], "test": [...]}``, each a list of ``(label, id, text)`` sorted by
      (label, id) with label 0 = neg, 1 = pos. Unlabelled reviews (``unsup``) are ignored.

    Raises:
      CorruptDataError: (a ValueError) naming ``source``: a truncated or corrupt archive (and
        the last member read), a review that is not valid UTF-8 (naming the member), a rating
        outside its folder's range, or missing, duplicate or unbalanced reviews (the first
        missing ids are listed)."""
    source = pathlib.Path(source)
    out: dict[str, list[tuple[int, int, str]]] = {"train": [], "test": []}
    ids: dict[tuple[str, str], list[int]] = {
        (s, c): [] for s in ("train", "test") for c in ("pos", "neg")
    }

    def add(name: str, data: bytes) -> None:
        split, polarity, idx, rating = _FILE.search(name).groups()
        if int(rating) not in _RATINGS[polarity]:
            raise CorruptDataError(
                f"{source}: member {name!r} has rating {rating}, outside "
                f"{_RATINGS[polarity].start}-{_RATINGS[polarity].stop - 1} for {polarity!r} reviews"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorruptDataError(
                f"{source}: member {name!r} is not valid UTF-8 ({e.reason} at byte {e.start}); "
                "the official reviews are all UTF-8, so the file is corrupt"
            ) from None
        out[split].append((int(polarity == "pos"), int(idx), text))
        ids[split, polarity].append(int(idx))

    if source.is_dir():
        root = source.parent
        for path in sorted(source.glob("*/*/*.txt")):
            name = path.relative_to(root).as_posix()
            if _FILE.search(name):
                add(name, path.read_bytes())
    else:
        for name, data in read_tar(source, _FILE.search):
            add(name, data)
    _check_complete(source, ids, per_class)
    for split in out:
        out[split].sort(key=lambda r: (r[0], r[1]))
    return out


def _check_complete(source, ids: dict[tuple[str, str], list[int]], per_class: int | None) -> None:
    """Every (split, class) folder holds ids 0..n-1 once, n = per_class (or equal per split)."""
    if not any(ids.values()):
        raise CorruptDataError(
            f"source={str(source)!r} holds no labelled reviews in the aclImdb layout "
            "aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt"
        )
    for (split, polarity), got in ids.items():
        n = per_class
        if n is None:  # both folders of the split: ids 0..n-1, n the larger count or id + 1
            both = ids[split, "pos"] + ids[split, "neg"]
            n = max(len(ids[split, "pos"]), len(ids[split, "neg"]), max(both, default=-1) + 1)
        if sorted(got) != list(range(n)):
            missing = sorted(set(range(n)) - set(got))
            dup = len(got) - len(set(got))
            what = f"{len(missing)} missing (ids {missing[:5]}{'...' if len(missing) > 5 else ''})"
            if dup:
                what += f", {dup} duplicate"
            raise CorruptDataError(
                f"{source}: {split}/{polarity} holds {len(got)} reviews, expected {n} "
                f"(ids 0..{n - 1}): {what}; the archive or folder is truncated or incomplete"
            )


def check_counts(
    reviews: dict[str, list[tuple[int, int, str]]], source: str, per_class: int
) -> None:
    """Raises CorruptDataError naming ``source`` unless each split holds ``per_class`` reviews per label."""
    for split in ("train", "test"):
        labels = collections.Counter(r[0] for r in reviews.get(split, []))
        if labels.get(0, 0) != per_class or labels.get(1, 0) != per_class:
            raise CorruptDataError(
                f"{source}: {split} holds {labels.get(1, 0)} positive and {labels.get(0, 0)} "
                f"negative reviews, expected {per_class} of each"
            )


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


def _tmp_name(cache: pathlib.Path) -> pathlib.Path:
    # host and pid in the name let the next run tell an orphan from a write in progress.
    return cache.with_name(f".{cache.stem}.{os.getpid()}@{socket.gethostname()}.tmp")


def remove_orphans(cache_dir: pathlib.Path, *, min_age_s: float = 600.0) -> list[pathlib.Path]:
    """Removes temporary files of cache writes that were killed; returns the removed paths.

    A ``.<name>.<pid>@<host>.tmp`` file is an orphan when that process is gone (same host) or
    the file is older than ``min_age_s``; ``tmp*.tmp`` files of the previous writer, which
    named no process, when older than ``min_age_s``.
    """
    removed = []
    host, now = socket.gethostname(), time.time()
    for path in [*cache_dir.glob(".imdb-*.tmp"), *cache_dir.glob("tmp*.tmp")]:
        try:
            old = now - path.stat().st_mtime > min_age_s
            m = _TMP.match(path.name)
            if old or (m and m[2] == host and not _alive(int(m[1]))):
                path.unlink()
                removed.append(path)
        except OSError:  # removed meanwhile by another run, or not ours to remove
            continue
    if removed:
        print(
            f"imdb: removed {len(removed)} temporary file(s) left by a killed cache write in "
            f"{cache_dir}",
            file=sys.stderr,
        )
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in _ARRAYS:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _atomic_save(path: pathlib.Path, arrays: ImdbArrays) -> None:
    """Writes the cache through a temporary file and ``os.replace``; a failure (e.g. a full
    disk) is reported in one line and the load goes on without a cache."""
    content = {k: getattr(arrays, k) for k in _ARRAYS}
    tmp = _tmp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **content, source=arrays.source, sha256=_digest(content))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        print(
            f"imdb: could not write the cache {path} ({e.strerror or e}); continuing without it",
            file=sys.stderr,
        )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_cache(path: pathlib.Path, per_class: int | None) -> ImdbArrays | None:
    """The cached arrays if the file is intact (hash and counts), else ``None`` after one line."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in _ARRAYS}
            source, digest = str(z["source"]), str(z["sha256"])
        problem = None
        if _digest(arrays) != digest:
            problem = "its content does not match its SHA-256"
        elif per_class is not None and any(
            len(arrays[f"y_{s}"]) != 2 * per_class or int(arrays[f"y_{s}"].sum()) != per_class
            for s in ("train", "test")
        ):
            problem = "its review counts are not the published ones"
    except Exception as e:  # BadZipFile, EOFError, KeyError, zlib.error, ...
        problem = f"it cannot be read ({type(e).__name__}: {e})"
    if problem is None:
        return ImdbArrays(**arrays, source=source)
    print(f"imdb: cache {path} is corrupt or stale ({problem}); rebuilding it", file=sys.stderr)
    path.unlink(missing_ok=True)
    return None


def _fingerprint(path: pathlib.Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


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
    per_class: int | None = REVIEWS_PER_CLASS,
) -> ImdbArrays:
    """Loads IMDB as Keras's ``imdb.load_data(num_words) + pad_sequences(maxlen)``.

    Args:
      data_dir: folder holding ``aclImdb_v1.tar.gz`` / ``aclImdb_v1_labelled.tar.gz`` or an
        extracted ``aclImdb/`` (directly or under ``imdb/``); default ``default_data_dir()``.
        A folder that is given (here or as ``$JINIT_DATA_DIR``) must exist and hold a copy.
      num_words: ids are kept below this (Keras semantics); 10,000 in the study.
      maxlen: sequence length after 'pre' padding/truncation.
      seed: shuffle seed (Keras's 113).
      cache_dir: where tokenized arrays are cached; default ``default_cache_dir()``.
      allow_download: fall back to tensorflow-datasets, only when no folder was given
        (neither ``data_dir`` nor ``$JINIT_DATA_DIR``) and the default folder holds no copy.
      per_class: reviews expected per split and class (the published 12,500); ``None`` for
        tiny test archives (balanced splits with contiguous ids are still required).

    Returns:
      ``ImdbArrays`` with 25,000 training and 25,000 test reviews, 12,500 of each label.

    Raises:
      ValueError: for ``num_words <= INDEX_FROM + 1`` or ``maxlen < 1``; a truncated, corrupt,
        incomplete or unbalanced copy (see :func:`read_reviews`), naming the file.
      DataNotFoundError: a given folder that does not exist or holds no copy (naming it); no
        local copy and the download failed or was not allowed.
    """
    if num_words <= INDEX_FROM + 1:
        raise ValueError(f"num_words must be > {INDEX_FROM + 1}, got {num_words}")
    if maxlen < 1:
        raise ValueError(f"maxlen must be >= 1, got {maxlen}")
    given = data_dir is not None or bool(os.environ.get("JINIT_DATA_DIR"))
    data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    if given and not data_dir.is_dir():
        raise DataNotFoundError(
            f"data_dir={str(data_dir)!r} does not exist or is not a folder. "
            + _missing_message(data_dir, None)
        )
    cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if cache_dir.is_dir():
        remove_orphans(cache_dir)
    local = find_local_copy(data_dir)
    if local is None and (given or not allow_download):
        raise DataNotFoundError(_missing_message(data_dir, None))
    origin = _fingerprint(local) if local is not None else "tfds:imdb_reviews"
    params = json.dumps([_CACHE_VERSION, origin, num_words, maxlen, seed, per_class])
    cache = cache_dir / f"imdb-{hashlib.sha256(params.encode()).hexdigest()[:16]}.npz"
    if cache.is_file():
        cached = _load_cache(cache, per_class)
        if cached is not None:
            return cached

    if local is not None:
        reviews, source = read_reviews(local, per_class=per_class), str(local)
    else:
        try:
            reviews, source = _tfds_reviews(), "tfds:imdb_reviews"
        except Exception as e:  # offline, tfds missing, ...: say where the data should go.
            raise DataNotFoundError(_missing_message(data_dir, e)) from e
        check_counts(reviews, source, per_class or len(reviews["train"]) // 2)
    arrays = _to_arrays(reviews, num_words, maxlen, seed, source)
    _atomic_save(cache, arrays)
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
