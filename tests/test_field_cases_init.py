"""Field cases 1-15 of ../shared/cases/field_cases.md, each as a named test with its right value.

(Cases 16-20 and the LSUV parts of 9 and 15 belong to the LSUV tests.)
"""

from __future__ import annotations

import inspect
import math
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_initializers import IDS, JIT_VMAP_ALL_GROUP, REGISTRY, VKEYS, _jit_vmap_all

import jinit

KEY = jax.random.key(0)
T = 0.87962566103423978


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """One BLAS thread while this module runs (restored afterwards).

    On the shared 2-core CI machine OpenBLAS's thread pool makes each LAPACK call (the QR of
    every orthogonal initializer, in jinit and JAX alike) take up to ~1 s whatever its size
    (256x256 QR: ~960 ms threaded, 3 ms single-threaded); that measures the machine, not jinit.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def f64(x):
    return np.asarray(jnp.asarray(x, jnp.float32), np.float64)


def rel(a, b):
    return abs(a / b - 1)


# 1 -------------------------------------------------------------------------------------------
def test_case01_uniform_variance_scaling_bound():
    w = f64(jinit.variance_scaling(1.0, "fan_in", "uniform")(KEY, (1000, 1000), jnp.float32))
    bound = math.sqrt(3 / 1000)
    assert bound == pytest.approx(0.054772, abs=1e-6)
    assert rel(w.var(), 1 / 1000) < 0.03  # a library that drops the 3 gives 1/3000
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    w = f64(jinit.glorot_uniform()(KEY, (256, 512), jnp.float32))
    assert np.abs(w).max() <= 0.088388 + 1e-6 and np.abs(w).max() > 0.99 * 0.088388
    assert rel(w.var(), 0.0026042) < 0.03


# 2 -------------------------------------------------------------------------------------------
def test_case02_truncated_normal_variance_correction():
    w = f64(jinit.lecun_normal()(KEY, (1, 1, 1, 1_000_000), jnp.float32))
    assert rel(w.var(), 1.0) < 0.01  # uncorrected would be ~0.774
    w = f64(jinit.he_normal(in_axis=-2, out_axis=-1)(KEY, (3, 3, 64, 128), jnp.float32))
    assert rel(w.std(), 0.058926) < 0.03
    assert np.abs(w).max() <= 2 * 0.058926 / 0.8796257 + 1e-6  # = 0.133979


# 3 -------------------------------------------------------------------------------------------
def test_case03_truncated_normal_stddev_convention():
    # Documented: truncated_normal's stddev is the pre-truncation std (JAX compatible) ...
    doc = inspect.getdoc(jinit.truncated_normal)
    assert "std of the underlying (untruncated) normal" in doc and "0.87962566" in doc
    w = f64(jinit.truncated_normal(stddev=0.02)(KEY, (1000, 1000), jnp.float32))
    assert rel(w.std(), 0.02 * 0.8796257) < 0.02
    assert np.abs(w).max() < 0.04 and np.abs(w).max() > 0.039
    # ... while variance_scaling's variance is post-truncation.
    assert "samples actually produced" in inspect.getdoc(jinit.variance_scaling)
    w = f64(jinit.variance_scaling(1.0, "fan_in", "truncated_normal")(KEY, (2500, 1000)))
    assert rel(w.std(), 1 / 50) < 0.02


# 4 -------------------------------------------------------------------------------------------
# its time is running large arrays, not compiling: XLA's full optimization runs it ~2x faster
@pytest.mark.xla_optimized
def test_case04_he_leaky_relu_slope_not_gain():
    # PyTorch's default: slope sqrt(5) collapses to U(+-1/sqrt(fan_in)).
    for init in (
        jinit.he_uniform(negative_slope=math.sqrt(5)),
        jinit.variance_scaling(2 / (1 + 5), "fan_in", "uniform"),
        jinit.torch_default_kernel(layout="HWIO"),
    ):
        w = f64(init(KEY, (784, 256), jnp.float32))
        assert np.abs(w).max() <= 1 / 28 and np.abs(w).max() > 0.99 / 28
        assert rel(w.var(), 1 / (3 * 784)) < 0.03
    w = f64(jinit.he_normal(negative_slope=0.5)(KEY, (3, 3, 64, 128), jnp.float32))
    assert rel(w.std(), math.sqrt(1.6 / 576)) < 0.03  # 0.052705, ReLU would be 0.058926
    # gain and slope are distinct keyword-only arguments; a gain is never read as a slope.
    params = inspect.signature(jinit.he_normal).parameters
    assert params["gain"].kind is params["negative_slope"].kind is inspect.Parameter.KEYWORD_ONLY
    w = f64(jinit.he_normal(gain=math.sqrt(2))(KEY, (3, 3, 64, 128), jnp.float32))
    assert rel(w.std(), 0.058926) < 0.03  # as a slope it would be 0.034021
    with pytest.raises(ValueError, match="not both"):
        jinit.he_normal(gain=math.sqrt(2), negative_slope=0.1)

    # Propagation: 10 bias-free blocks Dense(2048) -> leaky_relu(0.5), x ~ N(0, 1).
    def final_ratio(init):
        x = jax.random.normal(jax.random.key(1), (256, 2048))
        h = x
        for k in jax.random.split(jax.random.key(2), 10):
            h = jax.nn.leaky_relu(h @ init(k, (2048, 2048), jnp.float32), 0.5)
        return float(jnp.mean(h**2) / jnp.mean(x**2))

    assert 1 / 1.5 < final_ratio(jinit.he_normal(negative_slope=0.5)) < 1.5
    assert final_ratio(jinit.he_normal()) > 6  # plain ReLU-He: ~1.25**10 = 9.3


# 5 -------------------------------------------------------------------------------------------
def test_case05_depthwise_grouped_fans():
    w = f64(jinit.glorot_uniform(groups=2048)(KEY, (7, 7, 1, 2048), jnp.float32))
    assert rel(w.var(), 2 / 98) < 0.03  # naive fans give ~2.0e-5
    assert jinit.compute_fans((3, 3, 1, 64), groups=64) == (9, 9)
    tf_layout = jinit.variance_scaling(1.0, "fan_in", "uniform", in_axis=-1, out_axis=-1,
                                       batch_axis=(2,))  # fmt: skip
    w = f64(tf_layout(KEY, (3, 3, 64, 1), jnp.float32))
    assert np.abs(w).max() <= 0.57735 + 1e-6 and np.abs(w).max() > 0.95 * 0.57735
    # Forward: depthwise conv of N(0, 1) through a LeCun depthwise kernel keeps variance ~1.
    k = jinit.lecun_normal(groups=64)(KEY, (3, 3, 1, 64), jnp.float32)
    x = jax.random.normal(jax.random.key(1), (8, 64, 64, 64))
    y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO",
                                     "NHWC"), feature_group_count=64)  # fmt: skip
    assert abs(float(jnp.var(y)) - 1) < 0.1


# 6 -------------------------------------------------------------------------------------------
def test_case06_einsum_and_fused_qkv_fans():
    q = f64(jinit.lecun_normal(in_axis=0, out_axis=(1, 2))(KEY, (512, 8, 64), jnp.float32))
    assert rel(q.std(), 0.044194) < 0.03  # JAX defaults would give 0.015625
    o = f64(jinit.lecun_normal(in_axis=(0, 1), out_axis=2)(KEY, (8, 64, 512), jnp.float32))
    assert rel(o.std(), 0.044194) < 0.03
    qkv = jinit.glorot_uniform(in_axis=0, out_axis=2, batch_axis=(1,))(KEY, (512, 3, 512))
    assert rel(f64(qkv).var(), 2 / 1024) < 0.03  # the naive (512, 1536) kernel gives 2/2048


# 7 -------------------------------------------------------------------------------------------
def test_case07_rank_lt_2_shapes():
    for shape in [(5,), ()]:
        with pytest.raises(ValueError, match=rf"at least 2 dimensions, got rank {len(shape)}"):
            jinit.lecun_normal()(KEY, shape, jnp.float32)
        for init in (jinit.normal(0.01), jinit.zeros, jinit.zeros(), jinit.ones,
                     jinit.constant(0.1), jinit.uniform()):  # fmt: skip
            x = init(KEY, shape, jnp.float32)
            assert x.shape == shape and x.dtype == jnp.float32
    with pytest.raises(ValueError, match=r"lecun_normal.*shape \(5,\)"):
        nn.Dense(5, bias_init=jinit.lecun_normal()).init(KEY, jnp.ones((1, 3)))


# 8 -------------------------------------------------------------------------------------------
def test_case08_integer_dtypes_error_16bit_work():
    for dt in (jnp.int32, jnp.uint8, jnp.bool_):
        with pytest.raises(TypeError, match=rf"{jnp.dtype(dt).name}.*floating or complex"):
            jinit.he_normal()(KEY, (4, 4), dt)
    for init, v in ((jinit.zeros, 0), (jinit.ones, 1), (jinit.constant(3), 3)):
        x = init(KEY, (3, 2), jnp.int32)
        assert x.dtype == jnp.int32 and (np.asarray(x) == v).all()
    for dt in (jnp.bfloat16, "bfloat16"):
        w = jinit.he_normal()(KEY, (512, 512), dt)
        assert w.dtype == jnp.bfloat16
        assert rel(float(jnp.std(w.astype(jnp.float32))), 0.0625) < 0.03


# 9 -------------------------------------------------------------------------------------------
def test_case09_requested_dtype_wins_under_x64():
    s = np.sqrt(2)  # a float64 NumPy scalar
    scaled = [
        (jinit.constant(s), (8, 8)), (jinit.normal(s), (8, 8)), (jinit.uniform(s), (8, 8)),
        (jinit.truncated_normal(s), (8, 8)),
        (jinit.variance_scaling(s, "fan_in", "normal"), (8, 8)),
        (jinit.he_normal(gain=s), (8, 8)), (jinit.orthogonal(s), (8, 8)),
        (jinit.orthogonal(s, per_gate=2), (8, 8)), (jinit.delta_orthogonal(s), (3, 8, 8)),
        (jinit.identity(s), (8, 8)), (jinit.dirac(gain=s), (3, 8, 8)),
        (jinit.sparse(0.5, s), (8, 8)), (jinit.conv_orthogonal(s), (3, 8, 8)),
        (jinit.uniform_symmetric(s), (8, 8)), (jinit.torch_trunc_normal(s, s), (8, 8)),
    ]  # fmt: skip
    dtypes = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)
    with jax.enable_x64(True):
        for init, shape in scaled + [(r.make(), r.shape) for r in REGISTRY]:
            for dt in dtypes:  # eval_shape: the output dtype is fixed at trace time
                out = jax.eval_shape(
                    lambda k, init=init, shape=shape, dt=dt: init(k, shape, dt), KEY
                )
                assert out.dtype == dt
        for r in REGISTRY:  # dtype given only at build time, and overridden at call time
            assert jax.eval_shape(lambda k, r=r: r.make(dtype=jnp.float32)(k, r.shape), KEY).dtype \
                == jnp.float32  # fmt: skip
            assert jax.eval_shape(lambda k, r=r: r.make(dtype=jnp.float32)(k, r.shape,
                                  jnp.float64), KEY).dtype == jnp.float64  # fmt: skip
        # The original report, run for real: orthogonal with a float64 NumPy scale.
        assert jinit.orthogonal(s)(KEY, (8, 8), jnp.float32).dtype == jnp.float32


# 10 ------------------------------------------------------------------------------------------
def test_case10_orthogonal_half_precision():
    for dt, tol in ((jnp.bfloat16, 1e-2), (jnp.float16, 1e-3)):
        w = jinit.orthogonal()(KEY, (256, 256), dt)
        assert w.dtype == dt
        w = f64(w)
        assert np.abs(w.T @ w - np.eye(256)).max() <= tol
    w = jinit.orthogonal(scale=2.0)(KEY, (128, 512), jnp.bfloat16)
    assert np.abs(f64(w) @ f64(w).T - 4 * np.eye(128)).max() <= 4e-2
    d = jinit.delta_orthogonal()(KEY, (3, 3, 16, 32), jnp.bfloat16)
    assert (
        d.dtype == jnp.bfloat16 and np.abs(f64(d[1, 1]) @ f64(d[1, 1]).T - np.eye(16)).max() < 1e-2
    )


# 11 ------------------------------------------------------------------------------------------
def test_case11_nonsquare_and_conv_orthogonal():
    w = f64(jinit.orthogonal()(KEY, (3, 5)))
    assert np.abs(w @ w.T - np.eye(3)).max() <= 1e-5
    w = f64(jinit.orthogonal()(KEY, (5, 3)))
    assert np.abs(w.T @ w - np.eye(3)).max() <= 1e-5
    assert jinit.orthogonal()(KEY, (20, 10)).shape == (20, 10)
    w = f64(jinit.orthogonal(column_axis=-1)(KEY, (3, 3, 100, 100)))
    m = w.reshape(900, 100)
    assert np.abs(m.T @ m - np.eye(100)).max() <= 1e-5
    w = f64(jinit.orthogonal(column_axis=0)(KEY, (100, 100, 3, 3)))
    m = np.moveaxis(w, 0, -1).reshape(900, 100)
    assert np.abs(m.T @ m - np.eye(100)).max() <= 1e-5
    # Cost guard: QR of 4608 x 512, not 4608 x 4608 (compilation included). Measured in CPU
    # seconds of this process, with one BLAS thread: on a shared 2-core machine OpenBLAS's
    # thread pool can make any LAPACK call take ~1 s, which says nothing about the algorithm.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        threadpool_limits = lambda *a, **k: contextlib.nullcontext()  # noqa: E731
    with threadpool_limits(1, user_api="blas"):
        t0 = time.process_time()
        jinit.orthogonal()(jax.random.key(11), (3, 3, 512, 512)).block_until_ready()
        assert time.process_time() - t0 < 5.0


# 12 ------------------------------------------------------------------------------------------
def test_case12_delta_orthogonal_and_identity_shapes():
    w = f64(jinit.delta_orthogonal()(KEY, (3, 3, 16, 32)))
    assert np.abs(w[1, 1] @ w[1, 1].T - np.eye(16)).max() <= 1e-5
    rest = w.copy()
    rest[1, 1] = 0
    assert (rest == 0).all()
    w = f64(jinit.delta_orthogonal()(KEY, (4, 4, 8, 8)))
    assert np.abs(w[1, 1] @ w[1, 1].T - np.eye(8)).max() <= 1e-5 and np.abs(w).sum(-1).sum(
        -1)[[0, 2, 3]].sum() == 0  # fmt: skip
    for shape in [(3, 3, 32, 16), (3, 16)]:
        with pytest.raises(ValueError):
            jinit.delta_orthogonal()(KEY, shape)
    np.testing.assert_array_equal(jinit.identity()(KEY, (3, 5)), jnp.eye(3, 5))
    np.testing.assert_array_equal(jinit.identity(gain=2.0)(KEY, (3, 5)), 2 * jnp.eye(3, 5))
    with pytest.raises(ValueError, match="2-D"):
        jinit.identity()(KEY, (3, 3, 8, 8))
    # The documented conv identity is dirac(): centre tap = I_8, every other tap 0.
    d = f64(jinit.dirac()(KEY, (3, 3, 8, 8)))
    np.testing.assert_array_equal(d[1, 1], np.eye(8))
    d[1, 1] = 0
    assert (d == 0).all()


# 13 ------------------------------------------------------------------------------------------
def test_case13_fused_recurrent_kernels_per_gate():
    w = f64(jinit.orthogonal()(KEY, (128, 512)))
    blocks = [w[:, 128 * k : 128 * (k + 1)] for k in range(4)]
    assert np.abs(w @ w.T - np.eye(128)).max() <= 1e-5
    assert np.abs(sum(b @ b.T for b in blocks) - np.eye(128)).max() <= 1e-5
    assert all(abs(np.sum(b**2) / 32 - 1) < 0.15 for b in blocks)  # ~32, not 128: the failure
    w = f64(jinit.orthogonal(per_gate=4)(KEY, (128, 512)))
    for k in range(4):
        b = w[:, 128 * k : 128 * (k + 1)]
        assert np.abs(b.T @ b - np.eye(128)).max() <= 1e-5
    assert np.abs(w @ w.T - 4 * np.eye(128)).max() <= 1e-5
    w = f64(jinit.orthogonal(per_gate=4, column_axis=0)(KEY, (512, 128)))  # PyTorch layout
    for k in range(4):
        s = w[128 * k : 128 * (k + 1)]
        assert np.abs(s @ s.T - np.eye(128)).max() <= 1e-5
    with pytest.raises(ValueError, match="rank 1"):
        jinit.orthogonal()(KEY, (128,))
    np.testing.assert_array_equal(jinit.ones(KEY, (128,)), np.ones(128))  # peephole analogue


# 14 ------------------------------------------------------------------------------------------
STRUCTURED = ["orthogonal_wide", "delta_orthogonal", "identity", "dirac", "zero_hadamard_up",
              "conv_orthogonal"]  # fmt: skip


@JIT_VMAP_ALL_GROUP  # shares _jit_vmap_all's compiled program with test_initializers
def test_case14_traceable_jit_vmap_eval_shape_flax():
    jit_vmap = _jit_vmap_all()  # every registry row, jit(vmap(init)) in one program
    for row, batched in zip(REGISTRY, jit_vmap, strict=True):
        init = row.make()
        out = jax.eval_shape(lambda k, init=init, row=row: init(k, row.shape, jnp.float32), KEY)
        assert out == jax.ShapeDtypeStruct(row.shape, jnp.float32)
        for i in range(len(VKEYS)):
            np.testing.assert_allclose(batched[i], init(VKEYS[i], row.shape), rtol=1e-6, atol=1e-6)
    for rid in STRUCTURED:  # literally jax.jit(init, static_argnums=(1, 2))
        init = REGISTRY[IDS.index(rid)].make()
        shape = REGISTRY[IDS.index(rid)].shape
        got = jax.jit(init, static_argnums=(1, 2))(KEY, shape, jnp.float32)
        np.testing.assert_allclose(got, init(KEY, shape, jnp.float32), rtol=1e-6, atol=1e-6)

    class AllInits(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x * sum(jnp.sum(self.param(r.id, r.make(), r.shape)) for r in REGISTRY)

    variables = AllInits().init(KEY, jnp.ones(()))
    y = jax.jit(AllInits().apply)(variables, jnp.ones(()))
    assert bool(jnp.isfinite(y))


# 15 ------------------------------------------------------------------------------------------
class ThreeDense(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(3):
            x = nn.Dense(256, kernel_init=jinit.glorot_uniform())(x)
        return x


def _corr(a, b):
    return abs(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_case15_key_plumbing():
    x = jnp.ones((1, 256))
    init_fn = lambda k: ThreeDense().init(k, x)["params"]  # noqa: E731
    p0, p1 = init_fn(jax.random.key(0)), init_fn(jax.random.key(1))
    names = [f"Dense_{i}" for i in range(3)]
    for n in names:
        assert p0[n]["kernel"].size >= 16384 and _corr(p0[n]["kernel"], p1[n]["kernel"]) < 0.05
    for i in range(3):  # same-shaped layers differ
        for j in range(i + 1, 3):
            assert _corr(p0[names[i]]["kernel"], p0[names[j]]["kernel"]) < 0.05
    keys = jax.random.split(KEY, 4)
    members = jax.vmap(init_fn)(keys)
    for i in range(4):
        alone = init_fn(keys[i])
        np.testing.assert_allclose(members["Dense_0"]["kernel"][i], alone["Dense_0"]["kernel"],
                                   rtol=1e-6, atol=1e-6)  # fmt: skip
        for j in range(i + 1, 4):
            assert _corr(members["Dense_1"]["kernel"][i], members["Dense_1"]["kernel"][j]) < 0.05
    # Path-derived keys: the same params whatever the dict insertion order.
    rules = {r"kernel$": jinit.orthogonal(), r"bias$": jinit.normal(0.1)}
    a = jinit.reinit(p0, rules, jax.random.key(3))
    b = jinit.reinit({n: p0[n] for n in reversed(names)}, rules, jax.random.key(3))
    for n in names:
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(a[n][leaf], b[n][leaf])
    assert _corr(a["Dense_0"]["kernel"], a["Dense_1"]["kernel"]) < 0.05
