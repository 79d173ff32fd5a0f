"""The capture layer and the verified solves on the models of issue 14: layers that are not
linear in their kernel, scale-invariant layers, remat/scan/RNN, bad batches. Every "after" is
checked against an independent measurement (linen ``capture_intermediates``)."""

import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jinit
from jinit._src.datadep.capture import capture


def normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def measured(model, variables, x, **kw):
    """Every module's output variance, by path, measured by flax itself."""
    _, st = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"], **kw)
    out = {}
    for kp, v in jax.tree_util.tree_flatten_with_path(st["intermediates"])[0]:
        keys = [str(getattr(k, "key", getattr(k, "idx", ""))) for k in kp]
        if "__call__" in keys:
            out["/".join(keys[: keys.index("__call__")])] = float(jnp.var(v))
    return out


def lsuv_quiet(*args, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = jinit.lsuv(*args, **kw)
    return out, [x for x in w if issubclass(x.category, jinit.InitWarning)]


class WSConv(nn.Conv):
    """Weight-standardized conv (BiT / big_vision): overrides Module.param."""

    def param(self, name, init_fn, *args, **kwargs):
        p = super().param(name, init_fn, *args, **kwargs)
        if name == "kernel":
            mean, var = jnp.mean(p, axis=(0, 1, 2)), jnp.var(p, axis=(0, 1, 2))
            p = (p - mean) / jnp.sqrt(var + 1e-10)
        return p


class OffsetDense(nn.Dense):
    """A Dense whose kernel carries a fixed offset: affine, not linear, in the kernel."""

    def param(self, name, init_fn, *args, **kwargs):
        p = super().param(name, init_fn, *args, **kwargs)
        return p + 0.05 if name == "kernel" else p


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = WSConv(8, (3, 3), name="ws")(x)
        x = nn.relu(x).reshape(x.shape[0], -1)
        x = OffsetDense(16, name="offset")(x)
        return nn.Dense(4, name="out")(nn.relu(x))


def test_nonlinear_in_kernel_layers_are_verified_and_measured():
    x = normal(1, (16, 6, 6, 3))
    model = Net()
    v = model.init(jax.random.key(0), x)
    (v2, report), warned = lsuv_quiet(model, v, x)
    assert report.paths == ("ws", "offset", "out")
    # ws: standardized kernel; offset: the fixed offset alone gives variance > 1 (unreachable)
    assert report.statuses == ("scale_invariant", "not_converged", "converged")
    assert jnp.array_equal(v2["params"]["ws"]["kernel"], v["params"]["ws"]["kernel"])
    got = measured(model, v2, x)
    for i, path in enumerate(report.paths):  # every "after" is the real output's variance
        np.testing.assert_allclose(got[path], float(report.var_after[i]), rtol=1e-5)
    assert got["offset"] > 1.1 and abs(got["out"] - 1) < 0.1
    assert int(report.iterations[1]) == 10  # the closed form missed: the loop ran to its bound
    assert len(warned) == 1
    assert "ws [scale_invariant" in str(warned[0].message)
    assert "offset [not_converged" in str(warned[0].message)


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Dense(16)(x))


class ScanBlock(nn.Module):
    @nn.compact
    def __call__(self, c, _):
        return nn.relu(nn.Dense(16)(c)), None


class Lifted(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(16)(x)
        x = nn.remat(Block)(name="remat")(x)
        scan = nn.scan(
            ScanBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=2
        )
        x, _ = scan(name="stack")(x, None)
        return nn.Dense(4)(x)


def test_remat_supported_scan_skipped_with_warning_no_tracer_leak():
    x = normal(1, (64, 8))
    model = Lifted()
    v = model.init(jax.random.key(0), x)
    for jit in (False, True):
        (v2, report), warned = lsuv_quiet(model, v, x, jit=jit)
        assert report.paths == ("Dense_0", "remat/Dense_0", "stack/Dense_0", "Dense_1")
        assert report.statuses == ("converged", "converged", "skipped", "converged")
        assert "nn.scan" in report.reasons()[2]
        assert jnp.array_equal(
            v2["params"]["stack"]["Dense_0"]["kernel"], v["params"]["stack"]["Dense_0"]["kernel"]
        )
        got = measured(model, v2, x)
        np.testing.assert_allclose(got["remat/Dense_0"], float(report.var_after[1]), rtol=1e-5)
        assert len(warned) == 1 and "stack/Dense_0 [skipped" in str(warned[0].message)


@pytest.mark.parametrize("cell", [nn.LSTMCell, nn.GRUCell])
def test_rnn_gates(cell):
    x = normal(1, (8, 5, 6))

    class Seq(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(nn.RNN(cell(12))(x))

    model = Seq()
    v = model.init(jax.random.key(0), x)
    (v2, report), _ = lsuv_quiet(model, v, x)
    assert all(s == "converged" for s in report.statuses)
    cname = f"{cell.__name__}_0"
    for path, var in zip(report.paths, np.asarray(report.var_after), strict=True):
        if path.startswith(cname):
            p = v2["params"][cname][path.split("/")[1]]
            y = x @ p["kernel"] + p.get("bias", 0.0)  # independent: the gate's projection
            np.testing.assert_allclose(float(jnp.var(y)), var, rtol=1e-5)


def test_bad_batches_and_missing_batch_stats_raise():
    model = nn.Dense(4)
    v = model.init(jax.random.key(0), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="batch is empty"):
        jinit.lsuv(model, v, jnp.ones((0, 3)))
    with pytest.raises(ValueError, match="only 1 output value"):
        jinit.lsuv(
            nn.Dense(1), nn.Dense(1).init(jax.random.key(0), jnp.ones((1, 3))), jnp.ones((1, 3))
        )

    class BN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=True)(nn.Dense(4)(x))

    bn = BN()
    vb = bn.init(jax.random.key(0), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="batch_stats"):
        jinit.lsuv(bn, {"params": vb["params"]}, normal(1, (8, 3)))


def test_capture_order_replace_and_update_all_kinds():
    x = normal(1, (8, 3))
    model = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)])
    v = model.init(jax.random.key(0), x)

    def hook(call):
        if call.kind == "Dense":
            call.update({"kernel": 2 * call.params["kernel"]})
            call.record(var=jnp.var(call.output))
            return call.run()
        return None

    out = capture(model, v, x, hook)
    assert out.paths == ("layers_0", "layers_2", "Sequential")
    assert set(out.records) == {"layers_0", "layers_2"}
    np.testing.assert_allclose(out.outputs, model.apply(out.params, x), rtol=1e-6)
    np.testing.assert_allclose(
        out.params["params"]["layers_2"]["kernel"], 2 * v["params"]["layers_2"]["kernel"]
    )
    assert list(out.params["params"]) == list(v["params"])  # key order kept


def test_nnx_remat_layer_skipped_and_named():

    class N(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(4, 8, rngs=rngs)
            self.b = nnx.Linear(8, 8, rngs=rngs)

        def __call__(self, x):
            return nnx.remat(lambda m, h: m(h))(self.b, self.a(x))

    n = N(nnx.Rngs(0))
    x = normal(1, (32, 4))
    (state, report), warned = lsuv_quiet(n, None, x)
    assert report.paths == ("a", "b") and report.statuses == ("converged", "skipped")
    assert "lifted transform" in report.reasons()[1]
    assert len(warned) == 1 and "b [skipped" in str(warned[0].message)
    assert jnp.array_equal(state["b"]["kernel"].get_value(), n.b.kernel.get_value())


def test_rerun_does_not_trace_the_layers_initializers():
    # Flax eval_shapes an existing param's initializer on every call; inside that check the
    # captured call and the verified re-run's clone get shape-only stand-ins, so nothing traces it.
    shapes = []

    def init(key, shape, dtype=jnp.float32):
        shapes.append(shape)
        return jax.nn.initializers.orthogonal()(key, shape, dtype)

    model = nn.Sequential([nn.Dense(8, kernel_init=init), nn.relu, nn.Dense(4, kernel_init=init)])
    x = normal(1, (32, 3))
    v = model.init(jax.random.key(0), x)
    shapes.clear()
    new, report = jinit.lsuv(model, v, x, jit=False)
    assert report.statuses == ("converged", "converged")
    assert shapes == []  # neither the forward calls nor the re-runs trace the initializer
    h = jax.nn.relu(x @ new["params"]["layers_0"]["kernel"] + new["params"]["layers_0"]["bias"])
    assert abs(float(jnp.var(h @ new["params"]["layers_2"]["kernel"])) - 1) < 0.1


def test_a_layer_drawing_from_its_own_initializer_gets_the_real_one():
    # The stand-ins answer flax's shape check only; a draw at the call's own level is real.
    class Noisy(nn.Module):
        kernel_init: Any = jax.nn.initializers.normal(1.0)

        @nn.compact
        def __call__(self, x):
            k = self.param("kernel", self.kernel_init, (x.shape[-1], 4))
            return x @ k + self.kernel_init(jax.random.key(7), (4,))

    model, x = Noisy(), normal(1, (32, 3))
    v = model.init(jax.random.key(0), x)
    seen = []
    capture(model, v, x, lambda call: seen.append(call.output))
    np.testing.assert_array_equal(seen[0], model.apply(v, x))  # the real draw, not zeros
