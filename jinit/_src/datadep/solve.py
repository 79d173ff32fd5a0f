"""Verified per-layer solves: one closed-form step, re-measured on the layer's real output.

Each solve gets ``run`` (the layer alone on its captured input, with rescaled params) and the
layer's output. The closed-form step (``s = sqrt(target / v)``, exact for a layer linear in
its kernel) is re-run and measured; when it misses the tolerance the paper's loop continues on
the captured input (bounded by ``max_iters``). A layer whose output variance does not move
when its kernel is rescaled is ``scale_invariant`` and left unchanged. Python loops when the
values are concrete (eager pass), ``lax.while_loop`` when traced (jitted pass).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src.datadep import report as rep

INVARIANT_RTOL = 1e-3  # relative change of variance below which the kernel's scale is inert
UNIT_ITERS = 10  # bound of the per-unit fallback loop


def traced(*trees) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


def while_loop(cond, body, init):
    """``lax.while_loop`` when traced; a Python loop on concrete values (nothing to compile)."""
    if traced(init):
        return jax.lax.while_loop(cond, body, init)
    while bool(cond(init)):
        init = body(init)
    return init


def _sd(dtype):
    return jnp.float64 if dtype == jnp.float64 else jnp.float32


@functools.partial(jax.jit, static_argnums=1)
def unit_moments(y: jax.Array, n: int = 0):
    """Mean and variance over all leading axes (``n`` trailing unit axes; 0: pooled), and the
    zero-variance threshold ``(4 eps)^2 E[y^2]`` (rounding noise of the output's dtype)."""
    yf = y.astype(_sd(y.dtype))
    red = tuple(range(y.ndim - n))
    mean = jnp.mean(yf, axis=red)
    var = jnp.mean(jnp.square(yf - jnp.mean(yf, axis=red, keepdims=True)), axis=red)
    eps = float(jnp.finfo(y.dtype).eps)
    thr = (4 * eps) ** 2 * (var + mean * mean) + float(jnp.finfo(jnp.float32).tiny)
    return mean, var, thr


def _finite(*xs):
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(x)) for x in xs])


def _record(*values):
    """The report's arrays for one layer (:data:`report.ARRAY_FIELDS` without ``converged``)."""
    return dict(zip([f for f in rep.ARRAY_FIELDS if f != "converged"], values, strict=True))


def _pick(c, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(c, u, v), a, b)


def pooled(cfg, run, y0, in_ok, center: bool):
    """LSUV on one layer. ``run(s, shift)``: output with kernel ``* s`` and bias ``- shift``.

    Returns ``(s, shift, y, record)``: the factor, the bias shift, the layer's output with them
    (re-run, never predicted) and the report's arrays for the layer.
    """
    if not traced(y0, in_ok):
        return _pooled_eager(cfg, run, y0, bool(in_ok), center)
    m = cfg.activation if cfg.measure == "post" else (lambda y: y)
    t, tol = cfg.target, cfg.tol
    mu0, v0, thr = unit_moments(m(y0))
    finite = in_ok & _finite(v0, mu0)
    live = finite & (v0 > thr)
    need = live & (jnp.abs(v0 - t) >= tol) & (cfg.max_iters > 0)
    s1 = jnp.where(need, jnp.sqrt(t / jnp.where(live, v0, 1.0)), 1.0)
    y1 = run(s1, 0.0) if traced(need) or bool(need) else y0
    mu1, v1, _ = unit_moments(m(y1))
    inv = need & (jnp.abs(v1 - v0) <= INVARIANT_RTOL * v0) & (jnp.abs(s1 * s1 - 1) > 1e-2)

    def cond(st):
        s, _, v, _, it = st
        go = need & ~inv & (it < cfg.max_iters) & (jnp.abs(v - t) >= tol)
        return go & jnp.isfinite(v) & (v > 0)

    def body(st):
        s, _, v, _, it = st
        s = s * jnp.sqrt(t / v)
        y = run(s, 0.0)
        mu, v, _ = unit_moments(m(y))
        return s, y, v, mu, it + 1

    st = while_loop(cond, body, (s1, y1, v1, mu1, need.astype(jnp.int32)))
    s, y, v, mu, it = st
    bad = need & ~(jnp.isfinite(v) & jnp.isfinite(s) & (s > 0))
    keep = ~need | inv | bad
    s, y, v, mu, it = _pick(keep, (jnp.ones_like(s), y0, v0, mu0, 0 * it), (s, y, v, mu, it))
    shift = jnp.zeros_like(v)
    if center:
        shift = jnp.where(live & ~inv, jnp.mean(y.astype(v.dtype)), 0.0)
        y = run(s, shift) if traced(shift) or bool(shift != 0) else y
        mu, v, _ = unit_moments(m(y))
    status = jnp.select(
        [~finite | bad, ~live, inv, jnp.abs(v - t) < tol],
        [rep.NON_FINITE, rep.ZERO_VARIANCE, rep.SCALE_INVARIANT, rep.CONVERGED],
        rep.NOT_CONVERGED,
    )
    return (
        s,
        shift,
        y,
        _record(it, s, v0, v, mu, status, jnp.zeros((), jnp.int32), in_ok),
    )


def _pooled_eager(cfg, run, y0, in_ok: bool, center: bool):
    """:func:`pooled` on concrete values: Python control flow, nothing new to compile."""
    m = cfg.activation if cfg.measure == "post" else (lambda y: y)
    t, tol = cfg.target, cfg.tol

    def stats(y):
        return tuple(float(a) for a in unit_moments(m(y)))

    mu0, v0, thr = stats(y0)
    finite = in_ok and math.isfinite(v0) and math.isfinite(mu0)
    live = finite and v0 > thr
    s, y, mu, v, it, inv, bad = 1.0, y0, mu0, v0, 0, False, False
    if live and abs(v0 - t) >= tol and cfg.max_iters > 0:
        s, it = math.sqrt(t / v0), 1
        y = run(s, 0.0)
        mu, v, _ = stats(y)
        inv = abs(v - v0) <= INVARIANT_RTOL * v0 and abs(s * s - 1) > 1e-2
        while not inv and it < cfg.max_iters and abs(v - t) >= tol and v > 0:
            s, it = s * math.sqrt(t / v), it + 1
            y = run(s, 0.0)
            mu, v, _ = stats(y)
        bad = not (math.isfinite(v) and math.isfinite(s) and s > 0)
        if inv or bad:
            s, y, mu, v, it = 1.0, y0, mu0, v0, 0
    shift = 0.0
    if center and live and not inv:
        shift = float(jnp.mean(y.astype(jnp.float32)))
        y = run(s, shift)
        mu, v, _ = stats(y)
    status = (
        rep.NON_FINITE if not finite or bad else rep.ZERO_VARIANCE if not live
        else rep.SCALE_INVARIANT if inv else rep.CONVERGED if abs(v - t) < tol
        else rep.NOT_CONVERGED
    )  # fmt: skip
    f32 = np.float32
    rec = _record(np.int32(it), f32(s), f32(v0), f32(v), f32(mu), np.int32(status), np.int32(0),
                  np.bool_(in_ok))  # fmt: skip
    return np.float32(s), np.float32(shift), y, rec


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
    y1 = run(c1, b1) if traced(go) or bool(go) else y0
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
        b = jnp.where(keep, bf, b)
    pmu, pv, _ = unit_moments(y)
    dead = jnp.sum(~live & finite)
    status = jnp.select(
        [~finite | bad, dead > 0, inv, good(*unit_moments(y, n)[:2])],
        [rep.NON_FINITE, rep.ZERO_VARIANCE, rep.SCALE_INVARIANT, rep.CONVERGED],
        rep.NOT_CONVERGED,
    )
    _, pv0, _ = unit_moments(y0)
    rms = jnp.sqrt(jnp.mean(jnp.square(c)))
    return (
        c,
        b,
        y,
        _record(it, rms, pv0, pv, pmu, status, dead.astype(jnp.int32), in_ok),
    )
