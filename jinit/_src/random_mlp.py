"""Random fully connected networks in mean-field parametrization, for theory checks.

The weight scale here is ``sigma_w`` (``W ~ N(0, sigma_w**2 / fan_in)``) and may be a traced
value, so a whole grid of scales or seeds is one ``vmap``; that is why these layers sample a
standard normal and multiply, rather than build an initializer per scale. The hidden layers are
stacked and run with ``lax.scan``, so compile time does not grow with depth.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jinit._src import initializers
from jinit._src.checks import check_choice, check_int, check_key, check_number

_WEIGHTS = ("gaussian", "orthogonal")


def _layer(key, fan_in, width, sigma_w, sigma_b, weights, dtype):
    k_w, k_b = jax.random.split(key)
    if weights == "gaussian":
        w = jax.random.normal(k_w, (fan_in, width), dtype) / jnp.sqrt(float(fan_in))
    else:
        w = initializers.orthogonal()(k_w, (fan_in, width), dtype)
        # Rows are orthonormal when fan_in < width (|x W| = |x|): scale up by sqrt(width/fan_in)
        # so that mean(h**2) = sigma_w**2 |x|**2 / fan_in, as for Gaussian weights.
        w = w * max(1.0, width / fan_in) ** 0.5
    b = jax.random.normal(k_b, (width,), dtype)
    return {"kernel": (sigma_w * w).astype(dtype), "bias": (sigma_b * b).astype(dtype)}


def init_mlp(
    key: jax.Array,
    n_in: int,
    width: int,
    depth: int,
    *,
    sigma_w,
    sigma_b=0.0,
    weights: str = "gaussian",
    dtype=jnp.float32,
) -> dict[str, dict[str, jax.Array]]:
    """Kernels (fan_in, fan_out) and biases of a depth-layer MLP at a mean-field scale.

    ``gaussian``: ``W_ij ~ N(0, sigma_w**2 / fan_in)``. ``orthogonal``: ``sigma_w`` times a
    (semi-)orthogonal matrix, rescaled by ``sqrt(fan_out / fan_in)`` when fan_in < fan_out so
    that ``|x W|**2 / fan_out = sigma_w**2 |x|**2 / fan_in`` as in the Gaussian case. Biases
    are ``N(0, sigma_b**2)``. Layer l (0-based) draws from ``fold_in(key, l)``, so adding layers
    never changes earlier ones.

    Args:
      key: PRNG key.
      n_in: input dimension.
      width: width of every layer (static).
      depth: number of layers, >= 1 (static).
      sigma_w: weight standard deviation times sqrt(fan_in) (may be traced).
      sigma_b: bias standard deviation (may be traced).
      weights: ``"gaussian"`` or ``"orthogonal"``.
      dtype: parameter dtype.

    Returns:
      ``{"first": {"kernel": (n_in, width), "bias": (width,)}, "hidden": {"kernel":
      (depth - 1, width, width), "bias": (depth - 1, width)}}``.

    Raises:
      ValueError: for an unknown ``weights`` or depth < 1.
    """
    check_key("init_mlp", "key", key)
    check_choice("init_mlp", "weights", weights, _WEIGHTS)
    check_int("init_mlp", "n_in", n_in)
    check_int("init_mlp", "width", width)
    check_int("init_mlp", "depth", depth)
    check_number("init_mlp", "sigma_w", sigma_w, positive=True)
    check_number("init_mlp", "sigma_b", sigma_b, nonnegative=True)
    first = _layer(jax.random.fold_in(key, 0), n_in, width, sigma_w, sigma_b, weights, dtype)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(1, depth))
    hidden = jax.vmap(lambda k: _layer(k, width, width, sigma_w, sigma_b, weights, dtype))(keys)
    return {"first": first, "hidden": hidden}


def preactivations(params, x: jax.Array, activation: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """Pre-activations of every layer: ``h_l = phi(h_{l-1}) W_l + b_l``, ``h_0 = x`` (no phi).

    Args:
      params: from :func:`init_mlp`.
      x: inputs (batch, n_in).
      activation: elementwise function.

    Returns:
      Array (depth, batch, width).
    """
    h1 = x @ params["first"]["kernel"] + params["first"]["bias"]

    def step(h, layer):
        h = activation(h) @ layer["kernel"] + layer["bias"]
        return h, h

    _, hs = jax.lax.scan(step, h1, params["hidden"])
    return jnp.concatenate([h1[None], hs])


def apply(params, x: jax.Array, activation: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """The last layer's pre-activation h_depth (the network's output).

    Args:
      params: from :func:`init_mlp`.
      x: inputs (..., n_in).
      activation: elementwise function.

    Returns:
      The output pre-activation.
    """
    h1 = x @ params["first"]["kernel"] + params["first"]["bias"]

    def step(h, layer):
        return activation(h) @ layer["kernel"] + layer["bias"], None

    return jax.lax.scan(step, h1, params["hidden"])[0]
