"""Every random sampler against its exact distribution: support, moments and goodness of fit.

In float32, bfloat16 and float16; at 2^26 draws; at extreme parameters (bounds far in the
tail, tiny and huge std). Goodness of fit: scipy.stats Kolmogorov-Smirnov, fixed keys,
alpha = 1e-3. Moments: within 6 standard errors of the exact values. Where JAX's own sampler
falls short (far tails, a float32 draw rounded to 16 bits landing on a bound), the test shows
it next to jinit's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

import jinit

ALPHA = 1e-3  # KS significance level
N = 2**20  # draws per (sampler, dtype)
DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
TN = jinit.TRUNCATED_NORMAL_STD
FAN = 256  # fan_in of the variance-scaling rows: shape (FAN, N // FAN)


def _vs_std(scale):
    return math.sqrt(scale / FAN)


# (id, initializer, scipy distribution of the samples, (low, high, low_is_closed))
SAMPLERS = [
    ("normal", jinit.normal(0.5), st.norm(0, 0.5), (-np.inf, np.inf, False)),
    ("normal_mean", jinit.normal(0.2, mean=-1.0), st.norm(-1.0, 0.2), (-np.inf, np.inf, False)),
    ("truncated_normal", jinit.truncated_normal(0.5), st.truncnorm(-2, 2, scale=0.5),
     (-1.0, 1.0, False)),
    ("truncated_normal_asym", jinit.truncated_normal(0.5, None, -1.0, 3.0),
     st.truncnorm(-1, 3, scale=0.5), (-0.5, 1.5, False)),
    ("uniform", jinit.uniform(0.5), st.uniform(0, 0.5), (0.0, 0.5, True)),
    ("uniform_minmax", jinit.uniform(minval=-0.3, maxval=0.7), st.uniform(-0.3, 1.0),
     (-0.3, 0.7, True)),
    ("vs_truncated_normal", jinit.variance_scaling(2.0, "fan_in", "truncated_normal"),
     st.truncnorm(-2, 2, scale=_vs_std(2.0) / TN),
     (-2 * _vs_std(2.0) / TN, 2 * _vs_std(2.0) / TN, False)),
    ("vs_normal", jinit.variance_scaling(2.0, "fan_in", "normal"), st.norm(0, _vs_std(2.0)),
     (-np.inf, np.inf, False)),
    ("vs_uniform", jinit.variance_scaling(2.0, "fan_in", "uniform"),
     st.uniform(-math.sqrt(3) * _vs_std(2.0), 2 * math.sqrt(3) * _vs_std(2.0)),
     (-math.sqrt(3) * _vs_std(2.0), math.sqrt(3) * _vs_std(2.0), True)),
]  # fmt: skip


def _shape(sid, n):
    return (FAN, n // FAN) if sid.startswith("vs_") else (n,)


def _assert_support(x, lo, hi, closed_low, what):
    assert np.all(np.isfinite(x)), what
    assert x.max() < hi, f"{what}: a draw {x.max()!r} is on or beyond the upper bound {hi!r}"
    if closed_low:
        assert x.min() >= lo, f"{what}: a draw {x.min()!r} is below the lower bound {lo!r}"
    else:
        assert x.min() > lo, f"{what}: a draw {x.min()!r} is on or below the lower bound {lo!r}"


def _assert_moments(x, dist, what):
    mean, var, kurt = (float(v) for v in dist.stats(moments="mvk"))
    n = x.size
    se_mean = math.sqrt(var / n)
    se_var = var * math.sqrt((kurt + 2) / n)
    assert abs(x.mean() - mean) < 6 * se_mean, (what, x.mean(), mean)
    assert abs(x.var() - var) < 6 * se_var, (what, x.var(), var)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("sid,init,dist,support", SAMPLERS, ids=[s[0] for s in SAMPLERS])
def test_support_moments_and_ks(sid, init, dist, support, dtype):
    x = init(jax.random.key(11), _shape(sid, N), dtype)
    assert x.dtype == dtype
    x = np.asarray(x.astype(jnp.float32), np.float64).ravel()
    _assert_support(x, *support, sid)
    _assert_moments(x, dist, sid)
    assert _ks_pvalue(x, dist, dtype, support[:2]) > ALPHA, sid


def _ks_pvalue(x, dist, dtype, support=(-np.inf, np.inf)):
    """KS p-value of ``x`` against ``dist``, rounded to ``dtype`` when it is a 16-bit float.

    A 16-bit draw ``v`` stands for the cell of values that round to it, so the exact CDF of the
    rounded distribution at ``v`` is ``F`` at the midpoint between ``v`` and the next
    representable value (and just below ``v``, ``F`` at the previous midpoint); the extreme
    cells inside a bounded support reach the bound (draws rounding onto it are moved inside).
    """
    if dtype == jnp.float32:
        return st.kstest(x, dist.cdf).pvalue
    vals, counts = np.unique(x, return_counts=True)
    v = jnp.asarray(vals, dtype)
    up = np.asarray(jnp.nextafter(v, jnp.asarray(np.inf, dtype)).astype(jnp.float32), np.float64)
    dn = np.asarray(jnp.nextafter(v, jnp.asarray(-np.inf, dtype)).astype(jnp.float32), np.float64)
    lo, hi = support
    mid_up = np.where(up >= hi, hi, (vals + up) / 2)
    mid_dn = np.where(dn <= lo, lo, (vals + dn) / 2)
    ecdf = np.cumsum(counts) / x.size
    d_hi = np.abs(ecdf - dist.cdf(mid_up))
    d_lo = np.abs(ecdf - counts / x.size - dist.cdf(mid_dn))
    return st.kstwo.sf(max(d_hi.max(), d_lo.max()), x.size)


def _cell_probability(dist, lo, hi):
    return dist.cdf(hi) - dist.cdf(lo)


# its time is running large arrays, not compiling: XLA's full optimization runs it ~2x faster
@pytest.mark.xla_optimized
def test_2_26_float16_truncated_normal_no_draw_on_the_bound():
    # 2^26 draws of truncated_normal(1.0) in float16 (sampled in float32, cast once). The
    # largest float16 below 2 is 2 - 2^-10; every float32 draw in [2 - 1.5 * 2^-10, 2) rounds
    # to it (those in [2 - 2^-11, 2) would round to 2, ON the bound, and are moved inside), so
    # its count is binomial with the exact probability of that cell.
    n = 2**26
    dist = st.truncnorm(-2, 2)

    @jax.jit
    def stats(key):
        x = jinit.truncated_normal(1.0)(key, (n,), jnp.float16).astype(jnp.float32)
        top = jnp.asarray(2 - 2**-10, jnp.float32)
        return x.min(), x.max(), x.mean(), x.var(), jnp.sum(x == top), jnp.sum(x == -top)

    lo, hi, mean, var, n_top, n_bottom = (np.asarray(v) for v in stats(jax.random.key(3)))
    assert -2 < lo and hi < 2
    assert hi == 2 - 2**-10 and lo == -(2 - 2**-10)
    p = _cell_probability(dist, 2 - 1.5 * 2**-10, 2)
    expect, sd = n * p, math.sqrt(n * p * (1 - p))
    for count in (n_top, n_bottom):  # no pile-up: the cell holds what the distribution puts there
        assert abs(int(count) - expect) < 6 * sd, (int(count), expect)
    assert abs(float(mean)) < 6 * math.sqrt(dist.var() / n)
    assert abs(float(var) - dist.var()) < 6 * dist.var() * math.sqrt((dist.stats("k") + 2) / n)


@pytest.mark.parametrize(
    "make,lo,hi,closed_low",
    [
        (lambda: jinit.truncated_normal(1.0), -2.0, 2.0, False),
        (lambda: jinit.uniform(1.0), 0.0, 1.0, True),
        (lambda: jinit.variance_scaling(1.0, "fan_in", "uniform"), -math.sqrt(3), math.sqrt(3),
         True),
        (lambda: jinit.variance_scaling(1.0, "fan_in", "truncated_normal"), -2 / TN, 2 / TN,
         False),
    ],
    ids=["truncated_normal", "uniform", "vs_uniform", "vs_truncated_normal"],
)  # fmt: skip
def test_bfloat16_rounding_never_reaches_a_bound(make, lo, hi, closed_low):
    # A float32 draw rounded to bfloat16 (8-bit mantissa) lands on the bound for about one draw
    # in a few hundred near it; jinit moves those draws to the nearest bfloat16 inside.
    key, shape = jax.random.key(5), (1, 2**22)  # fan_in = 1
    ours = np.asarray(make()(key, shape, jnp.bfloat16).astype(jnp.float32), np.float64)
    _assert_support(ours, lo, hi, closed_low, "jinit bfloat16")
    naive = np.asarray(
        make()(key, shape, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32), np.float64
    )
    assert np.sum(naive >= np.float32(hi)) > 0  # the corner is real: a plain cast leaves support
    # Only the draws that would have left the support changed.
    inside = (naive < np.float32(hi)) & ((naive >= lo) if closed_low else (naive > lo))
    np.testing.assert_array_equal(ours[inside], naive[inside])


FAR_BOUNDS = [(3.0, 4.0), (5.0, 6.0), (8.0, 9.0), (-9.0, -8.0), (20.0, 21.0), (2.0, 30.0),
              (0.0, 0.1), (-1.0, 10.0)]  # fmt: skip


@pytest.mark.parametrize("lower,upper", FAR_BOUNDS, ids=[f"{a:g}_{b:g}" for a, b in FAR_BOUNDS])
def test_truncated_normal_far_in_the_tail(lower, upper):
    n = 2**17
    dist = st.truncnorm(lower, upper)
    x = jinit.truncated_normal(1.0, None, lower, upper)(jax.random.key(8), (n,), jnp.float32)
    x = np.asarray(x, np.float64)
    _assert_support(x, lower, upper, False, f"({lower}, {upper})")
    assert st.kstest(x, dist.cdf).pvalue > ALPHA
    _assert_moments(x, dist, f"({lower}, {upper})")
    if lower >= 5 or upper <= -5:
        # JAX inverts erf in float32: beyond ~5 std its draws collapse onto a handful of values.
        theirs = np.asarray(jax.random.truncated_normal(jax.random.key(8), lower, upper, (n,)))
        assert len(np.unique(theirs)) < 20 and len(np.unique(x)) > 10_000
        assert st.kstest(theirs.astype(np.float64), dist.cdf).pvalue < 1e-10


def test_far_tail_in_16_bit_dtypes():
    for dtype in (jnp.bfloat16, jnp.float16):
        x = jinit.truncated_normal(1.0, None, 5.0, 6.0)(jax.random.key(2), (2**16,), dtype)
        x = np.asarray(x.astype(jnp.float32), np.float64)
        _assert_support(x, 5.0, 6.0, False, jnp.dtype(dtype).name)
        assert abs(x.mean() - st.truncnorm(5, 6).mean()) < 0.01


def test_tiny_and_huge_std():
    key = jax.random.key(4)
    for std, dtype in [(1e-30, jnp.float32), (1e30, jnp.float32), (1e-30, jnp.bfloat16),
                       (1e-4, jnp.float16), (1e3, jnp.float16)]:  # fmt: skip
        x = np.asarray(jinit.normal(std)(key, (2**16,), dtype).astype(jnp.float32), np.float64)
        assert np.all(np.isfinite(x)), (std, dtype)
        assert abs(x.std() / std - 1) < 0.02, (std, dtype, x.std())
        t = jinit.truncated_normal(std)(key, (2**16,), dtype).astype(jnp.float32)
        t = np.asarray(t, np.float64)
        assert abs(t.std() / (std * TN) - 1) < 0.02, (std, dtype)
        assert np.abs(t).max() < 2 * std
    # What a dtype cannot hold is refused, naming the argument and the dtype.
    for init, dtype in [(jinit.normal(1e5), jnp.float16), (jinit.normal(1e-6), jnp.float16),
                        (jinit.truncated_normal(2e38), jnp.float32),
                        (jinit.normal(1e-39), jnp.bfloat16),
                        (jinit.variance_scaling(1e12, "fan_in", "normal"), jnp.float16),
                        (jinit.uniform(minval=-1e6, maxval=1e6), jnp.float16)]:  # fmt: skip
        with pytest.raises(ValueError, match=jnp.dtype(dtype).name):
            init(key, (4, 4), dtype)


def test_scale_checks_concrete_arrays_and_pass_traced_ones():
    # A concrete JAX array is checked like a Python number ...
    with pytest.raises(ValueError, match="scale must be > 0"):
        jinit.variance_scaling(jnp.array(-1.0), "fan_in", "normal")
    # ... a traced one cannot be, and is used as given (documented): the caller owns it.
    f = jax.jit(lambda s: jinit.variance_scaling(s, "fan_in", "normal")(jax.random.key(0), (4, 4)))
    np.testing.assert_allclose(f(jnp.array(4.0)), 2 * f(jnp.array(1.0)), rtol=1e-6)


def test_key_check_is_static_under_jit_and_vmap():
    init = jinit.he_normal()
    keys = jax.random.split(jax.random.key(1), 3)
    batched = jax.vmap(lambda k: init(k, (4, 4)))(keys)
    np.testing.assert_array_equal(batched[1], init(keys[1], (4, 4)))
    np.testing.assert_array_equal(jax.jit(lambda k: init(k, (4, 4)))(keys[0]), batched[0])
    legacy = jax.random.PRNGKey(0)  # raw uint32[2] keys are still keys
    assert init(legacy, (4, 4)).shape == (4, 4)
    with pytest.raises(ValueError, match="key"):
        jax.jit(lambda k: init(k, (4, 4)))(jnp.zeros((3,), jnp.uint32))
