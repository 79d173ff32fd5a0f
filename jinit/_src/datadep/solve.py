"""Verified per-layer solves: a closed-form step, re-measured on the layer's real output.

One implementation for both executions: Python control flow on concrete values (eager pass),
``lax`` control flow when traced (jitted pass). The algorithm, the fallback loop and the
``scale_invariant`` test: docs/lsuv.md ("Verified solves").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jinit._src.datadep import report as rep

INVARIANT_RTOL = 1e-3  # relative change of variance below which the kernel's scale is inert
UNIT_ITERS = 10  # bound of the per-unit fallback loop


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


@functools.partial(jax.jit, static_argnums=1)
def unit_moments(y: jax.Array, n: int = 0):
    """Mean and variance over all leading axes (``n`` trailing unit axes; 0: pooled), and the
    zero-variance threshold ``(4 eps)^2 E[y^2]`` (rounding noise of the output's dtype)."""
    yf = y.astype(jnp.float64 if y.dtype == jnp.float64 else jnp.float32)
    red = tuple(range(y.ndim - n))
    mean = jnp.mean(yf, axis=red)
    var = jnp.mean(jnp.square(yf - jnp.mean(yf, axis=red, keepdims=True)), axis=red)
    eps = float(jnp.finfo(y.dtype).eps)
    thr = (4 * eps) ** 2 * (var + mean * mean) + float(jnp.finfo(jnp.float32).tiny)
    return mean, var, thr


def _finite(*xs):
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(x)) for x in xs])


def _inert(v0, v1, c1):
    """The variance did not move although the factor did: the kernel's scale is inert."""
    return (jnp.abs(v1 - v0) <= INVARIANT_RTOL * v0) & (jnp.abs(c1 * c1 - 1) > 1e-2)


def _record(*values):
    """The report's arrays for one layer (:data:`report.ARRAY_FIELDS` without ``converged``)."""
    return dict(zip([f for f in rep.ARRAY_FIELDS if f != "converged"], values, strict=True))


# The scalar decisions of :func:`pooled`, jitted so that an eager pass dispatches one program
# per decision (compiled once per dtype) instead of a dozen small ops. ``c``: (target, tol,
# max_iters), static.
_static = functools.partial(jax.jit, static_argnums=0)


@_static
def _start(c, v0, mu0, thr, in_ok):
    t, tol, iters = c
    finite = in_ok & _finite(v0, mu0)
    live = finite & (v0 > thr)
    need = live & (jnp.abs(v0 - t) >= tol) & (iters > 0)
    return finite, live, need, jnp.where(need, jnp.sqrt(t / jnp.where(live, v0, 1.0)), 1.0)


@_static
def _again(c, go, s, v, it):
    t, tol, iters = c
    return go & (it < iters) & (jnp.abs(v - t) >= tol) & jnp.isfinite(v) & (v > 0)


@_static
def _status(c, finite, bad, live, inv, v):
    t, tol, _ = c
    return jnp.select(
        [~finite | bad, ~live, inv, jnp.abs(v - t) < tol],
        [rep.NON_FINITE, rep.ZERO_VARIANCE, rep.SCALE_INVARIANT, rep.CONVERGED],
        rep.NOT_CONVERGED,
    ).astype(jnp.int32)


@jax.jit
def _verify(need, v0, v1, s1):
    return need & _inert(v0, v1, s1)


@jax.jit
def _settle(need, inv, s, v):
    bad = need & ~(jnp.isfinite(v) & jnp.isfinite(s) & (s > 0))
    return bad, ~need | inv | bad


def pooled(cfg, run, y0, in_ok, center: bool):
    """LSUV on one layer. ``run(s, shift)``: output with kernel ``* s`` and bias ``- shift``.

    Returns ``(s, shift, y, record)``: the factor, the bias shift, the layer's output with them
    (re-run, never predicted) and the report's arrays for the layer.
    """
    m = cfg.activation if cfg.measure == "post" else (lambda y: y)
    c = (cfg.target, cfg.tol, cfg.max_iters)
    mu0, v0, thr = unit_moments(m(y0))
    finite, live, need, s1 = _start(c, v0, mu0, thr, in_ok)
    y1 = run(s1, 0.0) if _go(need) else y0
    mu1, v1, _ = unit_moments(m(y1))
    inv = _verify(need, v0, v1, s1)
    go = need & ~inv

    def body(st):
        s, _, v, _, it = st
        s = s * jnp.sqrt(cfg.target / v)
        mu, v, _ = unit_moments(m(y := run(s, 0.0)))
        return s, y, v, mu, it + 1

    init = (s1, y1, v1, mu1, need.astype(jnp.int32))
    s, y, v, mu, it = while_loop(lambda st: _again(c, go, st[0], st[2], st[4]), body, init)
    bad, keep = _settle(need, inv, s, v)
    s, y, v, mu, it = _pick(keep, (jnp.ones_like(s), y0, v0, mu0, 0 * it), (s, y, v, mu, it))
    shift = jnp.zeros_like(v)
    if center and _go(live & ~inv):
        shift = jnp.where(live & ~inv, jnp.mean(y.astype(v.dtype)), 0.0)
        mu, v, _ = unit_moments(m(y := run(s, shift)))
    status = _status(c, finite, bad, live, inv, v)
    return s, shift, y, _record(it, s, v0, v, mu, status, jnp.zeros((), jnp.int32), in_ok)


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
    c, y, it = _pick(keep, (c0, y0, 0 * it), (c, y, it))
    if b0 is not None:
        b = _pick(keep, bf, b)
    pmu, pv, _ = unit_moments(y)
    dead = jnp.sum(~live & finite)
    status = jnp.select(
        [~finite | bad, dead > 0, inv, good(*unit_moments(y, n)[:2])],
        [rep.NON_FINITE, rep.ZERO_VARIANCE, rep.SCALE_INVARIANT, rep.CONVERGED],
        rep.NOT_CONVERGED,
    )
    rms = jnp.sqrt(jnp.mean(jnp.square(c)))
    pv0 = unit_moments(y0)[1]
    return c, b, y, _record(it, rms, pv0, pv, pmu, status, dead.astype(jnp.int32), in_ok)
