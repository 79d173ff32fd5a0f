"""Core initializers: constants, plain distributions, variance scaling and orthogonal.

Every public function here is a *factory*: it captures hyper-parameters, validates them at
once (the error names the argument, the bad value and the valid choices), and returns a pure

    init(key, shape, dtype=None, out_sharding=None) -> jax.Array

drop-in for Flax's ``kernel_init=`` / ``embedding_init=`` and for ``jax.nn.initializers``.
Inside ``init`` the dtype is canonicalised first; random initializers reject integer and bool
dtypes with a ``TypeError`` naming the dtype; 16-bit floats are sampled (and QR-factorised) in
float32 and cast once; the requested dtype always wins over the dtype of Python/NumPy scale
arguments. Shape arithmetic is static Python, so ``jit``, ``vmap`` and ``eval_shape`` work.

Where a name matches ``jax.nn.initializers``, the arguments, defaults and -- for float32,
float64 and complex dtypes -- the sampled numbers are identical to JAX's for the same key.
(For bfloat16/float16 JAX samples directly in 16 bits; jinit samples in float32 and casts, so
those numbers differ by design.)

Which "std" each function means (the classic trap, field case 3):

* ``normal(stddev)``: the std of the samples.
* ``truncated_normal(stddev)``: the std of the *underlying* normal, before truncation at
  ``lower*stddev``/``upper*stddev`` (JAX, Keras ``TruncatedNormal`` and Haiku convention); the
  samples have std ``0.8796*stddev`` for the default +-2 bounds.
* ``variance_scaling(scale, ...)``: ``scale/fan`` is the variance of the samples *after*
  truncation (divides by 0.87962566103423978, or 0.95311164380491208 for complex).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import fans as _fans
from jinit._src.checks import (
    check_choice,
    check_int,
    check_key,
    check_number,
    check_shape,
    is_concrete_array,
    is_static_scalar,
)

Array = jax.Array
DTypeLike = Any
Shape = Sequence[int]

#: Std of a standard normal truncated to (-2, 2): sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)).
TRUNCATED_NORMAL_STD = 0.87962566103423978
#: Std of a complex standard normal whose modulus is truncated to 2.
COMPLEX_TRUNCATED_NORMAL_STD = 0.95311164380491208

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
#: Largest |draw| / std of each variance-scaling distribution (normal: see _NORMAL_REACH).
_VS_REACH = {"truncated_normal": 2 / TRUNCATED_NORMAL_STD, "uniform": math.sqrt(3), "normal": 8.0}
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")


@runtime_checkable
class Initializer(Protocol):
    """The contract every jinit initializer satisfies (same as ``jax.nn.initializers``).

    ``init(key, shape, dtype=None, out_sharding=None)`` is a pure function of its arguments:
    the same key, shape and dtype give the same array, eagerly and under ``jit``/``vmap``.
    """

    def __call__(
        self, key: Array, shape: Shape, dtype: DTypeLike | None = None, out_sharding: Any = None
    ) -> Array: ...


# --------------------------------------------------------------------------------------------
# Dtype helpers (shared by every initializer module); argument checks live in jinit._src.checks.
# --------------------------------------------------------------------------------------------


def canonicalize_dtype(dtype: DTypeLike | None) -> np.dtype:
    """The dtype an initializer returns: the requested one, or JAX's default float.

    Strings such as ``'bfloat16'`` are accepted; float64 becomes float32 unless x64 is enabled
    (JAX's canonicalisation).
    """
    if dtype is None:
        return np.dtype(jax.dtypes.canonicalize_dtype(float))
    try:
        d = jnp.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"not a valid dtype: {dtype!r}") from e
    return np.dtype(jax.dtypes.canonicalize_dtype(d))


def check_random_dtype(fn: str, dtype: np.dtype, *, complex_ok: bool = True) -> None:
    """Random initializers need a floating (or complex) dtype; raise TypeError otherwise."""
    if jnp.issubdtype(dtype, jnp.floating):
        return
    if jnp.issubdtype(dtype, jnp.complexfloating):
        if complex_ok:
            return
        raise TypeError(
            f"{fn}: dtype {dtype.name} is not supported; this initializer needs a real floating "
            "dtype (e.g. float32)"
        )
    raise TypeError(
        f"{fn}: dtype {dtype.name} is not supported; random initializers need a floating or "
        "complex dtype (e.g. float32, bfloat16, complex64)"
    )


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """Dtype to sample and do arithmetic in: float32 for 16-bit (and 8-bit) floats."""
    if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4:
        return np.dtype(np.float32)
    return dtype


def canonicalize_shape(fn: str, shape: Shape, dtype: np.dtype | None = None) -> tuple[int, ...]:
    """A tuple of static non-negative ints; with ``dtype``, also refuses arrays that cannot fit.

    Raises TypeError for traced or non-int shapes, ValueError for negative dimensions or (given
    ``dtype``) a byte size, counted in the compute dtype, beyond the device's memory (see
    :func:`jinit._src.checks.check_shape`).
    """
    itemsize = None if dtype is None else compute_dtype(np.dtype(dtype)).itemsize
    return check_shape(fn, "shape", shape, itemsize)


def _is_empty(shape: tuple[int, ...]) -> bool:
    return any(d == 0 for d in shape)


def fused(static_argnums: tuple[int, ...]):
    """Decorator adding ``fn.call``: run ``fn`` as one jitted program when called eagerly.

    Eager calls (e.g. a Flax ``init`` outside ``jit``) then compile one program per static
    configuration instead of dispatching op by op -- as ``jax.random.orthogonal`` does --
    and hyper-parameters such as a scale are traced arguments, so changing them never
    recompiles. When the key is a tracer (inside the user's ``jit``/``vmap``/``eval_shape``)
    ``fn`` runs inline, so the traced graph is the same as ``jax.nn.initializers``' and XLA
    fuses it the same way. ``fn`` takes a keyword ``eager`` (True in the jitted version) that
    enables :func:`_sample_barrier`; together this keeps jinit bit-identical to JAX both
    eagerly and under ``jit``.
    """

    def wrap(fn):
        jitted = jax.jit(functools.partial(fn, eager=True), static_argnums=static_argnums)

        def call(*args):
            if isinstance(args[0], jax.core.Tracer):
                return fn(*args)
            return jitted(*args)

        fn.jit, fn.call = jitted, call
        return fn

    return wrap


def _sample_barrier(x, eager: bool):
    """In the eager program, stops XLA fusing a draw with the scaling that follows.

    JAX's eager initializers run ``jax.random.*`` as its own compiled program and multiply
    afterwards; fusing the two can change the last bit. The barrier keeps the eager result
    bit-identical to ``jax.nn.initializers``.
    """
    return jax.lax.optimization_barrier(x) if eager else x


def _no_sharding(fn: str, out_sharding: Any) -> None:
    if out_sharding is not None:
        raise NotImplementedError(
            f"{fn}: out_sharding is not supported (as in jax.nn.initializers)"
        )


def cast_inside(x, lo, hi, dtype, *, closed_low: bool = False):
    """Casts ``x`` (computed in float32) to ``dtype`` without leaving the support ``(lo, hi)``.

    Rounding a float32 draw to a 16-bit float can land it exactly on a bound (or beyond it, when
    the bound is not representable): a truncated normal would then produce ``2*stddev`` and a
    ``U[0, s)`` draw ``s``. Such draws are moved to the nearest representable value inside the
    support, i.e. they are rounded towards the inside; draws already inside are unchanged. For
    float32 and wider dtypes (no rounding) ``x`` is returned as is. ``lo``/``hi`` may be traced.
    ``closed_low`` keeps ``lo`` itself allowed (``U[lo, hi)``).
    """
    dtype = np.dtype(dtype)
    if dtype == x.dtype or not jnp.issubdtype(dtype, jnp.floating):
        return x.astype(dtype)
    cd = x.dtype
    y = x.astype(dtype)
    hi_c = jnp.asarray(hi, cd)
    hi_d = hi_c.astype(dtype)
    hi_d = jnp.where(hi_d.astype(cd) >= hi_c, jnp.nextafter(hi_d, jnp.array(-jnp.inf, dtype)), hi_d)
    y = jnp.minimum(y, hi_d)
    if lo is not None:
        lo_c = jnp.asarray(lo, cd)
        lo_d = lo_c.astype(dtype)
        below = lo_d.astype(cd) < lo_c if closed_low else lo_d.astype(cd) <= lo_c
        lo_d = jnp.where(below, jnp.nextafter(lo_d, jnp.array(jnp.inf, dtype)), lo_d)
        y = jnp.maximum(y, lo_d)
    return y


#: A normal draw beyond this many std has probability < 1e-15: the widest a sample reaches.
_NORMAL_REACH = 8.0


def check_representable(fn: str, arg: str, std: Any, reach: float, dtype: np.dtype) -> None:
    """Refuses a static std whose draws ``dtype`` cannot represent (overflow or underflow).

    ``std`` is the scale of the draws and ``reach`` how many ``std`` the largest draw can be
    (8 for an unbounded normal, the bound for truncated/uniform draws). Raises ``ValueError``
    when ``reach * std`` exceeds ``finfo(dtype).max`` (draws would be inf) or ``std`` is below
    ``finfo(dtype).tiny``, the smallest normal number (draws would be subnormal or 0, losing
    the distribution). Traced values are not checked.
    """
    if not (is_static_scalar(std) or is_concrete_array(std)) or np.size(std) != 1:
        return
    v = float(np.asarray(std))
    fi = jnp.finfo(np.array(0, dtype).real.dtype)
    if abs(v) * reach > float(fi.max) or (0 < abs(v) < float(fi.tiny)):
        raise ValueError(
            f"{fn}: {arg}={v!r} cannot be sampled in {np.dtype(dtype).name}: draws span about "
            f"{reach:g} x {v:.3g}, outside the dtype's normal range [{float(fi.tiny):.3g}, "
            f"{float(fi.max):.3g}]; sample in float32 (or rescale) instead"
        )


# --------------------------------------------------------------------------------------------
# Constants.
# --------------------------------------------------------------------------------------------


def _full(shape, value, dtype, out_sharding):
    if out_sharding is None:
        return jnp.full(shape, value, dtype=dtype)
    return jnp.full(shape, value, dtype=dtype, device=out_sharding)


def zeros(
    key: Array | None = None,
    shape: Shape | None = None,
    dtype: DTypeLike | None = None,
    out_sharding: Any = None,
) -> Any:
    """Zeros; usable as a factory (``zeros()``) and directly as an initializer (JAX style).

    ``zeros()`` or ``zeros(dtype=...)`` (no ``shape``) builds an initializer, like every other
    jinit name; ``zeros(key, shape, dtype)`` returns the array directly, exactly like
    ``jax.nn.initializers.zeros``, so both ``bias_init=jinit.zeros`` and
    ``bias_init=jinit.zeros()`` work. The key is ignored. Any dtype is accepted (integer and
    bool zeros are legitimate for counters and masks).

    Args:
      key: ignored (accepted for the initializer signature).
      shape: the output shape; when ``None`` a factory call is assumed.
      dtype: the output dtype (default: JAX's default float).
      out_sharding: optional sharding of the result, forwarded to ``jnp.full``.

    Returns:
      An initializer (factory call) or an array of zeros.
    """
    if shape is None:
        return constant(0, dtype=dtype)
    dtype = canonicalize_dtype(dtype)
    return _full(canonicalize_shape("zeros", shape, dtype), 0, dtype, out_sharding)


def ones(
    key: Array | None = None,
    shape: Shape | None = None,
    dtype: DTypeLike | None = None,
    out_sharding: Any = None,
) -> Any:
    """Ones; usable as a factory (``ones()``) and directly as an initializer (JAX style).

    See :func:`zeros` for the dual calling convention.

    Args:
      key: ignored.
      shape: the output shape; when ``None`` a factory call is assumed.
      dtype: the output dtype (default: JAX's default float).
      out_sharding: optional sharding of the result.

    Returns:
      An initializer (factory call) or an array of ones.
    """
    if shape is None:
        return constant(1, dtype=dtype)
    dtype = canonicalize_dtype(dtype)
    return _full(canonicalize_shape("ones", shape, dtype), 1, dtype, out_sharding)


def constant(value: Any, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer that fills arrays with ``value`` (JAX ``constant``).

    The result has exactly the requested dtype (a float64 NumPy ``value`` does not upcast);
    integer and bool dtypes are accepted.

    Args:
      value: the fill value (scalar, or an array broadcastable to the shape).
      dtype: the initializer's default dtype.

    Returns:
      An initializer ``init(key, shape, dtype=dtype, out_sharding=None)``.
    """

    def init(key, shape, dtype=dtype, out_sharding=None):
        del key
        dtype = canonicalize_dtype(dtype)
        shape = canonicalize_shape("constant", shape, dtype)
        return _full(shape, value, dtype, out_sharding)

    return init


# --------------------------------------------------------------------------------------------
# Plain distributions.
# --------------------------------------------------------------------------------------------


def uniform(
    scale: Any = 1e-2,
    dtype: DTypeLike | None = None,
    *,
    minval: Any = None,
    maxval: Any = None,
) -> Initializer:
    r"""Builds a uniform initializer on :math:`[\text{minval}, \text{maxval})`.

    With only ``scale`` this is ``jax.nn.initializers.uniform`` (same numbers): samples are
    :math:`U[0, \text{scale})`, mean ``scale/2``, variance ``scale**2/12``. ``minval`` and
    ``maxval`` (keyword-only) override the interval: ``minval`` defaults to 0 and ``maxval`` to
    ``scale``, so Keras's ``RandomUniform(-0.05, 0.05)`` (the Keras 'uniform' embedding default)
    is ``uniform(minval=-0.05, maxval=0.05)``, equivalently :func:`uniform_symmetric` ``(0.05)``.
    Variance of :math:`U[a, b)` is :math:`(b-a)^2/12` (:math:`a^2/3` for :math:`U[-a, a)`).

    Args:
      scale: upper bound when ``maxval`` is not given (JAX semantics).
      dtype: the initializer's default dtype (real floating only).
      minval: lower bound (inclusive); default 0.
      maxval: upper bound (exclusive); default ``scale``.

    Returns:
      An initializer.

    Raises:
      ValueError: at build time, if ``scale <= 0`` (with no ``minval``/``maxval``), a bound is
        not finite, or ``minval >= maxval``; at call time for bounds the dtype cannot hold, a
        bad key or a shape that does not fit in memory. 16-bit draws stay in
        ``[minval, maxval)`` (see :func:`cast_inside`).
      TypeError: at call time, for integer, bool or complex dtypes.

    References:
      Keras ``RandomUniform`` (keras.io/api/layers/initializers); JAX ``jax.nn.initializers``.
    """
    check_number("uniform", "scale", scale, positive=minval is None and maxval is None)
    if minval is not None:
        check_number("uniform", "minval", minval)
    if maxval is not None:
        check_number("uniform", "maxval", maxval)
    plain = minval is None and maxval is None
    lo = 0.0 if minval is None else minval
    hi = scale if maxval is None else maxval
    if is_static_scalar(lo) and is_static_scalar(hi) and not float(lo) < float(hi):
        raise ValueError(f"uniform: need minval < maxval, got minval={lo!r}, maxval={hi!r}")

    def init(key, shape, dtype=dtype, out_sharding=None):
        dtype = canonicalize_dtype(dtype)
        check_random_dtype("uniform", dtype, complex_ok=False)
        check_key("uniform", "key", key)
        shape = canonicalize_shape("uniform", shape, dtype)
        for arg, v in (("minval", lo), ("maxval", hi)):
            check_representable("uniform", arg, v, 1.0, dtype)
        if out_sharding is None:
            return _uniform.call(key, scale, lo, hi, shape, dtype, plain)
        return _uniform(key, scale, lo, hi, shape, dtype, plain, out_sharding)

    return init


@fused(static_argnums=(4, 5, 6, 7))
def _uniform(key, scale, lo, hi, shape, dtype, plain, out_sharding=None, *, eager=False):
    cd = compute_dtype(dtype)
    if plain:
        x = _sample_barrier(jax.random.uniform(key, shape, cd, out_sharding=out_sharding), eager)
        x = x * jnp.array(scale, cd)
    else:
        x = jax.random.uniform(
            key, shape, cd, jnp.array(lo, cd), jnp.array(hi, cd), out_sharding=out_sharding
        )
    return cast_inside(x, lo, hi, dtype, closed_low=True)


def uniform_symmetric(bound: Any = 0.05, dtype: DTypeLike | None = None) -> Initializer:
    r"""Builds a symmetric uniform initializer :math:`U[-\text{bound}, \text{bound})`.

    Variance :math:`\text{bound}^2/3`. ``uniform_symmetric(0.05)`` is Keras's
    ``RandomUniform()`` default (Keras Embedding's ``'uniform'``).

    Args:
      bound: half-width of the interval (> 0).
      dtype: the initializer's default dtype.

    Returns:
      An initializer.

    Raises:
      ValueError: if ``bound <= 0``.
    """
    check_number("uniform_symmetric", "bound", bound, positive=True)
    return uniform(dtype=dtype, minval=-bound, maxval=bound)


def normal(stddev: Any = 1e-2, dtype: DTypeLike | None = None, *, mean: Any = 0.0) -> Initializer:
    r"""Builds a normal initializer :math:`\mathcal{N}(\text{mean}, \text{stddev}^2)`.

    ``stddev`` is the std of the samples. With the default ``mean=0`` this is
    ``jax.nn.initializers.normal`` (same numbers); complex dtypes give a circular complex normal
    with :math:`E|w|^2 = \text{stddev}^2`, as in JAX.

    Args:
      stddev: standard deviation (> 0; for zeros use :func:`zeros`).
      dtype: the initializer's default dtype.
      mean: mean of the distribution (keyword-only; Keras ``RandomNormal``/PyTorch ``normal_``).

    Returns:
      An initializer.

    Raises:
      ValueError: if ``stddev`` is not > 0 or not finite (Python numbers and concrete arrays;
        a traced ``stddev`` is used as given), or, at call time, if the dtype cannot represent
        draws of this std (see :func:`check_representable`), the key is not one PRNG key, or
        the shape has a negative dimension or does not fit in device memory.
    """
    check_number("normal", "stddev", stddev, positive=True)  # zeros: use zeros()
    check_number("normal", "mean", mean)
    add_mean = not (is_static_scalar(mean) and float(mean) == 0.0)

    def init(key, shape, dtype=dtype, out_sharding=None):
        dtype = canonicalize_dtype(dtype)
        check_random_dtype("normal", dtype)
        check_key("normal", "key", key)
        shape = canonicalize_shape("normal", shape, dtype)
        check_representable("normal", "stddev", stddev, _NORMAL_REACH, dtype)
        if out_sharding is None:
            return _normal.call(key, stddev, mean, shape, dtype, add_mean)
        return _normal(key, stddev, mean, shape, dtype, add_mean, out_sharding)

    return init


@fused(static_argnums=(3, 4, 5, 6))
def _normal(key, stddev, mean, shape, dtype, add_mean, out_sharding=None, *, eager=False):
    cd = compute_dtype(dtype)
    x = _sample_barrier(jax.random.normal(key, shape, cd, out_sharding=out_sharding), eager)
    x = x * jnp.array(stddev, cd)
    if add_mean:
        x = x + jnp.array(mean, cd)
    return x.astype(dtype)


def truncated_normal(
    stddev: Any = 1e-2,
    dtype: DTypeLike | None = None,
    lower: Any = -2.0,
    upper: Any = 2.0,
) -> Initializer:
    r"""Builds a truncated-normal initializer (JAX convention: ``stddev`` is *pre*-truncation).

    Samples are :math:`\text{stddev}\cdot z` with :math:`z \sim \mathcal{N}(0, 1)` truncated to
    :math:`(\text{lower}, \text{upper})`, so all values lie strictly inside
    :math:`(\text{lower}\cdot\text{stddev}, \text{upper}\cdot\text{stddev})` and, for the
    default bounds, the sample std is :math:`0.87962566\,\text{stddev}` -- *not* ``stddev``.
    This is the convention of ``jax.nn.initializers.truncated_normal`` (same numbers), Keras
    ``TruncatedNormal`` and Haiku ``TruncatedNormal``. For a post-truncation std use
    ``variance_scaling`` or divide ``stddev`` by :data:`TRUNCATED_NORMAL_STD`. For PyTorch's
    ``trunc_normal_`` (absolute bounds) see ``jinit.torch_trunc_normal``.

    Args:
      stddev: std of the underlying (untruncated) normal, > 0.
      dtype: the initializer's default dtype (real floating only).
      lower: lower truncation bound, in units of ``stddev``.
      upper: upper truncation bound, in units of ``stddev``.

    Returns:
      An initializer.

    Both bounds on one side of 0 (e.g. ``lower=5, upper=6``): the tail is sampled by
    :func:`tail_truncated_normal` (exact where ``jax.random.truncated_normal`` collapses onto a
    few values); otherwise the numbers are JAX's. 16-bit draws never land on a bound (see
    :func:`cast_inside`).

    Raises:
      ValueError: if ``stddev <= 0``, a bound is not finite, ``lower >= upper``, or at call
        time for an unrepresentable std, a bad key or a shape that does not fit in memory.

    References:
      TF issue #25564 (two meanings of "stddev"); JAX ``jax.nn.initializers.truncated_normal``.
    """
    check_number("truncated_normal", "stddev", stddev, positive=True)
    check_number("truncated_normal", "lower", lower)
    check_number("truncated_normal", "upper", upper)
    if is_static_scalar(lower) and is_static_scalar(upper) and not float(lower) < float(upper):
        raise ValueError(
            f"truncated_normal: need lower < upper, got lower={lower!r}, upper={upper!r}"
        )
    # Bounds on one side of 0: JAX's erf-based inverse CDF loses all precision there (at
    # lower=8 every draw is the same float32); sample the tail in log space instead.
    static = is_static_scalar(lower) and is_static_scalar(upper)
    tail = (float(lower), float(upper)) if static and (lower >= 0 or upper <= 0) else None
    reach = max(abs(float(lower)), abs(float(upper))) if static else 2.0

    def init(key, shape, dtype=dtype, out_sharding=None):
        dtype = canonicalize_dtype(dtype)
        check_random_dtype("truncated_normal", dtype, complex_ok=False)
        check_key("truncated_normal", "key", key)
        shape = canonicalize_shape("truncated_normal", shape, dtype)
        check_representable("truncated_normal", "stddev", stddev, reach, dtype)
        if out_sharding is None:
            return _truncated_normal.call(key, stddev, lower, upper, shape, dtype, tail)
        return _truncated_normal(key, stddev, lower, upper, shape, dtype, tail, out_sharding)

    return init


@fused(static_argnums=(4, 5, 6, 7))
def _truncated_normal(
    key, stddev, lower, upper, shape, dtype, tail, out_sharding=None, *, eager=False
):
    cd = compute_dtype(dtype)
    if tail is not None:
        x = tail_truncated_normal(key, *tail, shape, cd)
    else:
        x = jax.random.truncated_normal(key, lower, upper, shape, cd, out_sharding=out_sharding)
    s = jnp.array(stddev, cd)
    return cast_inside(_sample_barrier(x, eager) * s, lower * s, upper * s, dtype)


def tail_truncated_normal(key, lower: float, upper: float, shape, dtype):
    r"""Standard normal truncated to ``(lower, upper)`` with both bounds on one side of 0.

    Inverse-CDF sampling on the survival function in log space: with
    :math:`\log Q(x) = \log\Phi(-x)` (``log_ndtr``, accurate far into the tail), a uniform
    :math:`v \in (0, 1]` maps to :math:`t = \log Q(\ell) + \log(1 - v(1 - Q(u)/Q(\ell)))` and
    :math:`x = \log Q^{-1}(t)`, started from ``-ndtri(exp(t))`` (or the asymptote
    :math:`x^2 pprox s - \log s`, :math:`s = -2t - \log 2\pi`, where ``exp(t)`` underflows)
    and refined by 3 Newton steps on :math:`\log Q` (derivative :math:`-\phi(x)/Q(x)`). Exact
    up to float rounding for any bounds (tested at ``(8, 9)`` and ``(20, 21)``); draws lie
    strictly inside the bounds. ``upper <= 0`` is the mirror image.
    """
    if upper <= 0:
        return -tail_truncated_normal(key, -upper, -lower, shape, dtype)
    log_ndtr = jax.scipy.special.log_ndtr
    lo, hi = jnp.asarray(lower, dtype), jnp.asarray(upper, dtype)
    lq_lo, lq_hi = log_ndtr(-lo), log_ndtr(-hi)
    v = 1 - jax.random.uniform(key, shape, dtype)  # (0, 1]
    t = lq_lo + jnp.log1p(v * jnp.expm1(lq_hi - lq_lo))
    x0 = -jax.scipy.special.ndtri(jnp.exp(t))
    big = -2 * t - jnp.log(jnp.asarray(2 * np.pi, dtype))
    asym = jnp.sqrt(jnp.maximum(big - jnp.log(jnp.maximum(big, 1)), 0))
    x = jnp.clip(jnp.where(jnp.isfinite(x0), x0, asym), lo, hi)
    half_log_2pi = jnp.asarray(0.5 * np.log(2 * np.pi), dtype)
    for _ in range(3):
        lq = log_ndtr(-x)
        slope = -jnp.exp(-0.5 * x * x - half_log_2pi - lq)  # d log Q / dx
        x = jnp.clip(x - (lq - t) / slope, lo, hi)
    inside_lo = jnp.nextafter(lo, jnp.asarray(jnp.inf, dtype))
    inside_hi = jnp.nextafter(hi, jnp.asarray(-jnp.inf, dtype))
    return jnp.clip(x, inside_lo, inside_hi)


# --------------------------------------------------------------------------------------------
# Variance scaling.
# --------------------------------------------------------------------------------------------


def _complex_uniform(key, shape, dtype):
    """Uniform on a disk in the complex plane, zero mean, unit variance (as JAX)."""
    key_r, key_theta = jax.random.split(key)
    real_dtype = np.array(0, dtype).real.dtype
    r = jnp.sqrt(2 * jax.random.uniform(key_r, shape, real_dtype)).astype(dtype)
    theta = 2 * np.pi * jax.random.uniform(key_theta, shape, real_dtype).astype(dtype)
    return r * jnp.exp(1j * theta)


def _complex_truncated_normal(key, upper, shape, dtype):
    """Circular complex normal (unit variance before truncation), modulus truncated to ``upper``."""
    key_r, key_theta = jax.random.split(key)
    real_dtype = np.array(0, dtype).real.dtype
    t = (1 - jnp.exp(jnp.array(-(upper**2), dtype))) * jax.random.uniform(
        key_r, shape, real_dtype
    ).astype(dtype)
    r = jnp.sqrt(-jnp.log(1 - t))
    theta = 2 * np.pi * jax.random.uniform(key_theta, shape, real_dtype).astype(dtype)
    return r * jnp.exp(1j * theta)


def sample_with_variance(key, shape, dtype, variance, distribution, out_sharding=None):
    """Zero-mean samples of the given *post-truncation* variance; arithmetic as in JAX.

    ``dtype`` must already be canonical and inexact. 16-bit floats are computed in float32.
    The multiplier (e.g. ``sqrt(variance) / 0.8796...``) is computed with NumPy in the compute
    dtype -- IEEE-rounded exactly as JAX's eager scalar ops -- and the draw is scaled inside one
    jitted program, so the result is bit-identical to ``jax.nn.initializers``.
    """
    cd = compute_dtype(dtype)
    if (
        out_sharding is not None
        or not jnp.issubdtype(cd, jnp.floating)  # complex: op by op, as in JAX
        or isinstance(key, jax.core.Tracer)  # traced: JAX's exact op sequence, fused by XLA
    ):
        return _sample_with_variance(key, shape, dtype, variance, distribution, out_sharding)
    try:
        var = np.asarray(variance, dtype=cd)
    except (TypeError, jax.errors.TracerArrayConversionError):  # a traced scale
        return _sample_with_variance(key, shape, dtype, variance, distribution)
    if distribution == "truncated_normal":
        mult = np.sqrt(var) / np.asarray(TRUNCATED_NORMAL_STD, cd)
    elif distribution == "normal":
        mult = np.sqrt(var)
    else:
        mult = np.sqrt(np.asarray(3, cd) * var)
    return _scaled_draw.jit(key, mult, shape, dtype, distribution)


@fused(static_argnums=(2, 3, 4))
def _scaled_draw(key, mult, shape, dtype, distribution, *, eager=False):
    cd = compute_dtype(dtype)
    if distribution == "truncated_normal":
        x = jax.random.truncated_normal(key, -2, 2, shape, cd)
    elif distribution == "normal":
        x = jax.random.normal(key, shape, cd)
    else:
        x = jax.random.uniform(key, shape, cd, -1)
    return _cast_variance_draw(_sample_barrier(x, eager) * mult, mult, distribution, dtype)


def _cast_variance_draw(x, mult, distribution, dtype):
    """Casts a variance-scaling draw, keeping 16-bit draws inside (-2m, 2m) or [-m, m)."""
    if distribution == "truncated_normal":
        return cast_inside(x, -2 * mult, 2 * mult, dtype)
    if distribution == "uniform":
        return cast_inside(x, -mult, mult, dtype, closed_low=True)
    return x.astype(dtype)


def _sample_with_variance(key, shape, dtype, variance, distribution, out_sharding=None):
    cd = compute_dtype(dtype)
    var = jnp.array(variance, dtype=cd)
    real = jnp.issubdtype(cd, jnp.floating)
    if distribution == "truncated_normal":
        if real:
            stddev = jnp.sqrt(var) / jnp.array(TRUNCATED_NORMAL_STD, cd)
            x = jax.random.truncated_normal(key, -2, 2, shape, cd, out_sharding=out_sharding)
            return _cast_variance_draw(x * stddev, stddev, distribution, dtype)
        else:
            stddev = jnp.sqrt(var) / jnp.array(COMPLEX_TRUNCATED_NORMAL_STD, cd)
            x = _complex_truncated_normal(key, 2, shape, cd) * stddev
    elif distribution == "normal":
        x = jax.random.normal(key, shape, cd, out_sharding=out_sharding) * jnp.sqrt(var)
    elif distribution == "uniform":
        if real:
            a = jnp.sqrt(3 * var)
            x = jax.random.uniform(key, shape, cd, -1, out_sharding=out_sharding)
            return _cast_variance_draw(x * a, a, distribution, dtype)
        else:
            x = _complex_uniform(key, shape, cd) * jnp.sqrt(var)
    else:  # validated at build time
        raise ValueError(f"invalid distribution {distribution!r}")
    return x.astype(dtype)


def fan_denominator(mode: str, fan_in: float, fan_out: float) -> float:
    """The ``n`` of ``variance = scale / n`` for each mode."""
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2
    return (fan_in * fan_out) ** 0.5


def variance_scaling(
    scale: Any,
    mode: Literal["fan_in", "fan_out", "fan_avg", "fan_geo_avg"],
    distribution: Literal["truncated_normal", "normal", "uniform"],
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: DTypeLike | None = None,
    *,
    groups: int = 1,
    name: str = "variance_scaling",
) -> Initializer:
    r"""Builds an initializer whose samples have variance ``scale / n`` (JAX/Keras semantics).

  .. math::
     \operatorname{Var}[w] = \frac{\text{scale}}{n}, \qquad
     n = \begin{cases} \text{fan\_in} & \text{mode = fan\_in} \\
     \text{fan\_out} & \text{fan\_out} \\ (\text{fan\_in} + \text{fan\_out})/2 & \text{fan\_avg}
     \\ \sqrt{\text{fan\_in}\cdot\text{fan\_out}} & \text{fan\_geo\_avg} \end{cases}

  The variance is that of the samples actually produced:

  * ``'truncated_normal'``: :math:`\sigma z`, :math:`z` standard normal truncated to
    :math:`(-2, 2)`, :math:`\sigma = \sqrt{\text{scale}/n}/0.87962566103423978` (so
    :math:`|w| < 2\sigma`); complex: modulus truncated, constant 0.95311164380491208.
  * ``'normal'``: :math:`\mathcal{N}(0, \text{scale}/n)`.
  * ``'uniform'``: :math:`U(-a, a)` with :math:`a = \sqrt{3\,\text{scale}/n}` (because
    :math:`\operatorname{Var}[U(-a,a)] = a^2/3`); complex: uniform on a disk.

  Fans come from :func:`jinit.compute_fans` (every axis not in ``in_axis``, ``out_axis`` or
  ``batch_axis`` is receptive field; ``groups`` divides the output size). Same numbers as
  ``jax.nn.initializers.variance_scaling`` for float32/float64/complex. As in JAX, an axis
  in both ``in_axis`` and ``out_axis`` counts in both (Flax's embedding init, ``out_axis=0``
  with the default ``in_axis=-2``, relies on it): moving only ``in_axis`` to ``-1`` leaves
  ``out_axis=-1`` on the same axis; pass both for a transposed ``(out, in)`` layout.

  Args:
    scale: variance multiplier (> 0), e.g. 2.0 for He, 1.0 for LeCun/Glorot. A NumPy float64
      never changes the output dtype.
    mode: one of ``'fan_in'``, ``'fan_out'``, ``'fan_avg'``, ``'fan_geo_avg'``.
    distribution: one of ``'truncated_normal'``, ``'normal'``, ``'uniform'``.
    in_axis: axis or axes of the input dimension.
    out_axis: axis or axes of the output dimension.
    batch_axis: axis or axes to ignore.
    dtype: the initializer's default dtype.
    groups: convolution groups (keyword-only); see :func:`jinit.compute_fans`.
    name: the name used in error messages (keyword-only).

  Returns:
    An initializer.

  Raises:
    ValueError: at build time for an unknown ``mode``/``distribution``, ``scale`` not finite
      or ``<= 0`` (also a concrete array; a traced scale is used as given), repeated axes or
      ``groups < 1``; at call time for a rank < 2 shape with default axes (the message names
      the rank), out-of-range axes, ``groups`` not dividing the output size, a key that is not
      one PRNG key, a shape that does not fit in device memory, or a std the dtype cannot
      represent. Empty ``in_axis``/``out_axis`` sequences are valid (as in JAX).
    TypeError: at call time for integer or bool dtypes.

  References:
    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS 2010. He et al., "Delving Deep into Rectifiers: Surpassing
    Human-Level Performance on ImageNet Classification", arXiv:1502.01852, 2015. LeCun et al.,
    "Efficient BackProp", 1998.
  """
    check_number(name, "scale", scale, positive=True)
    check_choice(name, "mode", mode, MODES)
    check_choice(name, "distribution", distribution, DISTRIBUTIONS)
    # Empty sequences are valid (as in JAX): the fan is then the receptive field alone.
    _fans.check_axes_spec("in_axis", in_axis)
    _fans.check_axes_spec("out_axis", out_axis)
    _fans.check_axes_spec("batch_axis", batch_axis)
    groups = check_int(name, "groups", groups)

    def init(key, shape, dtype=dtype, out_sharding=None):
        dtype = canonicalize_dtype(dtype)
        check_random_dtype(name, dtype)
        check_key(name, "key", key)
        shape = canonicalize_shape(name, shape, dtype)
        try:
            fan_in, fan_out = _fans.compute_fans(shape, in_axis, out_axis, batch_axis, groups)
        except ZeroDivisionError:
            return jnp.zeros(shape, dtype)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        if _is_empty(shape):
            return jnp.zeros(shape, dtype)
        variance = scale / fan_denominator(mode, fan_in, fan_out)
        if is_static_scalar(variance) or is_concrete_array(variance):
            reach = _VS_REACH[distribution]
            std = math.sqrt(float(np.asarray(variance).real))
            check_representable(name, f"scale={scale!r} gives std", std, reach, dtype)
        return sample_with_variance(key, shape, dtype, variance, distribution, out_sharding)

    return init


def glorot_uniform(
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: DTypeLike | None = None,
    *,
    groups: int = 1,
) -> Initializer:
    r"""Glorot/Xavier uniform: :math:`U(-a, a)`, :math:`a = \sqrt{6/(n_\text{in}+n_\text{out})}`.

    ``variance_scaling(1.0, 'fan_avg', 'uniform', ...)``; variance
    :math:`2/(\text{fan\_in}+\text{fan\_out})`. Same numbers as JAX's ``glorot_uniform``. For a
    fused QKV kernel ``(d, 3, d)`` pass ``batch_axis=(1,)`` so it matches three separate
    ``(d, d)`` kernels; for depthwise/grouped convs pass ``groups``.

    Args:
      in_axis: axis or axes of the input dimension.
      out_axis: axis or axes of the output dimension.
      batch_axis: axis or axes to ignore.
      dtype: the initializer's default dtype.
      groups: convolution groups (divides fan_out).

    Returns:
      An initializer.

    Raises:
      ValueError, TypeError: as :func:`variance_scaling`.

    References:
      Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
      networks", AISTATS 2010.
    """
    return variance_scaling(
        1.0,
        "fan_avg",
        "uniform",
        in_axis,
        out_axis,
        batch_axis,
        dtype,
        groups=groups,
        name="glorot_uniform",
    )


def glorot_normal(
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: DTypeLike | None = None,
    *,
    groups: int = 1,
) -> Initializer:
    r"""Glorot/Xavier normal: truncated normal of variance :math:`2/(n_\text{in}+n_\text{out})`.

    ``variance_scaling(1.0, 'fan_avg', 'truncated_normal', ...)`` (JAX/Keras convention: the
    *truncated* normal). PyTorch's ``xavier_normal_`` is untruncated: ``jinit.torch_xavier_normal``.

    Args:
      in_axis: axis or axes of the input dimension.
      out_axis: axis or axes of the output dimension.
      batch_axis: axis or axes to ignore.
      dtype: the initializer's default dtype.
      groups: convolution groups (divides fan_out).

    Returns:
      An initializer.

    Raises:
      ValueError, TypeError: as :func:`variance_scaling`.

    References:
      Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
      networks", AISTATS 2010.
    """
    return variance_scaling(
        1.0,
        "fan_avg",
        "truncated_normal",
        in_axis,
        out_axis,
        batch_axis,
        dtype,
        groups=groups,
        name="glorot_normal",
    )


def lecun_uniform(
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: DTypeLike | None = None,
    *,
    groups: int = 1,
) -> Initializer:
    r"""LeCun uniform: :math:`U(-a, a)`, :math:`a = \sqrt{3/\text{fan\_in}}` (variance 1/fan_in).

    Args:
      in_axis: axis or axes of the input dimension.
      out_axis: axis or axes of the output dimension.
      batch_axis: axis or axes to ignore.
      dtype: the initializer's default dtype.
      groups: convolution groups (divides fan_out).

    Returns:
      An initializer.

    Raises:
      ValueError, TypeError: as :func:`variance_scaling`.

    References:
      LeCun et al., "Efficient BackProp", 1998. Klambauer et al., "Self-Normalizing Neural
      Networks", arXiv:1706.02515, 2017.
    """
    return variance_scaling(
        1.0,
        "fan_in",
        "uniform",
        in_axis,
        out_axis,
        batch_axis,
        dtype,
        groups=groups,
        name="lecun_uniform",
    )


def lecun_normal(
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: DTypeLike | None = None,
    *,
    groups: int = 1,
) -> Initializer:
    r"""LeCun normal: truncated normal with post-truncation variance :math:`1/\text{fan\_in}`.

    Flax's default kernel initializer and the one SELU networks need. Attention projections:
    query ``(d_model, heads, head_dim)`` -> ``lecun_normal(in_axis=0, out_axis=(1, 2))``;
    output ``(heads, head_dim, d_model)`` -> ``lecun_normal(in_axis=(0, 1), out_axis=2)``.

    Args:
      in_axis: axis or axes of the input dimension.
      out_axis: axis or axes of the output dimension.
      batch_axis: axis or axes to ignore.
      dtype: the initializer's default dtype.
      groups: convolution groups (divides fan_out).

    Returns:
      An initializer.

    Raises:
      ValueError, TypeError: as :func:`variance_scaling`.

    References:
      LeCun et al., "Efficient BackProp", 1998. Klambauer et al., "Self-Normalizing Neural
      Networks", arXiv:1706.02515, 2017.
    """
    return variance_scaling(
        1.0,
        "fan_in",
        "truncated_normal",
        in_axis,
        out_axis,
        batch_axis,
        dtype,
        groups=groups,
        name="lecun_normal",
    )


def _he_scale(fn: str, negative_slope: Any, gain: Any) -> Any:
    check_number(fn, "negative_slope", negative_slope, nonnegative=True)
    if gain is None:
        return 2.0 / (1.0 + float(negative_slope) ** 2)
    check_number(fn, "gain", gain, positive=True)
    if float(negative_slope) != 0.0:
        raise ValueError(
            f"{fn}: pass either negative_slope={negative_slope!r} (the leaky-ReLU slope a, gain "
            f"sqrt(2/(1+a^2))) or gain={gain!r} (the std multiplier), not both"
        )
    return float(gain) ** 2


def he_uniform(
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: DTypeLike | None = None,
    *,
    negative_slope: float = 0.0,
    mode: str = "fan_in",
    gain: float | None = None,
    groups: int = 1,
) -> Initializer:
    r"""He/Kaiming uniform: :math:`U(-b, b)`, :math:`b = g\sqrt{3/n}`, :math:`g^2 = 2/(1+a^2)`.

    ``variance_scaling(2/(1+a^2), mode, 'uniform', ...)`` with ``a = negative_slope`` (leaky-ReLU
    slope; ``a=0`` is ReLU and gives JAX's ``he_uniform`` numbers). ``negative_slope`` is *not*
    a gain: passing ``gain`` sets :math:`g` directly (variance :math:`g^2/n`) and cannot be
    combined with a non-zero slope. Slopes > 1 are allowed: PyTorch's default Linear/Conv
    weight init is ``he_uniform(negative_slope=sqrt(5))`` = :math:`U(\pm 1/\sqrt{\text{fan\_in}})`.

    Args:
      in_axis: axis or axes of the input dimension.
      out_axis: axis or axes of the output dimension.
      batch_axis: axis or axes to ignore.
      dtype: the initializer's default dtype.
      negative_slope: leaky-ReLU slope ``a`` (keyword-only).
      mode: ``'fan_in'`` (preserve forward variance, default) or ``'fan_out'`` (backward), or
        any variance-scaling mode.
      gain: explicit std multiplier :math:`g` (keyword-only), exclusive with ``negative_slope``.
      groups: convolution groups (divides fan_out).

    Returns:
      An initializer.

    Raises:
      ValueError: for an unknown mode, both ``gain`` and a non-zero slope, and as
        :func:`variance_scaling`.

    References:
      He et al., "Delving Deep into Rectifiers: Surpassing Human-Level Performance on ImageNet
      Classification", arXiv:1502.01852, 2015.
    """
    scale = _he_scale("he_uniform", negative_slope, gain)
    return variance_scaling(
        scale,
        mode,
        "uniform",
        in_axis,
        out_axis,
        batch_axis,
        dtype,
        groups=groups,
        name="he_uniform",
    )


def he_normal(
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: DTypeLike | None = None,
    *,
    negative_slope: float = 0.0,
    mode: str = "fan_in",
    gain: float | None = None,
    groups: int = 1,
) -> Initializer:
    r"""He/Kaiming normal: truncated normal, post-truncation variance :math:`2/((1+a^2)\,n)`.

    ``variance_scaling(2/(1+a^2), mode, 'truncated_normal', ...)`` (JAX/Keras: truncated;
    PyTorch's ``kaiming_normal_`` is untruncated, see ``jinit.torch_kaiming_normal``). ``a =
    negative_slope``; ``gain`` sets the std multiplier directly (exclusive with a slope).

    Args:
      in_axis: axis or axes of the input dimension.
      out_axis: axis or axes of the output dimension.
      batch_axis: axis or axes to ignore.
      dtype: the initializer's default dtype.
      negative_slope: leaky-ReLU slope ``a`` (keyword-only).
      mode: variance-scaling mode, default ``'fan_in'``.
      gain: explicit std multiplier (keyword-only), exclusive with ``negative_slope``.
      groups: convolution groups (divides fan_out).

    Returns:
      An initializer.

    Raises:
      ValueError: for an unknown mode, both ``gain`` and a non-zero slope, and as
        :func:`variance_scaling`.

    Examples:
      >>> import jax, jinit
      >>> w = jinit.he_normal()(jax.random.key(0), (3, 3, 64, 128))  # fan_in = 3*3*64 = 576
      >>> w.shape, w.dtype
      ((3, 3, 64, 128), dtype('float32'))
      >>> round(float(w.std()) / (2 / 576) ** 0.5, 2)  # std sqrt(2 / fan_in)
      1.0

    References:
      He et al., "Delving Deep into Rectifiers: Surpassing Human-Level Performance on ImageNet
      Classification", arXiv:1502.01852, 2015.
    """
    scale = _he_scale("he_normal", negative_slope, gain)
    return variance_scaling(
        scale,
        mode,
        "truncated_normal",
        in_axis,
        out_axis,
        batch_axis,
        dtype,
        groups=groups,
        name="he_normal",
    )


xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal


# --------------------------------------------------------------------------------------------
# Orthogonal family.
# --------------------------------------------------------------------------------------------


ORTHOGONAL_METHODS = ("qr", "cholesky_qr2", "auto")
#: "auto" switches to CholeskyQR2 for real matrices at least this tall (rows/cols) ...
_CHOL_ASPECT = 4
#: ... and at least this large (rows * cols); below it, JAX's Householder QR is used.
_CHOL_MIN_SIZE = 1 << 16


def _cholesky_qr2(z):
    """Q of the QR factorisation with positive diag(R), by two CholeskyQR passes.

    Q = Z R^-1 with R = chol(Z^T Z)^T; the second pass restores orthogonality to float
    precision. Numerically safe when cond(Z)^2 * eps << 1, which holds for Gaussian matrices
    with rows >= 4 cols (cond <= ~3). Matmul-bound; needs no LAPACK QR.
    """
    for _ in range(2):
        g = jnp.einsum("...ki,...kj->...ij", z, z, precision=jax.lax.Precision.HIGHEST)
        chol = jnp.linalg.cholesky(g)
        zt = jax.scipy.linalg.solve_triangular(chol, jnp.swapaxes(z, -1, -2), lower=True)
        z = jnp.swapaxes(zt, -1, -2)
    return z


def haar_orthogonal(key, n_rows, n_cols, batch, dtype):
    """``jax.random.orthogonal(key, n_rows, batch, dtype, n_cols)``, bit for bit, without
    batched LAPACK calls on CPU.

    The same Gaussian draw, Householder QR and sign fix (Mezzadri 2007) as JAX. On CPU, jaxlib's
    batched QR kernel splits its batch over the XLA intra-op thread pool and blocks a pool thread
    while it waits; two batched QRs in one program (several orthogonal kernels drawn under
    ``vmap`` or ``jit``) can then deadlock on a small machine (seen with jax 0.10.2 on 2 cores:
    the process idles forever). So on CPU the matrices are factorised one at a time
    (``lax.map``), also under ``vmap`` (``custom_vmap``); elsewhere the batched kernel is used.
    """
    big, small = max(n_rows, n_cols), min(n_rows, n_cols)
    z = jax.random.normal(key, (*batch, big, small), dtype)
    q = _signed_q(z)
    return q if n_rows >= n_cols else jnp.swapaxes(q, -1, -2)


def _signed_q_batched(z):
    q, r = jnp.linalg.qr(z)
    d = jnp.diagonal(r, 0, -2, -1)
    return q * jnp.expand_dims(jnp.sign(d), -2)


def _signed_q_one_by_one(z):
    if z.ndim == 2 or jax.default_backend() != "cpu" or z.size == 0:
        return _signed_q_batched(z)
    flat = z.reshape(-1, *z.shape[-2:])
    return jax.lax.map(_signed_q_batched, flat).reshape(z.shape)


@jax.custom_batching.custom_vmap
def _signed_q(z):
    return _signed_q_one_by_one(z)


@_signed_q.def_vmap
def _signed_q_vmap(axis_size, in_batched, z):
    del axis_size  # a batched z carries the vmapped axis first: one more batch axis
    return _signed_q(z), in_batched[0]  # _signed_q again, so that nested vmaps land here too


def _orthogonal_matrix(key, n_rows, n_cols, batch, cd, method="qr"):
    """Haar-random semi-orthogonal (n_rows, n_cols) matrices, computed in ``cd`` (never 16-bit).

    ``'qr'`` is ``jax.random.orthogonal`` (Householder QR of a Gaussian with the sign fix of
    Mezzadri 2007). ``'cholesky_qr2'`` factorises the *same* Gaussian draw with CholeskyQR2;
    since the QR factorisation with positive diag(R) is unique, it returns the same matrix up to
    float rounding (~1e-6 in float32). ``'auto'`` uses CholeskyQR2 for large, tall real
    matrices (where it is safe and much faster on CPU) and QR otherwise.
    """
    big, small = max(n_rows, n_cols), min(n_rows, n_cols)
    if method == "cholesky_qr2" and big < 2 * small:
        raise ValueError(
            f"orthogonal: method='cholesky_qr2' needs a tall (or wide) matrix, max(rows, cols) >= "
            f"2 * min(rows, cols), got {n_rows} x {n_cols}: CholeskyQR loses orthogonality on "
            "ill-conditioned near-square Gaussians; use method='qr' or 'auto'"
        )
    real = jnp.issubdtype(cd, jnp.floating)
    use_chol = real and (
        method == "cholesky_qr2"
        or (method == "auto" and big >= _CHOL_ASPECT * small and big * small >= _CHOL_MIN_SIZE)
    )
    if not use_chol:
        return haar_orthogonal(key, n_rows, n_cols, batch, cd)
    q = _normal_cholesky_qr2(key, (*batch, big, small), cd)
    return q if n_rows >= n_cols else jnp.swapaxes(q, -1, -2)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _normal_cholesky_qr2(key, shape, dtype):
    # The same Gaussian draw as jax.random.orthogonal, factorised by CholeskyQR2; jitted as
    # one program (as jax.random.orthogonal is), so eager calls are not dispatched op by op.
    return _cholesky_qr2(jax.random.normal(key, shape, dtype))


def orthogonal(
    scale: Any = 1.0,
    column_axis: int = -1,
    dtype: DTypeLike | None = None,
    *,
    per_gate: int = 1,
    method: Literal["qr", "cholesky_qr2", "auto"] = "qr",
) -> Initializer:
    r"""Builds a (semi-)orthogonal initializer (Saxe et al. 2014), same numbers as JAX.

    The kernel is viewed as a matrix :math:`M` of shape ``(prod(other axes), shape[column_axis])``
    (``column_axis`` moved last, the rest flattened in order) and :math:`M` is drawn from the Haar
    measure (QR of a Gaussian with the sign fix of Mezzadri 2007), times ``scale``:

    * ``rows >= cols`` (e.g. a ``(3, 3, 100, 100)`` HWIO conv, M is 900 x 100):
      :math:`M^T M = \text{scale}^2 I` (orthonormal columns);
    * ``rows < cols``: :math:`M M^T = \text{scale}^2 I` (orthonormal rows).

    The factorisation runs on the small side only (4608 x 512 for ``(3, 3, 512, 512)``, never
    4608 x 4608) and in float32 for 16-bit dtypes, whose result is cast once (QR has no 16-bit
    kernels). ``method='qr'`` (default) is JAX's Householder QR: bit-identical numbers to
    ``jax.nn.initializers.orthogonal``. ``'cholesky_qr2'`` factorises the *same* Gaussian draw
    by two CholeskyQR passes (matmul-bound); because the QR factorisation with positive
    ``diag(R)`` is unique it returns the same matrix up to float rounding (~1e-6). It is no
    faster than a healthy LAPACK (measured 160 ms vs 145 ms on ``(3, 3, 512, 512)``, one
    OpenBLAS thread) but avoids LAPACK QR, which a threaded OpenBLAS on an oversubscribed CPU
    can slow to ~1 s per call. ``'auto'`` uses CholeskyQR2 for real matrices with
    ``rows >= 4 * cols`` and ``rows * cols >= 65536`` (Gaussian condition number <= ~3, where
    it is as accurate as QR) and QR otherwise; ``'cholesky_qr2'`` itself refuses matrices
    with ``max(rows, cols) < 2 * min(rows, cols)``.

    ``per_gate=g`` splits the column axis into ``g`` equal blocks and draws each block
    independently: for a fused recurrent kernel ``(H, 4H)`` (Flax layout) every gate block
    ``W[:, kH:(k+1)H]`` is orthogonal and :math:`W W^T = 4 I`; for PyTorch's ``(4H, H)`` use
    ``column_axis=0``. Plain ``orthogonal()`` on a fused kernel only makes the whole matrix
    row-orthonormal (each gate block then has squared Frobenius norm H/4, not H).

    Args:
      scale: multiplier of the orthogonal matrix (the singular values equal ``scale``).
      column_axis: the axis whose entries index the columns of :math:`M`.
      dtype: the initializer's default dtype.
      per_gate: number of independent orthogonal blocks along ``column_axis`` (keyword-only).
    method: ``'qr'``, ``'cholesky_qr2'`` or ``'auto'`` (keyword-only), see above.

    Returns:
      An initializer.

    Raises:
      ValueError: at build time for an unknown ``method``; at call time for rank < 2 shapes
        (the message names the rank), an out-of-range ``column_axis``, or a column axis not
        divisible by ``per_gate``.
      TypeError: for integer or bool dtypes.
      NotImplementedError: if ``out_sharding`` is given (as JAX).

    References:
      Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in
      deep linear neural networks", arXiv:1312.6120, 2014. Mezzadri, "How to generate random
      matrices from the classical compact groups", arXiv:math-ph/0609050, 2007. Fukaya et al.,
      "CholeskyQR2: a simple and communication-avoiding algorithm for computing a tall-skinny
      QR factorization", 2014.
    """
    check_number("orthogonal", "scale", scale, positive=True)
    column_axis = check_int("orthogonal", "column_axis", column_axis, minimum=-(2**31))
    per_gate = check_int("orthogonal", "per_gate", per_gate)
    check_choice("orthogonal", "method", method, ORTHOGONAL_METHODS)
    name = "orthogonal"

    def init(key, shape, dtype=dtype, out_sharding=None):
        _no_sharding(name, out_sharding)
        dtype = canonicalize_dtype(dtype)
        check_random_dtype(name, dtype)
        check_key(name, "key", key)
        shape = canonicalize_shape(name, shape, dtype)
        if len(shape) < 2:
            raise ValueError(
                f"{name}: needs a shape with at least 2 dimensions, got rank {len(shape)} "
                f"(shape {shape}); for a diagonal/peephole vector use ones()"
            )
        (ca,) = _fans.normalize_axes("column_axis", column_axis, shape)
        if _is_empty(shape):
            return jnp.zeros(shape, dtype)
        if shape[ca] % per_gate:
            raise ValueError(
                f"{name}: per_gate={per_gate} does not divide the column axis (axis {ca}, size "
                f"{shape[ca]}) of shape {shape}"
            )
        return _orthogonal.call(key, scale, shape, dtype, ca, per_gate, method)

    return init


@fused(static_argnums=(2, 3, 4, 5, 6))
def _orthogonal(key, scale, shape, dtype, ca, per_gate, method, *, eager=False):
    n_cols = shape[ca]
    n_rows = math.prod(shape) // n_cols
    other = tuple(np.delete(np.array(shape), ca).tolist())
    cd = compute_dtype(dtype)
    if per_gate == 1:
        q = _orthogonal_matrix(key, n_rows, n_cols, (), cd, method)
    else:
        q = _orthogonal_matrix(key, n_rows, n_cols // per_gate, (per_gate,), cd, method)
        q = jnp.moveaxis(q, 0, 1)  # (n_rows, gates, block)
    q = jnp.reshape(_sample_barrier(q, eager), other + (n_cols,))
    q = jnp.moveaxis(q, -1, ca)
    return (jnp.array(scale, cd) * q).astype(dtype)


def delta_orthogonal(
    scale: Any = 1.0,
    column_axis: int = -1,
    dtype: DTypeLike | None = None,
) -> Initializer:
    r"""Builds a delta-orthogonal convolution initializer (Xiao et al. 2018), same as JAX.

    For a 3-, 4- or 5-D kernel ``(*window, in, out)`` with ``in <= out``: the centre tap
    ``W[(k1-1)//2, (k2-1)//2, ...]`` is an ``(in, out)`` row-orthonormal matrix times ``scale``
    (:math:`W_c W_c^T = \text{scale}^2 I_\text{in}`) and every other tap is exactly 0. For even
    windows the centre is ``(k-1)//2`` (the lower middle, which is the identity tap of XLA/Flax
    ``'SAME'`` padding); :func:`jinit.dirac` uses the same default.

    Args:
      scale: multiplier of the orthogonal matrix.
      column_axis: passed to :func:`orthogonal` for the ``(in, out)`` centre matrix.
      dtype: the initializer's default dtype.

    Returns:
      An initializer.

    Raises:
      ValueError: if the shape is not 3-, 4- or 5-D or ``in > out``.
      TypeError: for integer or bool dtypes.

    References:
      Xiao et al., "Dynamical Isometry and a Mean Field Theory of CNNs: How to Train
      10,000-Layer Vanilla Convolutional Neural Networks", arXiv:1806.05393, 2018.
    """
    check_number("delta_orthogonal", "scale", scale, positive=True)
    check_int("delta_orthogonal", "column_axis", column_axis, minimum=-(2**31))
    name = "delta_orthogonal"

    def init(key, shape, dtype=dtype, out_sharding=None):
        _no_sharding(name, out_sharding)
        dtype = canonicalize_dtype(dtype)
        check_random_dtype(name, dtype)
        check_key(name, "key", key)
        shape = canonicalize_shape(name, shape, dtype)
        if len(shape) not in (3, 4, 5):
            raise ValueError(
                f"{name}: needs a 3-D, 4-D or 5-D kernel (*window, in, out), got rank {len(shape)} "
                f"(shape {shape})"
            )
        if shape[-1] < shape[-2]:
            raise ValueError(
                f"{name}: needs in <= out, got in={shape[-2]} > out={shape[-1]} for shape {shape}"
            )
        (ca,) = _fans.normalize_axes("column_axis", column_axis, shape[-2:])
        return _delta_orthogonal.call(key, scale, shape, dtype, ca)

    return init


@fused(static_argnums=(2, 3, 4))
def _delta_orthogonal(key, scale, shape, dtype, ca, *, eager=False):
    cd = compute_dtype(dtype)
    ortho = _orthogonal(key, scale, shape[-2:], cd, ca, 1, "qr", eager=eager)
    centre = tuple((k - 1) // 2 for k in shape[:-2])
    return jnp.zeros(shape, dtype=cd).at[centre].set(ortho).astype(dtype)


def lsuv_ready_orthogonal(
    scale: Any = 1.0, column_axis: int = -1, dtype: DTypeLike | None = None
) -> Initializer:
    r"""The orthonormal pre-initialisation of LSUV (Mishkin & Matas 2015), step 1 of Alg. 1.

    LSUV first fills every conv/dense kernel with an orthonormal matrix "as in Saxe et al.",
    built on the kernel flattened to ``(receptive * in, out)`` (the reference code reshapes each
    blob to ``(out, in * kh * kw)`` and orthonormalises it), then rescales each layer from data
    until its output variance is 1 (the LSUV pass, ``jinit.lsuv``). In Flax's layouts
    (``(in, out)``, HWIO) that flattening is exactly :func:`orthogonal` with ``column_axis=-1``:
    :math:`M = W.\text{reshape}(-1, \text{out})` has orthonormal columns when
    ``receptive*in >= out`` and orthonormal rows otherwise. The scale is irrelevant to LSUV (it
    is rescaled afterwards) and defaults to 1. For PyTorch's OIHW layout pass ``column_axis=0``.

    Args:
      scale: multiplier of the orthonormal matrix.
      column_axis: the output-channel axis.
      dtype: the initializer's default dtype.

    Returns:
      An initializer (numbers identical to ``orthogonal(scale, column_axis)``).

    Raises:
      ValueError, TypeError: as :func:`orthogonal`.

    References:
      Mishkin & Matas, "All you need is a good init", arXiv:1511.06422, 2015. Saxe et al.,
      "Exact solutions to the nonlinear dynamics of learning in deep linear neural networks",
      arXiv:1312.6120, 2014.
    """
    return orthogonal(scale=scale, column_axis=column_axis, dtype=dtype)
