"""Per-layer solver shared by every model adapter (linen, NNX, plain functions).

An adapter meets each selected layer during ONE forward pass, in execution order, and hands the
solver a :class:`Site`: the parameter to rescale (``kernel``; for a weight-normalised layer its
per-unit scale ``g``), the bias, the layer's input (only to check it is finite) and its output
``y0`` computed with those parameters. The solver returns the corrected parameters and, when it
can, the corrected output; the adapter writes the parameters back so that every later layer sees
them, and the forward pass continues. The prefix before a layer is therefore already fixed when
the layer is measured, and each layer costs one forward evaluation plus cheap statistics:

* **affine layers** (Dense, DenseGeneral, Conv, ConvTranspose, ConvLocal, Embed, recurrent input
  projections, weight-normalised layers): the output is ``y(s W, b) = s (y0 - B) + B`` with ``B``
  the bias broadcast over the trailing unit axes. Two passes over ``y0`` give its per-unit means
  and variances, from which the pooled variance at any kernel scale is the quadratic
  ``v(s) = A s^2 + 2 B' s + C``. The paper's loop (``s *= sqrt(target / v(s))`` until
  ``|v - target| < tol``) is a fixed-point iteration for ``v(s) = target``; its fixed point is
  the quadratic's positive root, taken in one step (with a zero or constant bias, the usual case
  at initialisation, this IS the paper's first step, after which its loop stops). The corrected
  output is ``s (y0 - B) + B'``, computed elementwise instead of re-running the layer (in
  float32 or wider; with 16-bit kernels or outputs the layer is re-run so the output matches the
  stored 16-bit kernel), and its statistics follow in closed form.
* ``measure="post"`` on affine layers: the paper's loop as a bounded ``lax.while_loop``, one
  elementwise pass over ``y0`` per iteration (the layer is not re-run).
* **other layers** (Einsum, plain functions without ``linear=True``): the paper's loop as a
  bounded ``lax.while_loop`` that re-runs only that layer on its captured input.

Why not a ``while_loop`` everywhere: XLA compiles every loop (and every small kernel) separately,
at tens of milliseconds each on CPU, so a per-layer loop would dominate the pass's compile time
on deep models; the closed form has no control flow and few kernels. For the same reason the
report is not assembled per layer: each layer keeps only arrays the solve computed anyway
(its six output moments, the input's max-abs, the scale), and :func:`report_table` derives every
report field for all layers at once at the end of the pass.

Statistics are computed in float32 (float64 when the output is float64); the rescaling factor
is cast to the kernel dtype, never the kernel upcast.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from jinit._src import lsuv_report as rep
from jinit._src.checks import check_key as check_key

METHODS = ("lsuv", "within_layer", "weight_norm")
MEASURES = ("pre", "post")
ZERO_POLICIES = ("raise", "skip")


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings of one pass (hashable: part of the jit cache key)."""

    method: str = "lsuv"
    target: float = 1.0
    tol: float = 0.1
    max_iters: int = 10
    measure: str = "pre"
    activation: Callable[[jax.Array], jax.Array] | None = None
    center: bool = False
    target_mean: float = 0.0
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    on_zero_variance: str = "raise"
    min_values: int = 2
    exact: bool = False
    orthogonal: bool = False

    @property
    def per_unit(self) -> bool:
        return self.method != "lsuv"

    def selects(self, path: str) -> bool:
        """Whether the layer at ``path`` (``"/"``-joined) takes part in the pass."""
        if self.include and not any(re.search(p, path) for p in self.include):
            return False
        return not any(re.search(p, path) for p in self.exclude)


def _patterns(fn: str, arg: str, value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    try:
        out = tuple(value)
    except TypeError:
        raise TypeError(
            f"{fn}: {arg} must be a regex string or a sequence of them, got {value!r}"
        ) from None
    for p in out:
        if not isinstance(p, str):
            raise TypeError(f"{fn}: {arg} must be a regex string or a sequence of them, got {p!r}")
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"{fn}: {arg} pattern {p!r} is not a valid regex: {e}") from None
    return out


def make_config(
    fn: str,
    *,
    method: str,
    target: float,
    tol: float,
    max_iters: int,
    measure: str,
    activation: Callable | None,
    center: bool,
    target_mean: float,
    include: str | Sequence[str] | None,
    exclude: str | Sequence[str] | None,
    on_zero_variance: str,
    min_values: int,
    exact: bool,
    orthogonal: bool,
) -> Config:
    """Validates the static arguments of a pass, echoing bad values and the valid choices."""
    if method not in METHODS:
        raise ValueError(f"{fn}: method must be one of {METHODS}, got {method!r}")
    if measure not in MEASURES:
        raise ValueError(f"{fn}: measure must be one of {MEASURES}, got {measure!r}")
    if measure == "post" and not callable(activation):
        raise ValueError(
            f"{fn}: measure='post' needs the activation that follows each layer, "
            f"e.g. activation=jax.nn.relu; got activation={activation!r}"
        )
    if activation is not None and measure != "post":
        raise ValueError(f"{fn}: activation={activation!r} is only used with measure='post'")
    if on_zero_variance not in ZERO_POLICIES:
        raise ValueError(
            f"{fn}: on_zero_variance must be one of {ZERO_POLICIES}, got {on_zero_variance!r}"
        )
    for name, v in (("target", target), ("tol", tol), ("target_mean", target_mean)):
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or v != v
            or abs(v) == float("inf")
        ):
            raise ValueError(f"{fn}: {name} must be a finite Python number, got {v!r}")
    if target <= 0:
        raise ValueError(f"{fn}: target (the target variance) must be > 0, got {target!r}")
    if tol < 0:
        raise ValueError(f"{fn}: tol must be >= 0, got {tol!r}")
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 0:
        raise ValueError(f"{fn}: max_iters must be an int >= 0, got {max_iters!r}")
    if isinstance(min_values, bool) or not isinstance(min_values, int) or min_values < 2:
        raise ValueError(f"{fn}: min_values must be an int >= 2, got {min_values!r}")
    return Config(
        method=method,
        target=float(target),
        tol=float(tol),
        max_iters=max_iters,
        measure=measure,
        activation=activation,
        center=bool(center),
        target_mean=float(target_mean),
        include=_patterns(fn, "include", include),
        exclude=_patterns(fn, "exclude", exclude),
        on_zero_variance=on_zero_variance,
        min_values=min_values,
        exact=bool(exact),
        orthogonal=bool(orthogonal),
    )


@dataclasses.dataclass
class Site:
    """One layer as met during the forward pass.

    Attributes:
      name: the report path (``"/"``-joined).
      kernel: the parameter that is rescaled (a kernel, or a weight-norm scale ``g``).
      bias: the bias added on the trailing ``unit_ndim`` output axes, or ``None``.
      inputs: the layer's inputs (any pytree), checked for non-finite values.
      y0: the layer's output with ``kernel`` and ``bias``.
      affine: whether ``y(c * kernel, b) = c * (y0 - B) + B`` holds with ``B`` the bias
        broadcast over the trailing ``unit_ndim`` axes and ``c`` a scalar or a per-unit vector
        aligned with the trailing axes of ``kernel``.
      unit_ndim: number of trailing output axes that index units (channels, features).
      run: pure ``(kernel, bias) -> output`` re-running only this layer (used for non-affine
        layers, and inside ``lax.while_loop``); ``None`` for affine layers that cannot be
        re-run, whose corrected output is then always computed in closed form.
    """

    name: str
    kernel: jax.Array
    bias: jax.Array | None
    inputs: Any
    y0: jax.Array
    affine: bool
    unit_ndim: int = 1
    run: Callable[[jax.Array, jax.Array | None], jax.Array] | None = None


@dataclasses.dataclass
class Solution:
    """The solver's answer for one site.

    ``rec`` holds the layer's raw statistics (arrays already computed for the solve); the report
    is derived from the records of all layers at once at the end of the pass (see
    :func:`report_table`), so a layer adds no scalar bookkeeping kernels of its own.
    """

    kernel: jax.Array
    bias: jax.Array | None
    y: jax.Array | None  # the corrected output, or None: the adapter must run the layer
    rec: dict[str, Any]
    closed: bool  # y (if given) is c (y0 - B) + B' and its statistics follow from rec


def _stat_dtype(dtype) -> Any:
    """float32 statistics, float64 for float64 outputs (explicit: no implicit promotion)."""
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def _full_precision(*dtypes) -> bool:
    return all(jnp.finfo(d).bits >= 32 for d in dtypes)


def _bcast(u: jax.Array, ndim: int) -> jax.Array:
    """Right-aligns a unit-shaped vector for broadcasting against an ``ndim`` array."""
    return u.reshape((1,) * (ndim - u.ndim) + u.shape)


def _scale_param(p: jax.Array, c: jax.Array) -> jax.Array:
    """``p * c`` with ``c`` (scalar or unit-shaped, trailing) cast to ``p``'s dtype."""
    c = c.astype(p.dtype)
    if c.ndim:
        c = _bcast(c, p.ndim)
    return p * c


def orthogonal_kernel(key: jax.Array, name: str, kernel: jax.Array) -> jax.Array:
    """LSUV step 1: an orthonormal kernel from a key derived from the layer path.

    The key is ``fold_in(key, crc32(name))`` (as penzai derives per-parameter keys), so adding
    a layer never changes another layer's kernel. Uses ``jinit.lsuv_ready_orthogonal()``.
    """
    from jinit._src.initializers import lsuv_ready_orthogonal

    k = jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)
    if kernel.ndim < 2:
        return kernel
    return lsuv_ready_orthogonal()(k, kernel.shape, kernel.dtype)


def check_static(cfg: Config, site: Site) -> str | None:
    """Static checks: returns a skip reason, raises for too few values, or returns None."""
    if site.kernel.size == 0 or site.y0.size == 0:
        return "zero-size layer"
    n = site.y0.size
    if cfg.per_unit:
        if not site.affine:
            return (
                f"{cfg.method} needs a layer whose output is affine in its kernel "
                "(Dense/Conv/Embed-like); this layer is not"
            )
        units = 1
        for d in site.y0.shape[site.y0.ndim - site.unit_ndim :]:
            units *= d
        per = n // max(units, 1)
        if per < cfg.min_values:
            raise ValueError(
                f"{cfg.method}: layer {site.name!r} has only {per} value(s) per output unit on "
                f"this batch (output shape {site.y0.shape}); estimating a per-unit variance "
                f"needs at least {cfg.min_values}. Use a larger batch."
            )
    elif n < cfg.min_values:
        raise ValueError(
            f"lsuv: layer {site.name!r} has only {n} output value(s) on this batch (output "
            f"shape {site.y0.shape}); estimating a variance needs at least {cfg.min_values}. "
            "Use a larger batch."
        )
    return None


def _measure(cfg: Config, y: jax.Array) -> jax.Array:
    return cfg.activation(y) if cfg.measure == "post" else y


def _pooled_stats(y: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean = jnp.mean(y)
    return jnp.mean(jnp.square(y - mean)), mean


def _unit_stats(y: jax.Array, unit_ndim: int) -> tuple[jax.Array, jax.Array]:
    """Per-unit mean and variance over all leading axes (two passes, robust to offsets)."""
    red = tuple(range(y.ndim - unit_ndim))
    inv_n = 1.0 / max(1, int(np.prod([y.shape[a] for a in red])))
    mean_k = jnp.sum(y, axis=red, keepdims=True) * inv_n  # (a multiply fuses into consumers)
    var_u = jnp.sum(jnp.square(y - mean_k), axis=red) * inv_n
    return mean_k.reshape(var_u.shape), var_u


# The six moments of a layer's output y0 = z + B (z: the kernel part, B: the bias broadcast over
# the trailing unit axes), means over units u of: Var(y0_u), zbar_u, zbar_u^2, b_u, b_u^2,
# zbar_u b_u. Everything the report needs for an affine layer follows from them.
def _moments(yf: jax.Array, bias: jax.Array | None, unit_ndim: int):
    mean_u, var_u = _unit_stats(yf, unit_ndim)
    b_u = bias.astype(yf.dtype) if bias is not None else jnp.zeros_like(mean_u)
    zbar_u = mean_u - b_u
    # All six means from one small Gram matrix of [1, var_u, zbar_u, b_u] (one kernel; a
    # reduction over a stack costs XLA:CPU several).
    rows = jnp.stack([jnp.ones_like(var_u), var_u, zbar_u, b_u]).reshape(4, -1)
    rows = rows * (1.0 / np.sqrt(rows.shape[1]))  # so that rows @ rows.T holds means
    gram = jnp.dot(rows, rows.T, precision=jax.lax.Precision.HIGHEST)
    return gram, mean_u, var_u, b_u, zbar_u


def _pooled_gram(var_y: jax.Array, mean_y: jax.Array) -> jax.Array:
    """The Gram matrix of a layer treated as all kernel part (no separable bias)."""
    one, z = jnp.ones_like(var_y), jnp.zeros_like(var_y)
    return jnp.stack(
        [
            jnp.stack([one, var_y, mean_y, z]),
            jnp.stack([var_y, z, z, z]),
            jnp.stack([mean_y, z, mean_y * mean_y, z]),
            jnp.stack([z, z, z, z]),
        ]
    )


def _quad(gram: jax.Array, xp: Any = jnp):
    """``(A, B, C, mean, E[y^2])``: pooled ``Var(s z + B) = A s^2 + 2 B s + C``.

    ``gram`` is the ``(..., 4, 4)`` matrix of unit means of products of [1, Var(y_u), zbar_u,
    b_u] (see :func:`_moments`).
    """
    g = lambda i, j: gram[..., i, j]  # noqa: E731
    e_var, e_z, e_z2, e_b, e_b2, e_zb = g(0, 1), g(0, 2), g(2, 2), g(0, 3), g(3, 3), g(2, 3)
    a = e_var + xp.maximum(e_z2 - e_z * e_z, 0.0)
    b = e_zb - e_z * e_b
    c = xp.maximum(e_b2 - e_b * e_b, 0.0)
    return a, b, c, e_z + e_b, e_var + e_z2 + 2.0 * e_zb + e_b2


def _zero_coef(dtype) -> float:
    """``(4 eps)^2`` for the machine epsilon of ``dtype`` (see :func:`_zero_threshold`)."""
    return (4.0 * float(jnp.finfo(dtype).eps)) ** 2


def _zero_threshold(coef, mean_sq: jax.Array) -> jax.Array:
    """Variance below which a signal is indistinguishable from rounding of the output
    (``coef``: :func:`_zero_coef` of the layer's output dtype)."""
    return coef * mean_sq + float(jnp.finfo(jnp.float32).tiny)


def _ok(gram, maxabs, coef, v0):
    """Whether a layer can be rescaled: input and output finite, variance not zero."""
    a, _, _, mean, mean_sq = _quad(gram)
    thr = _zero_threshold(coef, mean_sq)
    finite = jnp.isfinite(maxabs) & jnp.isfinite(v0) & jnp.isfinite(mean) & jnp.isfinite(a)
    return finite & (a > thr) & (v0 > thr)


def _select(xp):
    """``lax.select`` (no nested ``jnp.where`` call in the program) or ``numpy.where``."""
    return np.where if xp is np else jax.lax.select


def _affine_pre_scale(cfg: Config, gram, maxabs, coef, xp: Any = jnp):
    r"""``(s, ok)``: the fixed point of the paper's loop for an affine layer, in one step.

    The pooled variance at kernel scale :math:`s` is the quadratic
    :math:`v(s) = A s^2 + 2 B s + C` (:math:`A = \mathrm{Var}(z)`,
    :math:`B = \mathrm{Cov}_u(\bar z_u, b_u)`, :math:`C = \mathrm{Var}_u(b_u)`, from
    :func:`_quad`), so the fixed point :math:`v(s) = \tau` of the loop is its positive root.
    With a zero (or constant) bias this IS the paper's first step :math:`s = \sqrt{\tau / v_0}`,
    after which its loop stops. If no positive root exists (the bias alone varies more than the
    target) one paper step is taken and the layer is reported as not converged. ``s`` is 1 when
    nothing is done: within tolerance, ``max_iters == 0``, or not ``ok`` (input or output not
    finite, or zero variance).

    Elementwise, so the same code runs per layer (scalars, in the pass) and over the report's
    stacked layers (``xp`` = ``jax.numpy`` or ``numpy``), bitwise alike: the report recomputes
    ``s`` instead of stacking it, because a stack of per-layer scalars makes XLA fuse every
    layer's scalar chain into one kernel, which dominated the pass's compile time on deep
    models. ``coef`` is :func:`_zero_coef` of the output dtype.
    """
    a, b, c, mean, mean_sq = _quad(gram, xp)
    v0 = a + 2.0 * b + c
    thr = _zero_threshold(coef, mean_sq)
    # all finite <=> 0 * (sum) == 0: an inf or NaN anywhere makes the sum's product NaN
    maxabs = maxabs.astype(gram.dtype)
    ok = ((maxabs * 0.0 + v0 * 0.0 + mean * 0.0 + a * 0.0) == 0.0) & (a > thr) & (v0 > thr)
    disc = b * b - a * (c - cfg.target)
    num = xp.sqrt(xp.maximum(disc, 0.0)) - b
    root = num / a
    has_root = (disc >= 0) & (root > 0) & (root * 0.0 == 0.0)
    step = xp.sqrt(cfg.target / v0)
    cand = _select(xp)(has_root, root, step)
    go = ok & (xp.abs(v0 - cfg.target) >= cfg.tol) & (cand * 0.0 == 0.0) & (cand > 0)
    if cfg.max_iters <= 0:
        go = go & False
    # s = num / den with the selects before the division (root = num / a, step = step / 1,
    # no step = 1 / 1: bitwise the same values): XLA does not duplicate a division into each
    # consumer, so the scalar chain is computed once instead of inside every kernel using s.
    one = xp.ones_like(cand)
    n = _select(xp)(go, _select(xp)(has_root, num, step), one)
    d = _select(xp)(go & has_root, a, one)
    return n / d, ok


def _affine_shift(gram, s, ok, xp: Any = jnp):
    """The mean step (``center=True``) of a closed-form layer: the output mean at scale ``s``
    (0 where not ``ok`` or not finite); elementwise, like :func:`_affine_pre_scale`."""
    mean_s = gram[..., 0, 2] * s + gram[..., 0, 3]
    return _select(xp)(ok & (mean_s * 0.0 == 0.0), mean_s, xp.zeros_like(mean_s))


def _while(cfg: Config, var_at, v0, ok):
    """The paper's loop: ``s *= sqrt(target / v)`` while ``|v - target| >= tol``, bounded.

    ``var_at(s)`` is the measured variance at kernel scale ``s``. Returns ``(iterations, s)``.
    """
    target = jnp.asarray(cfg.target, v0.dtype)

    def cond(c):
        i, _, v = c
        go = (jnp.abs(v - target) >= cfg.tol) & ok & jnp.isfinite(v) & (v > 0)
        return go & (i < cfg.max_iters)

    def body(c):
        i, s, v = c
        s = s * jnp.sqrt(target / v)
        return i + 1, s, var_at(s)

    init = (jnp.asarray(0, jnp.int32), jnp.ones((), v0.dtype), v0)
    i, s, _ = jax.lax.while_loop(cond, body, init)
    return i, s


def _closes(cfg: Config, site: Site) -> bool:
    """Whether the corrected output is computed in closed form (else the layer is re-run)."""
    return site.affine and (
        site.run is None or (not cfg.exact and _full_precision(site.y0.dtype, site.kernel.dtype))
    )


def _max_abs(tree: Any) -> jax.Array:
    """max |x| over the floating leaves: finite iff every entry is (NaN propagates)."""
    maxes = [
        jnp.max(jnp.abs(a)).astype(jnp.float32)
        for a in jax.tree_util.tree_leaves(tree)
        if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.inexact) and a.size
    ]
    if not maxes:
        return jnp.zeros((), jnp.float32)
    return functools.reduce(jnp.maximum, maxes)


def solve(cfg: Config, site: Site) -> Solution:
    """Solves one site; see the module docstring.

    An affine layer's solve needs only arrays (no re-run of the layer), so it goes through
    :func:`_solve_affine`, a nested ``jax.jit``: it is traced once per (settings, shapes,
    dtypes) and the pass's other layers of that shape reuse its jaxpr and its lowered function,
    which keeps the pass's trace and lowering time per layer close to a plain forward pass's.
    """
    closed = _closes(cfg, site)
    if not site.affine:
        return _solve_lsuv(cfg, site, _max_abs(site.inputs), closed)
    inputs = [a for a in jax.tree_util.tree_leaves(site.inputs) if hasattr(a, "dtype")]
    kernel, bias, y, rec = _solve_affine(
        cfg, site.unit_ndim, closed, site.kernel, site.bias, site.y0, inputs
    )
    if not (cfg.per_unit or cfg.center):
        bias = site.bias  # unchanged: the caller tests ``sol.bias is not b``
    done = closed and (cfg.per_unit or cfg.measure == "pre")
    return Solution(kernel=kernel, bias=bias, y=y, rec=rec, closed=done)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _solve_affine(cfg: Config, unit_ndim: int, closed: bool, k0, b0, y0, inputs):
    site = Site(name="", kernel=k0, bias=b0, inputs=None, y0=y0, affine=True, unit_ndim=unit_ndim)
    f = _solve_per_unit if cfg.per_unit else _solve_lsuv
    sol = f(cfg, site, _max_abs(inputs), closed)
    return sol.kernel, sol.bias, sol.y, sol.rec


def _solve_lsuv(cfg: Config, site: Site, maxabs: jax.Array, closed: bool) -> Solution:
    k0, b0, y0 = site.kernel, site.bias, site.y0
    sd = _stat_dtype(y0.dtype)
    yf = y0.astype(sd)
    coef = _zero_coef(y0.dtype)
    rec: dict[str, Any] = {"maxabs": maxabs}
    center = cfg.center and b0 is not None

    if site.affine:
        gram, _, _, b_u, _ = _moments(yf, b0, site.unit_ndim)
        rec["gram"] = gram
        if cfg.measure == "pre":  # s and ok are recomputed by report_table, not recorded
            s, ok = _affine_pre_scale(cfg, gram, maxabs, coef)
        else:  # the paper's loop, one elementwise pass per iteration; no re-run
            v0 = _pooled_stats(_measure(cfg, yf))[0]
            ok = _ok(gram, maxabs, coef, v0)
            bb = _bcast(b_u, yf.ndim)
            zf = yf - bb
            rec["iters"], s = _while(
                cfg, lambda s: _pooled_stats(_measure(cfg, s * zf + bb))[0], v0, ok
            )
            rec["v0"] = v0
    else:
        var_y, mean_y = _pooled_stats(yf)
        rec["gram"] = gram = _pooled_gram(var_y, mean_y)
        v0 = _pooled_stats(_measure(cfg, yf))[0] if cfg.measure == "post" else var_y
        ok = _ok(gram, maxabs, coef, v0)

        def var_at(s):
            y = site.run(_scale_param(k0, s), b0).astype(sd)
            return _pooled_stats(_measure(cfg, y))[0]

        rec["iters"], s = _while(cfg, var_at, v0, ok)
        rec["v0"] = v0

    pre_closed = site.affine and cfg.measure == "pre"
    if not pre_closed:  # (_affine_pre_scale already returns 1 unless ok, finite and > 0)
        ok = ok & jnp.isfinite(s) & (s > 0)
        s = jnp.where(ok, s, 1.0).astype(sd)
    if not pre_closed or sd != jnp.float32:  # (the report recomputes float32 ones)
        rec["s"] = s
    kernel = _scale_param(k0, s)
    shift = jnp.zeros((), sd)
    if center:
        if pre_closed:
            shift = _affine_shift(gram, s, ok)
        else:
            mean_s = (
                gram[0, 2] * s + gram[0, 3]
                if site.affine
                else jnp.mean(site.run(kernel, b0).astype(sd))
            )
            shift = jnp.where(ok & jnp.isfinite(mean_s), mean_s, shift)
        if "s" in rec:
            rec["shift"] = shift
    bias = (b0.astype(sd) - shift).astype(b0.dtype) if center else b0
    y = None
    if closed:
        bb = _bcast(b_u, yf.ndim)
        y_new = s * (yf - bb) + bb
        if center:
            y_new = y_new - shift
        # unchanged layer: its output exactly (a test of the materialised s, not of ok, so
        # that the kernels using y do not each recompute ok's scalar chain)
        same = (s == 1) & (shift == 0) if pre_closed else ~ok
        y = jnp.where(same, y0, y_new.astype(y0.dtype))
    return Solution(kernel=kernel, bias=bias, y=y, rec=rec, closed=closed and cfg.measure == "pre")


def _solve_per_unit(cfg: Config, site: Site, maxabs: jax.Array, closed: bool) -> Solution:
    k0, b0, y0 = site.kernel, site.bias, site.y0
    sd = _stat_dtype(y0.dtype)
    yf = y0.astype(sd)
    gram, mean_u, var_u, b_u, zbar_u = _moments(yf, b0, site.unit_ndim)
    zero_u = var_u <= _zero_threshold(_zero_coef(y0.dtype), var_u + mean_u**2)
    in_ok = jnp.isfinite(maxabs)
    out_ok = jnp.all(jnp.isfinite(mean_u)) & jnp.all(jnp.isfinite(var_u))
    ok = in_ok & out_ok & ~jnp.all(zero_u)
    live = ok & ~zero_u
    c_u = jnp.where(live, jnp.sqrt(cfg.target / jnp.where(zero_u, 1.0, var_u)), 1.0).astype(sd)
    new_b = b_u
    if b0 is not None:
        new_b = jnp.where(live, cfg.target_mean - c_u * zbar_u, b_u)
    kernel = _scale_param(k0, c_u)
    bias = new_b.astype(b0.dtype) if b0 is not None else None
    rec = dict(
        maxabs=maxabs,
        gram=gram,
        ok=ok,
        live=live,
        scale=jnp.sqrt(jnp.mean(jnp.square(c_u))),
        units_skipped=jnp.where(in_ok & out_ok, jnp.sum(zero_u), 0),
    )
    y = None
    if closed:
        bb = _bcast(b_u, yf.ndim)
        y = (_bcast(c_u, yf.ndim) * (yf - bb) + _bcast(new_b, yf.ndim)).astype(y0.dtype)
        y = jnp.where(ok, y, y0)
        rec["after_u"] = (c_u * c_u * var_u, c_u * zbar_u + new_b)  # per-unit var and mean
    return Solution(kernel=kernel, bias=bias, y=y, rec=rec, closed=closed)


def _unit_summary(cfg: Config, var_u, mean_u, live, has_bias: bool):
    """Pooled variance and mean, and whether every live unit meets both targets."""
    var_after = jnp.mean(var_u) + jnp.mean(jnp.square(mean_u - jnp.mean(mean_u)))
    mean_after = jnp.mean(mean_u)
    good = jnp.all(jnp.where(live, jnp.abs(var_u - cfg.target), 0.0) < cfg.tol)
    if has_bias:
        good = good & jnp.all(jnp.where(live, jnp.abs(mean_u - cfg.target_mean), 0.0) < cfg.tol)
    return var_after, mean_after, good


def finish(cfg: Config, site: Site, sol: Solution, y: jax.Array) -> dict[str, Any]:
    """The record of a solved layer, completed with the statistics of its corrected output.

    When ``y`` is the solver's closed-form output ``c (y0 - B) + B'``, its moments follow exactly
    from those of ``y0`` (no pass over ``y``); otherwise (re-run layers, ``measure="post"``) they
    are measured on ``y`` here.
    """
    rec = dict(sol.rec)
    sd = _stat_dtype(y.dtype)
    if cfg.per_unit:
        if sol.closed and y is sol.y:
            var_u, mean_u = rec.pop("after_u")
        else:
            rec.pop("after_u", None)
            mean_u, var_u = _unit_stats(y.astype(sd), site.unit_ndim)
        va, ma, good = _unit_summary(cfg, var_u, mean_u, rec.pop("live"), site.bias is not None)
        rec.update(var_after=va, mean_after=ma, good=good)
    elif not (sol.closed and y is sol.y):
        rec["var_after"], rec["mean_after"] = _pooled_stats(_measure(cfg, y.astype(sd)))
    return dict(
        path=site.name,
        note="",
        rec=rec,
        coef=_zero_coef(site.y0.dtype),
        # s (and the centring shift) follow from the record: recomputed by report_table
        pre_closed=not cfg.per_unit and site.affine and cfg.measure == "pre" and "s" not in rec,
        centered=cfg.center and site.bias is not None,
    )


def static_skip_row(name: str, reason: str) -> dict[str, Any]:
    """The report row of a layer skipped before any computation."""
    return dict(path=name, note=reason, rec=None, coef=1.0, pre_closed=False, centered=False)


def _stack(xp, rows, key, default, dtype=np.float32):
    vals = [
        xp.asarray(r["rec"][key]).astype(dtype)
        if r["rec"] is not None and key in r["rec"]
        else xp.asarray(default, dtype)
        for r in rows
    ]
    return xp.stack(vals)


def report_table(cfg: Config, rows: list[dict[str, Any]], xp: Any = jnp) -> dict[str, Any]:
    """The report's per-layer arrays, computed for all layers at once from their records.

    ``xp`` is ``jax.numpy`` (inside the pass) or ``numpy`` (an eager pass, ``jit=False``, whose
    records are concrete: numpy needs no compilation; the same float32 operations in the same
    order, so the recomputed scales are bitwise those applied).
    """
    n = len(rows)
    f32 = np.float32
    if n == 0:
        return {k: xp.zeros((0,), f32) for k in rep.ARRAY_FIELDS}
    done = np.array([r["rec"] is not None for r in rows])
    gram = xp.stack(
        [
            xp.asarray(r["rec"]["gram"]).astype(f32)
            if r["rec"] is not None
            else xp.zeros((4, 4), f32)
            for r in rows
        ]
    )
    maxabs = _stack(xp, rows, "maxabs", 0.0)
    coef = xp.asarray([r["coef"] for r in rows], f32)
    has_v0 = np.array([r["rec"] is not None and "v0" in r["rec"] for r in rows])
    v0_meas = _stack(xp, rows, "v0", np.nan)
    a, b, c, mean, mean_sq = _quad(gram, xp)
    v0 = xp.where(has_v0, v0_meas, a + 2.0 * b + c)
    thr = _zero_threshold(coef, mean_sq)
    zero = (a <= thr) | (v0 <= thr)
    in_ok = xp.isfinite(maxabs)
    out_ok = xp.isfinite(v0) & xp.isfinite(mean) & xp.isfinite(a)
    if cfg.per_unit:
        ok = _stack(xp, rows, "ok", False, np.bool_)
        scale = _stack(xp, rows, "scale", 1.0)
        iters = ok.astype(np.int32)
        units = _stack(xp, rows, "units_skipped", 0, np.int32)
        zero = ~ok & in_ok & out_ok
        good = _stack(xp, rows, "good", False, np.bool_)
        var_after = _stack(xp, rows, "var_after", np.nan)
        mean_after = _stack(xp, rows, "mean_after", np.nan)
    else:
        pre = np.array([r["pre_closed"] for r in rows])
        s_pre, ok_pre = _affine_pre_scale(cfg, gram, maxabs, coef, xp)
        scale = xp.where(pre, s_pre, _stack(xp, rows, "s", 1.0))
        ok = in_ok & out_ok & ~zero & xp.isfinite(scale) & (scale > 0)
        ok = xp.where(pre, ok_pre, ok)
        has_it = np.array([r["rec"] is not None and "iters" in r["rec"] for r in rows])
        go = ok & (xp.abs(v0 - cfg.target) >= cfg.tol) & (cfg.max_iters > 0)
        iters = xp.where(has_it, _stack(xp, rows, "iters", 0, np.int32), go.astype(np.int32))
        iters = xp.where(ok, iters, 0)
        units = xp.zeros((n,), np.int32)
        has_after = np.array([r["rec"] is not None and "var_after" in r["rec"] for r in rows])
        cen = np.array([r["pre_closed"] and r["centered"] for r in rows])
        shift = xp.where(
            cen, _affine_shift(gram, s_pre, ok_pre, xp), _stack(xp, rows, "shift", 0.0)
        )
        var_after = xp.where(
            has_after,
            _stack(xp, rows, "var_after", np.nan),
            a * scale * scale + 2.0 * b * scale + c,
        )
        mean_after = xp.where(
            has_after, _stack(xp, rows, "mean_after", np.nan), scale * gram[:, 0, 2] + gram[:, 0, 3]
        ) - xp.where(has_after, 0.0, shift)
        good = xp.abs(var_after - cfg.target) < cfg.tol
    bad_after = ~(xp.isfinite(var_after) & xp.isfinite(mean_after))
    status = xp.where(
        ~in_ok,
        rep.NONFINITE_INPUT,
        xp.where(
            ~out_ok | (ok & bad_after),
            rep.NONFINITE_OUTPUT,
            xp.where(zero, rep.ZERO_VARIANCE, rep.OK),
        ),
    )
    nan = xp.full((n,), np.nan, f32)
    table = dict(
        iterations=xp.where(done, iters, 0),
        scale=xp.where(done, xp.where(ok | cfg.per_unit, scale, 1.0), 1.0),
        var_before=xp.where(done, v0, nan),
        var_after=xp.where(done, var_after, nan),
        mean_after=xp.where(done, mean_after, nan),
        converged=xp.where(done, ok & good & ~bad_after, False),
        status=xp.where(done, status, rep.SKIPPED),
        units_skipped=xp.where(done, units, 0),
    )
    return table


def current_trace() -> Any:
    """An opaque handle of the current JAX trace (to detect lifted transforms)."""
    return jex_core.get_opaque_trace_state()


class Recorder:
    """Collects per-layer records and parameter updates while the forward pass is traced.

    Adapters call :meth:`solve` then :meth:`finish` for each selected layer met at the top level
    of the pass. Layers met again (weight sharing) are not re-solved.
    """

    def __init__(self, cfg: Config, orthogonal_key: jax.Array | None):
        self.cfg = cfg
        self.key = orthogonal_key
        self.rows: list[dict[str, Any]] = []
        self.updates: dict[tuple, jax.Array] = {}
        self.done: set[str] = set()
        self.trace = current_trace()
        self.passthrough = 0

    def at_outer_trace(self) -> bool:
        return current_trace() == self.trace

    def skip(self, name: str, reason: str) -> None:
        if name not in self.done:
            self.done.add(name)
            self.rows.append(static_skip_row(name, reason))

    def skip_inner(self, name: str) -> None:
        """A selected layer reached inside a lifted transform (nn.scan, nn.remat, ...)."""
        self.skip(
            name,
            "called inside a lifted transform (scan/remat/vmap); LSUV cannot rescale it there. "
            "Wrap recurrent cells in nn.RNN, or run lsuv on the inner module",
        )

    def initial_kernel(self, name: str, kernel: jax.Array) -> jax.Array:
        if self.cfg.orthogonal and self.key is not None:
            return orthogonal_kernel(self.key, name, kernel)
        return kernel

    def solve(self, site: Site) -> Solution | None:
        """Static checks then the solve; ``None`` means the layer was skipped statically."""
        self.done.add(site.name)
        reason = check_static(self.cfg, site)
        if reason is not None:
            self.rows.append(static_skip_row(site.name, reason))
            return None
        return solve(self.cfg, site)

    def finish(self, site: Site, sol: Solution, y: jax.Array) -> None:
        self.rows.append(finish(self.cfg, site, sol, y))

    def report(self) -> rep.LSUVReport:
        meta = dict(
            method=self.cfg.method,
            measured=self.cfg.measure,
            target=self.cfg.target,
            tol=self.cfg.tol,
            on_zero_variance=self.cfg.on_zero_variance,
        )
        recs = [r["rec"] for r in self.rows]
        if not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(recs)):
            # an eager pass (jit=False): numpy, nothing to compile
            with np.errstate(all="ignore"):
                rows = [
                    dict(r, rec=None if r["rec"] is None else jax.device_get(r["rec"]))
                    for r in self.rows
                ]
                table = report_table(self.cfg, rows, np)
            return rep.make_report(meta, self.rows, table)
        return rep.make_report(meta, self.rows, report_table(self.cfg, self.rows))
