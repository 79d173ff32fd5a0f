"""CIFAR-10 binary reader: round trip, corrupt and truncated files, the real files."""

import hashlib
import io
import tarfile

import numpy as np
import pytest

from experiments.data import cifar10


def _fake_split(rng, n):
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(
        np.int32
    )


@pytest.fixture
def tiny_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    parts = {}
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        x, y = _fake_split(rng, 3)
        parts[name] = (x, y)
        (folder / name).write_bytes(cifar10.encode_records(x, y))
    return tmp_path, parts


def test_record_layout_is_label_then_rgb_planes():
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 0, 1, 0] = 7  # red plane, row 0, col 1
    img[0, 2, 0, 2] = 9  # blue plane, row 2, col 0
    raw = cifar10.encode_records(img, [4])
    assert len(raw) == 3073 and raw[0] == 4
    assert raw[1 + 1] == 7 and raw[1 + 2048 + 2 * 32] == 9
    x, y = cifar10.decode_records(raw)
    np.testing.assert_array_equal(x, img)
    assert y.tolist() == [4]


def test_folder_round_trip_in_file_order(tiny_folder):
    root, parts = tiny_folder
    d = cifar10.load_cifar10(root, allow_download=False, records_per_file=None)
    x_expected = np.concatenate([parts[f][0] for f in cifar10.TRAIN_FILES])
    np.testing.assert_array_equal(
        d.y_train, np.concatenate([parts[f][1] for f in cifar10.TRAIN_FILES])
    )
    np.testing.assert_allclose(d.x_train, x_expected / 255.0, rtol=1e-6)
    assert d.x_train.dtype == np.float32 and d.x_train.shape == (15, 32, 32, 3)
    assert 0.0 <= d.x_test.min() and d.x_test.max() <= 1.0


def test_archive_equals_folder(tiny_folder, tmp_path):
    root, parts = tiny_folder
    arc = tmp_path / "arc" / "cifar-10-binary.tar.gz"
    arc.parent.mkdir()
    with tarfile.open(arc, "w:gz") as tar:
        for name, (x, y) in parts.items():
            data = cifar10.encode_records(x, y)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    a = cifar10.load_cifar10(arc.parent, allow_download=False, records_per_file=None)
    b = cifar10.load_cifar10(root, allow_download=False, records_per_file=None)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)


def test_truncated_file_names_file_and_offset(tiny_folder):
    root, _ = tiny_folder
    f = root / "cifar10" / "cifar-10-batches-bin" / "data_batch_3.bin"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"data_batch_3\.bin.*offset 6146"):
        cifar10.load_cifar10(root, allow_download=False, records_per_file=None)


def test_corrupt_label_names_file_and_offset(tiny_folder):
    root, _ = tiny_folder
    f = root / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin"
    raw = bytearray(f.read_bytes())
    raw[3073] = 200  # label byte of record 1
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"test_batch\.bin.*label byte 200 at offset 3073"):
        cifar10.load_cifar10(root, allow_download=False, records_per_file=None)


def test_missing_files_and_missing_data(tiny_folder, tmp_path):
    root, _ = tiny_folder
    (root / "cifar10" / "cifar-10-batches-bin" / "data_batch_5.bin").unlink()
    with pytest.raises(ValueError, match="data_batch_5.bin"):
        cifar10.load_cifar10(root, allow_download=False, records_per_file=None)
    with pytest.raises(cifar10.DataNotFoundError, match="cifar-10-binary.tar.gz"):
        cifar10.load_cifar10(tmp_path / "nothing", allow_download=False)


def test_file_truncated_at_a_record_boundary_is_rejected(tiny_folder):
    """Whole records but fewer of them (the 45,000-image case): never loaded."""
    root, _ = tiny_folder
    f = root / "cifar10" / "cifar-10-batches-bin" / "data_batch_2.bin"
    f.write_bytes(f.read_bytes()[: 2 * 3073])
    with pytest.raises(
        cifar10.CorruptDataError, match=r"data_batch_2\.bin: 6146 bytes = 2 records"
    ):
        cifar10.load_cifar10(root, allow_download=False, records_per_file=None)
    with pytest.raises(cifar10.CorruptDataError, match=r"expected 9219 bytes \(3 records"):
        cifar10.load_cifar10(root, allow_download=False, records_per_file=3)


def test_read_file_checks_the_record_count(tiny_folder):
    root, parts = tiny_folder
    f = root / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin"
    x, y = cifar10.read_file(f, records=3)
    np.testing.assert_array_equal(x, parts["test_batch.bin"][0])
    with pytest.raises(cifar10.CorruptDataError, match=r"test_batch\.bin: 9219 bytes = 3 records"):
        cifar10.read_file(f)  # the published 10,000 by default


def test_published_size_is_the_default(tiny_folder):
    root, _ = tiny_folder
    with pytest.raises(
        cifar10.CorruptDataError, match=r"expected 30730000 bytes \(10000 records of 3073"
    ):
        cifar10.load_cifar10(root, allow_download=False)


def test_truncated_archive_names_the_file(tiny_folder, tmp_path):
    root, parts = tiny_folder
    arc = tmp_path / "arc" / "cifar-10-binary.tar.gz"
    arc.parent.mkdir()
    with tarfile.open(arc, "w:gz") as tar:
        for name, (x, y) in parts.items():
            data = cifar10.encode_records(x, y)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = arc.read_bytes()
    arc.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(cifar10.CorruptDataError, match="truncated or corrupt archive") as e:
        cifar10.load_cifar10(arc.parent, allow_download=False, records_per_file=3)
    assert str(arc) in str(e.value)


def test_class_counts_of_the_full_dataset_are_checked():
    y_train, y_test = np.repeat(np.arange(10), 5000), np.repeat(np.arange(10), 1000)
    cifar10.check_balance(y_train, y_test, "x")  # as published: no error
    y_train[0] = 1
    with pytest.raises(cifar10.CorruptDataError, match=r"x: train class counts \[4999, 5001"):
        cifar10.check_balance(y_train, y_test, "x")


def test_explicit_missing_data_dir_fails_at_once_and_download_only_without_a_path(
    tmp_path, monkeypatch
):
    import time

    def no_download():
        raise AssertionError("tensorflow-datasets must not run when a folder is given")

    monkeypatch.setattr(cifar10, "_tfds", no_download)
    t0 = time.perf_counter()
    with pytest.raises(cifar10.DataNotFoundError, match="does not exist") as e:
        cifar10.load_cifar10(tmp_path / "nope")
    assert time.perf_counter() - t0 < 1.0 and str(tmp_path / "nope") in str(e.value)
    with pytest.raises(cifar10.DataNotFoundError, match="cifar-10-binary.tar.gz"):
        cifar10.load_cifar10(tmp_path)  # exists, holds no copy: no download either
    # No path at all: the download runs, and a short download is rejected by its counts.
    monkeypatch.delenv("JINIT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    x = np.zeros((20, 32, 32, 3), np.uint8)
    monkeypatch.setattr(cifar10, "_tfds", lambda: [(x, np.arange(20) % 10)] * 2)
    with pytest.raises(cifar10.CorruptDataError, match="tfds:cifar10: train class counts"):
        cifar10.load_cifar10()


SHA256 = {
    "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
}


@pytest.mark.realdata
def test_real_files_checksums_and_counts(shared_data_dir):
    local = cifar10.find_local_copy(shared_data_dir)
    if local is None or not local.is_dir():
        pytest.skip(f"no cifar-10-batches-bin folder under {shared_data_dir}")
    for name, digest in SHA256.items():
        assert hashlib.sha256((local / name).read_bytes()).hexdigest() == digest, name
    d = cifar10.load_cifar10(shared_data_dir, allow_download=False)
    assert d.x_train.shape == (50_000, 32, 32, 3) and d.x_test.shape == (10_000, 32, 32, 3)
    assert np.bincount(d.y_train).tolist() == [5000] * 10
    assert np.bincount(d.y_test).tolist() == [1000] * 10
    assert d.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert d.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    np.testing.assert_allclose(
        d.x_train.mean((0, 1, 2)) * 255, [125.307, 122.950, 113.865], atol=0.01
    )
    np.testing.assert_array_equal(np.round(d.x_train[0, 0, :4, 0] * 255), [59, 43, 50, 68])
