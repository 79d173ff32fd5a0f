"""Bad inputs found by the new-user review of fit: loss and metric shapes, missing PRNG
streams, ``rngs`` without a model, and seed_keys' seeds."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import jinit
from tests.bad_inputs import Row

_X = jnp.ones((16, 3))
_DATA = {"x": _X, "y": jnp.ones((16,))}
_OPT = optax.sgd(0.1)


class _Lin(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        h = nn.Dense(2)(x)
        return nn.Dropout(0.5, deterministic=not train)(h)[:, 0]


def _fit(**kw):
    model = _Lin()
    state = jinit.init_state(model.init(jax.random.key(0), _X[:1]), _OPT)
    args = dict(
        model=model, loss_fn=lambda o, b: jnp.mean((o - b["y"]) ** 2), optimizer=_OPT,
        train_data=_DATA, epochs=1, batch_size=4, progress=False,
    )  # fmt: skip
    args.update(kw)
    return jinit.fit(state, **args)


def _per_example(o, b):
    return (o - b["y"]) ** 2


ROWS: list[Row] = [
    Row(
        "training_review/fit/loss_fn=vector",
        lambda: _fit(loss_fn=_per_example),
        ValueError,
        ("loss_fn", "scalar", "(4,)"),
    ),
    Row(
        "training_review/fit/metric_fn=(B,1)",
        lambda: _fit(
            val_data=_DATA,
            metric_fn=lambda o, b: {"mse": _per_example(o, b)[:, None]},
            eval_batch_size=8,
        ),  # fmt: skip
        ValueError,
        ("metric_fn", "'mse'", "(8, 1)", "(B,)", "(8,)"),
    ),
    Row(
        "training_review/fit/metric_fn=scalar",
        lambda: _fit(val_data=_DATA, metric_fn=lambda o, b: {"mse": jnp.mean(_per_example(o, b))}),
        ValueError,
        ("metric_fn", "'mse'", "shape ()"),
    ),
    Row(
        "training_review/fit/rngs=missing_dropout",
        lambda: _fit(apply_kwargs={"train": True}),
        ValueError,
        ('"dropout"', "rngs={'dropout'"),
    ),
    Row(
        "training_review/fit/rngs=names",
        lambda: _fit(rngs=("dropout",)),
        ValueError,
        ("rngs", "tuple"),
    ),
    Row(
        "training_review/fit/rngs=bad_key",
        lambda: _fit(rngs={"dropout": 3}, apply_kwargs={"train": True}),
        ValueError,
        ("rngs['dropout']", "one key"),
    ),
    Row(
        "training_review/seed_keys/int",
        lambda: jinit.seed_keys(3),
        TypeError,
        ("seeds", "sequence of ints", "range(3)"),
    ),
]
