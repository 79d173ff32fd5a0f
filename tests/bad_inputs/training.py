"""Bad inputs of the training API: fit, compile_programs, the step builders and the sweep helpers."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import jinit
from tests.bad_inputs import Row

_MODEL = nn.Dense(1)
_OPT = optax.sgd(0.1)
_X = jnp.ones((16, 3))
_DATA = {"x": _X, "y": jnp.ones((16,))}


def _loss(params, batch):
    return jnp.mean(_MODEL.apply(params, batch["x"]) ** 2), {}


def _state():
    return jinit.init_state(_MODEL.init(jax.random.key(0), _X[:1]), _OPT)


def _sweep_state(m=2):
    return jinit.init_models(
        lambda k: jinit.init_state(_MODEL.init(k, _X[:1]), _OPT), jinit.seed_keys(range(m))
    )


def _fit(**kw):
    args = dict(
        state=_state(), loss_fn=_loss, optimizer=_OPT, train_data=_DATA, epochs=1, batch_size=4,
        progress=False,
    )  # fmt: skip
    args.update(kw)
    state = args.pop("state")
    return jinit.fit(state, **args)


class _FakeMesh:  # only .size is read before the check fires
    size = 4


ROWS = [
    Row("training/fit/epochs=0", lambda: _fit(epochs=0), ValueError, ("epochs", "0", ">= 1")),
    Row("training/fit/epochs=-2", lambda: _fit(epochs=-2), ValueError, ("epochs", "-2")),
    Row("training/fit/epochs=1.5", lambda: _fit(epochs=1.5), TypeError, ("epochs", "1.5")),
    Row("training/fit/start_epoch=-1", lambda: _fit(start_epoch=-1), ValueError, ("start_epoch",)),
    Row(
        "training/fit/start_epoch>epochs",
        lambda: _fit(start_epoch=3, epochs=2),
        ValueError,
        ("start_epoch=3", "epochs=2"),
    ),
    Row("training/fit/batch_size=0", lambda: _fit(batch_size=0), ValueError, ("batch_size", "0")),
    Row(
        "training/fit/batch_size>data",
        lambda: _fit(batch_size=17),
        ValueError,
        ("batch_size=17", "16 examples"),
    ),
    Row("training/fit/batch_size=4.0", lambda: _fit(batch_size=4.0), TypeError, ("batch_size",)),
    Row(
        "training/fit/steps_per_call=0",
        lambda: _fit(steps_per_call=0),
        ValueError,
        ("steps_per_call", "0", ">= 1"),
    ),
    Row(
        "training/fit/steps_per_call=-3",
        lambda: _fit(steps_per_call=-3),
        ValueError,
        ("steps_per_call", "-3"),
    ),
    Row("training/fit/stats_every=0", lambda: _fit(stats_every=0), ValueError, ("stats_every",)),
    Row(
        "training/fit/eval_batch_size=0",
        lambda: _fit(eval_batch_size=0),
        ValueError,
        ("eval_batch_size",),
    ),
    Row("training/fit/seed=-1", lambda: _fit(seed=-1), ValueError, ("seed", "-1")),
    Row(
        "training/fit/on_nonfinite",
        lambda: _fit(on_nonfinite="ignore"),
        ValueError,
        ("on_nonfinite", "'ignore'", "'skip_step'"),
    ),
    Row("training/fit/stepping", lambda: _fit(stepping="loop"), ValueError, ("stepping", "'loop'")),
    Row("training/fit/strategy", lambda: _fit(strategy="pmap"), ValueError, ("strategy", "pmap")),
    Row("training/fit/progress", lambda: _fit(progress="yes"), ValueError, ("progress", "'yes'")),
    Row(
        "training/fit/empty_data", lambda: _fit(train_data={}), ValueError, ("train_data", "empty")
    ),
    Row(
        "training/fit/zero_examples",
        lambda: _fit(train_data={"x": _X[:0], "y": _DATA["y"][:0]}),
        ValueError,
        ("train_data", "0 examples"),
    ),
    Row(
        "training/fit/ragged_data",
        lambda: _fit(train_data={"x": _X, "y": _DATA["y"][:-1]}),
        ValueError,
        ("train_data", "same leading example axis", "15"),
    ),
    Row(
        "training/fit/ragged_val_data",
        lambda: _fit(val_data={"x": _X[:3], "y": _DATA["y"]}, metric_fn=lambda p, b: {}),
        ValueError,
        ("val_data", "same leading example axis"),
    ),
    Row(
        "training/fit/val_data_without_metric_fn",
        lambda: _fit(val_data=_DATA),
        ValueError,
        ("val_data", "metric_fn"),
    ),
    Row("training/fit/state", lambda: _fit(state={"w": _X}), TypeError, ("state", "TrainState")),
    Row("training/fit/loss_fn", lambda: _fit(loss_fn="mse"), TypeError, ("loss_fn", "str")),
    Row("training/fit/optimizer", lambda: _fit(optimizer=0.1), TypeError, ("optimizer", "optax")),
    Row(
        "training/fit/shuffle_keys_not_callable",
        lambda: _fit(shuffle_keys=jax.random.key(0)),
        TypeError,
        ("shuffle_keys", "callable"),
    ),
    Row(
        "training/fit/shuffle_keys_int",
        lambda: _fit(shuffle_keys=lambda e: e),
        ValueError,
        ("shuffle_keys(0)", "key"),
    ),
    Row(
        "training/fit/shuffle_keys_wrong_count",
        lambda: _fit(
            state=_sweep_state(2), num_models=2, shuffle_keys=lambda e: jinit.seed_keys([0, 1, 2])
        ),
        ValueError,
        ("shuffle_keys(0)", "(2,) keys"),
    ),
    Row("training/fit/num_models=0", lambda: _fit(num_models=0), ValueError, ("num_models", "0")),
    Row(
        "training/fit/num_models_vs_params",
        lambda: _fit(state=_sweep_state(2), num_models=3),
        ValueError,
        ("num_models=3", "leading model axis"),
    ),
    Row(
        "training/fit/num_models_vs_mesh",
        lambda: _fit(state=_sweep_state(2), num_models=2, mesh=_FakeMesh()),
        ValueError,
        ("num_models=2", "4 devices"),
    ),
    Row(
        "training/fit/programs_mismatch",
        lambda: _fit(
            programs=jinit.compile_programs(_loss, _OPT, on_nonfinite="continue"),
            on_nonfinite="raise",
        ),
        ValueError,
        ("on_nonfinite='continue'", "on_nonfinite='raise'"),
    ),
    Row(
        "training/compile_programs/eval_batch_size",
        lambda: jinit.compile_programs(_loss, _OPT, eval_batch_size=0),
        ValueError,
        ("eval_batch_size", "0"),
    ),
    Row(
        "training/compile_programs/mesh_without_num_models",
        lambda: jinit.compile_programs(_loss, _OPT, mesh=_FakeMesh()),
        ValueError,
        ("mesh", "num_models"),
    ),
    Row(
        "training/compile_programs/metric_fn",
        lambda: jinit.compile_programs(_loss, _OPT, metric_fn=3),
        TypeError,
        ("metric_fn",),
    ),
    Row(
        "training/make_train_step/optimizer",
        lambda: jinit.make_train_step(_loss, "adam"),
        TypeError,
        ("optimizer", "str"),
    ),
    Row(
        "training/init_state/optimizer",
        lambda: jinit.init_state({"w": _X}, optax.adam),
        TypeError,
        ("optimizer",),
    ),
    Row(
        "training/make_evaluate/batch_size=0",
        lambda: jinit.make_evaluate(lambda p, b: {}, 0),
        ValueError,
        ("batch_size", "0"),
    ),
    Row(
        "training/epoch_indices/batch_size>n",
        lambda: jinit.epoch_indices(jax.random.key(0), 4, 8),
        ValueError,
        ("batch_size=8", "num_examples=4"),
    ),
    Row(
        "training/epoch_indices/num_examples=0",
        lambda: jinit.epoch_indices(jax.random.key(0), 0, 1),
        ValueError,
        ("num_examples", "0"),
    ),
    Row(
        "training/epoch_indices/int_key",
        lambda: jinit.epoch_indices(0, 8, 2),
        ValueError,
        ("key", "int"),
    ),
    Row(
        "training/epoch_indices/float_key",
        lambda: jinit.epoch_indices(jnp.zeros((2,)), 8, 2),
        ValueError,
        ("key", "float32"),
    ),
    Row("training/seed_keys/empty", lambda: jinit.seed_keys([]), ValueError, ("seeds", "empty")),
    Row("training/seed_keys/float", lambda: jinit.seed_keys([0, 1.5]), TypeError, ("seeds", "1.5")),
    Row(
        "training/init_models/int_keys",
        lambda: jinit.init_models(lambda k: k, jnp.arange(3)),
        ValueError,
        ("keys", "int32"),
    ),
    Row(
        "training/init_models/single_key",
        lambda: jinit.init_models(lambda k: k, jax.random.key(0)),
        ValueError,
        ("keys", "1-D"),
    ),
    Row(
        "training/model_mesh/num_models=0",
        lambda: jinit.model_mesh(0),
        ValueError,
        ("num_models", "0"),
    ),
    Row(
        "training/padded_size/num_devices=0",
        lambda: jinit.padded_size(3, 0),
        ValueError,
        ("num_devices", "0"),
    ),
    Row(
        "training/pad_models/size<models",
        lambda: jinit.pad_models({"w": jnp.ones((4, 2))}, 3),
        ValueError,
        ("size=3", "(4)"),
    ),
    Row(
        "training/shard_models/mesh",
        lambda: jinit.shard_models({"w": jnp.ones((4, 2))}, "cpu"),
        TypeError,
        ("mesh", "str"),
    ),
]
