"""Verified per-layer solves: a closed-form step, re-measured on the layer's real output; Python
control flow on concrete values (eager pass), ``lax`` when traced (docs/lsuv.md)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src.datadep import report as rep

INVARIANT_RTOL = 1e-3  # relative change of variance below which the kernel's scale is inert
UNIT_ITERS = 10  # bound of the per-unit fallback loop
HOST_MAX = 2**20  # concrete outputs up to this size: statistics on the host (nothing compiled)
FIELDS = tuple(f for f in rep.ARRAY_FIELDS if f != "converged")  # what a solve records


def traced(*trees) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


def _go(flag) -> bool:
    """Whether to compute a branch: always when traced, else only if ``flag`` holds."""
    return traced(flag) or bool(flag)


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


def _inert(v0, v1, c1, xp=jnp):
    """The variance did not move although the factor did: the kernel's scale is inert."""
    return (xp.abs(v1 - v0) <= INVARIANT_RTOL * v0) & (xp.abs(c1 * c1 - 1) > 1e-2)


def _record(*values):
    return dict(zip(FIELDS, values, strict=True))


def _xp(*trees):
    """numpy on concrete values (the eager pass compiles only the layer runs), else jax.numpy."""
    return jnp if traced(*trees) else np


def _moments(act, y):
    """:func:`unit_moments` of ``y`` (``act(y)`` if given); concrete outputs up to
    :data:`HOST_MAX` values on the host in float64 (cheaper than compiling the reduction)."""
    y = y if act is None else act(y)
    if traced(y) or y.size > HOST_MAX:
        return unit_moments(y)
    sd = np.float64 if y.dtype == jnp.float64 else np.float32
    with np.errstate(all="ignore"):  # inf/NaN outputs give non-finite moments (non_finite)
        out = _moments_of(np.asarray(y).astype(np.float64), 0, float(jnp.finfo(y.dtype).eps), np)
    return tuple(sd(v) for v in out)


def finite_inputs(inputs) -> jax.Array:
    """Whether every floating leaf of ``inputs`` is finite (on the host when concrete)."""
    leaves = [a for a in jax.tree_util.tree_leaves(inputs) if jnp.issubdtype(a.dtype, jnp.inexact)]
    xp = _xp(leaves)
    return _finite(*leaves, xp=xp) if leaves else xp.asarray(True)


def pooled(cfg, run, y0, inputs, center: bool):
    """LSUV on one layer. ``run(s, shift)``: output with kernel ``* s`` and bias ``- shift``;
    ``inputs``: the layer's inputs (their finiteness is reported).

    Returns ``(s, shift, y, record)``: the factor, the bias shift, the layer's output with them
    (re-run, never predicted) and the report's arrays for the layer.
    """
    t, tol, act = cfg.target, cfg.tol, cfg.activation if cfg.measure == "post" else None
    (mu0, v0, thr), in_ok = _moments(act, y0), finite_inputs(inputs)
    xp = _xp(mu0, v0, in_ok)
    finite = in_ok & _finite(v0, mu0, xp=xp)
    live = finite & (v0 > thr)
    need = live & (xp.abs(v0 - t) >= tol) & (cfg.max_iters > 0)
    s1 = xp.where(need, xp.sqrt(t / xp.where(live, v0, 1.0)), 1.0).astype(v0.dtype)
    y1 = run(s1, 0.0) if _go(need) else y0
    mu1, v1, _ = _moments(act, y1)
    inv = need & _inert(v0, v1, s1, xp=xp)  # measured on the first step only

    def cond(st):
        _, _, it, _, v = st
        go = need & ~inv & (it < cfg.max_iters) & (xp.abs(v - t) >= tol)
        return go & xp.isfinite(v) & (v > 0)

    def body(st):
        s, _, it, _, v = st
        s = (s * xp.sqrt(t / xp.where(v > 0, v, t))).astype(s.dtype)
        y = run(s, 0.0)
        return (s, y, it + 1, *_moments(act, y)[:2])

    s, y, it, mu, v = while_loop(cond, body, (s1, y1, need.astype(np.int32), mu1, v1))
    bad = need & ~(xp.isfinite(v) & xp.isfinite(s) & (s > 0))
    keep = ~need | inv | bad  # the layer is left as it was
    s, y, it, v, mu = _pick(keep, (xp.ones_like(s), y0, 0 * it, v0, mu0), (s, y, it, v, mu))
    shift = xp.zeros_like(v)
    if center and _go(live & ~inv):
        shift = xp.where(live & ~inv, xp.mean(xp.asarray(y).astype(v.dtype)), 0.0)
        mu, v, _ = _moments(act, y := run(s, shift))
    status = xp.select(
        [~finite | bad, ~live, inv, xp.abs(v - t) < tol],
        [rep.NON_FINITE, rep.ZERO_VARIANCE, rep.SCALE_INVARIANT, rep.CONVERGED],
        rep.NOT_CONVERGED,
    )
    return s, shift, y, _record(it, s, v0, v, mu, status, xp.zeros((), np.int32), in_ok)


def per_unit(cfg, run, y0, in_ok, n: int, b0):
    """Per-unit normalisation of one layer (within-layer / weight-norm init).

    ``run(c, b)``: output with the scaled parameter multiplied by ``c`` (per unit, on the
    output's ``n`` trailing axes) and bias ``b`` (or ``None``). Returns ``(c, b, y, record)``.
    """
    t, beta, tol = cfg.target, cfg.target_mean, cfg.tol
    mu0, v0, thr = unit_moments(y0, n)
    finite = in_ok & _finite(v0, mu0)
    live = finite & (v0 > thr)
    c0 = jnp.ones_like(v0)
    bf = None if b0 is None else b0.astype(v0.dtype)

    def good(mu, v):
        ok = jnp.abs(v - t) < tol
        if b0 is not None:
            ok = ok & (jnp.abs(mu - beta) < tol)
        return jnp.all(jnp.where(live, ok, True))

    def rescale(c, b, mu, v):  # exact for an affine layer: the unit mean becomes r (mu - b) + b'
        r = jnp.where(live, jnp.sqrt(t / jnp.where(live & (v > 0), v, t)), 1.0)
        return c * r, None if b is None else jnp.where(live, beta - r * (mu - b), b)

    c1, b1 = rescale(c0, bf, mu0, v0)
    go = jnp.any(live)
    y1 = run(c1, b1) if _go(go) else y0
    mu1, v1, _ = unit_moments(y1, n)
    inv = go & jnp.all(jnp.where(live, jnp.abs(v1 - v0) <= INVARIANT_RTOL * v0, True))
    inv = inv & jnp.any(live & (jnp.abs(c1 * c1 - 1) > 1e-2))

    def cond(st):
        c, b, y, mu, v, it = st
        return go & ~inv & (it < UNIT_ITERS) & ~good(mu, v) & _finite(v)

    def body(st):
        c, b, y, mu, v, it = st
        c, b = rescale(c, b, mu, v)
        y = run(c, b)
        mu, v, _ = unit_moments(y, n)
        return c, b, y, mu, v, it + 1

    c, b, y, mu, v, it = while_loop(cond, body, (c1, b1, y1, mu1, v1, jnp.ones((), jnp.int32)))
    bad = go & ~_finite(v, c)
    keep = ~go | inv | bad | ~finite
    c, b, y, it = _pick(keep, (c0, bf, y0, 0 * it), (c, b, y, it))  # b: None without a bias
    (pmu, pv, _), dead = unit_moments(y), jnp.sum(~live & finite)
    status = jnp.select(
        [~finite | bad, dead > 0, inv, good(*unit_moments(y, n)[:2])],
        [rep.NON_FINITE, rep.ZERO_VARIANCE, rep.SCALE_INVARIANT, rep.CONVERGED],
        rep.NOT_CONVERGED,
    )
    rms, pv0 = jnp.sqrt(jnp.mean(jnp.square(c))), unit_moments(y0)[1]
    return c, b, y, _record(it, rms, pv0, pv, pmu, status, dead.astype(jnp.int32), in_ok)
