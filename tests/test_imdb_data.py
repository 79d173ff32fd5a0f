"""The IMDB reader and tokenizer, on tiny archives in the official aclImdb layout."""

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
    from_tar = imdb.read_reviews(archive)
    assert len(from_tar["train"]) == 4 and len(from_tar["test"]) == 2
    # Extract and read the folder.
    import tarfile

    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    from_dir = imdb.read_reviews(tmp_path / "x" / "aclImdb")
    assert from_tar == from_dir
    assert from_tar["train"][0] == (0, 0, "Terrible movie, terrible acting.")


def test_vocabulary_ids_follow_keras_layout(archive, tmp_path):
    data = imdb.load_imdb(archive.parent.parent, num_words=10, maxlen=12, cache_dir=tmp_path / "c")
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
    data = imdb.load_imdb(archive.parent.parent, num_words=50, maxlen=20, cache_dir=tmp_path / "c")
    perm = np.arange(4)
    np.random.RandomState(113).shuffle(perm)
    expected_labels = np.array([0, 0, 1, 1])[perm]  # sorted (label, id) order, then shuffled
    np.testing.assert_array_equal(data.y_train, expected_labels)


def test_cache_is_written_atomically_and_reused(archive, tmp_path, monkeypatch):
    cache = tmp_path / "c"
    first = imdb.load_imdb(archive.parent.parent, num_words=20, maxlen=8, cache_dir=cache)
    files = list(cache.glob("imdb-*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))

    # A second load reads the cache, not the archive.
    def no_read(*a, **k):
        raise AssertionError("archive read again")

    monkeypatch.setattr(imdb, "read_reviews", no_read)
    second = imdb.load_imdb(archive.parent.parent, num_words=20, maxlen=8, cache_dir=cache)
    monkeypatch.undo()
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.x_test, second.x_test)
    # Other preprocessing parameters get their own cache entry.
    imdb.load_imdb(archive.parent.parent, num_words=20, maxlen=9, cache_dir=cache)
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
        imdb.read_reviews(path)


@pytest.mark.realdata
def test_real_archive_counts_and_spot_checks(shared_data_dir, tmp_path):
    local = imdb.find_local_copy(shared_data_dir)
    if local is None:
        pytest.skip(f"no IMDB archive under {shared_data_dir}")
    data = imdb.load_imdb(shared_data_dir, cache_dir=os.environ.get("JINIT_CACHE_DIR", tmp_path))
    assert data.x_train.shape == (25_000, 200) and data.x_test.shape == (25_000, 200)
    assert data.y_train.sum() == 12_500 and data.y_test.sum() == 12_500
    assert data.x_train.max() == 9_999 and data.x_train.min() == 0
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
