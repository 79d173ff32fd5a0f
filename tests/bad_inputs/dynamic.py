"""Bad inputs of the dynamically scaled passes (jinit.gradinit, jinit.metainit)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jinit
from tests.bad_inputs import Row


def _apply(p, x):
    return x @ p["w"]


P = {"w": jnp.asarray(np.eye(3, 2), jnp.float32)}
B = {"x": jnp.ones((4, 3), jnp.float32), "y": jnp.zeros((4, 2), jnp.float32)}


def _loss(out, batch):
    return jnp.mean((out - batch["y"]) ** 2)


def g(**kw):
    pos = [
        kw.pop(k, d)
        for k, d in (("model", _apply), ("params", P), ("batch", B), ("loss_fn", _loss))
    ]
    return lambda: jinit.gradinit(*pos, **kw)


def m(**kw):
    pos = [
        kw.pop(k, d)
        for k, d in (("model", _apply), ("params", P), ("batch", B), ("loss_fn", _loss))
    ]
    return lambda: jinit.metainit(*pos, **kw)


def _batchnorm_net():
    class Net(nn.Module):  # BatchNorm in train mode: apply needs mutable=["batch_stats"]
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=False)(nn.Dense(2)(x))

    return Net()


def _batchnorm_params():
    # only the params collection: the missing batch_stats make flax raise its own error class
    return {"params": _batchnorm_net().init(jax.random.key(0), B["x"])["params"]}


_LIST_SEQ = nn.Sequential([nn.Dense(2)])  # a list attribute: unhashable
EMPTY = {"x": jnp.ones((0, 3), jnp.float32), "y": jnp.zeros((0, 2), jnp.float32)}
ONE = {"x": jnp.ones((1, 3), jnp.float32), "y": jnp.zeros((1, 2), jnp.float32)}

STACKED = {k: jnp.stack([v] * 3) for k, v in B.items()}  # 3 iterations' batches

ROWS = [
    Row(
        "gradinit/optimizer=rmsprop",
        g(optimizer="rmsprop"),
        ValueError,
        ("optimizer", "'rmsprop'", "'sgd'"),
    ),
    Row("gradinit/lr=-1", g(lr=-1.0), ValueError, ("lr", "-1")),
    Row("gradinit/gamma=0", g(gamma=0.0), ValueError, ("gamma", "> 0")),
    Row("gradinit/floor=-0.1", g(floor=-0.1), ValueError, ("floor", "-0.1")),
    Row("gradinit/iters=0", g(iters=0), ValueError, ("iters", ">= 1")),
    Row("gradinit/iters=2.5", g(iters=2.5), TypeError, ("iters", "2.5")),
    Row("gradinit/outer_lr=0", g(outer_lr=0.0), ValueError, ("outer_lr",)),
    Row(
        "gradinit/outer_betas=(1,0.9)",
        g(outer_betas=(1.0, 0.9)),
        ValueError,
        ("outer_betas", "[0, 1)"),
    ),
    Row("gradinit/grad_clip=-1", g(grad_clip=-1.0), ValueError, ("grad_clip",)),
    Row("gradinit/normalize_grad=1", g(normalize_grad=1), TypeError, ("normalize_grad",)),
    Row(
        "gradinit/outer_optimizer=adam-str",
        g(outer_optimizer="adam"),
        TypeError,
        ("outer_optimizer", "optax"),
    ),
    Row("gradinit/include=[", g(include="["), ValueError, ("include", "'['", "regex")),
    Row("gradinit/include=3", g(include=3), TypeError, ("include", "int")),
    Row(
        "gradinit/include-matches-nothing", g(include="nope"), ValueError, ("include='nope'", "'w'")
    ),
    Row("gradinit/loop=while", g(loop="while"), ValueError, ("loop", "'while'", "'scan'")),
    Row("gradinit/jit=yes", g(jit="yes"), TypeError, ("jit", "'yes'")),
    Row("gradinit/loss_fn=3", g(loss_fn=3), TypeError, ("loss_fn", "callable")),
    Row("gradinit/batch-empty", g(batch=EMPTY), ValueError, ("batch", "empty")),
    Row(
        "gradinit/batch-one-example", g(batch=ONE), ValueError, ("batch", "1 example", "at least 2")
    ),
    Row(
        "gradinit/lookahead_batch-empty",
        g(lookahead_batch=EMPTY),
        ValueError,
        ("lookahead_batch", "empty"),
    ),
    Row(
        "gradinit/batch-nan",
        g(batch={**B, "x": B["x"].at[1, 2].set(jnp.nan)}),
        ValueError,
        ("gradinit: batch", "non-finite", "(1, 2)"),
    ),
    Row(
        "gradinit/model-fails-on-batch",  # flax's own error, re-raised as ValueError with context
        g(model=_batchnorm_net(), params=_batchnorm_params()),
        ValueError,
        ("gradinit", "running the model and loss_fn", "batch_stats"),
    ),
    Row(
        "gradinit/list-Sequential-with-jit",  # jit=False runs it (tests/dynamic)
        g(model=_LIST_SEQ, params=_LIST_SEQ.init(jax.random.key(0), B["x"])),
        TypeError,
        ("jit=True", "hashable", "jit=False", "nn.Sequential((...))"),
    ),
    Row(
        "gradinit/lookahead_batch-of-another-width",  # flax's shape error, named
        g(lookahead_batch={"x": jnp.ones((4, 5)), "y": jnp.zeros((4, 2))}),
        ValueError,
        ("gradinit", "on lookahead_batch failed"),
    ),
    Row("gradinit/input_key-missing", g(input_key="img"), ValueError, ("input_key", "'img'")),
    Row("gradinit/batch-no-inputs", g(batch={"img": B["x"]}), ValueError, ("input_key", "'img'")),
    Row(
        "gradinit/loss-not-scalar",
        g(loss_fn=lambda o, b: o),
        ValueError,
        ("loss_fn", "scalar", "(2, 2)"),
    ),
    Row(
        "gradinit/apply_kwargs=list",
        g(apply_kwargs=["train"]),
        TypeError,
        ("apply_kwargs", "mapping"),
    ),
    Row("gradinit/rngs=key", g(rngs=3), TypeError, ("rngs", "mapping")),
    Row("gradinit/params=None", g(params=None), ValueError, ("params is None",)),
    Row("gradinit/model=3", g(model=3), TypeError, ("model", "int")),
    Row(
        "gradinit/int-params",
        g(params={"w": jnp.ones((3, 2), jnp.int32)}),
        ValueError,
        ("'w'", "int32", "floating"),
    ),
    Row(
        "gradinit/loss-ignores-params",
        g(loss_fn=lambda o, b: jnp.mean(b["y"]), iters=1),
        ValueError,
        ("exactly zero", "does not depend on the parameters"),
    ),
    Row(
        "gradinit/per_iteration-axis-not-iters",
        g(batch=STACKED, per_iteration=True, iters=2),
        ValueError,
        ("per_iteration=True", "batch", "iters=2", "['3']"),
    ),
    Row(
        "gradinit/per_iteration-lookahead-axis",
        g(batch=STACKED, lookahead_batch=B, per_iteration=True, iters=3),
        ValueError,
        ("lookahead_batch", "iters=3", "['4']"),
    ),
    Row(
        "gradinit/per_iteration-scalar-leaf",
        g(batch={"x": STACKED["x"], "y": jnp.zeros(())}, per_iteration=True, iters=3),
        ValueError,
        ("batch", "'scalar'"),
    ),
    Row("gradinit/per_iteration=1", g(per_iteration=1), TypeError, ("per_iteration", "1")),
    Row("metainit/steps=0", m(steps=0), ValueError, ("steps", ">= 1")),
    Row("metainit/lr=0", m(lr=0.0), ValueError, ("lr", "> 0")),
    Row("metainit/momentum=1", m(momentum=1.0), ValueError, ("momentum", "[0, 1)")),
    Row("metainit/momentum=-0.1", m(momentum=-0.1), ValueError, ("momentum", "-0.1")),
    Row("metainit/eps=0", m(eps=0.0), ValueError, ("eps", "> 0")),
    Row("metainit/eps=nan", m(eps=float("nan")), ValueError, ("eps", "finite")),
    Row("metainit/include-matches-nothing", m(include="bias"), ValueError, ("include='bias'",)),
    Row(
        "metainit/default-matches-nothing",
        m(params={"b": jnp.zeros((2,))}, model=lambda p, x: x[:, :2] + p["b"]),
        ValueError,
        ("ndim >= 2", "'b'"),
    ),
    Row("metainit/batch-empty", m(batch=EMPTY), ValueError, ("batch", "empty")),
    Row(
        "metainit/batch-inf",
        m(batch={**B, "x": B["x"].at[0, 0].set(jnp.inf)}),
        ValueError,
        ("metainit: batch", "non-finite", "(0, 0)"),
    ),
    Row("metainit/hvp=both", m(hvp="both"), ValueError, ("hvp", "'both'", "'forward'")),
    Row("metainit/loop=fori", m(loop="fori"), ValueError, ("loop", "'fori'")),
    Row(
        "metainit/per_iteration-axis-not-steps",
        m(batch=STACKED, per_iteration=True, steps=4),
        ValueError,
        ("per_iteration=True", "steps=4", "['3']"),
    ),
    Row("metainit/per_iteration=yes", m(per_iteration="yes"), TypeError, ("per_iteration",)),
    Row("metainit/jit=1", m(jit=1), TypeError, ("jit",)),
    Row("metainit/loss_fn=None", m(loss_fn=None), TypeError, ("loss_fn",)),
    Row(
        "metainit/loss-ignores-params",
        m(loss_fn=lambda o, b: jnp.mean(b["y"]), steps=1),
        ValueError,
        ("exactly zero", "does not depend on the parameters"),
    ),
]
