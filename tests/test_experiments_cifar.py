"""--quick runs of the CIFAR-10, BatchNorm and symmetry studies, end to end."""

import functools
import json

import jax
import numpy as np
import pytest

from experiments import batchnorm, cifar10_cnn, symmetry
from experiments.data import cifar10
from experiments.models import CifarCNN, Conv


@pytest.fixture(autouse=True)
def tiny_counts(request, monkeypatch):
    """The tiny files hold 200 records, not the published 10,000 (except in real-data tests)."""
    if request.node.get_closest_marker("realdata") is None:
        monkeypatch.setattr(
            cifar10, "load_cifar10", functools.partial(cifar10.load_cifar10, records_per_file=None)
        )


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    """A tiny CIFAR-10 in the official binary layout: 5 x 200 train + 200 test images."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("data")
    folder = root / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        y = rng.integers(0, 10, 200)
        # Class-dependent mean colour so that the task is learnable.
        x = np.clip(rng.normal(25 * y[:, None, None, None], 30, (200, 32, 32, 3)), 0, 255)
        (folder / name).write_bytes(cifar10.encode_records(x.astype(np.uint8), y))
    return root


def test_im2col_conv_equals_xla_conv_values_and_grads(key):
    x = jax.random.uniform(key, (2, 12, 12, 5))
    a, b = (
        Conv(7, (3, 3), padding="VALID", impl="im2col"),
        Conv(7, (3, 3), padding="VALID", impl="xla"),
    )
    p = a.init(jax.random.key(1), x)
    np.testing.assert_allclose(a.apply(p, x), b.apply(p, x), rtol=1e-5, atol=1e-6)
    ga = jax.grad(lambda p: (a.apply(p, x) ** 2).sum())(p)
    gb = jax.grad(lambda p: (b.apply(p, x) ** 2).sum())(p)
    for u, v in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)
    # Configurations im2col does not cover fall back to nn.Conv.
    same = Conv(7, (3, 3), padding="SAME", impl="im2col")
    assert same.apply(same.init(key, x), x).shape == (2, 12, 12, 7)


def test_cnn_shapes(key):
    p = CifarCNN().init(key, np.zeros((1, 32, 32, 3), np.float32))["params"]
    assert p["Conv_0"]["kernel"].shape == (3, 3, 3, 32) and p["Dense_0"]["kernel"].shape == (
        2304,
        64,
    )


def test_cifar_quick(tiny_cifar, tmp_path):
    r = cifar10_cnn.main(
        [
            "--quick",
            "--data-dir",
            str(tiny_cifar),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
            "--seeds",
            "0",
            "--inits",
            "he_normal,lsuv,zeros",
        ]
    )
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    assert saved["initializers"].keys() == {"he_normal", "lsuv", "zeros"}
    assert (tmp_path / "o" / "val_accuracy.png").exists()
    assert saved["data"]["train"] == 512 and saved["examples_per_s"][0] > 0
    assert r["conv_impl"] == "im2col"


# XLA's light optimization level (tests/conftest.py) gives this BN CNN non-finite gradients.
@pytest.mark.xla_optimized
def test_batchnorm_quick(tiny_cifar, tmp_path):
    r = batchnorm.main(
        ["--quick", "--data-dir", str(tiny_cifar), "--out", str(tmp_path / "o"), "--no-progress"]
    )
    assert set(r["batchnorm"]) >= {"normal_0.001", "normal_1", "he_normal"}
    assert (tmp_path / "o" / "batchnorm_init_scale.png").exists()


def test_batchnorm_output_is_invariant_to_weight_scale(key):
    """BN(a W x + b) = BN(W x + b) for a > 0 with train-mode statistics, up to BN's epsilon
    (Ioffe & Szegedy 2015, sec. 3.3): the reason BN makes training insensitive to init scale."""
    import flax.linen as nn

    class DenseBN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=False, epsilon=1e-5)(nn.Dense(64)(x))

    m = DenseBN()
    x = jax.random.normal(key, (256, 32))
    v = m.init(jax.random.key(3), x)
    for a in (1e-1, 7.0, 100.0):
        scaled = {**v, "params": batchnorm.scaled_kernels(v["params"], a)}
        out1, _ = m.apply(v, x, mutable=["batch_stats"])
        out2, _ = m.apply(scaled, x, mutable=["batch_stats"])
        # per-unit pre-BN variance is O(1) at a=1, so epsilon=1e-5 perturbs by ~1e-3 relative at a=0.1
        np.testing.assert_allclose(out2, out1, rtol=3e-3, atol=1e-4)


def test_symmetry_zero_init_keeps_units_identical_to_the_bit(tmp_path):
    r = symmetry.main(["--quick", "--out", str(tmp_path / "o"), "--no-progress"])
    for task in ("regression", "classification"):
        assert r[task]["zeros"]["zero_gap_throughout"]
        g = np.array(r[task]["normal_0.01"]["symmetry_gap_per_epoch"])
        assert np.all(g[:, 0] > 0) and np.all(g[:, -1] > g[:, 0])
    assert (tmp_path / "o" / "symmetry.png").exists()


@pytest.mark.realdata
def test_cifar_quick_on_real_files(shared_data_dir, tmp_path):
    if cifar10.find_local_copy(shared_data_dir) is None:
        pytest.skip(f"no CIFAR-10 under {shared_data_dir}")
    r = cifar10_cnn.main(
        [
            "--quick",
            "--data-dir",
            str(shared_data_dir),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
            "--seeds",
            "0",
            "--inits",
            "glorot_uniform",
        ]
    )
    assert r["data"]["train"] == 512 and r["data"]["source"].endswith("cifar-10-batches-bin")


def test_default_devices_count_the_models_the_command_line_asks_for(monkeypatch):
    monkeypatch.setattr(cifar10_cnn, "default_host_devices", lambda: 2)
    assert cifar10_cnn.default_devices(["x"]) == 2  # 6 default inits x 3 seeds: 18 models
    assert (
        cifar10_cnn.default_devices(["x", "--inits", "he_normal,lsuv,zeros", "--seeds", "0"]) == 3
    )
    assert cifar10_cnn.default_devices(["x", "--inits", "zeros", "--seeds=0"]) == 1


def test_config_quick_then_explicit_values_win():
    from experiments.cifar10 import config, train

    assert tuple(train.INITIALIZERS) == config.INIT_NAMES
    d = config.get_config()
    assert (d.epochs, d.train_limit, d.seeds, d.conv_impl) == (5, None, (0, 1, 2), "auto")
    q = config.get_config(("lsuv",), (4,), quick=True, epochs=3, batch_size=8, conv_impl="xla")
    assert (q.inits, q.seeds, q.epochs, q.batch_size, q.conv_impl) == (("lsuv",), (4,), 3, 8, "xla")
    assert (q.train_limit, q.test_limit, q.steps_per_call, q.lsuv_batch_size) == (640, 200, 5, 64)
