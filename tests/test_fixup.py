"""Fixup (Zhang, Dauphin & Ma 2019, arXiv:1901.09321): the scale, the initializer, the net at init.

Expected values are written from the paper's formula L^(-1/(2m-2)) and He's std sqrt(2/fan_in),
not recomputed through jinit's helpers.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit

KEY = jax.random.key(0)


@pytest.mark.parametrize(
    ("L", "m", "expected"),
    [(16, 2, 0.25), (16, 3, 0.5), (16, 5, 16 ** (-1 / 8)), (1, 2, 1.0), (110, 2, 110**-0.5)],
)
def test_scale_formula(L, m, expected):
    assert jinit.fixup_scale(L, m) == pytest.approx(expected, rel=1e-12)
    assert isinstance(jinit.fixup_scale(L, m), float)


def test_scale_validation():
    with pytest.raises(ValueError, match=r"branch_depth must be >= 2, got 1.*m = 1"):
        jinit.fixup_scale(16, 1)
    with pytest.raises(ValueError, match="num_branches must be >= 1, got 0"):
        jinit.fixup_scale(0, 2)
    with pytest.raises(TypeError, match="branch_depth must be an int"):
        jinit.fixup_scale(16, 2.5)
    with pytest.raises(TypeError, match="num_branches must be an int"):
        jinit.fixup_scale(True, 2)
    # The factory validates when it is built, before any key exists.
    with pytest.raises(ValueError, match="branch_depth"):
        jinit.fixup(16, 1)
    with pytest.raises(TypeError, match="base must be an initializer"):
        jinit.fixup(16, 2, base="he_normal")
    with pytest.raises(TypeError, match="int32"):
        jinit.fixup(16, 2)(KEY, (4, 4), jnp.int32)


@pytest.mark.parametrize(("L", "m"), [(16, 2), (16, 3), (64, 2)])
def test_std_is_he_times_scale(L, m):
    fan_in, fan_out = 512, 512
    w = np.asarray(jinit.fixup(L, m)(KEY, (fan_in, fan_out)), np.float64)
    expected = np.sqrt(2.0 / fan_in) * L ** (-1.0 / (2 * m - 2))
    # 262,144 samples: the relative standard error of the std is < 0.15%; 1% is > 6 sigma.
    assert w.std() == pytest.approx(expected, rel=1e-2)
    assert abs(w.mean()) < 5 * expected / np.sqrt(w.size)
    # He's truncated normal (|w| < 2 sigma_pre), scaled: same bound times the scale.
    assert np.abs(w).max() < 2 * expected / jinit.TRUNCATED_NORMAL_STD


def test_numbers_are_base_times_scale():
    for base in (None, jinit.glorot_uniform(), jinit.he_normal(batch_axis=0)):
        b = jinit.he_normal() if base is None else base
        w = jinit.fixup(16, 2, base)(KEY, (8, 32, 32))
        np.testing.assert_allclose(w, 0.25 * b(KEY, (8, 32, 32)), rtol=1e-6)


def test_stacked_kernels_use_per_block_fans():
    # A stack of L kernels (L, in, out) with batch_axis=0 gets He's fan_in = in for each block.
    w = jinit.fixup(16, 2, jinit.he_normal(batch_axis=0))(KEY, (16, 256, 256))
    expected = np.sqrt(2.0 / 256) * 0.25
    assert float(jnp.std(w)) == pytest.approx(expected, rel=1e-2)


def test_eager_jit_vmap_agree():
    init = jinit.fixup(32, 2)
    keys = jax.random.split(KEY, 3)
    eager = np.stack([init(k, (16, 8)) for k in keys])
    jitted = np.stack([jax.jit(lambda k: init(k, (16, 8)))(k) for k in keys])
    vmapped = jax.jit(jax.vmap(lambda k: init(k, (16, 8))))(keys)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(vmapped, eager, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(init(keys[0], (16, 8)), init(keys[0], (16, 8)))
    assert not np.array_equal(eager[0], eager[1])
    assert jax.eval_shape(lambda k: init(k, (16, 8)), KEY) == jax.ShapeDtypeStruct(
        (16, 8), jnp.float32
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtype_kept(dtype):
    assert jinit.fixup(16, 2)(KEY, (64, 64), dtype).dtype == dtype
    assert jinit.fixup(16, 2, dtype=dtype)(KEY, (64, 64)).dtype == dtype
    # 16-bit: drawn and scaled in float32, cast once.
    w32 = jinit.fixup(16, 2)(KEY, (64, 64), jnp.float32)
    np.testing.assert_array_equal(jinit.fixup(16, 2)(KEY, (64, 64), dtype), w32.astype(dtype))


class _FixupResMLP(nn.Module):
    """Stem Dense + ReLU, L blocks relu(x + Dense(relu(Dense(x)))), zero classifier."""

    num_blocks: int
    width: int = 32

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width, kernel_init=jinit.he_normal())(x))
        stem = x
        for _ in range(self.num_blocks):
            r = nn.relu(nn.Dense(self.width, kernel_init=jinit.fixup(self.num_blocks, 2))(x))
            x = nn.relu(x + nn.Dense(self.width, kernel_init=jinit.zeros())(r))
        return nn.Dense(10, kernel_init=jinit.zeros())(x), stem, x


def test_residual_net_is_its_identity_path_at_init():
    model = _FixupResMLP(num_blocks=8)
    x = jax.random.normal(jax.random.key(1), (16, 20))
    params = model.init(KEY, x)
    logits, stem, out = model.apply(params, x)
    # Every branch ends in a zero layer, so each block passes its (non-negative) input through
    # unchanged, and the zero classifier outputs exactly 0: depth does not change the signal.
    np.testing.assert_array_equal(out, stem)
    np.testing.assert_array_equal(logits, np.zeros((16, 10), np.float32))
    assert float(jnp.var(stem)) > 0.1
    # The first (scaled) branch layers are not zero: they are He times 8^(-1/2).
    w = params["params"]["Dense_1"]["kernel"]
    assert 0 < float(jnp.std(w)) < np.sqrt(2.0 / 32)
