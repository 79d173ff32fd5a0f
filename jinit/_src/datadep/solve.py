"""Verified per-layer solves: a closed-form step, re-measured on the layer's real output; Python
control flow on concrete values (eager pass), ``lax`` when traced (docs/lsuv.md)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src.datadep import report as rep

INVARIANT_RTOL = 1e-3  # relative change of variance below which the kernel's scale is inert
UNIT_ITERS = 10  # bound of the per-unit loop (its closed form is exact for an affine layer)
HOST_MAX = 2**20  # concrete outputs up to this size: statistics on the host (nothing compiled)
FIELDS = tuple(f for f in rep.ARRAY_FIELDS if f != "converged")  # what a solve records


def traced(*trees) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


def while_loop(cond, body, init):
    """``lax.while_loop`` when traced; a Python loop on concrete values (nothing to compile)."""
    if traced(init):
        return jax.lax.while_loop(cond, body, init)
    while bool(cond(init)):
        init = body(init)
    return init


def _pick(c, a, b):
    """``a`` where ``c`` else ``b`` (leafwise); a Python branch on a concrete ``c``."""
    if not traced(c):
        return a if bool(c) else b
    return jax.tree_util.tree_map(lambda u, v: jnp.where(c, u, v), a, b)


def _moments_of(yf, n: int, eps: float, xp):
    red = tuple(range(yf.ndim - n))
    mean = xp.mean(yf, axis=red)
    var = xp.mean(xp.square(yf - xp.mean(yf, axis=red, keepdims=True)), axis=red)
    return mean, var, (4 * eps) ** 2 * (var + mean * mean) + float(jnp.finfo(jnp.float32).tiny)


@functools.partial(jax.jit, static_argnums=1)
def unit_moments(y: jax.Array, n: int = 0):
    """Mean and variance over all leading axes (``n`` trailing unit axes; 0: pooled), and the
    zero-variance threshold ``(4 eps)^2 E[y^2]`` (rounding noise of the output's dtype)."""
    yf = y.astype(jnp.float64 if y.dtype == jnp.float64 else jnp.float32)
    return _moments_of(yf, n, float(jnp.finfo(y.dtype).eps), jnp)


def _finite(*xs, xp=jnp):
    return functools.reduce(xp.logical_and, [xp.all(xp.isfinite(x)) for x in xs])


def _xp(*trees):
    """numpy on concrete values (the eager pass compiles only the layer runs), else jax.numpy."""
    return jnp if traced(*trees) else np


def _moments(act, y, n: int = 0):
    """:func:`unit_moments` of ``y`` (``act(y)`` if given); concrete outputs up to
    :data:`HOST_MAX` values on the host in float64 (cheaper than compiling the reduction)."""
    y = y if act is None else act(y)
    if traced(y) or y.size > HOST_MAX:
        return unit_moments(y, n)
    sd = np.float64 if y.dtype == jnp.float64 else np.float32
    with np.errstate(all="ignore"):  # inf/NaN outputs give non-finite moments (non_finite)
        out = _moments_of(np.asarray(y).astype(np.float64), n, float(jnp.finfo(y.dtype).eps), np)
    return tuple(np.asarray(v).astype(sd) for v in out)


def finite_inputs(inputs) -> jax.Array:
    """Whether every floating leaf of ``inputs`` is finite (on the host when concrete)."""
    leaves = [a for a in jax.tree_util.tree_leaves(inputs) if jnp.issubdtype(a.dtype, jnp.inexact)]
    xp = _xp(leaves)
    return _finite(*leaves, xp=xp) if leaves else xp.asarray(True)


def layer(cfg, run, y0, in_ok, n: int, b0):
    """Solves one layer: LSUV's pooled factor (``n == 0``) or a factor per output unit on the
    output's ``n`` trailing axes (per-unit methods, which also target the unit mean with a bias).

    ``run(c, b)``: the output with the kernel times ``c`` and bias ``b`` (``None``: unchanged);
    ``in_ok``: the layer's inputs are finite; ``b0``: the bias or ``None``. Returns ``(c, b, y,
    record)``: the factors, the new bias (``None``: unchanged), the output re-run with them
    (never predicted) and the report's arrays for the layer.
    """
    t, tol, beta = cfg.target, cfg.tol, cfg.target_mean
    act = cfg.activation if cfg.measure == "post" else None
    mu0, v0, thr = _moments(act, y0, n)
    xp = _xp(mu0, v0, in_ok)
    finite = in_ok & _finite(v0, mu0, xp=xp)
    live = finite & (v0 > thr)
    mean = n > 0 and b0 is not None  # the per-unit methods' mean target

    def good(mu, v, means=mean):  # the status checks the means even without a bias to set them
        ok = (xp.abs(v - t) < tol) & ((xp.abs(mu - beta) < tol) if means else True)
        return xp.all(xp.where(live, ok, True))

    def rescale(c, b, mu, v):  # exact for an affine layer: the unit mean becomes r (mu - b) + b'
        r = xp.where(live, xp.sqrt(t / xp.where(live & (v > 0), v, t)), 1.0).astype(v0.dtype)
        return c * r, xp.where(live, beta - r * (mu - b), b) if mean else None

    # LSUV stops within tol (the paper); per-unit targets are met exactly, in one step.
    need = xp.any(live) & (cfg.max_iters > 0) & (n > 0 or ~good(mu0, v0))
    c0, bf = xp.ones_like(v0), b0.astype(v0.dtype) if mean else None
    c1, b1 = rescale(c0, bf, mu0, v0)
    y1 = run(c1, b1) if traced(need) or bool(need) else y0
    mu1, v1, _ = _moments(act, y1, n)
    inv = need & xp.all(xp.where(live, xp.abs(v1 - v0) <= INVARIANT_RTOL * v0, True))
    inv = inv & xp.any(live & (xp.abs(c1 * c1 - 1) > 1e-2))  # measured on the first step only
    bound = UNIT_ITERS if n else cfg.max_iters

    def cond(st):
        _, _, _, it, mu, v = st
        go = need & ~inv & (it < bound) & ~good(mu, v) & _finite(v, xp=xp)
        return go & xp.all(xp.where(live, v > 0, True))

    def body(st):
        c, b, _, it, mu, v = st
        c, b = rescale(c, b, mu, v)
        y = run(c, b)
        return (c, b, y, it + 1, *_moments(act, y, n)[:2])

    st = while_loop(cond, body, (c1, b1, y1, xp.ones((), np.int32), mu1, v1))
    c, b, y, it, mu, v = st
    bad = need & ~(_finite(v, c, xp=xp) & xp.all(c > 0))
    keep = ~need | inv | bad  # the layer is left as it was
    c, b, y, it, mu, v = _pick(keep, (c0, bf, y0, 0 * it, mu0, v0), st)
    if cfg.center and b0 is not None and (traced(live) or bool(live & ~inv)):
        shift = xp.where(live & ~inv, xp.mean(xp.asarray(y).astype(v.dtype)), 0.0)
        b = b0 - jnp.asarray(shift, b0.dtype)
        mu, v, _ = _moments(act, y := run(c, b), n)
    dead = xp.sum(~live & finite)
    status = xp.select(
        [~finite | bad, dead > 0, inv, good(mu, v, n > 0)],
        [rep.NON_FINITE, rep.ZERO_VARIANCE, rep.SCALE_INVARIANT, rep.CONVERGED],
        rep.NOT_CONVERGED,
    )
    scale, units = c, xp.zeros((), np.int32)
    if n:  # pooled figures; the scale is the root-mean-square factor
        (mu, v, _), v0 = _moments(None, y), _moments(None, y0)[1]
        scale, units = xp.sqrt(xp.mean(xp.square(c))), dead.astype(np.int32)
    return c, b, y, dict(zip(FIELDS, (it, scale, v0, v, mu, status, units, in_ok), strict=True))
