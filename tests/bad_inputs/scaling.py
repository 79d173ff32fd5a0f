"""Bad inputs of the scaling area: jinit.mup, the transformer presets, coord_check."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import jinit
from tests.bad_inputs import Row

_BASE = {"w": jax.ShapeDtypeStruct((4, 4), jnp.float32)}
_P = {"w": jnp.ones((8, 8))}

ROWS: list[Row] = [
    Row(
        "scaling/mup/optimizer",
        lambda: jinit.mup(_BASE, _P, optimizer="lion"),
        ValueError,
        ("optimizer", "'lion'", "'adam'"),
    ),
    Row(
        "scaling/mup/formulation",
        lambda: jinit.mup(_BASE, _P, formulation="x"),
        ValueError,
        ("formulation", "'x'"),
    ),
    Row(
        "scaling/mup/missing_leaf",
        lambda: jinit.mup(_BASE, {"v": jnp.ones((8, 8))}),
        ValueError,
        ("'v'", "base_params"),
    ),
    Row(
        "scaling/mup/rank",
        lambda: jinit.mup(_BASE, {"w": jnp.ones((8, 8, 2))}),
        ValueError,
        ("'w'", "rank"),
    ),
    Row(
        "scaling/mup/readout_hidden",
        lambda: jinit.mup(_BASE, _P, readout="w"),
        ValueError,
        ("readout", "'w'"),
    ),
    Row("scaling/mup/empty", lambda: jinit.mup({}, _P), ValueError, ("base_params",)),
    Row(
        "scaling/mup/depth_partial",
        lambda: jinit.mup(_BASE, _P, depth=8),
        ValueError,
        ("base_depth", "residual_branch"),
    ),
    Row("scaling/mup/init_key", lambda: jinit.mup(_BASE, _P).init(0, _P), ValueError, ("key",)),
    Row("scaling/attention_scale", lambda: jinit.attention_scale(0), ValueError, ("head_dim",)),
    Row("scaling/gpt2_init/n_layers", lambda: jinit.gpt2_init(-1), ValueError, ("n_layers",)),
    Row(
        "scaling/gpt2_init/layout_regex",
        lambda: jinit.gpt2_init(2, layout={"query": "q(["}),
        ValueError,
        ("layout['query']", "'q(['", "not a valid regex"),
    ),
    Row(
        "scaling/gpt2_init/layout_not_str",
        lambda: jinit.gpt2_init(2, layout={"query": 3}),
        TypeError,
        ("layout['query']", "regex string", "3"),
    ),
    Row(
        "scaling/gpt2_init/layout",
        lambda: jinit.gpt2_init(2, layout={"qeury": "x"}),
        ValueError,
        ("layout role", "'qeury'"),
    ),
    Row(
        "scaling/deepnorm/part",
        lambda: jinit.deepnorm_constants(4, part="middle"),
        ValueError,
        ("part", "'middle'"),
    ),
    Row("scaling/tfixup/d_model", lambda: jinit.tfixup_init(4, 0), ValueError, ("d_model",)),
    Row(
        "scaling/mimetic/no_attention",
        lambda: jinit.mimetic_attention(_P, jax.random.key(0)),
        ValueError,
        ("query",),
    ),
    Row(
        "scaling/coord_check/one_width",
        lambda: jinit.coord_check(
            {8: (None, None)},
            jnp.ones((2, 3)),
            lambda o, b: 0.0,
            optax.adam(1e-3),
            lambda p: None,
            key=jax.random.key(0),
        ),
        ValueError,
        ("two widths",),
    ),
    Row(
        "scaling/coord_check/seeds",
        lambda: jinit.coord_check(
            {8: (None, None), 16: (None, None)},
            jnp.ones((2, 3)),
            lambda o, b: 0.0,
            optax.adam(1e-3),
            lambda p: None,
            key=jax.random.key(0),
            seeds=0,
        ),
        ValueError,
        ("seeds",),
    ),
]
