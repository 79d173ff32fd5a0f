"""Bad inputs of the diagnostics (jinit.layer_statistics, activation_stats, diagnose)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import jinit
from tests.bad_inputs import Row

_X = jax.random.normal(jax.random.key(0), (8, 3))
_M = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)])
_V = _M.init(jax.random.key(0), _X)


class _BN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.BatchNorm(use_running_average=not train)(nn.Dense(4)(x))


_BNV = _BN().init(jax.random.key(0), _X)
_STATS = {"output/Dense_0/index": 0, "output/Dense_0/std": 1.0, "output_grad/Dense_0/norm": 1.0}


ROWS = [
    Row(
        "diagnostics/layer_statistics/empty-batch",
        lambda: jinit.layer_statistics(_M, _V, jnp.ones((0, 3))),
        ValueError,
        ("batch", "(0, 3)"),
    ),
    Row(
        "diagnostics/layer_statistics/nan-batch",
        lambda: jinit.layer_statistics(_M, _V, _X.at[1, 2].set(jnp.nan)),
        ValueError,
        ("layer_statistics", "non-finite", "(1, 2)"),
    ),
    Row(
        "diagnostics/layer_statistics/batch-without-inputs",
        lambda: jinit.layer_statistics(_M, _V, {"image": _X}),
        ValueError,
        ("input_key", "'image'"),
    ),
    Row(
        "diagnostics/layer_statistics/input_key-missing",
        lambda: jinit.layer_statistics(_M, _V, {"x": _X}, input_key="pixels"),
        ValueError,
        ("input_key='pixels'",),
    ),
    Row(
        "diagnostics/layer_statistics/plain-jax-records-nothing",
        lambda: jinit.layer_statistics(lambda p, x: x @ p, jnp.ones((3, 2)), _X),
        ValueError,
        ("recorded no layer",),
    ),
    Row(
        "diagnostics/layer_statistics/include-regex-string",  # lsuv takes regexes, this a callable
        lambda: jinit.layer_statistics(_M, _V, _X, include="Dense"),
        TypeError,
        ("include", "include(path, module)", "'Dense'"),
    ),
    Row(
        "diagnostics/layer_statistics/include-excludes-all",
        lambda: jinit.layer_statistics(_M, _V, _X, include=lambda path, m: False),
        ValueError,
        ("recorded no layer", "include="),
    ),
    Row(
        "diagnostics/layer_statistics/eval-batchnorm-without-batch_stats",
        lambda: jinit.layer_statistics(_BN(), {"params": _BNV["params"]}, _X),
        ValueError,
        ("layer_statistics: the model does not run", "batch_stats"),
    ),
    Row(
        "diagnostics/layer_statistics/params-None-linen",
        lambda: jinit.layer_statistics(_M, None, _X),
        ValueError,
        ("params is None",),
    ),
    Row(
        "diagnostics/activation_stats/empty",
        lambda: jinit.activation_stats(jnp.ones((0, 4))),
        ValueError,
        ("(0, 4)", "no value"),
    ),
    Row(
        "diagnostics/diagnose/stacked-sweep",
        lambda: jinit.diagnose({**_STATS, "output/Dense_0/index": jnp.zeros((3,), jnp.int32)}),
        ValueError,
        ("diagnose", "vmapped sweep", "one member"),
    ),
    Row(
        "diagnostics/diagnose/None",
        lambda: jinit.diagnose(None),
        TypeError,
        ("diagnose", "stats", "NoneType"),
    ),
    Row(
        "diagnostics/diagnose/empty-tape",
        lambda: jinit.diagnose({"summary/loss/value": 0.0}),
        ValueError,
        ("no recorded layer",),
    ),
    Row(
        "diagnostics/diagnose/unknown-activation",
        lambda: jinit.diagnose(_STATS, activation="swishy"),
        ValueError,
        ("unknown activation 'swishy'",),
    ),
    Row(
        "diagnostics/diagnose/gradient_ratio<=1",
        lambda: jinit.diagnose(_STATS, gradient_ratio=0.5),
        ValueError,
        ("gradient_ratio", "0.5"),
    ),
    Row(
        "diagnostics/diagnose/activation_ratio-nan",
        lambda: jinit.diagnose(_STATS, activation_ratio=float("nan")),
        ValueError,
        ("activation_ratio",),
    ),
    Row(
        "diagnostics/diagnose/dead_fraction>1",
        lambda: jinit.diagnose(_STATS, dead_fraction=1.5),
        ValueError,
        ("dead_fraction", "1.5"),
    ),
    Row(
        "diagnostics/diagnose/saturated_fraction-str",
        lambda: jinit.diagnose(_STATS, saturated_fraction="0.5"),
        TypeError,
        ("saturated_fraction",),
    ),
]
