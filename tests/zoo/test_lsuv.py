"""jinit.lsuv on the zoo, checked by Flax's own capture: every layer the report calls
converged has the target variance when measured independently; every other layer has an
honest status and an InitWarning naming it."""

import warnings

import flax.linen as nn
import jax
import numpy as np
import pytest

import jinit
from tests.zoo.measure import layer_outputs
from tests.zoo.models import NAMES

HONEST = {"not_converged", "skipped", "scale_invariant", "zero_variance", "non_finite"}


@pytest.fixture(scope="module")
def lsuv_runs(zoo):
    out = {}
    for name, case in zoo.items():
        if name == "plain_jax":
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", jinit.InitWarning)
            new, report = jinit.lsuv(
                case.model, case.variables, case.x, apply_kwargs=case.apply_kwargs
            )
        messages = [str(w.message) for w in caught if w.category is jinit.InitWarning]
        out[name] = (new, report, messages)
    return out


@pytest.mark.parametrize("name", [n for n in NAMES if n != "plain_jax"])
def test_converged_layers_measure_on_target_and_others_are_named(zoo, lsuv_runs, name):
    new, report, messages = lsuv_runs[name]
    outputs = layer_outputs(zoo[name], new)
    assert report.paths
    measured = 0
    for path, status in zip(report.paths, report.statuses, strict=True):
        if status == "converged":
            if path in outputs:
                var = float(np.var(outputs[path].astype(np.float64)))
                assert abs(var - report.target) < report.tol, (path, var)
                measured += 1
        else:
            assert status in HONEST, (path, status)
            assert any(path in m for m in messages), (path, status, messages)
    assert measured >= 1 or not any(s == "converged" for s in report.statuses)


def test_scale_invariant_layer_keeps_its_kernel(zoo, lsuv_runs):
    new, report, _ = lsuv_runs["scale_invariant"]
    i = report.paths.index("NormedDense_0")
    assert report.statuses[i] == "scale_invariant"
    np.testing.assert_array_equal(
        new["params"]["NormedDense_0"]["kernel"],
        zoo["scale_invariant"].variables["params"]["NormedDense_0"]["kernel"],
    )


@pytest.mark.parametrize(
    "name,layers",
    [("ws_conv", ("StdConv_0", "StdConv_1")), ("offset_dense", ("OffsetDense_0", "OffsetDense_1"))],
)
def test_nonlinear_in_kernel_layers_are_solved_or_reported(zoo, lsuv_runs, name, layers):
    new, report, messages = lsuv_runs[name]
    outputs = layer_outputs(zoo[name], new)
    for layer in layers:
        status = report.statuses[report.paths.index(layer)]
        var = float(np.var(outputs[layer].astype(np.float64)))
        if status == "converged":
            assert abs(var - report.target) < report.tol, (layer, var)
        else:
            assert status in {"not_converged", "scale_invariant"}
            assert any(layer in m for m in messages)


def test_empty_batch_raises(zoo):
    case = zoo["offset_dense"]
    with pytest.raises(ValueError):
        jinit.lsuv(case.model, case.variables, case.x[:0])


def test_eval_batchnorm_without_batch_stats_raises(zoo):
    case = zoo["resnet_bn_eval"]
    with pytest.raises(ValueError, match="batch_stats"):
        jinit.lsuv(
            case.model, {"params": case.variables["params"]}, case.x, apply_kwargs={"train": False}
        )


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_recurrent_input_gates_checked_by_hand(zoo, lsuv_runs, name):
    """Flax's capture cannot see inside nn.RNN's scan; a cell's input projections (ii, if, ...)
    see x_t at every step, so their pooled output is x @ W (+ b) over batch and time."""
    new, report, messages = lsuv_runs[name]
    x = np.asarray(zoo[name].x, np.float64)
    gates = [p for p in report.paths if "Cell_0/i" in p]
    assert len(gates) >= 3
    for path, status in zip(report.paths, report.statuses, strict=True):
        if path not in gates:
            continue
        cell, gate = path.split("/")
        layer = new["params"][cell][gate]
        y = x @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer.get("bias", 0.0))
        if status == "converged":
            assert abs(np.var(y) - report.target) < report.tol, (path, np.var(y))
        else:
            assert any(path in m for m in messages), (path, status)


class _DoubledDense(nn.Dense):
    """A custom subclass as users write one: its own op around ``super().__call__``."""

    def __call__(self, x):
        return super().__call__(x) * 2.0


class _SuperCallNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        init = jinit.lsuv_ready_orthogonal()
        return nn.Dense(8, kernel_init=init)(_DoubledDense(32, kernel_init=init)(x))


@pytest.mark.parametrize("jit", [False, True])
def test_subclass_calling_super_is_one_layer_measured_on_its_real_output(jit):
    # The nested super().__call__ is part of the layer's call, not a second (shared) call: the
    # layer is solved on its real output (after the * 2), checked here by hand.
    x = jax.random.normal(jax.random.key(0), (64, 16))
    model = _SuperCallNet()
    new, report = jinit.lsuv(model, model.init(jax.random.key(1), x), x, jit=jit)
    assert report.paths == ("_DoubledDense_0", "Dense_0")
    p = new["params"]
    h = 2.0 * (x @ p["_DoubledDense_0"]["kernel"] + p["_DoubledDense_0"]["bias"])
    y = h @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    for var, reported, status in zip(
        (np.var(h), np.var(y)), report.var_after, report.statuses, strict=True
    ):
        assert status == "converged"
        assert abs(float(var) - 1.0) < report.tol
        np.testing.assert_allclose(float(var), float(reported), rtol=1e-5)
