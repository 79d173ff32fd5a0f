"""Mean-field theory of signal propagation in deep random networks.

A fully connected network with weights ``W_ij ~ N(0, sigma_w**2 / N_in)`` and biases
``b_i ~ N(0, sigma_b**2)`` (``sigma_w`` and ``sigma_b`` are standard deviations; the weight
variance is relative to the fan-in), in the limit of infinite width, propagates the
second moment ``q`` of its pre-activations and the correlation ``c`` between two inputs by
deterministic maps::

    q_l    = sigma_w**2 E_z[phi(sqrt(q_{l-1}) z)**2] + sigma_b**2
    c_l    = (sigma_w**2 E[phi(u_1) phi(u_2)] + sigma_b**2) / q_l,
             u_1 = sqrt(q) z_1,  u_2 = sqrt(q) (c z_1 + sqrt(1 - c**2) z_2)
    chi_1  = sigma_w**2 E_z[phi'(sqrt(q*) z)**2]

with ``z, z_1, z_2`` independent standard normals. ``chi_1 < 1`` is the ordered phase (inputs
become correlated, gradients vanish), ``chi_1 > 1`` the chaotic phase (nearby inputs
decorrelate, gradients explode) and ``chi_1 = 1`` the edge of chaos, where the correlation
depth scale ``xi_c`` diverges. Every expectation is a Gaussian quadrature written in JAX (see
:func:`gaussian_expectation` for why it is split at 0 rather than plain Gauss–Hermite), so
everything here is differentiable, jittable and vmappable over ``sigma_w`` and ``sigma_b``.

The activation is any elementwise function: a name (see :func:`activation_fn`) or a callable.

References:
  Poole, Lahiri, Raghu, Sohl-Dickstein, Ganguli. Exponential expressivity in deep neural
  networks through transient chaos. arXiv:1606.05340, 2016.
  Schoenholz, Gilmer, Ganguli, Sohl-Dickstein. Deep information propagation.
  arXiv:1611.01232, 2017.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import random_mlp
from jinit._src.checks import InitWarning, check_int, check_number

Activation = str | Callable[[jax.Array], jax.Array]

#: Quadrature nodes for one-dimensional Gaussian expectations (half on each side of 0).
NUM_POINTS = 128
#: Radial quadrature nodes for two-dimensional (correlation) expectations.
NUM_POINTS_2D = 48
#: Iterations of the variance and correlation maps used to find their fixed points.
NUM_ITERS = 500


_ACTIVATIONS: dict[str, Callable[..., jax.Array]] = {
    "linear": lambda x: x,
    "identity": lambda x: x,
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,
    "tanh": jnp.tanh,
    "hard_tanh": jax.nn.hard_tanh,
    "sigmoid": jax.nn.sigmoid,
    "erf": jax.scipy.special.erf,
    "selu": jax.nn.selu,
    "elu": jax.nn.elu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "softplus": jax.nn.softplus,
    "sin": jnp.sin,
}


def activation_fn(activation: Activation, **kwargs: Any) -> Callable[[jax.Array], jax.Array]:
    """Resolves an activation name or callable to an elementwise function.

    Args:
      activation: one of ``linear``, ``identity``, ``relu``, ``leaky_relu``, ``tanh``,
        ``hard_tanh``, ``sigmoid``, ``erf``, ``selu``, ``elu``, ``gelu`` (exact, erf form),
        ``silu``/``swish``, ``softplus``, ``sin``; or any elementwise callable.
      **kwargs: keyword arguments bound to the function (e.g. ``negative_slope=0.2`` for
        ``leaky_relu``, whose default slope is 0.01 as in ``jax.nn.leaky_relu``).

    Returns:
      The elementwise function ``phi``.

    Raises:
      ValueError: for an unknown name (the message lists the known ones).
    """
    if not callable(activation) and activation not in _ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; known names: {sorted(_ACTIVATIONS)}, "
            "or pass an elementwise callable"
        )
    fn = activation if callable(activation) else _ACTIVATIONS[activation]
    return _bind(fn, tuple(sorted(kwargs.items()))) if kwargs else fn


@functools.lru_cache(maxsize=256)
def _bind(fn, kwargs):
    # One object per (function, keywords), so the jitted functions here, which take the
    # activation as a static argument, compile once per activation rather than once per call.
    return functools.partial(fn, **dict(kwargs))


def derivative(fn: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """Elementwise derivative phi' of an elementwise function (one forward-mode pass).

    Args:
      fn: elementwise function.

    Returns:
      A function computing ``fn'(x)`` elementwise.
    """
    return lambda x: jax.jvp(fn, (x,), (jnp.ones_like(x),))[1]


#: Half-width of the integration range, in standard deviations (tail mass ~1e-23).
_RADIUS = 10.0


@functools.cache
def _half_line_rule(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes t in [0, R] and weights for integrals over [0, R], clustered near 0.

    Gauss–Legendre in x on [0, 1] with t = R x**2: the substitution puts nodes densely near the
    origin, where a large pre-activation variance q squeezes the features of phi(sqrt(q) z).
    """
    x, w = np.polynomial.legendre.leggauss(num_points)
    x, w = (x + 1.0) / 2.0, w / 2.0
    return _RADIUS * x * x, w * 2.0 * _RADIUS * x


@functools.cache
def _normal_rule(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with sum(w * f(z)) ~= E[f(z)], z ~ N(0, 1), split at z = 0."""
    t, w = _half_line_rule(num_points // 2)
    w = w * np.exp(-t * t / 2.0) / np.sqrt(2.0 * np.pi)
    return np.concatenate([-t[::-1], t]), np.concatenate([w[::-1], w])


def gaussian_expectation(
    f: Callable[[jax.Array], jax.Array], q=1.0, *, num_points: int = NUM_POINTS
):
    """E_z[f(sqrt(q) z)] for z ~ N(0, 1), by Gaussian quadrature split at z = 0.

    Gauss–Legendre on each half-line [-R, 0] and [0, R] (R = 10, nodes clustered near 0) times
    the normal density. Plain Gauss–Hermite converges only as 1/n for activations with a kink
    at 0 (E[relu(z)] is off by 3e-3 with 128 nodes) and loses the narrow peak of
    phi'(sqrt(q) z) for large q; this rule is exact to float64 precision for ReLU-type kinks
    at 0 and smooth activations with 128 nodes, and within 1e-6 for E[sech(sqrt(q) z)**4]
    at q = 1e4.

    Args:
      f: elementwise function.
      q: variance of the Gaussian argument (scalar; vmap for grids).
      num_points: number of quadrature nodes (static, even).

    Returns:
      A scalar array.
    """
    z, w = _normal_rule(num_points)
    q = jnp.asarray(q)
    dtype = jnp.result_type(q, jnp.float32)
    return jnp.sum(jnp.asarray(w, dtype) * f(jnp.sqrt(q.astype(dtype)) * jnp.asarray(z, dtype)))


@functools.cache
def _polar_rule(num_radial: int, num_angular: int):
    r, w_r = _half_line_rule(num_radial)
    w_r = w_r * r * np.exp(-r * r / 2.0) / (2.0 * np.pi)
    x, w_x = np.polynomial.legendre.leggauss(num_angular)
    return r, w_r, x, w_x


def bivariate_expectation(
    f: Callable[[jax.Array], jax.Array],
    g: Callable[[jax.Array], jax.Array],
    q,
    c,
    *,
    num_points: int = NUM_POINTS_2D,
):
    """E[f(u_1) g(u_2)] for (u_1, u_2) Gaussian with variances q and correlation c.

    ``u_1 = sqrt(q) z_1`` and ``u_2 = sqrt(q) (c z_1 + sqrt(1 - c**2) z_2)``. In polar
    coordinates ``u_1 = sqrt(q) r cos(theta)`` and ``u_2 = sqrt(q) r cos(theta - arccos(c))``,
    so kinks of f and g at 0 lie on four rays; the angle integral is split there (Gauss–Legendre
    on each arc) and the radial one uses the weight ``r exp(-r**2 / 2)``. For ReLU this
    reproduces the arc-cosine kernel to float64 precision, and erf's arcsine kernel to 1e-12.

    Args:
      f: elementwise function of the first variable.
      g: elementwise function of the second variable.
      q: common variance (scalar).
      c: correlation in [-1, 1] (scalar).
      num_points: radial nodes; each of the four arcs gets half as many (static).

    Returns:
      A scalar array.
    """
    r, w_r, x, w_x = _polar_rule(num_points, num_points // 2)
    q, c = jnp.asarray(q), jnp.asarray(c)
    dtype = jnp.result_type(q, c, jnp.float32)
    r, w_r, x, w_x = (jnp.asarray(a, dtype) for a in (r, w_r, x, w_x))
    theta0 = jnp.arccos(jnp.clip(c.astype(dtype), -1.0, 1.0))
    half_pi = jnp.asarray(np.pi / 2.0, dtype)
    rays = jnp.array([half_pi, 3.0 * half_pi, theta0 + half_pi, theta0 + 3.0 * half_pi])
    rays = jnp.sort(jnp.mod(rays, 4.0 * half_pi))
    lo, hi = rays, jnp.concatenate([rays[1:], rays[:1] + 4.0 * half_pi])
    theta = ((hi + lo) / 2.0)[:, None] + ((hi - lo) / 2.0)[:, None] * x[None, :]
    w_theta = (((hi - lo) / 2.0)[:, None] * w_x[None, :]).reshape(-1)
    theta = theta.reshape(-1)
    sr = jnp.sqrt(q.astype(dtype)) * r[:, None]
    u1 = sr * jnp.cos(theta)[None, :]
    u2 = sr * jnp.cos(theta - theta0)[None, :]
    return jnp.sum(w_r[:, None] * w_theta[None, :] * f(u1) * g(u2))


def second_moment(activation: Activation, q=1.0, *, num_points: int = NUM_POINTS):
    """E_z[phi(sqrt(q) z)**2], the quantity fan-in initializers must cancel.

    Args:
      activation: name or elementwise callable.
      q: pre-activation variance.
      num_points: quadrature nodes.

    Returns:
      A scalar array; 1/2 for ReLU at q = 1, (1 + a**2)/2 for leaky ReLU with slope a. (The
      JAX, differentiable counterpart of :func:`jinit.compute_gain`'s NumPy quadrature.)
    """
    phi = activation_fn(activation)
    return gaussian_expectation(lambda u: phi(u) ** 2, q, num_points=num_points)


def post_activation_moments(activation: Activation, q, *, num_points: int = NUM_POINTS):
    """Mean and standard deviation of phi(h) for h ~ N(0, q).

    Args:
      activation: name or elementwise callable.
      q: pre-activation variance.
      num_points: quadrature nodes.

    Returns:
      ``{"mean": E[phi(h)], "std": sqrt(E[phi(h)**2] - E[phi(h)]**2)}``.
    """
    phi = activation_fn(activation)
    m1 = gaussian_expectation(phi, q, num_points=num_points)
    m2 = gaussian_expectation(lambda u: phi(u) ** 2, q, num_points=num_points)
    return {"mean": m1, "std": jnp.sqrt(jnp.maximum(m2 - m1**2, 0.0))}


def variance_map(q, activation: Activation, sigma_w, sigma_b=0.0, *, num_points: int = NUM_POINTS):
    """One layer of the length map: sigma_w**2 E[phi(sqrt(q) z)**2] + sigma_b**2.

    Args:
      q: second moment of the previous layer's pre-activations.
      activation: name or elementwise callable.
      sigma_w: weight standard deviation times sqrt(fan_in).
      sigma_b: bias standard deviation.
      num_points: quadrature nodes.

    Returns:
      The next layer's q (scalar array).

    References:
      Poole et al. Exponential expressivity in deep neural networks through transient chaos.
      arXiv:1606.05340, 2016 (eq. 3).
    """
    return sigma_w**2 * second_moment(activation, q, num_points=num_points) + sigma_b**2


def correlation_map(
    c, q, activation: Activation, sigma_w, sigma_b=0.0, *, num_points: int = NUM_POINTS_2D
):
    """One layer of the correlation map for two inputs of equal length q.

    ``c_next = (sigma_w**2 E[phi(u_1) phi(u_2)] + sigma_b**2) / q_next`` with
    ``q_next = variance_map(q)``, ``u_1 = sqrt(q) z_1`` and
    ``u_2 = sqrt(q) (c z_1 + sqrt(1 - c**2) z_2)``.

    Args:
      c: correlation of the previous layer's pre-activations.
      q: their second moment (both inputs).
      activation: name or elementwise callable.
      sigma_w: weight standard deviation times sqrt(fan_in).
      sigma_b: bias standard deviation.
      num_points: quadrature nodes per axis.

    Returns:
      The next layer's correlation (scalar array).

    References:
      Poole et al. arXiv:1606.05340, 2016 (eq. 5).
    """
    phi = activation_fn(activation)
    q_next = variance_map(q, phi, sigma_w, sigma_b)
    cross = bivariate_expectation(phi, phi, q, c, num_points=num_points)
    return (sigma_w**2 * cross + sigma_b**2) / q_next


#: q* tolerance: relative error of the returned fixed point (estimated as
#: ``|f(q) - q| / (1 - f'(q))``), plus an absolute floor for q* = 0.
Q_STAR_RTOL = 1e-4
Q_STAR_ATOL = 1e-10
#: Closer to the critical slope than this (``f'(q*) > 1 - margin``) the fixed point is not
#: resolved in float32: an error of 1e-7 in the map moves q* by 1e-7 / margin relative.
Q_STAR_SLOPE_MARGIN = 1e-3


def _solve_q_star(phi, sigma_w, sigma_b, q0, num_iters, num_points):
    """``(q, converged)``: iterate the variance map f, taking a Newton step on f(q) - q where
    it is well conditioned and lowers the residual (the plain map converges only at the rate
    f'(q*), which tends to 1 at the critical line)."""
    dtype = jnp.result_type(sigma_w, sigma_b, q0, jnp.float32)

    def f(q):
        return variance_map(q, phi, sigma_w, sigma_b, num_points=num_points)

    def body(_, q):
        fq, dfq = jax.jvp(f, (q,), (jnp.ones_like(q),))
        ok = (1.0 - dfq) >= Q_STAR_SLOPE_MARGIN
        newton = q - (fq - q) / jnp.where(ok, dfq - 1.0, -1.0)
        ok = ok & jnp.isfinite(newton) & (newton >= 0)
        newton = jnp.where(ok, newton, fq)
        better = jnp.abs(f(newton) - newton) < jnp.abs(f(fq) - fq)
        return jnp.where(ok & better, newton, fq)

    q = jax.lax.fori_loop(0, num_iters, body, jnp.asarray(q0, dtype))
    fq, dfq = jax.jvp(f, (q,), (jnp.ones_like(q),))
    g = fq - q
    finite = jnp.isfinite(q) & jnp.isfinite(fq)
    stable = (1.0 - dfq) >= Q_STAR_SLOPE_MARGIN
    err = jnp.abs(g) / jnp.where(stable, 1.0 - dfq, 1.0)
    converged = finite & ((g == 0) | (stable & (err <= Q_STAR_RTOL * jnp.abs(q) + Q_STAR_ATOL)))
    # Slope >= 1 (to the margin) and still growing: no finite fixed point (ReLU sw^2 >= 2).
    diverged = ~finite | (~converged & ~stable & (g > 0))
    q = jnp.where(diverged, jnp.inf, q)
    # Clear divergence (slope > 1 + margin) is an answer; within the margin it is not resolved.
    resolved = converged | ~finite | (diverged & (dfq - 1.0 >= Q_STAR_SLOPE_MARGIN))
    return q, resolved


def _warn_unresolved(fn: str, resolved, sigma_w, sigma_b) -> None:
    """InitWarning naming the (sigma_w, sigma_b) whose q* did not converge (under jit/vmap
    through a host callback)."""

    def warn(resolved, sigma_w, sigma_b):
        ok, sw, sb = np.broadcast_arrays(np.asarray(resolved, bool), sigma_w, sigma_b)
        bad = ~ok
        if not bad.any():
            return
        pairs = list(zip(sw[bad], sb[bad], strict=True))[:5]
        pts = ", ".join(f"(sigma_w={w:.6g}, sigma_b={b:.6g})" for w, b in pairs)
        warnings.warn(
            f"{fn}: the fixed point q* did not converge to rtol={Q_STAR_RTOL:g} at {pts}"
            f"{' ...' if bad.sum() > 5 else ''}: the variance map's slope there is within "
            f"{Q_STAR_SLOPE_MARGIN:g} of 1 (the critical line), where q* is not resolved (it "
            "is reported as inf when the map still grows); results built on it are approximate",
            InitWarning,
            stacklevel=4,
        )

    values = (resolved, jnp.asarray(sigma_w), jnp.asarray(sigma_b))
    if any(isinstance(v, jax.core.Tracer) for v in values):
        jax.debug.callback(warn, *values)
    else:
        warn(*values)


@functools.partial(jax.jit, static_argnames=("activation", "num_iters", "num_points"))
def _q_star(activation, sigma_w, sigma_b, q0, num_iters, num_points):
    phi = activation_fn(activation)
    return _solve_q_star(phi, sigma_w, sigma_b, q0, num_iters, num_points)


def q_star(
    activation: Activation,
    sigma_w,
    sigma_b=0.0,
    *,
    q0=1.0,
    num_iters: int = NUM_ITERS,
    num_points: int = NUM_POINTS,
):
    """Fixed point q* of the variance map ``f(q) = sigma_w**2 E[phi(sqrt(q) z)**2] +
    sigma_b**2`` (Poole et al. 2016, eq. 3), from q0.

    The map is iterated, with a Newton step on ``f(q) - q`` wherever it is well conditioned
    and lowers the residual, so convergence does not slow down near the critical line (the
    plain map converges at the rate ``f'(q*)``, which tends to 1 there). The result is q* to
    a relative error of ``Q_STAR_RTOL`` (1e-4; absolute ``Q_STAR_ATOL`` for q* = 0), estimated
    as ``|f(q) - q| / (1 - f'(q))``. ``inf`` where the map has no finite fixed point (ReLU
    with ``sigma_w**2 > 2``, or ``= 2`` with ``sigma_b > 0``: the exact ReLU fixed point is
    ``sigma_b**2 / (1 - sigma_w**2 / 2)``). Where ``f'`` is within ``Q_STAR_SLOPE_MARGIN``
    (1e-3) of 1 the fixed point is not resolved in float32: an :class:`jinit.InitWarning`
    names ``sigma_w`` and ``sigma_b`` and the result is ``inf`` (the map still grows) or the
    last iterate.

    Jittable, vmappable and differentiable; under ``jit``/``vmap`` the warning is emitted by a
    host callback.

    Args:
      activation: name or elementwise callable.
      sigma_w: weight standard deviation times sqrt(fan_in).
      sigma_b: bias standard deviation.
      q0: starting point (the input's second moment).
      num_iters: iterations (static).
      num_points: quadrature nodes.

    Returns:
      q* (scalar array), or ``inf``.

    Warns:
      InitWarning: q* not resolved (near the critical line), naming sigma_w and sigma_b.

    References:
      Poole et al. arXiv:1606.05340, 2016 (eq. 3-4); Schoenholz et al. arXiv:1611.01232, 2017.
    """
    check_int("q_star", "num_iters", num_iters)
    check_int("q_star", "num_points", num_points, minimum=2)
    q, resolved = _q_star(activation, sigma_w, sigma_b, q0, num_iters, num_points)
    _warn_unresolved("q_star", resolved, sigma_w, sigma_b)
    return q


@functools.partial(jax.jit, static_argnames=("activation", "num_points"))
def _chi_1(activation, sigma_w, sigma_b, q, num_points):
    phi = activation_fn(activation)
    dphi = derivative(phi)
    return sigma_w**2 * gaussian_expectation(lambda u: dphi(u) ** 2, q, num_points=num_points)


def chi_1(activation: Activation, sigma_w, sigma_b=0.0, *, q=None, num_points: int = NUM_POINTS):
    """chi_1 = sigma_w**2 E[phi'(sqrt(q*) z)**2]: the per-layer growth of gradients and of
    perturbations between nearby inputs.

    ``chi_1 < 1``: ordered phase; ``chi_1 > 1``: chaotic; ``chi_1 = 1``: edge of chaos. For the
    identity ``chi_1 = sigma_w**2``; for ReLU ``chi_1 = sigma_w**2 / 2`` for every q.

    Args:
      activation: name or elementwise callable.
      sigma_w: weight standard deviation times sqrt(fan_in).
      sigma_b: bias standard deviation.
      q: evaluate at this q (>= 0) instead of q* (e.g. the input's second moment).
      num_points: quadrature nodes.

    Returns:
      chi_1 (scalar array).

    Raises:
      ValueError: a concrete ``q`` that is negative or not finite.

    Warns:
      InitWarning: with ``q=None``, as :func:`q_star`.

    References:
      Poole et al. arXiv:1606.05340, 2016 (eq. 7); Schoenholz et al. arXiv:1611.01232, 2017.
    """
    if q is None:
        q = q_star(activation, sigma_w, sigma_b, num_points=num_points)
    else:
        check_number("chi_1", "q", q, nonnegative=True)
    return _chi_1(activation, sigma_w, sigma_b, q, num_points)


@functools.partial(jax.jit, static_argnames=("activation", "num_iters", "num_points"))
def c_star(
    activation: Activation,
    sigma_w,
    sigma_b=0.0,
    *,
    q=None,
    c0=0.5,
    num_iters: int = NUM_ITERS,
    num_points: int = NUM_POINTS_2D,
):
    """Stable fixed point c* of the correlation map at q = q*.

    ``c* = 1`` exactly when ``chi_1 <= 1`` (c = 1 is then the stable fixed point); otherwise the
    map is iterated from ``c0`` to the stable ``c* < 1`` of the chaotic phase.

    Args:
      activation: name or elementwise callable.
      sigma_w: weight standard deviation times sqrt(fan_in).
      sigma_b: bias standard deviation.
      q: the fixed point q* if already known (computed otherwise).
      c0: starting correlation for the iteration.
      num_iters: iterations (static).
      num_points: radial quadrature nodes.

    Returns:
      c* (scalar array).

    References:
      Poole et al. arXiv:1606.05340, 2016.
    """
    phi = activation_fn(activation)
    qs = q_star(phi, sigma_w, sigma_b) if q is None else jnp.asarray(q)
    dtype = jnp.result_type(qs, c0)

    def body(_, c):
        c = correlation_map(c, qs, phi, sigma_w, sigma_b, num_points=num_points)
        return jnp.clip(c, -1.0, 1.0)

    c = jax.lax.fori_loop(0, num_iters, body, jnp.asarray(c0, dtype))
    return jnp.where(chi_1(phi, sigma_w, sigma_b, q=qs) <= 1.0, jnp.ones_like(c), c)


@functools.partial(jax.jit, static_argnames=("activation",))
def mean_field(activation: Activation, sigma_w, sigma_b=0.0) -> dict[str, jax.Array]:
    """Every fixed-point quantity at one (sigma_w, sigma_b), as a flat dict.

    Depth scales (Schoenholz et al. 2017)::

        xi_q**-1 = -log(chi_1 + sigma_w**2 E[phi''(sqrt(q*) z) phi(sqrt(q*) z)])
        xi_c**-1 = -log(chi_c),  chi_c = sigma_w**2 E[phi'(u_1*) phi'(u_2*)]  at (q*, c*)

    In the ordered phase c* = 1 and chi_c = chi_1. Signals about the length (q) and the
    correlation (c) of inputs survive for about xi_q and xi_c layers; xi_c diverges at
    chi_1 = 1, and Schoenholz et al. find networks train up to about 6 xi_c layers.

    Args:
      activation: name or elementwise callable.
      sigma_w: weight standard deviation times sqrt(fan_in).
      sigma_b: bias standard deviation.

    Returns:
      ``{"q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c"}`` (scalar arrays; xi is ``inf``
      where the log argument is >= 1, i.e. at or beyond the critical line for xi_c).

    References:
      Schoenholz, Gilmer, Ganguli, Sohl-Dickstein. Deep information propagation.
      arXiv:1611.01232, 2017.
    """
    phi = activation_fn(activation)
    dphi = derivative(phi)
    d2phi = derivative(dphi)
    qs = q_star(phi, sigma_w, sigma_b)
    x1 = chi_1(phi, sigma_w, sigma_b, q=qs)
    cs = c_star(phi, sigma_w, sigma_b, q=qs)
    chi_c = sigma_w**2 * bivariate_expectation(dphi, dphi, qs, cs)
    chi_c = jnp.where(cs >= 1.0, x1, chi_c)
    rate_q = x1 + sigma_w**2 * gaussian_expectation(lambda u: d2phi(u) * phi(u), qs)

    def depth(rate):
        return jnp.where(rate < 1.0, -1.0 / jnp.log(jnp.abs(rate)), jnp.inf)

    return {
        "q_star": qs,
        "c_star": cs,
        "chi_1": x1,
        "chi_c": chi_c,
        "xi_q": depth(rate_q),
        "xi_c": depth(chi_c),
    }


@functools.partial(jax.jit, static_argnames=("activation", "depth", "num_points"))
def propagate(
    activation: Activation,
    sigma_w,
    sigma_b=0.0,
    *,
    depth: int,
    q_in=1.0,
    c_in=0.0,
    num_points: int = NUM_POINTS,
) -> dict[str, jax.Array]:
    """Predicted q_l and c_l of the pre-activations of layers 1..depth.

    The first layer is linear in its input: ``q_1 = sigma_w**2 q_in + sigma_b**2`` and
    ``c_1 = (sigma_w**2 q_in c_in + sigma_b**2) / q_1``; later layers apply the variance and
    correlation maps.

    Args:
      activation: name or elementwise callable.
      sigma_w: weight standard deviation times sqrt(fan_in).
      sigma_b: bias standard deviation.
      depth: number of layers (static).
      q_in: the inputs' second moment per coordinate, ``mean(x**2)``.
      c_in: correlation between the two inputs.
      num_points: quadrature nodes (1-D; the 2-D rule uses NUM_POINTS_2D per axis).

    Returns:
      ``{"q": (depth,), "c": (depth,)}``.

    References:
      Poole et al. arXiv:1606.05340, 2016.
    """
    check_int("propagate", "depth", depth)
    check_int("propagate", "num_points", num_points, minimum=2)
    phi = activation_fn(activation)
    dtype = jnp.result_type(sigma_w, sigma_b, q_in, c_in, jnp.float32)
    q1 = jnp.asarray(sigma_w**2 * q_in + sigma_b**2, dtype)
    c1 = jnp.asarray((sigma_w**2 * q_in * c_in + sigma_b**2) / q1, dtype)

    def step(carry, _):
        q, c = carry
        q_next = variance_map(q, phi, sigma_w, sigma_b, num_points=num_points)
        c_next = (sigma_w**2 * bivariate_expectation(phi, phi, q, c) + sigma_b**2) / q_next
        c_next = jnp.clip(c_next, -1.0, 1.0)
        return (q_next, c_next), (q_next, c_next)

    _, (qs, cs) = jax.lax.scan(step, (q1, c1), None, length=depth - 1)
    return {"q": jnp.concatenate([q1[None], qs]), "c": jnp.concatenate([c1[None], cs])}


@functools.partial(
    jax.jit, static_argnames=("activation", "q_bounds", "num_bisections", "num_points")
)
def critical_point(
    activation: Activation,
    sigma_b=0.0,
    *,
    q_bounds: tuple[float, float] = (1e-8, 1e6),
    num_bisections: int = 80,
    num_points: int = NUM_POINTS,
) -> dict[str, jax.Array]:
    """The edge of chaos at a given sigma_b: the sigma_w where chi_1(q*) = 1.

    Parametrized by q rather than sigma_w: chi_1 = 1 fixes ``sigma_w**2 = S(q) =
    1 / E[phi'(sqrt(q) z)**2]``, and q* must then be a fixed point,
    ``g(q) = S(q) E[phi(sqrt(q) z)**2] + sigma_b**2 - q = 0``. The root of g is found by
    bisection in log q over ``q_bounds``; this avoids iterating the variance map, whose
    convergence is slowest exactly at criticality. Where g has no root in the bounds (ReLU
    with sigma_b > 0: q* is infinite) the result sits at a bound; for positively homogeneous
    activations S(q) is constant, so sigma_w is still right.

    Args:
      activation: name or elementwise callable.
      sigma_b: bias standard deviation.
      q_bounds: bracket for q* (static).
      num_bisections: bisection steps (static).
      num_points: quadrature nodes.

    Returns:
      ``{"sigma_w": ..., "q_star": ...}`` (scalar arrays). tanh at sigma_b = 0 gives
      sigma_w = 1 (q* -> 0); ReLU gives sqrt(2) for every sigma_b.

    References:
      Schoenholz et al. Deep information propagation. arXiv:1611.01232, 2017.
      Pennington, Schoenholz, Ganguli. Resurrecting the sigmoid in deep learning through
      dynamical isometry. arXiv:1711.04735, 2017.
    """
    phi = activation_fn(activation)
    dphi = derivative(phi)
    sigma_b = jnp.asarray(sigma_b, jnp.result_type(sigma_b, jnp.float32))

    def s_of(q):
        return 1.0 / gaussian_expectation(lambda u: dphi(u) ** 2, q, num_points=num_points)

    def g(log_q):
        q = jnp.exp(log_q)
        return s_of(q) * second_moment(phi, q, num_points=num_points) + sigma_b**2 - q

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        g_mid = g(mid)
        # A non-finite g means E[phi'**2] underflowed: q is far above the root.
        positive = jnp.isfinite(g_mid) & (g_mid > 0)
        return jnp.where(positive, mid, lo), jnp.where(positive, hi, mid)

    lo = jnp.log(jnp.asarray(q_bounds[0], sigma_b.dtype))
    hi = jnp.log(jnp.asarray(q_bounds[1], sigma_b.dtype))
    lo, hi = jax.lax.fori_loop(0, num_bisections, body, (lo, hi))
    q = jnp.exp(0.5 * (lo + hi))
    return {"sigma_w": jnp.sqrt(s_of(q)), "q_star": q}


def critical_sigma_w(activation: Activation, sigma_b=0.0, **kwargs):
    """sigma_w at the edge of chaos (chi_1 = 1) for a given sigma_b; see :func:`critical_point`.

    Args:
      activation: name or elementwise callable.
      sigma_b: bias standard deviation.
      **kwargs: passed to :func:`critical_point`.

    Returns:
      sigma_w (scalar array): sqrt(2) for ReLU, 1 for tanh at sigma_b = 0.
    """
    return critical_point(activation, sigma_b, **kwargs)["sigma_w"]


def phase_diagram(activation: Activation, sigma_w, sigma_b) -> dict[str, jax.Array]:
    """:func:`mean_field` on the grid ``sigma_w x sigma_b``, plus the critical line.

    Args:
      activation: name or elementwise callable.
      sigma_w: 1-D array of weight scales.
      sigma_b: 1-D array of bias scales.

    Returns:
      Flat dict: ``q_star, c_star, chi_1, chi_c, xi_q, xi_c`` of shape
      ``(len(sigma_b), len(sigma_w))``, ``chaotic`` (chi_1 > 1) of the same shape, and
      ``critical_sigma_w`` of shape ``(len(sigma_b),)``.

    References:
      Poole et al. arXiv:1606.05340, 2016 (Fig. 2); Schoenholz et al. arXiv:1611.01232, 2017.
    """
    phi = activation_fn(activation)
    sigma_w, sigma_b = jnp.asarray(sigma_w), jnp.asarray(sigma_b)
    point = functools.partial(mean_field, phi)
    grid = jax.vmap(jax.vmap(point, in_axes=(0, None)), in_axes=(None, 0))(sigma_w, sigma_b)
    grid["chaotic"] = grid["chi_1"] > 1.0
    grid["critical_sigma_w"] = jax.vmap(lambda b: critical_sigma_w(phi, b))(sigma_b)
    return grid


@functools.partial(jax.jit, static_argnames=("activation", "depth", "width", "weights"))
def simulate(
    key: jax.Array,
    x: jax.Array,
    activation: Activation,
    sigma_w,
    sigma_b=0.0,
    *,
    depth: int,
    width: int,
    weights: str = "gaussian",
) -> dict[str, jax.Array]:
    """Measures q_l and c_l in one random finite-width MLP: the counterpart of :func:`propagate`.

    Layer l computes ``h_l = phi(h_{l-1}) W_l + b_l`` (``h_0 = x``, no activation on the input),
    ``W_l`` of shape (fan_in, width) with ``N(0, sigma_w**2 / fan_in)`` entries (or
    ``sigma_w`` times an orthogonal matrix) and ``b_l ~ N(0, sigma_b**2)``; layer l draws from
    ``fold_in(key, l)``.

    Args:
      key: PRNG key.
      x: inputs, shape (batch, n_in).
      activation: name or elementwise callable.
      sigma_w: weight standard deviation times sqrt(fan_in).
      sigma_b: bias standard deviation.
      depth: number of layers (static).
      width: units per layer (static).
      weights: ``"gaussian"`` or ``"orthogonal"`` (scaled by sigma_w).

    Returns:
      ``{"q": (depth, batch)}`` per-input mean of h**2 over units, ``{"c": (depth, batch,
      batch)}`` correlation matrices ``<h_a, h_b> / sqrt(<h_a,h_a><h_b,h_b>)``, and
      ``"act_mean"``, ``"act_std"`` of shape (depth,): mean and std of phi(h_l) over units and
      inputs.
    """
    if jnp.ndim(x) != 2:
        raise ValueError(f"simulate: x must have shape (batch, n_in), got shape {jnp.shape(x)}")
    phi = activation_fn(activation)
    params = random_mlp.init_mlp(
        key,
        x.shape[-1],
        width,
        depth,
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        weights=weights,
        dtype=x.dtype,
    )
    pre = random_mlp.preactivations(params, x, phi)
    q = jnp.mean(pre**2, axis=-1)
    gram = jnp.einsum("lan,lbn->lab", pre, pre) / pre.shape[-1]
    norm = jnp.sqrt(jnp.einsum("laa->la", gram))
    post = phi(pre)
    return {
        "q": q,
        "c": gram / (norm[:, :, None] * norm[:, None, :]),
        "act_mean": jnp.mean(post, axis=(1, 2)),
        "act_std": jnp.std(post, axis=(1, 2)),
    }
