"""Parity with ``jax.nn.initializers`` for every argument form JAX accepts.

The table below carries over every case of JAX's own initializer tests
(``tests/nn_test.py`` of github.com/jax-ml/jax at commit cec06d1, 2026-08-08: ``ALL_SHAPES``,
``INITIALIZER_RECS``, ``testInitializer``, ``testInitializerProvider``,
``testInitializerOrthogonalZeroSize``, ``testVarianceScalingMultiAxis``,
``testVarianceScalingBatchAxis``, ``testVarianceScalingError``) and runs it against jinit,
written here in jinit's own code. The facts checked: shape and canonical dtype for every
shape/dtype (dtype at call time and at build time), orthonormality of zero-size and small
orthogonal matrices, multi-axis and batch-axis fans, a ValueError for 1-D shapes with the
default axes. On top, the numbers are compared with JAX's for the same key:

* float32 and complex64: bitwise equal (``assert_array_equal``);
* bfloat16 and float16: JAX samples in 16 bits, jinit in float32 and casts once, so jinit's
  value is bitwise JAX's float32 value cast to the 16-bit dtype (a draw that the cast would put
  on a truncation bound is moved inside; none occurs at these shapes and keys).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit

J = jax.nn.initializers
KEY = jax.random.PRNGKey(0)  # JAX's test uses a legacy raw key; jinit accepts both kinds
ALL_SHAPES = [(), (2,), (2, 2), (2, 3), (3, 2), (2, 3, 4), (4, 3, 2), (2, 3, 4, 5)]
FLOATING = (jnp.bfloat16, jnp.float16, jnp.float32)  # float64 needs x64: test_initializers
INEXACT = (*FLOATING, jnp.complex64)


def _shapes(min_dims=2, max_dims=4):
    return [s for s in ALL_SHAPES if min_dims <= len(s) <= max_dims]


def _vs(*args, **kwargs):
    return lambda m, dtype=None: m.variance_scaling(*args, dtype=dtype, **kwargs)


# (id, build(module, dtype=None), dtypes, shapes): JAX's INITIALIZER_RECS row by row.
RECS = [
    ("uniform", lambda m, dtype=None: m.uniform(dtype=dtype), FLOATING, _shapes(1)),
    ("normal", lambda m, dtype=None: m.normal(dtype=dtype), INEXACT, _shapes(1)),
    ("he_normal", lambda m, dtype=None: m.he_normal(dtype=dtype), INEXACT, _shapes()),
    ("he_uniform", lambda m, dtype=None: m.he_uniform(dtype=dtype), INEXACT, _shapes()),
    ("glorot_normal", lambda m, dtype=None: m.glorot_normal(dtype=dtype), INEXACT, _shapes()),
    ("glorot_uniform", lambda m, dtype=None: m.glorot_uniform(dtype=dtype), INEXACT, _shapes()),
    ("lecun_normal", lambda m, dtype=None: m.lecun_normal(dtype=dtype), INEXACT, _shapes()),
    ("lecun_uniform", lambda m, dtype=None: m.lecun_uniform(dtype=dtype), INEXACT, _shapes()),
    ("orthogonal", lambda m, dtype=None: m.orthogonal(dtype=dtype), FLOATING, _shapes(2, 2)),
    ("truncated_normal", lambda m, dtype=None: m.truncated_normal(dtype=dtype), FLOATING,
     _shapes(1)),
    ("delta_orthogonal", lambda m, dtype=None: m.delta_orthogonal(dtype=dtype), FLOATING,
     _shapes(4, 4)),
    ("vs_fan_geo_avg", _vs(1, "fan_geo_avg", "normal"), FLOATING, _shapes()),
    ("vs_fan_in_in0_out_empty", _vs(1, "fan_in", "normal", in_axis=[0], out_axis=[]),
     FLOATING, _shapes(1)),
    ("vs_fan_in_in_empty_out0", _vs(1, "fan_in", "normal", in_axis=[], out_axis=[0]),
     FLOATING, _shapes(1)),
    ("vs_fan_in_both_empty", _vs(1, "fan_in", "normal", in_axis=[], out_axis=[]), FLOATING,
     _shapes(0)),
]  # fmt: skip


def _compare(ours, theirs_f32, dtype):
    ours, theirs_f32 = np.asarray(ours), np.asarray(theirs_f32)
    if jnp.dtype(dtype).itemsize == 2:  # jinit: the float32 numbers, cast once
        theirs_f32 = np.asarray(jnp.asarray(theirs_f32).astype(dtype))
    np.testing.assert_array_equal(ours, theirs_f32)


@pytest.mark.parametrize("rid,build,dtypes,shapes", RECS, ids=[r[0] for r in RECS])
def test_jax_initializer_table(rid, build, dtypes, shapes):
    # testInitializer (dtype at call time) and testInitializerProvider (dtype at build time):
    # shape and canonical dtype for every shape x dtype, by tracing (jax.eval_shape) ...
    every = [(shape, dtype) for shape in shapes for dtype in dtypes]
    traced = jax.eval_shape(
        lambda k: [(build(jinit)(k, s, d), build(jinit, d)(k, s)) for s, d in every], KEY
    )
    for (shape, dtype), pair in zip(every, traced, strict=True):
        want = jax.ShapeDtypeStruct(shape, jax.dtypes.canonicalize_dtype(dtype))
        assert pair == (want, want), (shape, dtype)
    # ... and the numbers against JAX's (largest shape in float32 and complex64, smallest in
    # bfloat16; float16 takes the same cast path), in one jitted
    # program (eager calls would compile every op per shape and dtype).
    cases = [(shapes[-1], jnp.float32), (shapes[0], jnp.bfloat16)]
    if jnp.complex64 in dtypes:
        cases.append((shapes[-1], jnp.complex64))

    @jax.jit
    def run(key):
        out = []
        for shape, dtype in cases:
            ref = jnp.complex64 if dtype == jnp.complex64 else jnp.float32
            out.append((build(jinit, dtype)(key, shape), build(J)(key, shape, ref)))
        return out

    for (shape, dtype), (ours, theirs) in zip(cases, run(KEY), strict=True):
        assert ours.shape == shape and ours.dtype == dtype
        _compare(ours, theirs, dtype)


@pytest.mark.parametrize("rid,build,dtypes,shapes", RECS[:3], ids=[r[0] for r in RECS[:3]])
def test_jax_initializer_table_eager(rid, build, dtypes, shapes):
    # The eager path (one fused program per configuration) gives the same numbers as JAX too.
    for shape in shapes[:2]:
        _compare(build(jinit)(KEY, shape, jnp.float32), build(J)(KEY, shape, jnp.float32),
                 jnp.float32)  # fmt: skip


def test_orthogonal_zero_size_and_small():
    # testInitializerOrthogonalZeroSize: rows, cols in 0..3; rows <= cols gives W W^T = I,
    # cols <= rows gives W^T W = I (products in float32; 16-bit rounding ~1e-3).
    init = jinit.orthogonal()
    cases = [(r, c, d) for r in range(4) for c in range(4) for d in FLOATING]
    out = jax.jit(lambda k: [init(k, (r, c), d) for r, c, d in cases])(KEY)
    for (rows, cols, dtype), w in zip(cases, out, strict=True):
        assert w.shape == (rows, cols) and w.dtype == dtype
        tol = 1e-6 if dtype == jnp.float32 else 1e-2
        w = np.asarray(w.astype(jnp.float32), np.float64)
        if rows <= cols:
            np.testing.assert_allclose(w @ w.T, np.eye(rows), atol=tol)
        if cols <= rows:
            np.testing.assert_allclose(w.T @ w, np.eye(cols), atol=tol)


def test_variance_scaling_multi_axis_and_batch_axis():
    # testVarianceScalingMultiAxis / testVarianceScalingBatchAxis, plus the fans they imply.
    shape = (2, 3, 4, 5)
    multi = dict(in_axis=(0, 1), out_axis=(-2, -1))
    batch = dict(in_axis=0, out_axis=(2, 3), batch_axis=1)
    assert jinit.compute_fans(shape, **multi) == (6.0, 20.0)
    assert jinit.compute_fans(shape, **batch) == (2.0, 20.0)
    for axes in (multi, batch):
        ours = jinit.variance_scaling(1.0, "fan_avg", "truncated_normal", **axes)(KEY, shape)
        theirs = J.variance_scaling(1.0, "fan_avg", "truncated_normal", **axes)(KEY, shape)
        assert ours.shape == shape
        np.testing.assert_array_equal(ours, theirs)


def test_variance_scaling_error_for_1d_default_axes():
    # testVarianceScalingError: JAX raises ValueError naming the 1-D rank; so does jinit.
    init = jinit.variance_scaling(1.0, "fan_avg", "truncated_normal")
    with pytest.raises(ValueError, match="rank 1"):
        init(KEY, (5,))
    with pytest.raises(ValueError):
        J.variance_scaling(1.0, "fan_avg", "truncated_normal")(KEY, (5,))


# Every axis form JAX accepts: ints, negative ints, tuples, lists, empty sequences.
AXES = [
    dict(),
    dict(in_axis=0, out_axis=3),
    dict(in_axis=-4, out_axis=-1),
    dict(in_axis=(0, 1), out_axis=(2, 3)),
    dict(in_axis=[0, 1], out_axis=[-2, -1]),
    dict(in_axis=(-3,), out_axis=(-1,), batch_axis=(0,)),
    dict(in_axis=0, out_axis=(2, 3), batch_axis=1),
    dict(in_axis=0, out_axis=-1, batch_axis=[1, 2]),
    dict(in_axis=[], out_axis=-1),
    dict(in_axis=2, out_axis=()),
    dict(in_axis=[], out_axis=[]),
    dict(in_axis=(), out_axis=(), batch_axis=()),
]
# Every mode and distribution once (the axis arithmetic is shared by all of them).
MODES_DISTS = [("fan_in", "truncated_normal"), ("fan_out", "normal"), ("fan_avg", "uniform"),
               ("fan_geo_avg", "normal")]  # fmt: skip


@pytest.mark.parametrize("axes", AXES, ids=[str(a) for a in AXES])
def test_axis_forms_bitwise(axes):
    shape = (2, 3, 4, 5)
    assert jinit.compute_fans(shape, **axes) == _jax_fans(shape, **axes)

    dtypes = (jnp.float32, jnp.complex64) if len(axes) == 3 else (jnp.float32,)

    @jax.jit
    def run(key):
        out = []
        for mode, dist in MODES_DISTS:
            for dtype in dtypes:
                out.append((
                    jinit.variance_scaling(1.3, mode, dist, **axes)(key, shape, dtype),
                    J.variance_scaling(1.3, mode, dist, **axes)(key, shape, dtype),
                ))  # fmt: skip
        return out

    for ours, theirs in run(KEY):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def _jax_fans(shape, in_axis=-2, out_axis=-1, batch_axis=()):
    # JAX's private helper, the reference for the fan arithmetic.
    from jax._src.nn.initializers import _compute_fans

    return tuple(float(f) for f in _compute_fans(shape, in_axis, out_axis, batch_axis))


@functools.cache
def _complex_rows():
    return [r for r in RECS if jnp.complex64 in r[2]]


def test_complex_kernels_have_unit_circular_variance():
    # Complex draws: E|w|^2 = scale / fan for variance scaling (as JAX), 1e-2^2 for normal().
    shape = (256, 512)
    for rid, build, _, _ in _complex_rows():
        w = np.asarray(build(jinit)(jax.random.key(3), shape, jnp.complex64))
        assert w.dtype == np.complex64
        fan_in, fan_out = jinit.compute_fans(shape)
        want = {"normal": 1e-4, "he_normal": 2 / fan_in, "he_uniform": 2 / fan_in,
                "lecun_normal": 1 / fan_in, "lecun_uniform": 1 / fan_in,
                "glorot_normal": 2 / (fan_in + fan_out),
                "glorot_uniform": 2 / (fan_in + fan_out)}[rid]  # fmt: skip
        np.testing.assert_allclose(np.mean(np.abs(w) ** 2), want, rtol=0.03)
