"""Bad inputs of the data-dependent passes (jinit.lsuv, within_layer_init, weight_norm_init,
between_layer_scaling)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import jinit
from tests.bad_inputs import Row

_X = jax.random.normal(jax.random.key(0), (16, 3))
_M = nn.Dense(4)
_V = _M.init(jax.random.key(0), _X)


class _BN(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.BatchNorm(use_running_average=True)(nn.Dense(4)(x))


_BNV = _BN().init(jax.random.key(0), _X)


def _dense(p, x):
    return x @ p["kernel"] + p["bias"]


def _two_layers_one_name(params, x):
    h = jinit.lsuv_layer("L", _dense, params["a"], x)
    return jinit.lsuv_layer("L", _dense, params["b"], jnp.tanh(h))


_TWO = {
    "a": {"kernel": jax.random.normal(jax.random.key(1), (3, 8)), "bias": jnp.zeros(8)},
    "b": {"kernel": jax.random.normal(jax.random.key(2), (8, 2)), "bias": jnp.zeros(2)},
}


def _lsuv(**kw):
    return lambda: jinit.lsuv(_M, _V, _X, **kw)


ROWS = [
    Row(
        "datadep/lsuv/batch-of-another-width",  # flax's ScopeParamShapeError, named
        lambda: jinit.lsuv(_M, _V, jnp.ones((16, 5))),
        ValueError,
        ("lsuv: the model does not run", "shape"),
    ),
    Row(
        "datadep/lsuv/batch-str",
        lambda: jinit.lsuv(_M, _V, "a sentence, not its tokens"),
        ValueError,
        ("lsuv", "must be arrays", "str"),
    ),
    Row(
        "datadep/lsuv_layer/one-name-two-layers",
        lambda: jinit.lsuv(_two_layers_one_name, _TWO, _X),
        ValueError,
        ("lsuv_layer", "'L'", "both named"),
    ),
    Row(
        "datadep/lsuv/batch-None",
        lambda: jinit.lsuv(_M, _V, None),
        ValueError,
        ("lsuv", "batch holds no model inputs", "NoneType"),
    ),
    Row(
        "datadep/lsuv/params-of-another-model",  # flax would create the missing kernel
        lambda: jinit.lsuv(_M, {"params": {"other": _V["params"]}}, _X),
        ValueError,
        ("lsuv", "does not run on these params"),
    ),
    Row(
        "datadep/lsuv/empty-batch",
        lambda: jinit.lsuv(_M, _V, jnp.ones((0, 3))),
        ValueError,
        ("batch is empty", "(0, 3)"),
    ),
    Row(
        "datadep/lsuv/one-value",
        lambda: jinit.lsuv(nn.Dense(1), nn.Dense(1).init(jax.random.key(0), _X[:1]), _X[:1]),
        ValueError,
        ("only 1 output value", "Dense"),
    ),
    Row(
        "datadep/lsuv/nan-batch",
        lambda: jinit.lsuv(_M, _V, _X.at[2, 1].set(jnp.nan)),
        ValueError,
        ("non-finite", "(2, 1)"),
    ),
    Row(
        "datadep/lsuv/eval-batchnorm-without-batch_stats",
        lambda: jinit.lsuv(_BN(), {"params": _BNV["params"]}, _X),
        ValueError,
        ("lsuv: the model does not run", "batch_stats"),
    ),
    Row(
        "datadep/lsuv/orthogonal_key=3",
        _lsuv(orthogonal_key=3),
        ValueError,
        ("orthogonal_key", "PRNG key"),
    ),
    Row("datadep/lsuv/tol=-1", _lsuv(tol=-1.0), ValueError, ("tol", "-1")),
    Row("datadep/lsuv/target=0", _lsuv(target=0.0), ValueError, ("target", "0")),
    Row("datadep/lsuv/target=nan", _lsuv(target=float("nan")), ValueError, ("target", "nan")),
    Row("datadep/lsuv/max_iters=-1", _lsuv(max_iters=-1), ValueError, ("max_iters", "-1")),
    Row("datadep/lsuv/max_iters=1.5", _lsuv(max_iters=1.5), TypeError, ("max_iters", "1.5")),
    Row("datadep/lsuv/min_values=1", _lsuv(min_values=1), ValueError, ("min_values", "1")),
    Row("datadep/lsuv/measure=after", _lsuv(measure="after"), ValueError, ("measure", "after")),
    Row("datadep/lsuv/post-without-activation", _lsuv(measure="post"), ValueError, ("activation",)),
    Row(
        "datadep/lsuv/on_zero_variance=ignore",
        _lsuv(on_zero_variance="ignore"),
        ValueError,
        ("on_zero_variance", "ignore"),
    ),
    Row(
        "datadep/lsuv/include-matches-nothing",
        _lsuv(include="nothing_here"),
        ValueError,
        ("include", "nothing_here"),
    ),
    Row("datadep/lsuv/include-bad-regex", _lsuv(include="("), ValueError, ("include", "regex")),
    Row("datadep/lsuv/include=3", _lsuv(include=3), TypeError, ("include", "3")),
    Row("datadep/lsuv/jit=yes", _lsuv(jit="yes"), TypeError, ("jit", "yes")),
    Row(
        "datadep/lsuv/model-class",
        lambda: jinit.lsuv(nn.Dense, _V, _X),
        TypeError,
        ("model", "class"),
    ),
    Row(
        "datadep/lsuv/method-for-plain",
        lambda: jinit.lsuv(lambda p, x: x, {}, _X, method="f"),
        ValueError,
        ("method",),
    ),
    Row(
        "datadep/within_layer_init/tol=-1",
        lambda: jinit.within_layer_init(_M, _V, _X, tol=-1.0),
        ValueError,
        ("within_layer_init", "tol"),
    ),
    Row(
        "datadep/weight_norm_init/target=-2",
        lambda: jinit.weight_norm_init(_M, _V, _X, target=-2.0),
        ValueError,
        ("weight_norm_init", "target"),
    ),
    Row(
        "datadep/between_layer_scaling/key=0",
        lambda: jinit.between_layer_scaling(
            _M.apply, _V, _X, 0, layers=[(("params", "kernel"), None)]
        ),
        ValueError,
        ("key",),
    ),
    Row(
        "datadep/between_layer_scaling/layers=[]",
        lambda: jinit.between_layer_scaling(_M.apply, _V, _X, jax.random.key(0), layers=[]),
        ValueError,
        ("layers", "empty"),
    ),
    Row(
        "datadep/between_layer_scaling/max_iters=-1",
        lambda: jinit.between_layer_scaling(
            _M.apply, _V, _X, jax.random.key(0), layers=[(("params", "kernel"), None)], max_iters=-1
        ),
        ValueError,
        ("max_iters", "-1"),
    ),
    Row(
        "datadep/lsuv/mapping-batch-without-inputs",
        lambda: jinit.lsuv(_M, _V, {"image": _X, "label": _X[:, 0]}),
        ValueError,
        ("lsuv", "image", "input_key"),
    ),
    Row(
        "datadep/weight_norm_init/input_key=3",
        lambda: jinit.weight_norm_init(_M, _V, (_X, _X), input_key=3),
        ValueError,
        ("weight_norm_init", "input_key=3", "length 2"),
    ),
    Row(
        "datadep/lsuv/rngs-for-a-plain-function",
        lambda: jinit.lsuv(lambda p, x: x @ p["kernel"], _V["params"], _X, rngs={}),
        ValueError,
        ("rngs", "linen"),
    ),
    Row(
        "datadep/between_layer_scaling/input_key=y",
        lambda: jinit.between_layer_scaling(
            _M.apply,
            _V,
            {"x": _X},
            jax.random.key(0),
            layers=[(("params", "kernel"), None)],
            input_key="y",
        ),
        ValueError,
        ("between_layer_scaling", "input_key='y'"),
    ),
]
