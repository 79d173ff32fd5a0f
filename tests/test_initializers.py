"""The initializer registry and the shared battery every initializer must pass.

One row per initializer (``REGISTRY``); adding a row gives a new initializer the whole
battery: shape and dtype (at build and call time), determinism, key sensitivity, empirical
mean/variance against the formula on >= 1e5 elements with tolerances from the sampling error,
a Kolmogorov-Smirnov test against scipy.stats, bounds, structural invariants (orthogonality to
1e-5 in float32), eager == jit == vmap, and eval_shape. Expected values are written from the
formulas here, not recomputed through jinit's own fan helpers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jinit

T = jinit.TRUNCATED_NORMAL_STD
KEY = jax.random.key(0)
SMALL = (8, 6)


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


# ----------------------------------------------------------------------------------------------
# Distribution specs: ("normal", mean, std) | ("uniform", lo, hi) |
# ("truncnorm", a, b, loc, scale) [a, b in units of scale] | ("sparse", std, zero_frac) |
# ("const", expected_fn(shape) -> np.ndarray)
# ----------------------------------------------------------------------------------------------


def tn_vs(var: float) -> tuple:
    """Variance-scaling truncated normal with post-truncation variance ``var``."""
    return ("truncnorm", -2.0, 2.0, 0.0, math.sqrt(var) / T)


def uni_vs(var: float) -> tuple:
    a = math.sqrt(3 * var)
    return ("uniform", -a, a)


def _eye(shape):
    return np.eye(*shape)


def _dirac_expected(shape):
    w = np.zeros(shape)
    for d in range(min(shape[-2], shape[-1])):
        w[tuple((k - 1) // 2 for k in shape[:-2]) + (d, d)] = 1.0
    return w


def _hadamard(n):
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _zero_expected(shape):
    n_in, n_out = shape
    if n_out <= n_in:
        return np.eye(n_in, n_out)
    m = math.ceil(math.log2(n_out))
    return (_hadamard(2**m)[:n_out, :n_in] * 2.0 ** (-m / 2)).T


def _lstm_bias_expected(shape):
    h = shape[0] // 4
    b = np.zeros(shape)
    b[h : 2 * h] = 1
    return b


# Structural invariants: return the max error, compared with 1e-5 (float32).
def ortho_err(w, column_axis=-1, scale=1.0):
    m = np.moveaxis(np.asarray(w, np.float64), column_axis, -1)
    m = m.reshape(-1, m.shape[-1])
    g = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    return np.abs(g - scale**2 * np.eye(g.shape[0])).max()


def per_gate_err(w, gates=4):
    w = np.asarray(w, np.float64)
    h = w.shape[1] // gates
    return max(
        np.abs(w[:, k * h : (k + 1) * h].T @ w[:, k * h : (k + 1) * h] - np.eye(h)).max()
        for k in range(gates)
    )


def delta_err(w):
    w = np.asarray(w, np.float64)
    c = tuple((k - 1) // 2 for k in w.shape[:-2])
    rest = w.copy()
    rest[c] = 0
    return max(ortho_err(w[c]), np.abs(rest).max())


def conv_isometry_err(w, n=8):
    """max_w |K(w) K(w)^* - I| over a grid of frequencies (circular convolution isometry)."""
    w = np.asarray(w, np.float64)
    nd = w.ndim - 2
    pad = [(0, n - k) for k in w.shape[:nd]] + [(0, 0), (0, 0)]
    kh = np.fft.fftn(np.pad(w, pad), axes=tuple(range(nd))).reshape(-1, *w.shape[-2:])
    eye = np.eye(w.shape[-2])
    return max(np.abs(k @ k.conj().T - eye).max() for k in kh)


@dataclasses.dataclass(frozen=True)
class Row:
    """One initializer in the battery.

    Attributes:
      id: test id.
      make: ``make(dtype=None) -> init``.
      shape: a small legal shape (battery checks).
      big: a shape with >= 1e5 elements for moments/KS/bounds, or None.
      dist: distribution spec on ``big``.
      random: whether the result depends on the key.
      check: structural invariant on ``shape`` (max error, must be <= 1e-5 in float32).
      ints: whether integer dtypes are accepted (constant initializers).
    """

    id: str
    make: Callable[..., Any]
    shape: tuple = SMALL
    big: tuple | None = None
    dist: tuple | None = None
    random: bool = True
    check: Callable[[Any], float] | None = None
    ints: bool = False


def _r(id, make, shape=SMALL, big=None, dist=None, **kw):
    return Row(id, make, shape, big, dist, **kw)


B = (400, 300)  # fan_in 400, fan_out 300 (>= 1e5 elements)
REGISTRY: list[Row] = [
    # constants
    _r("zeros", lambda dtype=None: jinit.zeros(dtype=dtype), big=(5,),
       dist=("const", lambda s: np.zeros(s)), random=False, ints=True),
    _r("ones", lambda dtype=None: jinit.ones(dtype=dtype), big=(5,),
       dist=("const", lambda s: np.ones(s)), random=False, ints=True),
    _r("constant", lambda dtype=None: jinit.constant(3, dtype), big=(5,),
       dist=("const", lambda s: np.full(s, 3.0)), random=False, ints=True),
    # plain distributions
    _r("uniform", lambda dtype=None: jinit.uniform(dtype=dtype), big=B,
       dist=("uniform", 0.0, 0.01)),
    _r("uniform_minmax", lambda dtype=None: jinit.uniform(dtype=dtype, minval=-0.05, maxval=0.05),
       big=B, dist=("uniform", -0.05, 0.05)),
    _r("uniform_symmetric", lambda dtype=None: jinit.uniform_symmetric(0.2, dtype), big=B,
       dist=("uniform", -0.2, 0.2)),
    _r("normal", lambda dtype=None: jinit.normal(0.5, dtype), big=B, dist=("normal", 0.0, 0.5)),
    _r("normal_mean", lambda dtype=None: jinit.normal(0.5, dtype, mean=1.0), big=B,
       dist=("normal", 1.0, 0.5)),
    _r("truncated_normal", lambda dtype=None: jinit.truncated_normal(0.5, dtype), big=B,
       dist=("truncnorm", -2.0, 2.0, 0.0, 0.5)),
    _r("truncated_normal_asym", lambda dtype=None: jinit.truncated_normal(1.0, dtype, -1.0, 3.0),
       big=B, dist=("truncnorm", -1.0, 3.0, 0.0, 1.0)),
    # variance scaling, every mode and distribution
    _r("vs_fan_in_tn", lambda dtype=None: jinit.variance_scaling(2.0, "fan_in", "truncated_normal",
       dtype=dtype), big=B, dist=tn_vs(2 / 400)),
    _r("vs_fan_out_normal", lambda dtype=None: jinit.variance_scaling(2.0, "fan_out", "normal",
       dtype=dtype), big=B, dist=("normal", 0.0, math.sqrt(2 / 300))),
    _r("vs_fan_avg_uniform", lambda dtype=None: jinit.variance_scaling(1.0, "fan_avg", "uniform",
       dtype=dtype), big=B, dist=uni_vs(1 / 350)),
    _r("vs_fan_geo_avg_normal", lambda dtype=None: jinit.variance_scaling(1.0, "fan_geo_avg",
       "normal", dtype=dtype), big=B, dist=("normal", 0.0, (400 * 300) ** -0.25)),
    _r("glorot_uniform", lambda dtype=None: jinit.glorot_uniform(dtype=dtype), big=B,
       dist=uni_vs(2 / 700)),
    _r("glorot_normal", lambda dtype=None: jinit.glorot_normal(dtype=dtype), big=B,
       dist=tn_vs(2 / 700)),
    _r("xavier_uniform", lambda dtype=None: jinit.xavier_uniform(dtype=dtype), big=B,
       dist=uni_vs(2 / 700)),
    _r("lecun_uniform", lambda dtype=None: jinit.lecun_uniform(dtype=dtype), big=B,
       dist=uni_vs(1 / 400)),
    _r("lecun_normal", lambda dtype=None: jinit.lecun_normal(dtype=dtype), big=B,
       dist=tn_vs(1 / 400)),
    _r("he_uniform", lambda dtype=None: jinit.he_uniform(dtype=dtype), big=B, dist=uni_vs(2 / 400)),
    _r("he_uniform_fan_out", lambda dtype=None: jinit.he_uniform(dtype=dtype, mode="fan_out"),
       big=B, dist=uni_vs(2 / 300)),
    _r("he_normal_conv", lambda dtype=None: jinit.he_normal(dtype=dtype), shape=(3, 3, 8, 16),
       big=(3, 3, 96, 128), dist=tn_vs(2 / 864)),
    _r("kaiming_normal_slope", lambda dtype=None: jinit.kaiming_normal(dtype=dtype,
       negative_slope=0.5), big=B, dist=tn_vs(1.6 / 400)),
    _r("he_normal_gain", lambda dtype=None: jinit.he_normal(dtype=dtype, gain=3.0), big=B,
       dist=tn_vs(9 / 400)),
    _r("glorot_uniform_depthwise", lambda dtype=None: jinit.glorot_uniform(dtype=dtype, groups=16),
       shape=(3, 3, 1, 16)),
    _r("lecun_normal_einsum", lambda dtype=None: jinit.lecun_normal(in_axis=0, out_axis=(1, 2),
       dtype=dtype), shape=(6, 2, 3), big=(512, 8, 32), dist=tn_vs(1 / 512)),
    # orthogonal family
    _r("orthogonal_wide", lambda dtype=None: jinit.orthogonal(dtype=dtype), shape=(6, 8),
       check=ortho_err),
    _r("orthogonal_tall_scaled", lambda dtype=None: jinit.orthogonal(2.0, dtype=dtype),
       shape=SMALL, check=lambda w: ortho_err(w, scale=2.0)),
    _r("orthogonal_conv_axis0", lambda dtype=None: jinit.orthogonal(column_axis=0, dtype=dtype),
       shape=(10, 4, 3, 3), check=lambda w: ortho_err(w, column_axis=0)),
    _r("orthogonal_cholesky_qr2", lambda dtype=None: jinit.orthogonal(dtype=dtype,
       method="cholesky_qr2"), shape=(3, 3, 8, 16), check=ortho_err),
    _r("orthogonal_per_gate", lambda dtype=None: jinit.orthogonal(dtype=dtype, per_gate=4),
       shape=(8, 32), check=per_gate_err),
    _r("delta_orthogonal", lambda dtype=None: jinit.delta_orthogonal(dtype=dtype),
       shape=(3, 3, 8, 16), check=delta_err),
    _r("delta_orthogonal_1d", lambda dtype=None: jinit.delta_orthogonal(dtype=dtype),
       shape=(4, 8, 8), check=delta_err),
    _r("lsuv_ready_orthogonal", lambda dtype=None: jinit.lsuv_ready_orthogonal(dtype=dtype),
       shape=(3, 3, 8, 16), check=ortho_err),
    _r("conv_orthogonal", lambda dtype=None: jinit.conv_orthogonal(dtype=dtype),
       shape=(3, 3, 8, 16), check=conv_isometry_err),
    # structured
    _r("identity", lambda dtype=None: jinit.identity(dtype=dtype), shape=(3, 5), big=(3, 5),
       dist=("const", _eye), random=False, ints=True),
    _r("dirac", lambda dtype=None: jinit.dirac(dtype=dtype), shape=(3, 3, 8, 16),
       big=(4, 3, 5, 6), dist=("const", _dirac_expected), random=False, ints=True),
    _r("zero_hadamard_up", lambda dtype=None: jinit.zero_hadamard(dtype), shape=(6, 10),
       big=(6, 10), dist=("const", _zero_expected), random=False),
    _r("zero_hadamard_down", lambda dtype=None: jinit.zero_hadamard(dtype), shape=(10, 6),
       big=(10, 6), dist=("const", _zero_expected), random=False),
    _r("sparse", lambda dtype=None: jinit.sparse(0.9, 1.0, dtype), shape=(20, 6),
       big=(1000, 120), dist=("sparse", 1.0, 0.9)),
    # framework presets
    _r("torch_default_kernel", lambda dtype=None: jinit.torch_default_kernel(dtype), big=(300, 400),
       dist=("uniform", -1 / 20, 1 / 20)),
    _r("torch_default_kernel_hwio", lambda dtype=None: jinit.torch_default_kernel(dtype,
       layout="HWIO"), big=B, dist=("uniform", -1 / 20, 1 / 20)),
    _r("torch_default_bias", lambda dtype=None: jinit.torch_default_bias(100, dtype), shape=(6,),
       big=(120_000,), dist=("uniform", -0.1, 0.1)),
    _r("torch_kaiming_normal", lambda dtype=None: jinit.torch_kaiming_normal(dtype=dtype),
       big=(300, 400), dist=("normal", 0.0, math.sqrt(2 / 400))),
    _r("torch_kaiming_uniform_fan_out", lambda dtype=None: jinit.torch_kaiming_uniform(
       mode="fan_out", nonlinearity="relu", dtype=dtype), big=(300, 400),
       dist=uni_vs(2 / 300)),
    _r("torch_xavier_uniform", lambda dtype=None: jinit.torch_xavier_uniform(2.0, dtype),
       big=(300, 400), dist=uni_vs(4 * 2 / 700)),
    _r("torch_xavier_normal", lambda dtype=None: jinit.torch_xavier_normal(1.0, dtype),
       big=(300, 400), dist=("normal", 0.0, math.sqrt(2 / 700))),
    _r("torch_orthogonal", lambda dtype=None: jinit.torch_orthogonal(dtype=dtype),
       shape=(10, 4, 3, 3), check=lambda w: ortho_err(w, column_axis=0)),
    _r("torch_trunc_normal", lambda dtype=None: jinit.torch_trunc_normal(std=0.02, dtype=dtype),
       big=B, dist=("truncnorm", -100.0, 100.0, 0.0, 0.02)),
    _r("torch_trunc_normal_abs", lambda dtype=None: jinit.torch_trunc_normal(1.0, 1.0, 0.0, 2.0,
       dtype), big=B, dist=("truncnorm", -1.0, 1.0, 1.0, 1.0)),
    _r("torch_embedding", lambda dtype=None: jinit.torch_embedding(dtype), big=B,
       dist=("normal", 0.0, 1.0)),
    _r("torch_rnn_uniform", lambda dtype=None: jinit.torch_rnn_uniform(64, dtype), big=B,
       dist=("uniform", -1 / 8, 1 / 8)),
    _r("keras_vs_normal_is_truncated", lambda dtype=None: jinit.keras_variance_scaling(1.0,
       "fan_in", "normal", dtype), big=B, dist=tn_vs(1 / 400)),
    _r("keras_vs_untruncated", lambda dtype=None: jinit.keras_variance_scaling(2.0, "fan_avg",
       "untruncated_normal", dtype), big=B, dist=("normal", 0.0, math.sqrt(2 / 350))),
    _r("keras_vs_rank1", lambda dtype=None: jinit.keras_variance_scaling(1.0, "fan_in", "uniform",
       dtype), shape=(6,), big=(120_000,), dist=uni_vs(1 / 120_000)),
    _r("keras_random_uniform", lambda dtype=None: jinit.keras_random_uniform(dtype=dtype), big=B,
       dist=("uniform", -0.05, 0.05)),
    _r("keras_random_normal", lambda dtype=None: jinit.keras_random_normal(0.5, 0.1, dtype),
       big=B, dist=("normal", 0.5, 0.1)),
    _r("keras_truncated_normal", lambda dtype=None: jinit.keras_truncated_normal(0.0, 0.1, dtype),
       big=B, dist=("truncnorm", -2.0, 2.0, 0.0, 0.1)),
    _r("keras_lstm_bias", lambda dtype=None: jinit.keras_lstm_bias(dtype=dtype), shape=(8,),
       big=(40,), dist=("const", _lstm_bias_expected), random=False, ints=True),
    _r("haiku_default_kernel", lambda dtype=None: jinit.haiku_default_kernel(dtype), big=B,
       dist=("truncnorm", -2.0, 2.0, 0.0, 1 / 20)),
    _r("haiku_variance_scaling", lambda dtype=None: jinit.haiku_variance_scaling(dtype=dtype),
       big=B, dist=tn_vs(1 / 400)),
    _r("haiku_embedding", lambda dtype=None: jinit.haiku_embedding(dtype), big=B,
       dist=("truncnorm", -2.0, 2.0, 0.0, 1.0)),
    _r("flax_default_kernel", lambda dtype=None: jinit.flax_default_kernel(dtype), big=B,
       dist=tn_vs(1 / 400)),
    _r("flax_embedding", lambda dtype=None: jinit.flax_embedding(dtype), big=(1000, 128),
       dist=("normal", 0.0, 1 / math.sqrt(128))),
]  # fmt: skip
IDS = [r.id for r in REGISTRY]
assert len(set(IDS)) == len(IDS)


def _np(x) -> np.ndarray:
    return np.asarray(jnp.asarray(x, jnp.float32) if x.dtype == jnp.bfloat16 else x, np.float64)


@functools.cache
def _big_sample(row_id: str) -> np.ndarray:
    row = REGISTRY[IDS.index(row_id)]
    return _np(row.make()(jax.random.key(7), row.big, jnp.float32))


def _scipy_dist(spec):
    kind = spec[0]
    if kind == "normal":
        return scipy.stats.norm(spec[1], spec[2])
    if kind == "uniform":
        return scipy.stats.uniform(spec[1], spec[2] - spec[1])
    if kind == "truncnorm":
        return scipy.stats.truncnorm(spec[1], spec[2], loc=spec[3], scale=spec[4])
    return None


def _expected_moments(spec):
    if spec[0] == "sparse":
        return 0.0, (1 - spec[2]) * spec[1] ** 2
    d = _scipy_dist(spec)
    return float(d.mean()), float(d.var())


# ----------------------------------------------------------------------------------------------
# The battery.
# ----------------------------------------------------------------------------------------------


def _sds(init, shape, *args):
    """Output ShapeDtypeStruct of ``init(KEY, shape, *args)``: traces, never compiles."""
    return jax.eval_shape(lambda k: init(k, shape, *args), KEY)


BF16_EAGER = {
    "zeros", "normal_mean", "uniform_minmax", "truncated_normal", "vs_fan_in_tn",
    "vs_fan_avg_uniform", "vs_fan_out_normal", "orthogonal_per_gate", "delta_orthogonal",
    "conv_orthogonal", "sparse", "identity", "dirac", "zero_hadamard_up", "torch_trunc_normal_abs",
    "keras_truncated_normal", "haiku_default_kernel", "keras_vs_rank1",
}  # fmt: skip
assert BF16_EAGER <= set(IDS)


@pytest.mark.parametrize("row", REGISTRY, ids=IDS)
def test_shape_and_dtype_at_build_and_call_time(row):
    init = row.make()
    # Eager bfloat16 compiles a second program per row, so it runs for one row per code path;
    # every row's dtypes are checked below with eval_shape (trace only).
    for dt in (jnp.float32, jnp.bfloat16) if row.id in BF16_EAGER else (jnp.float32,):
        x = init(KEY, row.shape, dt)
        assert x.shape == row.shape and x.dtype == dt
        assert bool(jnp.all(jnp.isfinite(x.astype(jnp.float32))))
    # The dtype is decided at trace time, so eval_shape checks it without compiling.
    assert _sds(row.make(dtype=jnp.bfloat16), row.shape).dtype == jnp.bfloat16
    assert _sds(row.make(dtype=jnp.bfloat16), row.shape, jnp.float32).dtype == jnp.float32
    assert _sds(row.make(dtype=jnp.float16), row.shape).dtype == jnp.float16
    assert _sds(init, row.shape).dtype == jnp.float32  # default float (x64 off)
    out = _sds(init, list(row.shape), "bfloat16")  # list shape, string dtype
    assert out == jax.ShapeDtypeStruct(row.shape, jnp.bfloat16)


@pytest.mark.parametrize("row", REGISTRY, ids=IDS)
def test_integer_dtypes(row):
    init = row.make()
    if row.ints:
        x = init(KEY, row.shape, jnp.int32)
        assert x.dtype == jnp.int32
    else:
        for dt in (jnp.int32, jnp.uint8, jnp.bool_):
            with pytest.raises(TypeError, match=jnp.dtype(dt).name):
                init(KEY, row.shape, dt)


@pytest.mark.parametrize("row", REGISTRY, ids=IDS)
def test_determinism_and_key_sensitivity(row):
    init = row.make()
    a = init(KEY, row.shape, jnp.float32)
    b = init(jax.random.key(0), row.shape, jnp.float32)
    c = init(jax.random.key(1), row.shape, jnp.float32)
    np.testing.assert_array_equal(a, b)
    if row.random:
        assert not np.array_equal(a, c)
    else:
        np.testing.assert_array_equal(a, c)


VKEYS = jax.random.split(KEY, 3)
# XLA's CPU backend spends most of this suite's time optimising programs that run once; for
# the big all-rows programs, compile with the cheap pipeline (numerics are unchanged: no
# fast-math either way, and results are compared with rtol 1e-6).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def fast_jit(fn, *args):
    """``jax.jit(fn)(*args)``, compiled with :data:`FAST_COMPILE`."""
    return jax.jit(fn).lower(*args).compile(FAST_COMPILE)(*args)


@functools.cache
def _jit_vmap_all():
    """``jit(vmap(init))`` of every row in ONE program (one compilation, not one per row).

    Compile time dominates this suite on CPU (~1 s per small program, ~25 s for all rows
    together), so jit and vmap are checked together: slice ``j`` of the jitted, vmapped
    output must equal the eager ``init(keys[j], ...)``.
    """

    def all_rows(ks):
        return [jax.vmap(lambda k, r=r: r.make()(k, r.shape))(ks) for r in REGISTRY]

    return fast_jit(all_rows, VKEYS)


# One xdist worker runs every user of _jit_vmap_all (with test_field_cases_init's case 14), so
# its ~25 s program is compiled once per CI run, not once per worker.
JIT_VMAP_ALL_GROUP = pytest.mark.xdist_group("jit_vmap_all")


@JIT_VMAP_ALL_GROUP
@pytest.mark.parametrize("row", REGISTRY, ids=IDS)
def test_eager_equals_jit_of_vmap_and_eval_shape(row):
    init = row.make()
    batched = _jit_vmap_all()[IDS.index(row.id)]
    assert batched.shape == (3, *row.shape) and batched.dtype == jnp.float32
    for j in range(3):
        np.testing.assert_allclose(batched[j], init(VKEYS[j], row.shape), rtol=1e-6, atol=1e-6)
    assert _sds(init, row.shape, jnp.bfloat16) == jax.ShapeDtypeStruct(row.shape, jnp.bfloat16)


@pytest.mark.parametrize("row", [r for r in REGISTRY if r.check], ids=lambda r: r.id)
def test_structural_invariant_float32(row):
    w = row.make()(KEY, row.shape, jnp.float32)
    assert row.check(w) <= 1e-5


STAT_ROWS = [r for r in REGISTRY if r.dist is not None and r.dist[0] != "const"]


@pytest.mark.parametrize("row", STAT_ROWS, ids=lambda r: r.id)
def test_moments_match_formula(row):
    x = _big_sample(row.id).ravel()
    n = x.size
    assert n >= 100_000
    mu, var = _expected_moments(row.dist)
    m, v = x.mean(), x.var()
    m4 = np.mean((x - m) ** 4)
    se_mean, se_var = math.sqrt(v / n), math.sqrt(max(m4 - v * v, 0.0) / n)
    # 5 standard errors: a fixed key makes this deterministic; a wrong formula (even by 3%)
    # is many standard errors off at n >= 1e5.
    assert abs(m - mu) <= 5 * se_mean + 1e-12, (m, mu)
    assert abs(v - var) <= 5 * se_var, (v, var, se_var)


KS_ROWS = [r for r in STAT_ROWS if r.dist[0] in ("normal", "uniform", "truncnorm")]


@pytest.mark.parametrize("row", KS_ROWS, ids=lambda r: r.id)
def test_distribution_ks_and_bounds(row):
    x = _big_sample(row.id).ravel()
    dist = _scipy_dist(row.dist)
    assert scipy.stats.kstest(x, dist.cdf).pvalue > 1e-3
    if row.dist[0] == "uniform":
        lo, hi = row.dist[1], row.dist[2]
        width = hi - lo
        assert x.min() >= lo - 1e-7 * width and x.max() < hi + 1e-7 * width
        assert x.max() > hi - 0.01 * width and x.min() < lo + 0.01 * width
    if row.dist[0] == "truncnorm" and row.dist[2] - row.dist[1] < 10:
        _, a, b, loc, scale = row.dist
        lo, hi = loc + a * scale, loc + b * scale
        assert x.min() > lo - 1e-6 * scale and x.max() < hi + 1e-6 * scale
        assert x.max() > hi - 0.02 * (hi - lo) and x.min() < lo + 0.02 * (hi - lo)


@pytest.mark.parametrize("row", [r for r in REGISTRY if r.dist and r.dist[0] == "const"],
                         ids=lambda r: r.id)  # fmt: skip
def test_deterministic_values(row):
    w = row.make()(KEY, row.big, jnp.float32)
    np.testing.assert_allclose(w, row.dist[1](row.big), rtol=1e-6, atol=1e-6)


def test_sparse_exact_zero_count_per_column():
    w = _big_sample("sparse")
    assert (np.sum(w == 0, axis=0) == 900).all()
    w = np.asarray(jinit.sparse(num_nonzero=15)(KEY, (200, 30)))
    assert (np.sum(w != 0, axis=0) == 15).all()


def test_depthwise_groups_fans():
    w = _np(jinit.glorot_uniform(groups=2048)(KEY, (7, 7, 1, 2048)))
    bound = math.sqrt(6 / 98)
    assert abs(w.var() / (2 / 98) - 1) < 0.03 and np.abs(w).max() <= bound


# ----------------------------------------------------------------------------------------------
# JAX parity: same arguments, defaults and numbers as jax.nn.initializers.
# ----------------------------------------------------------------------------------------------

J = jax.nn.initializers
PARITY = [
    ("zeros", lambda m: m.zeros, True),
    ("ones", lambda m: m.ones, True),
    ("constant", lambda m: m.constant(-0.7), True),
    ("uniform", lambda m: m.uniform(), False),
    ("uniform_scale", lambda m: m.uniform(10.0), False),
    ("normal", lambda m: m.normal(), True),
    ("normal_stddev", lambda m: m.normal(5.0), True),
    ("truncated_normal", lambda m: m.truncated_normal(), False),
    ("truncated_normal_bounds", lambda m: m.truncated_normal(0.3, None, -1.0, 1.5), False),
    *[
        (f"vs_{mode}_{dist}",
         lambda m, mo=mode, di=dist: m.variance_scaling(1.7, mo, di), True)
        for mode in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
        for dist in ("truncated_normal", "normal", "uniform")
    ],
    ("vs_axes", lambda m: m.variance_scaling(2.0, "fan_avg", "uniform", in_axis=(0, 1),
                                             out_axis=-1, batch_axis=2), True, [(3, 3, 8, 16)]),
    *[(n, lambda m, n=n: getattr(m, n)(), True) for n in (
        "glorot_uniform", "glorot_normal", "xavier_uniform", "xavier_normal", "lecun_uniform",
        "lecun_normal", "he_uniform", "he_normal", "kaiming_uniform", "kaiming_normal",
        "orthogonal")],
    ("orthogonal_axis", lambda m: m.orthogonal(1.5, column_axis=1), True),
    ("delta_orthogonal", lambda m: m.delta_orthogonal(), True, [(3, 3, 8, 16), (3, 16, 8)]),
]  # fmt: skip
# Receptive-field fans are compared on a conv shape for a few entries; the rest share SMALL
# (eager JAX compiles every op per shape, and this suite is compile-bound).
CONV_PARITY = ("vs_fan_avg_uniform", "vs_fan_in_truncated_normal", "glorot_normal", "he_normal",
               "orthogonal", "uniform")  # fmt: skip
PARITY = [
    p if len(p) == 4 else (*p, [SMALL, (3, 3, 8, 16)] if p[0] in CONV_PARITY else [SMALL])
    for p in PARITY
]


def test_every_jax_initializer_name_exists():
    public = {n for n in dir(J) if not n.startswith("_")}
    missing = sorted(n for n in public if not hasattr(jinit, n))
    assert not missing


@pytest.mark.parametrize("name,build,complex_ok,shapes", PARITY, ids=[p[0] for p in PARITY])
def test_same_numbers_as_jax(name, build, complex_ok, shapes):
    ours, theirs = build(jinit), build(J)
    for i, shape in enumerate(shapes):
        for dt in [jnp.float32] + ([jnp.complex64] if complex_ok and i == 0 else []):
            try:
                want = theirs(jax.random.key(42), shape, dt)
            except Exception:  # JAX rejects the shape (e.g. delta_orthogonal with in > out)
                with pytest.raises((ValueError, TypeError)):
                    ours(jax.random.key(42), shape, dt)
                continue
            got = ours(jax.random.key(42), shape, dt)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


X64_PARITY = (
    "constant",
    "uniform",
    "normal",
    "truncated_normal",
    "vs_fan_in_truncated_normal",
    "vs_fan_avg_normal",
    "vs_fan_geo_avg_uniform",
    "orthogonal",
    "delta_orthogonal",
)


def test_orthogonal_methods_agree_with_jax():
    # 'qr' is bit-identical; CholeskyQR2 factorises the same draw, so it agrees to rounding.
    for shape, method in [((3, 3, 100, 100), "auto"), ((8, 40), "cholesky_qr2")]:
        ref = J.orthogonal()(KEY, shape, jnp.float32)
        np.testing.assert_array_equal(jinit.orthogonal()(KEY, shape), ref)  # default: 'qr'
        np.testing.assert_allclose(jinit.orthogonal(method=method)(KEY, shape), ref, atol=2e-6)


def test_same_numbers_as_jax_float64_and_complex128():
    # Under x64 every eager op would recompile; one jit over the distinct code paths
    # compiles once.
    entries = [p for p in PARITY if p[0] in X64_PARITY]

    def both(k):
        out = []
        for _, build, complex_ok, shapes in entries:
            for dt in [jnp.float64] + ([jnp.complex128] if complex_ok else []):
                out.append((build(jinit)(k, shapes[0], dt), build(J)(k, shapes[0], dt)))
        return out

    with jax.enable_x64(True):
        pairs = fast_jit(both, jax.random.key(1))
        for got, want in pairs:
            assert got.dtype == want.dtype and got.dtype in (jnp.float64, jnp.complex128)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# JAX's tests/nn_test.py initializer table, in spirit: every initializer, several shapes and
# dtypes, dtype at build time vs call time.
NN_TEST_SHAPES = [(2, 3), (3, 2), (2, 3, 4), (4, 3, 2), (2, 3, 4, 5)]


@pytest.mark.parametrize("name,build,complex_ok,shapes", PARITY, ids=[p[0] for p in PARITY])
def test_jax_nn_test_table(name, build, complex_ok, shapes):
    init = build(jinit)
    for shape in NN_TEST_SHAPES:
        if name == "delta_orthogonal" and (len(shape) < 3 or shape[-1] < shape[-2]):
            continue
        if name == "vs_axes" and len(shape) < 4:
            continue
        for dt in (jnp.float32, jnp.float16, jnp.bfloat16):
            assert _sds(init, shape, dt) == jax.ShapeDtypeStruct(shape, dt)
            assert _sds(build(J), shape, dt) == jax.ShapeDtypeStruct(shape, dt)
    if name in ("normal", "truncated_normal", "vs_fan_in_uniform", "orthogonal"):
        x = init(KEY, shapes[0], jnp.float16)
        assert x.dtype == jnp.float16 and bool(jnp.all(jnp.isfinite(x)))
    # zeros/ones: JAX style (direct call) and jinit style (factory, dtype at build time).
    if name in ("zeros", "ones"):
        assert getattr(jinit, name)(dtype=jnp.float16)(KEY, (2, 3)).dtype == jnp.float16
        assert getattr(jinit, name)(KEY, (2, 3), jnp.float16).dtype == jnp.float16


# ----------------------------------------------------------------------------------------------
# Bad input: static arguments validated when the factory is built.
# ----------------------------------------------------------------------------------------------

BAD_BUILD = [
    (lambda: jinit.variance_scaling(1.0, "fan_sum", "normal"), ValueError, "mode='fan_sum'"),
    (lambda: jinit.variance_scaling(1.0, "fan_in", "gauss"), ValueError, "distribution='gauss'"),
    (lambda: jinit.variance_scaling(0.0, "fan_in", "normal"), ValueError, "scale must be > 0"),
    (lambda: jinit.variance_scaling(1.0, "fan_in", "normal", in_axis=(0, 0)), ValueError,
     "in_axis lists the same axis twice"),
    (lambda: jinit.variance_scaling(1.0, "fan_in", "normal", in_axis="0"), TypeError, "in_axis"),
    (lambda: jinit.glorot_uniform(groups=0), ValueError, "groups must be >= 1"),
    (lambda: jinit.he_normal(mode="fan_mid"), ValueError, "fan_in"),
    (lambda: jinit.he_normal(gain=2.0, negative_slope=0.1), ValueError, "not both"),
    (lambda: jinit.normal(-1.0), ValueError, "stddev must be > 0"),
    (lambda: jinit.normal(0.0), ValueError, "stddev must be > 0"),
    (lambda: jinit.uniform(minval=1.0, maxval=0.0), ValueError, "minval < maxval"),
    (lambda: jinit.uniform_symmetric(0.0), ValueError, "bound must be > 0"),
    (lambda: jinit.truncated_normal(1.0, None, 2.0, -2.0), ValueError, "lower < upper"),
    (lambda: jinit.orthogonal(per_gate=0), ValueError, "per_gate"),
    (lambda: jinit.orthogonal(column_axis=1.5), TypeError, "column_axis"),
    (lambda: jinit.orthogonal(method="svd"), ValueError, "method='svd'"),
    (lambda: jinit.dirac(layout="NCHW"), ValueError, "'HWIO', 'OIHW'"),
    (lambda: jinit.dirac(center="middle"), ValueError, "center='middle'"),
    (lambda: jinit.sparse(), ValueError, "exactly one"),
    (lambda: jinit.sparse(1.0), ValueError, "sparsity must be in"),
    (lambda: jinit.zero_hadamard(layout="x"), ValueError, "layout='x'"),
    (lambda: jinit.torch_default_kernel(layout="IOHW"), ValueError, "layout='IOHW'"),
    (lambda: jinit.torch_trunc_normal(a=1.0, b=-1.0), ValueError, "a < b"),
    (lambda: jinit.keras_variance_scaling(distribution="gamma"), ValueError, "untruncated_normal"),
    (lambda: jinit.get_preset("jax2"), ValueError, "'pytorch', 'keras', 'haiku', 'flax'"),
    (lambda: jinit.calculate_gain("relu7"), ValueError, "'leaky_relu'"),
    (lambda: jinit.calculate_gain("leaky_relu", True), ValueError, "param must be a number"),
]  # fmt: skip


@pytest.mark.parametrize("build,exc,msg", BAD_BUILD, ids=range(len(BAD_BUILD)))
def test_bad_static_arguments_fail_at_build_time(build, exc, msg):
    with pytest.raises(exc, match=msg.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_bad_shapes_fail_at_call_time_with_clear_messages():
    with pytest.raises(ValueError, match="out of range for a rank-2"):
        jinit.lecun_normal(in_axis=3)(KEY, (4, 5))
    with pytest.raises(ValueError, match="overlaps"):
        jinit.lecun_normal(batch_axis=-1)(KEY, (4, 5))
    with pytest.raises(ValueError, match="groups=3 does not divide"):
        jinit.glorot_uniform(groups=3)(KEY, (3, 3, 1, 8))
    with pytest.raises(ValueError, match="per_gate=3 does not divide"):
        jinit.orthogonal(per_gate=3)(KEY, (4, 8))
    with pytest.raises(ValueError, match="2-D"):
        jinit.sparse(0.5)(KEY, (3, 4, 5))
    with pytest.raises(ValueError, match="3-D, 4-D or 5-D"):
        jinit.conv_orthogonal()(KEY, (4, 4))
    with pytest.raises(ValueError, match="in <= out"):
        jinit.conv_orthogonal()(KEY, (3, 3, 8, 4))
    with pytest.raises(TypeError, match="static"):
        jax.jit(lambda n: jinit.normal()(KEY, (n, 4)))(3)
    with pytest.raises(TypeError, match="complex64"):
        jinit.uniform()(KEY, (3,), jnp.complex64)


@pytest.mark.parametrize(
    "init,shape",
    [
        (jinit.lecun_normal(), (0, 5)),
        (jinit.he_uniform(), (3, 3, 0, 4)),
        (jinit.orthogonal(), (0, 4)),
        (jinit.normal(), (0,)),
        (jinit.zeros, (2, 0)),
        (jinit.sparse(0.5), (0, 3)),
        (jinit.conv_orthogonal(), (3, 3, 0, 4)),
        (jinit.zero_hadamard(), (0, 4)),
        (jinit.dirac(), (3, 3, 0, 4)),
        (jinit.keras_variance_scaling(), (0,)),
    ],
    ids=range(10),
)
def test_zero_size_shapes(init, shape):
    for dt in (jnp.float32, jnp.bfloat16):
        x = init(KEY, shape, dt)
        assert x.shape == shape and x.dtype == dt and x.size == 0


def test_out_sharding_passthrough_and_refusal():
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    x = jinit.normal()(KEY, (4, 4), jnp.float32, out_sharding=None)
    assert x.shape == (4, 4)
    assert jinit.constant(1.0)(KEY, (2,), jnp.float32, sharding).sharding == sharding
    with pytest.raises(NotImplementedError, match="out_sharding"):
        jinit.orthogonal()(KEY, (4, 4), jnp.float32, sharding)


def test_strict_dtype_promotion_and_rank_promotion():
    # Promotion errors are raised while tracing, so eval_shape checks every row without
    # compiling (a config change would otherwise recompile every op).
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        for row in REGISTRY:
            for dt in (jnp.float32, jnp.bfloat16):
                assert _sds(row.make(), row.shape, dt).dtype == dt, row.id
        vs = jinit.variance_scaling(1.0, "fan_in", "uniform")
        assert _sds(vs, (4, 4), jnp.complex64).dtype == jnp.complex64


def test_initializer_protocol_and_no_heavy_imports():
    import subprocess
    import sys

    for row in REGISTRY:
        assert isinstance(row.make(), jinit.Initializer)
    code = (
        "import sys, jinit; bad = [m for m in ('matplotlib', 'tensorflow_datasets', 'tensorflow',"
        " 'torch', 'scipy') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----------------------------------------------------------------------------------------------
# Fans, gains, presets and re-initialisation.
# ----------------------------------------------------------------------------------------------


def test_compute_fans():
    assert jinit.compute_fans((400, 300)) == (400, 300)
    assert jinit.compute_fans((3, 3, 64, 128)) == (576, 1152)
    assert jinit.compute_fans((3, 3, 1, 64), groups=64) == (9, 9)
    assert jinit.compute_fans((3, 3, 64, 1), -1, -1, (2,)) == (9, 9)
    # Zero-size shapes have fans too (no ZeroDivisionError): the receptive field is 3 * 3.
    assert jinit.compute_fans((0, 4)) == (0, 4)
    assert jinit.compute_fans((3, 3, 0, 8)) == (0, 72)
    assert jinit.compute_fans((512, 8, 64), 0, (1, 2)) == (512, 512)
    assert jinit.compute_fans((512, 3, 512), 0, 2, (1,)) == (512, 512)
    assert jinit.compute_fans((1000, 64), -2, 0) == (64, 64)  # Flax's embedding rule
    for shape in [(5,), ()]:
        with pytest.raises(ValueError, match=f"rank {len(shape)}"):
            jinit.compute_fans(shape)


def test_calculate_gain_table_and_computed():
    g = jinit.calculate_gain
    assert g("linear") == g("conv2d") == g("sigmoid") == g("conv_transpose3d") == 1.0
    assert g("tanh") == pytest.approx(5 / 3)
    assert g("relu") == pytest.approx(math.sqrt(2))
    assert g("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert g("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert g("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert g("selu") == 0.75
    # Computed gains: 1/sqrt(E[f(z)^2]) against scipy quadrature.
    import scipy.integrate
    import scipy.special

    acts = {
        "gelu": lambda x: 0.5 * x * (1 + scipy.special.erf(x / math.sqrt(2))),
        "silu": lambda x: x * scipy.special.expit(x),
        "swish": lambda x: x * scipy.special.expit(x),
        "elu": lambda x: x if x > 0 else math.expm1(x),
        "softplus": lambda x: np.logaddexp(0, x),
    }
    for name, f in acts.items():
        m2 = scipy.integrate.quad(lambda z, f=f: f(z) ** 2 * scipy.stats.norm.pdf(z), -40, 40,
                                  points=[0.0], limit=200)[0]  # fmt: skip
        assert g(name) == pytest.approx(1 / math.sqrt(m2), rel=1e-6), name
    assert jinit.compute_gain(jax.nn.relu) == pytest.approx(math.sqrt(2), rel=1e-6)
    assert g(jnp.tanh) == pytest.approx(1 / math.sqrt(0.394294490), rel=1e-6)
    assert g("elu", 0.5) != g("elu")


def test_computed_gain_preserves_second_moment():
    # One wide layer: pre-activations of gelu(z) W have E[h^2] = 1 when Var[W] = gain^2/fan_in.
    gain = jinit.calculate_gain("gelu")
    w = jinit.variance_scaling(gain**2, "fan_in", "normal")(jax.random.key(3), (2048, 512))
    z = jax.random.normal(jax.random.key(4), (1024, 2048))
    h = jax.nn.gelu(z, approximate=False) @ w
    assert abs(float(jnp.mean(h**2)) - 1) < 0.03


def test_presets_table():
    for name in ("pytorch", "keras", "haiku", "flax"):
        p = jinit.get_preset(name)
        assert p is not None and p.name == name
        for init in (p.dense_kernel, p.embedding, p.bias(16), p.rnn_kernel(4), p.rnn_bias(4)):
            assert init(KEY, (16, 8) if init is not p.bias(16) else (8,)).shape
    assert jinit.get_preset("torch").layout == "OIHW"
    assert jinit.get_preset("torch", "HWIO").layout == "HWIO"
    with pytest.raises(ValueError, match="layout"):
        jinit.get_preset("keras", "OIHW")
    assert set(jinit.PRESETS) == {"pytorch", "keras", "haiku", "flax"}
    b = jinit.get_preset("keras").lstm_bias(8)(KEY, (32,))
    np.testing.assert_array_equal(b, np.r_[np.zeros(8), np.ones(8), np.zeros(16)])


def test_presets_match_flax_defaults_bit_for_bit():
    import flax.linen as nn

    x = jnp.ones((1, 12))
    params = nn.Dense(7).init(KEY, x)["params"]
    # Flax's Dense draws its kernel with lecun_normal from the 'params' key it is given.
    ref = nn.initializers.lecun_normal()(jax.random.fold_in(KEY, 0), (12, 7))
    ours = jinit.flax_default_kernel()(jax.random.fold_in(KEY, 0), (12, 7))
    np.testing.assert_array_equal(ref, ours)
    assert params["kernel"].shape == (12, 7)
    emb_ref = nn.linear.default_embed_init(KEY, (100, 16), jnp.float32)
    np.testing.assert_array_equal(emb_ref, jinit.flax_embedding()(KEY, (100, 16)))


def test_reinit_linen_rules_and_stability():
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(32, name="a")(x)
            x = nn.Dense(32, name="b")(x)
            return nn.Embed(50, 8, name="emb")(jnp.zeros((2,), jnp.int32)), x

    params = MLP().init(KEY, jnp.ones((1, 16)))
    rules = [(r"emb/embedding$", jinit.normal(1.0)), (r"kernel$", jinit.orthogonal())]
    new = jinit.reinit(params, rules, jax.random.key(5), strict=True)
    assert ortho_err(new["params"]["a"]["kernel"]) < 1e-5
    np.testing.assert_array_equal(new["params"]["a"]["bias"], params["params"]["a"]["bias"])
    assert abs(float(jnp.std(new["params"]["emb"]["embedding"])) - 1) < 0.2
    # Same shape, different paths -> different values (no key reuse).
    assert not np.array_equal(new["params"]["a"]["kernel"][:, :32], new["params"]["b"]["kernel"])
    # Reordered dict / extra layer: untouched paths get identical values.
    p = params["params"]
    reordered = {"params": {"emb": p["emb"], "b": p["b"], "extra": {"kernel": jnp.ones((4, 4))},
                            "a": p["a"]}}  # fmt: skip
    new2 = jinit.reinit(reordered, rules, jax.random.key(5))
    for layer in ("a", "b", "emb"):
        for k, v in new["params"][layer].items():
            np.testing.assert_array_equal(new2["params"][layer][k], v)
    # Predicates, jit, ShapeDtypeStruct trees, strictness.
    shapes = jax.eval_shape(lambda: params)
    # A ShapeDtypeStruct tree (no arrays at all): every leaf needs a rule, so add a catch-all.
    new3 = jax.jit(lambda: jinit.reinit(shapes, rules + [(".*", jinit.zeros)], jax.random.key(5)))()
    np.testing.assert_array_equal(new3["params"]["a"]["kernel"], new["params"]["a"]["kernel"])
    pred = jinit.reinit(params, [(lambda path, leaf: leaf.ndim == 1, jinit.ones())], KEY)
    assert float(pred["params"]["a"]["bias"].sum()) == 32
    with pytest.raises(ValueError, match="matched no leaf"):
        jinit.reinit(params, {r"conv": jinit.zeros()}, KEY, strict=True)
    with pytest.raises(TypeError, match="pattern"):
        jinit.reinit(params, [(3, jinit.zeros())], KEY)


def test_reinit_nnx_state_matches_linen_paths():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(16, 32, rngs=rngs)
            self.layers = nnx.List([nnx.Linear(32, 32, rngs=rngs)])

    model = Net(nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    new = jinit.reinit(state, {r"kernel$": jinit.zeros()}, KEY, strict=True)
    nnx.update(model, new)
    assert float(jnp.abs(model.a.kernel[...]).sum()) == 0
    assert float(jnp.abs(model.layers[0].kernel[...]).sum()) == 0
    assert jinit.path_string((jax.tree_util.DictKey("a"), jax.tree_util.GetAttrKey("value"))) == "a"
    assert jinit.path_hash("params/a/kernel") == jinit.path_hash("params/a/kernel")
    k1 = jinit.path_key(KEY, "params/a/kernel")
    assert not np.array_equal(jax.random.key_data(k1), jax.random.key_data(KEY))


def _qr_operand_shapes(jaxpr):
    """Shapes of every QR operand in a jaxpr, sub-jaxprs (scan, map, pjit, ...) included."""
    shapes = []
    for e in jaxpr.eqns:
        if e.primitive.name in ("qr", "geqrf", "householder_product"):
            shapes += [v.aval.shape for v in e.invars]
        for p in e.params.values():
            sub = getattr(p, "jaxpr", p)
            if hasattr(sub, "eqns"):
                shapes += _qr_operand_shapes(sub)
    return shapes


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU workaround only")
def test_orthogonal_under_vmap_factorises_one_matrix_at_a_time_on_cpu():
    """jaxlib's batched CPU QR can deadlock when two run in one program (2 cores, jax 0.10.2:
    a vmapped init of several orthogonal kernels idled forever). jinit factorises one matrix
    per LAPACK call on CPU, also under (nested) vmap and for conv batches; numbers unchanged."""
    init = jinit.orthogonal()
    keys = jax.random.split(jax.random.key(0), (2, 3))
    jp = jax.make_jaxpr(jax.vmap(jax.vmap(lambda k: init(k, (3, 3, 16, 8)))))(keys)
    shapes = _qr_operand_shapes(jp.jaxpr)
    assert shapes and all(len(s) == 2 for s in shapes), shapes
    got = jax.jit(jax.vmap(jax.vmap(lambda k: init(k, (16, 8)))))(keys)
    want = jax.random.orthogonal(keys[1, 2], 16, (), jnp.float32, 8)
    assert jnp.array_equal(got[1, 2], want)
    batch = jinit.conv_orthogonal()(keys[0, 0], (3, 3, 8, 8))
    assert batch.shape == (3, 3, 8, 8)


def test_eager_orthogonal_compiles_one_program_per_shape():
    """An eager draw is one program compiled per (shape, dtype), reused for every key and scale:
    a model's eager init compiles as many orthogonal programs as it has distinct kernel shapes,
    not one per layer (what makes LSUV's default, eager orthonormal draw cheap)."""
    from jinit._src.initializers import _orthogonal

    shape = (13, 5)  # drawn eagerly by no other test
    size = _orthogonal.jit._cache_size
    before = size()
    first = jinit.orthogonal()(jax.random.key(1), shape)
    assert size() == before + 1
    second = jinit.orthogonal(2.0)(jax.random.key(2), shape)
    third = jinit.lsuv_ready_orthogonal()(jax.random.key(3), shape)
    assert size() == before + 1
    np.testing.assert_allclose(second.T @ second, 4.0 * np.eye(5), atol=1e-5)
    assert jnp.array_equal(first, jax.random.orthogonal(jax.random.key(1), 13, (), jnp.float32, 5))
    assert jnp.array_equal(third, jax.random.orthogonal(jax.random.key(3), 13, (), jnp.float32, 5))
