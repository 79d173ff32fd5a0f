"""Bad inputs found by the new-user review: coord_check, mup's init_std and params shapes,
reinit's regexes, theory's q."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import jinit
from jinit import theory
from tests.bad_inputs import Row

_BASE = {"w": jax.ShapeDtypeStruct((4, 4), jnp.float32)}
_P = {"w": jnp.ones((8, 8))}
_X = jnp.ones((2, 3))


def _coord_check(models=None, batch=None, parametrize=None):
    if models is None:
        dense = lambda w: (nn.Dense(w), nn.Dense(w).init(jax.random.key(0), _X))
        models = {4: dense(4), 8: dense(8)}
    return jinit.coord_check(
        models,
        {"x": _X} if batch is None else batch,
        lambda y, b: jnp.mean(y**2),
        optax.sgd(0.1),
        parametrize or (lambda p: jinit.mup(models[4][1], p)),
        key=jax.random.key(0),
        seeds=1,
        steps=1,
    )


ROWS: list[Row] = [
    Row(
        "review/coord_check/nan_batch",
        lambda: _coord_check(batch={"x": _X.at[0, 0].set(jnp.nan)}),
        ValueError,
        ("coord_check", "batch", "non-finite"),
    ),
    Row(
        "review/coord_check/empty_batch",
        lambda: _coord_check(batch={"x": jnp.zeros((0, 3))}),
        ValueError,
        ("coord_check", "batch is empty"),
    ),
    Row(
        "review/coord_check/models_list",
        lambda: _coord_check(models=[(nn.Dense(4), None), (nn.Dense(8), None)]),
        TypeError,
        ("models", "mapping", "list"),
    ),
    Row(
        "review/coord_check/parametrize_returns_params",
        lambda: _coord_check(parametrize=lambda p: p),
        TypeError,
        ("parametrize", "Parametrization", "dict"),
    ),
    Row(
        "review/mup/init_std_negative",
        lambda: jinit.mup(_BASE, _P, init_std=-1.0),
        ValueError,
        ("init_std", "> 0", "-1.0"),
    ),
    Row(
        "review/mup/init_std_unmatched",
        lambda: jinit.mup(_BASE, _P, init_std={"layer_9": 0.5}),
        ValueError,
        ("init_std", "'layer_9'", "matches no leaf", "w"),
    ),
    Row(
        "review/mup/init_other_width",
        lambda: jinit.mup(_BASE, _P).init(jax.random.key(0), {"w": jnp.ones((4, 4))}),
        ValueError,
        ("Parametrization.init", "'w'", "(4, 4)", "(8, 8)"),
    ),
    Row(
        "review/reinit/bad_regex",
        lambda: jinit.reinit(_P, {"[": jinit.zeros}, jax.random.key(0)),
        ValueError,
        ("reinit", "rules", "'['", "not a valid regex"),
    ),
    Row(
        "review/theory/chi_1_negative_q",
        lambda: theory.chi_1("tanh", 1.0, q=-1.0),
        ValueError,
        ("chi_1", "q", ">= 0", "-1.0"),
    ),
]
