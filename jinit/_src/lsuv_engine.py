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
on deep models; the closed form has no control flow and few kernels.

Statistics are computed in float32 (float64 when the output is float64); the rescaling factor
is cast to the kernel dtype, never the kernel upcast.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from jinit._src import lsuv_report as rep

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
    skip_recurrent: bool = True

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
    out = tuple(value)
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
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v or abs(v) == float("inf"):
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
    """The solver's answer for one site (before the final statistics)."""

    kernel: jax.Array
    bias: jax.Array | None
    y: jax.Array | None  # the corrected output, or None: the adapter must run the layer
    fields: dict[str, Any]
    ok: jax.Array
    after: Any = None  # closed-form statistics of ``y``, when ``y`` is the solver's


def _stat_dtype(dtype) -> Any:
    return jnp.promote_types(jnp.float32, dtype)


def _full_precision(*dtypes) -> bool:
    return all(jnp.finfo(d).bits >= 32 for d in dtypes)


def _all_finite(tree: Any) -> jax.Array:
    ok = jnp.asarray(True)
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array | jax.core.Tracer) or hasattr(leaf, "dtype"):
            a = jnp.asarray(leaf)
            if jnp.issubdtype(a.dtype, jnp.inexact) and a.size:
                ok = ok & jnp.all(jnp.isfinite(a))
    return ok


def _zero_threshold(y_dtype, mean_sq: jax.Array) -> jax.Array:
    """Variance below which a signal is indistinguishable from rounding of the output."""
    eps = float(jnp.finfo(y_dtype).eps)
    tiny = float(jnp.finfo(mean_sq.dtype).tiny)
    return (4.0 * eps) ** 2 * mean_sq + tiny


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


def static_skip_row(name: str, reason: str) -> dict[str, Any]:
    """The report row of a layer skipped before any computation."""
    nan = jnp.float32(jnp.nan)
    return dict(
        path=name,
        note=reason,
        iterations=0,
        scale=1.0,
        var_before=nan,
        var_after=nan,
        mean_after=nan,
        converged=False,
        status=rep.SKIPPED,
        units_skipped=0,
    )


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
    mean_u = jnp.mean(y, axis=red)
    var_u = jnp.mean(jnp.square(y - mean_u), axis=red)
    return mean_u, var_u


@dataclasses.dataclass
class _Moments:
    """Moments of ``y0 = z + B`` from its per-unit means/variances (``z`` the kernel part)."""

    mean_u: jax.Array  # per-unit mean of y0
    var_u: jax.Array  # per-unit variance of y0 (= of z)
    b_u: jax.Array  # per-unit bias (zeros if none)
    zbar_u: jax.Array  # per-unit mean of z
    var_z: jax.Array  # pooled Var(z)            (the quadratic coefficient A)
    cov_zb: jax.Array  # Cov_u(zbar, b)           (B)
    var_b: jax.Array  # Var_u(b)                 (C)
    mean_z: jax.Array
    mean_b: jax.Array
    mean_sq: jax.Array  # E[y0^2] (for the zero threshold)


def _moments(yf: jax.Array, bias: jax.Array | None, unit_ndim: int) -> _Moments:
    mean_u, var_u = _unit_stats(yf, unit_ndim)
    b_u = bias.astype(yf.dtype) if bias is not None else jnp.zeros_like(mean_u)
    zbar_u = mean_u - b_u
    # One small reduction for all scalar moments (fewer kernels to compile).
    stacked = jnp.stack([var_u, zbar_u, zbar_u * zbar_u, b_u, b_u * b_u, zbar_u * b_u])
    e_var, e_z, e_z2, e_b, e_b2, e_zb = jnp.mean(stacked.reshape(6, -1), axis=1)
    return _Moments(
        mean_u=mean_u,
        var_u=var_u,
        b_u=b_u,
        zbar_u=zbar_u,
        var_z=e_var + jnp.maximum(e_z2 - e_z * e_z, 0.0),
        cov_zb=e_zb - e_z * e_b,
        var_b=jnp.maximum(e_b2 - e_b * e_b, 0.0),
        mean_z=e_z,
        mean_b=e_b,
        mean_sq=e_var + e_z2 + 2.0 * e_zb + e_b2,
    )


def solve(cfg: Config, site: Site) -> Solution:
    """Solves one site; see the module docstring."""
    if cfg.per_unit:
        return _solve_per_unit(cfg, site)
    return _solve_lsuv(cfg, site)


def _while(cfg: Config, var_at, v0, ok, one, target):
    """The paper's loop: ``s *= sqrt(target / v)`` while ``|v - target| >= tol``, bounded.

    ``var_at(s)`` is the measured variance at kernel scale ``s``. Returns ``(iterations, s)``.
    """

    def cond(c):
        i, _, v = c
        go = (jnp.abs(v - target) >= cfg.tol) & ok & jnp.isfinite(v) & (v > 0)
        return go & (i < cfg.max_iters)

    def body(c):
        i, s, v = c
        s = s * jnp.sqrt(target / v)
        return i + 1, s, var_at(s)

    i, s, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), one, v0))
    return i, s


def _closed_form_scale(cfg: Config, m: _Moments, v0, ok, target):
    r"""The fixed point of the paper's loop for an affine layer, in one step.

    The pooled variance at kernel scale :math:`s` is the quadratic
    :math:`v(s) = A s^2 + 2 B s + C` (:math:`A = \mathrm{Var}(z)`, :math:`B = \mathrm{Cov}_u(
    \bar z_u, b_u)`, :math:`C = \mathrm{Var}_u(b_u)`), so the loop's fixed point
    :math:`v(s) = \tau` is its positive root. With zero (or constant) bias this is exactly the
    paper's first step :math:`s = \sqrt{\tau / v_0}`, after which the loop stops. If no positive
    root exists (the bias alone varies more than the target) one paper step is taken and the
    layer is reported as not converged.
    """
    a, b, c = m.var_z, m.cov_zb, m.var_b - target
    disc = b * b - a * c
    sq = jnp.sqrt(jnp.maximum(disc, 0.0))
    root = jnp.where(b >= 0, -c / (b + sq), (sq - b) / a)  # numerically stable branch
    has_root = (disc >= 0) & (root > 0) & jnp.isfinite(root)
    go = ok & (jnp.abs(v0 - target) >= cfg.tol) & (cfg.max_iters > 0)
    s = jnp.where(has_root, root, jnp.sqrt(target / jnp.where(v0 > 0, v0, target)))
    one = jnp.ones((), v0.dtype)
    return jnp.where(go, s, one), go.astype(jnp.int32)


def _solve_lsuv(cfg: Config, site: Site) -> Solution:
    k0, b0, y0 = site.kernel, site.bias, site.y0
    sd = _stat_dtype(y0.dtype)
    yf = y0.astype(sd)
    target = jnp.asarray(cfg.target, sd)
    one = jnp.ones((), sd)
    in_ok = _all_finite(site.inputs)
    affine = site.affine
    nu = site.unit_ndim
    after = None

    if affine:
        m = _moments(yf, b0, nu)
        thr = _zero_threshold(y0.dtype, m.mean_sq)
        zero = m.var_z <= thr
        mean_y = m.mean_z + m.mean_b
        if cfg.measure == "pre":
            v0 = m.var_z + 2.0 * m.cov_zb + m.var_b
        else:
            v0 = _pooled_stats(_measure(cfg, yf))[0]
            zero = zero | (v0 <= thr)
        out_ok = jnp.isfinite(v0) & jnp.isfinite(mean_y) & jnp.isfinite(m.var_z)
        ok = in_ok & out_ok & ~zero
        if cfg.measure == "pre":
            s, iters = _closed_form_scale(cfg, m, v0, ok, target)
        else:  # one elementwise pass per iteration; the layer is not re-run
            bb = _bcast(m.b_u, yf.ndim)
            zf = yf - bb

            def var_at(s):
                return _pooled_stats(_measure(cfg, s * zf + bb))[0]

            iters, s = _while(cfg, var_at, v0, ok, one, target)
    else:
        var_y, mean_y = _pooled_stats(yf)
        thr = _zero_threshold(y0.dtype, var_y + mean_y**2)
        v0 = _pooled_stats(_measure(cfg, yf))[0] if cfg.measure == "post" else var_y
        zero = (var_y <= thr) | (v0 <= thr)
        out_ok = jnp.isfinite(v0) & jnp.isfinite(mean_y) & jnp.isfinite(var_y)
        ok = in_ok & out_ok & ~zero

        def var_at(s):
            y = site.run(_scale_param(k0, s), b0).astype(sd)
            return _pooled_stats(_measure(cfg, y))[0]

        iters, s = _while(cfg, var_at, v0, ok, one, target)

    ok = ok & jnp.isfinite(s) & (s > 0)
    s = jnp.where(ok, s, one)
    iters = jnp.where(ok, iters, 0)
    kernel = _scale_param(k0, s)

    bias = b0
    shift = jnp.zeros((), sd)
    if cfg.center and b0 is not None:
        if affine:
            mean_s = s * m.mean_z + m.mean_b
        else:
            mean_s = jnp.mean(site.run(kernel, b0).astype(sd))
        shift = jnp.where(ok & jnp.isfinite(mean_s), mean_s, shift)
        bias = (b0.astype(sd) - shift).astype(b0.dtype)

    y = None
    if affine and (site.run is None or (not cfg.exact and _full_precision(y0.dtype, k0.dtype))):
        bb = _bcast(m.b_u, yf.ndim)
        y = jnp.where(ok, (s * (yf - bb) + bb - shift).astype(y0.dtype), y0)
        if cfg.measure == "pre":  # statistics of that output, in closed form
            var_after = m.var_z * s * s + 2.0 * m.cov_zb * s + m.var_b
            after = (var_after, s * m.mean_z + m.mean_b - shift)

    status = jnp.where(
        ~in_ok,
        rep.NONFINITE_INPUT,
        jnp.where(~out_ok, rep.NONFINITE_OUTPUT, jnp.where(zero, rep.ZERO_VARIANCE, rep.OK)),
    )
    fields = dict(
        path=site.name,
        note="",
        iterations=iters,
        scale=s,
        var_before=v0,
        status=status,
        units_skipped=0,
    )
    return Solution(kernel=kernel, bias=bias, y=y, fields=fields, ok=ok, after=after)


def _solve_per_unit(cfg: Config, site: Site) -> Solution:
    k0, b0, y0 = site.kernel, site.bias, site.y0
    sd = _stat_dtype(y0.dtype)
    yf = y0.astype(sd)
    target = jnp.asarray(cfg.target, sd)
    in_ok = _all_finite(site.inputs)

    m = _moments(yf, b0, site.unit_ndim)
    zero_u = m.var_u <= _zero_threshold(y0.dtype, m.var_u + m.mean_u**2)
    out_ok = jnp.all(jnp.isfinite(m.mean_u)) & jnp.all(jnp.isfinite(m.var_u))
    ok = in_ok & out_ok & ~jnp.all(zero_u)
    live = ok & ~zero_u
    one = jnp.ones((), sd)
    c_u = jnp.where(live, jnp.sqrt(target / jnp.where(zero_u, one, m.var_u)), one)
    kernel = _scale_param(k0, c_u)
    bias = b0
    new_b = m.b_u
    if b0 is not None:
        new_b = jnp.where(live, cfg.target_mean - c_u * m.zbar_u, m.b_u)
        bias = new_b.astype(b0.dtype)

    y = None
    after = None
    if site.run is None or (not cfg.exact and _full_precision(y0.dtype, k0.dtype)):
        bb = _bcast(m.b_u, yf.ndim)
        y = (_bcast(c_u, yf.ndim) * (yf - bb) + _bcast(new_b, yf.ndim)).astype(y0.dtype)
        y = jnp.where(ok, y, y0)
        after = (c_u * c_u * m.var_u, c_u * m.zbar_u + new_b)  # per-unit var and mean

    v0 = m.var_z + 2.0 * m.cov_zb + m.var_b
    status = jnp.where(
        ~in_ok,
        rep.NONFINITE_INPUT,
        jnp.where(~out_ok, rep.NONFINITE_OUTPUT, jnp.where(ok, rep.OK, rep.ZERO_VARIANCE)),
    )
    fields = dict(
        path=site.name,
        note="",
        iterations=jnp.where(ok, 1, 0),
        scale=jnp.sqrt(jnp.mean(jnp.square(c_u))),
        var_before=v0,
        status=status,
        units_skipped=jnp.where(in_ok & out_ok, jnp.sum(zero_u), 0),
    )
    fields["_live"] = live
    return Solution(kernel=kernel, bias=bias, y=y, fields=fields, ok=ok, after=after)


def finish(cfg: Config, site: Site, sol: Solution, y: jax.Array) -> dict[str, Any]:
    """Final statistics of the corrected output ``y`` (the tensor passed to later layers).

    When ``y`` was computed by the solver as the affine map ``c (y0 - B) + B'`` of the measured
    output, its moments follow exactly from the per-unit moments of ``y0`` (no extra pass);
    otherwise they are measured on ``y``.
    """
    sd = _stat_dtype(y.dtype)
    fields = dict(sol.fields)
    closed = sol.after is not None and y is sol.y
    if cfg.per_unit:
        live = fields.pop("_live")
        if closed:
            var_u, mean_u = sol.after
        else:
            mean_u, var_u = _unit_stats(y.astype(sd), site.unit_ndim)
        var_after = jnp.mean(var_u) + jnp.mean(jnp.square(mean_u - jnp.mean(mean_u)))
        mean_after = jnp.mean(mean_u)
        dv = jnp.where(live, jnp.abs(var_u - cfg.target), 0.0)
        good = jnp.all(dv < cfg.tol)
        if site.bias is not None:
            dm = jnp.where(live, jnp.abs(mean_u - cfg.target_mean), 0.0)
            good = good & jnp.all(dm < cfg.tol)
        converged = sol.ok & good
    else:
        if closed:
            var_after, mean_after = sol.after
        else:
            var_after, mean_after = _pooled_stats(_measure(cfg, y.astype(sd)))
        converged = sol.ok & (jnp.abs(var_after - cfg.target) < cfg.tol)
    bad_after = ~(jnp.isfinite(var_after) & jnp.isfinite(mean_after))
    fields["status"] = jnp.where(
        (fields["status"] == rep.OK) & bad_after, rep.NONFINITE_OUTPUT, fields["status"]
    )
    fields.update(var_after=var_after, mean_after=mean_after, converged=converged & ~bad_after)
    return fields


def current_trace() -> Any:
    """An opaque handle of the current JAX trace (to detect lifted transforms)."""
    return jex_core.get_opaque_trace_state()


class Recorder:
    """Collects report rows and parameter updates while the forward pass is traced.

    Adapters call :meth:`layer` for each selected layer; it returns what the adapter must write
    back and the output to continue with. Layers met again (weight sharing) are not re-solved.
    """

    def __init__(self, cfg: Config, orthogonal_key: jax.Array | None):
        self.cfg = cfg
        self.key = orthogonal_key
        self.rows: list[dict[str, Any]] = []
        self.updates: dict[tuple, jax.Array] = {}
        self.done: set[str] = set()
        self.seen_inner: set[str] = set()
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
        if name in self.done or name in self.seen_inner:
            return
        self.seen_inner.add(name)
        self.done.add(name)
        self.rows.append(
            static_skip_row(
                name,
                "called inside a lifted transform (scan/remat/vmap); LSUV cannot rescale it "
                "there. Wrap recurrent cells in nn.RNN, or run lsuv on the inner module",
            )
        )

    def initial_kernel(self, name: str, kernel: jax.Array) -> jax.Array:
        if self.cfg.orthogonal and self.key is not None:
            return orthogonal_kernel(self.key, name, kernel)
        return kernel

    def solve(self, site: Site) -> Solution | None:
        """Static checks then the loop; ``None`` means the layer was skipped statically."""
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
        return rep.stack_rows(meta, self.rows)
