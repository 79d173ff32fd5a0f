"""The IMDB reader and tokenizer, on tiny archives in the official aclImdb layout: never partial
data (truncated, corrupt, unbalanced, bad UTF-8, partial folders, bad caches, orphaned files)."""

import hashlib
import os
import pathlib

import numpy as np
import pytest

from experiments.data import imdb

REVIEWS = {
    "train": [
        (1, 0, 9, "A great movie.<br /><br />Great acting, great story!"),
        (1, 1, 8, "I loved it. Don't miss it."),
        (0, 0, 2, "Terrible movie, terrible acting."),
        (0, 1, 1, "Boring. I didn't like the story."),
    ],
    "test": [
        (1, 0, 10, "Great great GREAT"),
        (0, 0, 3, "an unseen_word appears"),
    ],
}


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "data" / "imdb" / "aclImdb_v1.tar.gz"
    path.parent.mkdir(parents=True)
    imdb.write_tiny_archive(path, REVIEWS)
    return path


def test_tokenize_lowercases_strips_br_and_keeps_inner_apostrophes():
    assert imdb.tokenize("Great<br />acting. Don't GO!") == ["great", "acting", "don't", "go"]


def test_pad_sequences_is_keras_pre_padding_and_pre_truncation():
    out = imdb.pad_sequences([[1, 2, 3, 4, 5], [7], []], maxlen=3)
    np.testing.assert_array_equal(out, [[3, 4, 5], [0, 0, 7], [0, 0, 0]])
    assert out.dtype == np.int32


def test_read_reviews_from_archive_and_folder_agree(archive, tmp_path):
    from_tar = imdb.read_reviews(archive, per_class=None)
    assert len(from_tar["train"]) == 4 and len(from_tar["test"]) == 2
    # Extract and read the folder.
    import tarfile

    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    from_dir = imdb.read_reviews(tmp_path / "x" / "aclImdb", per_class=None)
    assert from_tar == from_dir
    assert from_tar["train"][0] == (0, 0, "Terrible movie, terrible acting.")


def test_vocabulary_ids_follow_keras_layout(archive, tmp_path):
    data = imdb.load_imdb(
        archive.parent.parent, num_words=10, maxlen=12, cache_dir=tmp_path / "c", per_class=None
    )
    # Training word counts: great 3, movie 2, acting 2, story 2, terrible 2, i 2, it 2, ...
    # ids: 0 pad, 1 start, 2 oov, 3 unused, most frequent word = 4; num_words=10 keeps ids < 10.
    assert data.x_train.shape == (4, 12) and data.x_test.shape == (2, 12)
    assert data.x_train.max() < 10
    assert set(np.unique(data.x_train)) <= set(range(10))
    # Every review starts with START after its left padding.
    for row in np.concatenate([data.x_train, data.x_test]):
        nz = row[row != imdb.PAD]
        assert nz[0] == imdb.START
    # 'great' is the most frequent training word -> id 4; test review 'Great great GREAT'.
    great = next(r for r, y in zip(data.x_test, data.y_test, strict=True) if y == 1)
    np.testing.assert_array_equal(great[-4:], [1, 4, 4, 4])
    # Words absent from training are out-of-vocabulary (id 2).
    other = next(r for r, y in zip(data.x_test, data.y_test, strict=True) if y == 0)
    assert (other == imdb.OOV).sum() == 4  # 'an', 'unseen', 'word' ('_' splits), 'appears'
    assert sorted(data.y_train.tolist()) == [0, 0, 1, 1]


def test_shuffle_is_keras_randomstate_113(archive, tmp_path):
    data = imdb.load_imdb(
        archive.parent.parent, num_words=50, maxlen=20, cache_dir=tmp_path / "c", per_class=None
    )
    perm = np.arange(4)
    np.random.RandomState(113).shuffle(perm)
    expected_labels = np.array([0, 0, 1, 1])[perm]  # sorted (label, id) order, then shuffled
    np.testing.assert_array_equal(data.y_train, expected_labels)


def test_cache_is_written_atomically_and_reused(archive, tmp_path, monkeypatch):
    cache = tmp_path / "c"
    first = imdb.load_imdb(
        archive.parent.parent, num_words=20, maxlen=8, cache_dir=cache, per_class=None
    )
    files = list(cache.glob("imdb-*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))

    # A second load reads the cache, not the archive.
    def no_read(*a, **k):
        raise AssertionError("archive read again")

    monkeypatch.setattr(imdb, "read_reviews", no_read)
    second = imdb.load_imdb(
        archive.parent.parent, num_words=20, maxlen=8, cache_dir=cache, per_class=None
    )
    monkeypatch.undo()
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.x_test, second.x_test)
    # Other preprocessing parameters get their own cache entry.
    imdb.load_imdb(archive.parent.parent, num_words=20, maxlen=9, cache_dir=cache, per_class=None)
    assert len(list(cache.glob("imdb-*.npz"))) == 2


def test_missing_data_says_where_to_put_the_archive(tmp_path):
    with pytest.raises(imdb.DataNotFoundError, match="aclImdb_v1.tar.gz") as e:
        imdb.load_imdb(tmp_path / "empty", cache_dir=tmp_path / "c", allow_download=False)
    assert str(tmp_path / "empty") in str(e.value)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="num_words"):
        imdb.load_imdb(tmp_path, num_words=3)
    with pytest.raises(ValueError, match="maxlen"):
        imdb.load_imdb(tmp_path, maxlen=0)


def test_archive_without_reviews_is_rejected(tmp_path):
    path = tmp_path / "aclImdb_v1.tar.gz"
    imdb.write_tiny_archive(path, {"train": []})
    with pytest.raises(ValueError, match="no labelled reviews"):
        imdb.read_reviews(path, per_class=None)


def _reviews(per_class, splits=("train", "test")):
    """per_class reviews per split and class, ids 0..per_class-1, valid ratings."""
    return {
        split: [
            (label, i, 8 if label else 2, f"{split} review {i} {'good' if label else 'bad'}")
            for label in (1, 0)
            for i in range(per_class)
        ]
        for split in splits
    }


def _plain_tar(path, reviews):
    """An uncompressed tar (tarfile 'r:*' reads it whatever the name): truncation can then
    fall exactly on a member boundary, which the tar reader alone takes for the end."""
    import io
    import tarfile

    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for split, rows in sorted(reviews.items()):
            for label, idx, rating, text in rows:
                data = text.encode()
                info = tarfile.TarInfo(
                    f"aclImdb/{split}/{'pos' if label else 'neg'}/{idx}_{rating}.txt"
                )
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_expected_counts_pass_and_published_count_is_the_default(tmp_path):
    path = tmp_path / "aclImdb_v1.tar.gz"
    imdb.write_tiny_archive(path, _reviews(3))
    out = imdb.read_reviews(path, per_class=3)
    assert [len(out[s]) for s in ("train", "test")] == [6, 6]
    # The default expects the published 12,500 per split and class.
    with pytest.raises(
        imdb.CorruptDataError, match=r"train/(pos|neg) holds 3 reviews, expected 12500"
    ):
        imdb.read_reviews(path)


def test_truncated_gzip_archive_names_the_file(tmp_path):
    path = tmp_path / "aclImdb_v1.tar.gz"
    imdb.write_tiny_archive(path, _reviews(40))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(imdb.CorruptDataError, match="truncated or corrupt archive") as e:
        imdb.read_reviews(path, per_class=40)
    assert str(path) in str(e.value)


def test_tar_truncated_at_a_member_boundary_is_not_taken_for_its_end(tmp_path):
    """tarfile alone stops silently at a truncated header; the loader must not."""
    path = tmp_path / "aclImdb_v1.tar.gz"
    _plain_tar(path, _reviews(4))
    raw = path.read_bytes()
    # 16 members of 2 blocks each, sorted test/... then train/...; keep the first 13 members.
    path.write_bytes(raw[: 13 * 1024])
    with pytest.raises(imdb.CorruptDataError, match="without its end-of-archive blocks") as e:
        imdb.read_reviews(path, per_class=4)
    assert str(path) in str(e.value) and "after member 'aclImdb/train/" in str(e.value)


def test_well_formed_archive_missing_members_is_incomplete(tmp_path):
    r = _reviews(4)
    r["train"] = r["train"][:-3]  # a re-packed partial archive: valid tar, reviews missing
    path = tmp_path / "aclImdb_v1.tar.gz"
    imdb.write_tiny_archive(path, r)
    with pytest.raises(imdb.CorruptDataError, match=r"train/neg holds 1 reviews, expected 4") as e:
        imdb.read_reviews(path, per_class=4)
    assert "truncated or incomplete" in str(e.value) and str(path) in str(e.value)


def test_corrupt_gzip_bytes_name_the_file(tmp_path):
    path = tmp_path / "aclImdb_v1.tar.gz"
    imdb.write_tiny_archive(path, _reviews(40))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3 : len(raw) // 3 + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    with pytest.raises(imdb.CorruptDataError, match="truncated or corrupt archive") as e:
        imdb.read_reviews(path, per_class=40)
    assert str(path) in str(e.value)


def test_unbalanced_split_and_missing_ids_are_rejected(tmp_path):
    r = _reviews(3)
    r["train"] = [row for row in r["train"] if not (row[0] == 0 and row[1] == 2)]  # neg id 2
    path = tmp_path / "aclImdb_v1.tar.gz"
    imdb.write_tiny_archive(path, r)
    with pytest.raises(
        imdb.CorruptDataError, match=r"train/neg holds 2 reviews, expected 3.*ids \[2\]"
    ):
        imdb.read_reviews(path, per_class=None)  # balance is required even without a count
    r = _reviews(3)
    r["test"] = [row for row in r["test"] if row[1] != 1]  # id 1 of both classes: balanced
    imdb.write_tiny_archive(path, r)
    with pytest.raises(
        imdb.CorruptDataError, match=r"test/pos holds 2 reviews, expected 3.*ids \[1\]"
    ):
        imdb.read_reviews(path, per_class=None)  # ids must be 0..n-1


def test_partial_folder_is_rejected(tmp_path):
    import tarfile

    path = tmp_path / "aclImdb_v1.tar.gz"
    imdb.write_tiny_archive(path, _reviews(3))
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    folder = tmp_path / "x" / "aclImdb"
    assert len(imdb.read_reviews(folder, per_class=3)["test"]) == 6
    (folder / "test" / "pos" / "1_8.txt").unlink()
    with pytest.raises(imdb.CorruptDataError, match=r"test/pos holds 2 reviews, expected 3"):
        imdb.read_reviews(folder, per_class=3)


def test_invalid_utf8_names_the_member(tmp_path):
    """Policy: an error naming the member (the official reviews are all valid UTF-8)."""
    import io
    import tarfile

    path = tmp_path / "aclImdb_v1.tar.gz"
    imdb.write_tiny_archive(path, _reviews(2))
    members = []
    with tarfile.open(path) as tar:
        for m in tar:
            members.append((m, tar.extractfile(m).read()))
    with tarfile.open(path, "w:gz") as tar:
        for m, data in members:
            if m.name == "aclImdb/train/pos/1_8.txt":
                data = b"caf\xe9 au lait"  # Latin-1, not UTF-8
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    with pytest.raises(
        imdb.CorruptDataError, match=r"'aclImdb/train/pos/1_8.txt' is not valid UTF-8.*byte 3"
    ):
        imdb.read_reviews(path, per_class=2)


def test_rating_outside_its_folder_is_rejected(tmp_path):
    r = _reviews(2)
    r["train"][0] = (1, 0, 3, "a positive review rated 3")
    path = tmp_path / "aclImdb_v1.tar.gz"
    imdb.write_tiny_archive(path, r)
    with pytest.raises(
        imdb.CorruptDataError, match=r"'aclImdb/train/pos/0_3.txt' has rating 3, outside 7-10"
    ):
        imdb.read_reviews(path, per_class=2)


@pytest.fixture
def small_data(tmp_path):
    root = tmp_path / "data"
    (root / "imdb").mkdir(parents=True)
    imdb.write_tiny_archive(root / "imdb" / "aclImdb_v1.tar.gz", _reviews(3))
    return root


def _load(root, cache):
    return imdb.load_imdb(root, num_words=20, maxlen=6, cache_dir=cache, per_class=3)


def test_corrupt_cache_is_reported_in_one_line_and_rebuilt(small_data, tmp_path, capsys):
    cache = tmp_path / "c"
    first = _load(small_data, cache)
    (f,) = cache.glob("imdb-*.npz")
    f.write_bytes(f.read_bytes()[:100])  # a torn file: BadZipFile on read
    again = _load(small_data, cache)
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and str(f) in err[0]
        and "corrupt or stale" in err[0]
        and "BadZipFile" in err[0]
    )
    np.testing.assert_array_equal(again.x_train, first.x_train)
    assert imdb._load_cache(f, 3) is not None  # rebuilt, intact


def test_cache_with_altered_content_fails_its_hash(small_data, tmp_path, capsys):
    cache = tmp_path / "c"
    first = _load(small_data, cache)
    (f,) = cache.glob("imdb-*.npz")
    with np.load(f) as z:
        content = {k: z[k] for k in z.files}
    content["x_train"] = content["x_train"].copy()
    content["x_train"][0, -1] += 1  # a valid zip whose arrays no longer match their SHA-256
    with open(f, "wb") as fh:
        np.savez(fh, **content)
    again = _load(small_data, cache)
    assert "does not match its SHA-256" in capsys.readouterr().err
    np.testing.assert_array_equal(again.x_train, first.x_train)


def test_stale_cache_with_partial_counts_is_rebuilt(small_data, tmp_path, capsys):
    """A cache holding fewer reviews than expected (what the old loader cached from a truncated
    archive) is detected by its counts even when its hash is consistent."""
    cache = tmp_path / "c"
    _load(small_data, cache)
    (f,) = cache.glob("imdb-*.npz")
    with np.load(f) as z:
        arrays = {k: z[k][:-1] if k.endswith("train") else z[k] for k in imdb._ARRAYS}
        source = str(z["source"])
    with open(f, "wb") as fh:
        np.savez(fh, **arrays, source=source, sha256=imdb._digest(arrays))
    again = _load(small_data, cache)
    assert "review counts are not the published ones" in capsys.readouterr().err
    assert len(again.y_train) == 6


def test_orphaned_temporary_files_are_removed_on_the_next_load(small_data, tmp_path, capsys):
    import socket
    import subprocess
    import sys
    import time

    cache = tmp_path / "c"
    cache.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    orphan = cache / f".imdb-0123456789abcdef.{dead.pid}@{host}.tmp"
    live = cache / f".imdb-0123456789abcdef.{os.getpid()}@{host}.tmp"  # a write in progress
    legacy = cache / "tmpab12cd.tmp"  # the previous writer's name, left by a kill -9
    for path in (orphan, live, legacy):
        path.write_bytes(b"x" * 1000)
    old = time.time() - 3600
    os.utime(legacy, (old, old))
    _load(small_data, cache)
    assert not orphan.exists() and not legacy.exists() and live.exists()
    err = capsys.readouterr().err
    assert "removed 2 temporary file(s)" in err and str(cache) in err


def test_cache_write_killed_with_sigkill_is_cleaned_up_by_the_next_load(small_data, tmp_path):
    import signal
    import subprocess
    import sys

    cache = tmp_path / "c"
    script = f"""
import time
from experiments.data import imdb

def slow_savez(f, **arrays):  # the write is under way when the process is killed
    f.write(b"x" * 100_000)
    f.flush()
    print("writing", flush=True)
    time.sleep(120)

imdb.np.savez = slow_savez
imdb.load_imdb({str(small_data)!r}, num_words=20, maxlen=6, cache_dir={str(cache)!r}, per_class=3)
"""
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (orphan,) = cache.glob(".imdb-*.tmp")
    assert orphan.stat().st_size == 100_000
    data = _load(small_data, cache)
    assert not orphan.exists() and len(list(cache.glob("imdb-*.npz"))) == 1
    assert len(data.y_train) == 6


def test_killed_cache_write_leaves_nothing_behind_and_disk_full_is_one_line(
    small_data, tmp_path, monkeypatch, capsys
):
    import errno

    cache = tmp_path / "c"

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imdb.np, "savez", full)
    data = _load(small_data, cache)  # the data is still returned, complete
    assert len(data.y_train) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "No space left on device" in err[0]
        and "could not write the cache" in err[0]
    )
    assert list(cache.iterdir()) == []  # neither a cache nor a temporary file


def test_explicit_missing_data_dir_fails_at_once_without_download(tmp_path, monkeypatch):
    import time

    def no_download():
        raise AssertionError("tensorflow-datasets must not run when a folder is given")

    monkeypatch.setattr(imdb, "_tfds_reviews", no_download)
    t0 = time.perf_counter()
    with pytest.raises(imdb.DataNotFoundError, match="does not exist") as e:
        imdb.load_imdb(tmp_path / "nope", cache_dir=tmp_path / "c")
    assert time.perf_counter() - t0 < 1.0 and str(tmp_path / "nope") in str(e.value)
    (tmp_path / "empty").mkdir()  # exists but holds no copy: also no download
    with pytest.raises(imdb.DataNotFoundError, match="aclImdb_v1.tar.gz"):
        imdb.load_imdb(tmp_path / "empty", cache_dir=tmp_path / "c")
    monkeypatch.setenv("JINIT_DATA_DIR", str(tmp_path / "env-nope"))  # given through the env
    with pytest.raises(imdb.DataNotFoundError, match="env-nope"):
        imdb.load_imdb(cache_dir=tmp_path / "c")


def test_download_fallback_only_without_a_path_and_its_counts_are_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("JINIT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    calls = []

    def fake(per_class):
        def tfds_reviews():
            calls.append(1)
            return {
                s: [(lab, i, "ok fine") for lab in (0, 1) for i in range(per_class)]
                for s in ("train", "test")
            }

        return tfds_reviews

    monkeypatch.setattr(imdb, "_tfds_reviews", fake(3))
    data = imdb.load_imdb(num_words=10, maxlen=4, cache_dir=tmp_path / "c", per_class=3)
    assert calls and data.source == "tfds:imdb_reviews" and len(data.y_test) == 6
    monkeypatch.setattr(imdb, "_tfds_reviews", fake(2))  # a short download is not accepted
    with pytest.raises(imdb.CorruptDataError, match="tfds:imdb_reviews: train holds 2 positive"):
        imdb.load_imdb(num_words=10, maxlen=4, cache_dir=tmp_path / "c2", per_class=3)


@pytest.mark.realdata
def test_real_archive_counts_and_spot_checks(shared_data_dir, tmp_path):
    local = imdb.find_local_copy(shared_data_dir)
    if local is None:
        pytest.skip(f"no IMDB archive under {shared_data_dir}")
    data = imdb.load_imdb(shared_data_dir, cache_dir=os.environ.get("JINIT_CACHE_DIR", tmp_path))
    assert data.x_train.shape == (25_000, 200) and data.x_test.shape == (25_000, 200)
    assert data.y_train.sum() == 12_500 and data.y_test.sum() == 12_500
    assert data.x_train.max() == 9_999 and data.x_train.min() == 0
    assert data.y_test.sum() == 12_500 and len(data.y_train) == 25_000
    # Validation split (last 20%) is roughly balanced thanks to the Keras shuffle.
    assert 0.45 < data.y_train[-5000:].mean() < 0.55


@pytest.mark.realdata
def test_real_archive_first_reviews(shared_data_dir):
    local = imdb.find_local_copy(shared_data_dir)
    if local is None or not str(local).endswith(".tar.gz"):
        pytest.skip(f"no IMDB archive under {shared_data_dir}")
    import tarfile

    with tarfile.open(local) as tar:
        text = tar.extractfile("aclImdb/train/pos/0_9.txt").read().decode()
    assert text.startswith("Bromwell High is a cartoon comedy.")
    assert hashlib.sha256(pathlib.Path(local).read_bytes()).hexdigest().startswith("fc132c2a")
