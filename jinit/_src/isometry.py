"""Dynamical isometry: the singular values of a network's input-output Jacobian at init.

Criticality (chi_1 = 1) makes the *mean* squared singular value of ``J = d x_L / d x_0``
equal to 1 at every depth; dynamical isometry asks for the whole spectrum to concentrate
around 1. Pennington et al. (2017) show that orthogonal weights achieve it for tanh near
q* -> 0, that Gaussian weights cannot (the spectrum spreads with depth), and that ReLU cannot
with any weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jinit._src import random_mlp, theory
from jinit._src.checks import check_int, check_key, check_number


def jacobian_singular_values(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """Singular values of the Jacobian of ``fn`` at each row of ``x``.

    Args:
      fn: maps one input vector (n_in,) to one output vector (n_out,).
      x: inputs, shape (batch, n_in).

    Returns:
      Array (batch, min(n_in, n_out)), descending per row.
    """
    jac = jax.vmap(jax.jacfwd(fn))(x)
    return jnp.linalg.svd(jac, compute_uv=False)


def spectrum_stats(singular_values: jax.Array) -> dict[str, jax.Array]:
    """Summary of a singular-value spectrum, pooled over all its entries.

    Args:
      singular_values: any shape.

    Returns:
      ``{"jacobian/singular_values/<stat>"}`` for ``mean_sq`` (mean of s**2, which is
      chi_1**depth in mean-field theory), ``std_sq`` (std of s**2: the spread isometry wants
      near 0), ``max``, ``min`` and ``median``.
    """
    s = jnp.asarray(singular_values, jnp.float32).reshape(-1)
    s2 = s * s
    stats = {
        "mean_sq": jnp.mean(s2),
        "std_sq": jnp.std(s2),
        "max": jnp.max(s),
        "min": jnp.min(s),
        "median": jnp.median(s),
    }
    return {f"jacobian/singular_values/{k}": v for k, v in stats.items()}


@functools.partial(
    jax.jit, static_argnames=("activation", "depth", "width", "weights", "num_inputs")
)
def mlp_jacobian_singular_values(
    key: jax.Array,
    activation: theory.Activation,
    sigma_w,
    sigma_b=0.0,
    *,
    depth: int | tuple[int, ...],
    width: int,
    weights: str = "gaussian",
    num_inputs: int = 4,
    q_in=1.0,
) -> jax.Array:
    """Jacobian spectrum of a random square MLP, ``x_l = phi(h_l)``, ``h_l = x_{l-1} W_l + b_l``.

    ``J = d x_depth / d x_0 = D_depth W_depth^T ... D_1 W_1^T`` (``D_l = diag phi'(h_l)``), as
    in Pennington et al. It is accumulated layer by layer (one scan of matmuls), so a tuple of
    depths costs one network of the largest depth, measured at each depth on the way.

    Args:
      key: PRNG key (weights from ``fold_in(key, 0)``, inputs from ``fold_in(key, 1)``).
      activation: name or elementwise callable.
      sigma_w: weight standard deviation times sqrt(fan_in).
      sigma_b: bias standard deviation.
      depth: number of layers, or an increasing tuple of depths (static).
      width: units per layer and input dimension (static).
      weights: ``"gaussian"`` (``N(0, sigma_w**2 / width)``) or ``"orthogonal"`` (``sigma_w``
        times a Haar orthogonal matrix).
      num_inputs: number of inputs x_0 ~ N(0, q_in I) at which J is taken (static).
      q_in: input second moment; use q* to start at the fixed point.

    Returns:
      Array (num_inputs, width) of singular values, or (len(depth), num_inputs, width) for a
      tuple of depths.

    Raises:
      ValueError: if the depths are not positive and increasing.

    References:
      Pennington, Schoenholz, Ganguli. Resurrecting the sigmoid in deep learning through
      dynamical isometry: theory and practice. arXiv:1711.04735, 2017.
      Saxe, McClelland, Ganguli. Exact solutions to the nonlinear dynamics of learning in deep
      linear neural networks. arXiv:1312.6120, 2014.
    """
    fn = "mlp_jacobian_singular_values"
    check_key(fn, "key", key)
    depths = depth if isinstance(depth, tuple) else (depth,)
    for d in depths:
        check_int(fn, "depth", d)
    if not depths or list(depths) != sorted(set(depths)):
        raise ValueError(
            f"{fn}: depth must be a positive int or an increasing tuple, got {depth!r}"
        )
    check_int(fn, "width", width)
    check_int(fn, "num_inputs", num_inputs)
    check_number(fn, "sigma_w", sigma_w, positive=True)
    check_number(fn, "sigma_b", sigma_b, nonnegative=True)
    check_number(fn, "q_in", q_in, positive=True)
    phi = theory.activation_fn(activation)
    dphi = theory.derivative(phi)
    params = random_mlp.init_mlp(
        jax.random.fold_in(key, 0),
        width,
        width,
        depths[-1],
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        weights=weights,
    )
    x = jnp.sqrt(q_in) * jax.random.normal(jax.random.fold_in(key, 1), (num_inputs, width))
    # Pre-activation h_l and J^T so far, without the last D_l: (batch, width, width).
    h = x @ params["first"]["kernel"] + params["first"]["bias"]
    jac_t = jnp.broadcast_to(params["first"]["kernel"], (num_inputs, width, width))

    def step(carry, layer):
        h, jac_t = carry
        jac_t = (jac_t * dphi(h)[:, None, :]) @ layer["kernel"]
        return (phi(h) @ layer["kernel"] + layer["bias"], jac_t), None

    spectra, done = [], 1
    for d in depths:
        segment = jax.tree.map(lambda a, lo=done, hi=d: a[lo - 1 : hi - 1], params["hidden"])
        (h, jac_t), _ = jax.lax.scan(step, (h, jac_t), segment)
        spectra.append(jnp.linalg.svd(jac_t * dphi(h)[:, None, :], compute_uv=False))
        done = d
    return jnp.stack(spectra) if isinstance(depth, tuple) else spectra[0]
