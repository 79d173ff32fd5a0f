"""layer_statistics and diagnose: known answers, Flax linen and NNX, jit/vmap, and the
vanishing / exploding / healthy / dead / saturated detection."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jinit


def mlp(depth, width, activation, kernel_init, out=10, bias_init=nn.initializers.zeros):
    layers = []
    for _ in range(depth - 1):
        layers += [nn.Dense(width, kernel_init=kernel_init, bias_init=bias_init), activation]
    return nn.Sequential([*layers, nn.Dense(out, kernel_init=kernel_init)])


def stats_of(model, x, **kw):
    params = model.init(jax.random.key(0), x)
    return jax.jit(lambda p, b: jinit.layer_statistics(model, p, b, **kw))(params, x)


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.key(1), (256, 32))


# ---------------------------------------------------------------- statistics: known answers


def test_activation_stats_known_answers():
    a = jnp.array([[0.0, 1.0, -2.0], [0.0, 3.0, 0.5]])
    s = {k: float(v) for k, v in jinit.activation_stats(a).items()}
    assert s["mean"] == pytest.approx(2.5 / 6)
    assert s["std"] == pytest.approx(float(np.std(np.asarray(a))), rel=1e-6)
    assert s["zero_frac"] == pytest.approx(2 / 6)
    assert s["dead_frac"] == pytest.approx(1 / 3)  # column 0 is zero for the whole batch
    assert s["sat_frac"] == 0.0 and s["sat01_frac"] == 0.0  # leaves [-1, 1]
    tanh_out = jnp.array([[0.995, -0.999], [0.5, 0.0]])
    assert float(jinit.activation_stats(tanh_out)["sat_frac"]) == pytest.approx(0.5)
    sigmoid_out = jnp.array([[0.005, 0.5], [0.999, 0.3]])
    s = jinit.activation_stats(sigmoid_out)
    assert float(s["sat01_frac"]) == pytest.approx(0.5)
    assert float(s["sat_frac"]) == pytest.approx(0.25)


def test_gradient_and_param_stats_known_answers():
    """Two bias-free linear layers, loss = mean(y): dL/dy = 1/(B n) everywhere, so
    |dL/dy| = 1/sqrt(B n) and dL/dh = (1/(B n)) 1 W2^T."""
    model = nn.Sequential([nn.Dense(16, use_bias=False), nn.Dense(4, use_bias=False)])
    x = jax.random.normal(jax.random.key(2), (8, 5))
    params = model.init(jax.random.key(0), x)
    s = jax.jit(lambda p, b: jinit.layer_statistics(model, p, b))(params, x)
    w2 = params["params"]["layers_1"]["kernel"]
    g_h = jnp.ones((8, 4)) / 32 @ w2.T
    assert float(s["output_grad/layers_1/norm"]) == pytest.approx(1 / math.sqrt(32), rel=1e-5)
    assert float(s["output_grad/layers_1/std"]) == pytest.approx(0.0, abs=1e-7)
    assert float(s["output_grad/layers_0/norm"]) == pytest.approx(
        float(jnp.linalg.norm(g_h)), rel=1e-5
    )
    g_w = jax.grad(lambda p: jnp.mean(model.apply({"params": p}, x)))(params["params"])
    expected = float(jnp.linalg.norm(g_w["layers_0"]["kernel"]))
    assert float(s["param_grad/layers_0/kernel/norm"]) == pytest.approx(expected, rel=1e-5)
    w1 = params["params"]["layers_0"]["kernel"]
    assert float(s["param/layers_0/kernel/std"]) == pytest.approx(float(jnp.std(w1)), rel=1e-6)
    assert float(s["param/layers_0/kernel/fan_in_var"]) == pytest.approx(5 * float(jnp.var(w1)))
    assert float(s["summary/loss/value"]) == pytest.approx(float(jnp.mean(model.apply(params, x))))


# ---------------------------------------------------------------- case 19: dead ReLU layer


class Case19(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(64, bias_init=nn.initializers.constant(-10.0))(x))
        x = nn.relu(nn.Dense(64)(x))
        return nn.Dense(10)(x)


def test_case19_dead_relu_after_dense0_linen(x):
    s = stats_of(Case19(), x)
    assert jinit.layer_order(s) == ["Dense_0", "Dense_1", "Dense_2"]
    assert float(s["output/Dense_0/mean"]) == pytest.approx(-10.0, abs=0.5)  # precondition
    assert float(s["input/Dense_1/dead_frac"]) == 1.0  # the ReLU that follows Dense_0
    assert float(s["input/Dense_1/zero_frac"]) == 1.0
    assert float(s["output/Dense_1/std"]) == 0.0  # bias only: variance exactly 0, no blow-up
    assert all(np.isfinite(float(v)) for v in s.values())
    kinds = [f.kind for f in jinit.diagnose(s)]
    assert kinds[0] == "vanishing_gradient" and "dead_units" in kinds
    dead = next(f for f in jinit.diagnose(s) if f.kind == "dead_units")
    assert "Dense_1 100%" in dead.message


class NNXCase19(nnx.Module):
    def __init__(self, rngs):
        self.seq = nnx.Sequential(
            nnx.Linear(32, 64, bias_init=nnx.initializers.constant(-10.0), rngs=rngs),
            nnx.relu,
            nnx.Linear(64, 64, rngs=rngs),
            nnx.relu,
            nnx.Linear(64, 10, rngs=rngs),
        )

    def __call__(self, x):
        return self.seq(x)


def test_case19_dead_relu_nnx(x):
    model = NNXCase19(nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    s = jax.jit(lambda p, b: jinit.layer_statistics(model, p, b))(params, x)
    assert jinit.layer_order(s, leaves_only=True) == [
        "seq/layers/0",
        "seq/layers/2",
        "seq/layers/4",
    ]
    assert float(s["input/seq/layers/2/dead_frac"]) == 1.0
    assert "param/seq/layers/0/kernel/fan_in_var" in s
    # The class patch is gone afterwards.
    assert "__call__" not in nnx.Linear.__dict__ or not hasattr(nnx.Linear.__call__, "__wrapped__")
    assert model(x).shape == (256, 10)


# ---------------------------------------------------------------- API: order, batches, jit, vmap


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.tanh(nn.Dense(8)(x))


class Nested(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = Block()(x)
        x = Block()(x)
        return nn.Dense(3)(x)


def test_execution_order_nested_and_apply_fn():
    model, x = Nested(), jnp.ones((4, 5))
    params = model.init(jax.random.key(0), x)

    def stats(fn, **kw):
        return jax.jit(lambda p, b: jinit.layer_statistics(fn, p, b, **kw))(params, x)

    s = stats(model)
    assert jinit.layer_order(s) == [
        "Block_0",
        "Block_0/Dense_0",
        "Block_1",
        "Block_1/Dense_0",
        "Dense_0",
    ]
    assert jinit.layer_order(s, leaves_only=True) == [
        "Block_0/Dense_0",
        "Block_1/Dense_0",
        "Dense_0",
    ]

    # A plain apply function that calls linen modules is recorded the same way (its params are
    # the variables dict, so param paths start with params/); include= filters modules.
    def keys(fn, **kw):
        return set(jax.eval_shape(lambda p, b: jinit.layer_statistics(fn, p, b, **kw), params, x))

    assert {k for k in keys(model.apply) if k.startswith("output")} == {
        k for k in s if k.startswith("output")
    }
    only_dense = keys(model, include=lambda path, m: isinstance(m, nn.Dense))
    assert {k.split("/index")[0] for k in only_dense if k.endswith("/index")} == {
        "output/Block_0/Dense_0",
        "output/Block_1/Dense_0",
        "output/Dense_0",
    }


def test_batches_and_loss_fn():
    model = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(3)])
    x, y = jnp.ones((6, 2)), jnp.arange(6) % 3
    params = model.init(jax.random.key(0), x)

    def xent(logits, batch):
        return jnp.mean(
            -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["label"][:, None], 1)
        )

    s = jax.jit(lambda p, b: jinit.layer_statistics(model, p, b, xent))(
        params, {"x": x, "label": y}
    )
    assert float(s["summary/loss/value"]) == pytest.approx(
        float(xent(model.apply(params, x), {"label": y}))
    )
    s_tuple = jax.eval_shape(lambda p, b: jinit.layer_statistics(model, p, b), params, (x, y))
    assert "output_grad/layers_0/norm" in s_tuple
    with pytest.raises(ValueError, match="input_key"):
        jinit.layer_statistics(model, params, {"image": x})


def test_compiles_once_and_vmaps():
    model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(2)])
    xs = jax.random.normal(jax.random.key(0), (2, 16, 4))
    traces = []

    def loss(out, batch):
        traces.append(1)
        return jnp.mean(out**2)

    step = jax.jit(lambda p, b: jinit.layer_statistics(model, p, b, loss))
    params = model.init(jax.random.key(0), xs[0])
    step(params, xs[0])
    n = len(traces)
    step(params, xs[1])
    assert len(traces) == n  # second call: no retrace
    inits = [model.init(k, xs[0]) for k in jax.random.split(jax.random.key(1), 3)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *inits)
    batched = jax.jit(jax.vmap(lambda p: jinit.layer_statistics(model, p, xs[0], loss)))(stacked)
    assert batched["output/layers_0/std"].shape == (3,)
    single = step(inits[1], xs[0])
    np.testing.assert_allclose(
        batched["output_grad/layers_0/norm"][1], single["output_grad/layers_0/norm"], rtol=1e-5
    )


# ---------------------------------------------------------------- detection

DEPTH, WIDTH = 10, 64
MLPS = {
    "relu": mlp(DEPTH, WIDTH, nn.relu, nn.initializers.zeros),
    "tanh": mlp(DEPTH, WIDTH, nn.tanh, nn.initializers.zeros),
}
# One compiled statistics program per activation, shared by every kernel initializer below.
STATS = {
    name: jax.jit(lambda p, b, m=m: jinit.layer_statistics(m, p, b)) for name, m in MLPS.items()
}


def mlp_stats(activation, kernel_init, x):
    """Statistics of the 10-layer MLP with every kernel drawn from kernel_init (biases 0)."""
    params = MLPS[activation].init(jax.random.key(0), x)
    layers = params["params"]
    for i, name in enumerate(sorted(layers)):
        shape = layers[name]["kernel"].shape
        layers[name]["kernel"] = kernel_init(jax.random.fold_in(jax.random.key(5), i), shape)
    return STATS[activation](params, x)


def test_detects_vanishing_tanh_with_small_init(x):
    findings = jinit.diagnose(mlp_stats("tanh", jinit.normal(0.01), x), activation="tanh")
    kinds = [f.kind for f in findings]
    assert "vanishing_gradient" in kinds and "vanishing_activation" in kinds
    vanishing = next(f for f in findings if f.kind == "vanishing_gradient")
    assert vanishing.value < 1e-2
    assert "falls by a factor" in vanishing.message and "chi_1" in vanishing.message
    assert "sigma_w = 1" in vanishing.message  # the recommended fix: critical tanh, LeCun


def test_detects_exploding_relu(x):
    s = mlp_stats("relu", jinit.variance_scaling(8.0, "fan_in", "normal"), x)
    kinds = [f.kind for f in jinit.diagnose(s)]
    assert "exploding_gradient" in kinds and "exploding_activation" in kinds


def test_detects_saturated_tanh(x):
    s = mlp_stats("tanh", jinit.variance_scaling(36.0, "fan_in", "normal"), x)
    sat = [f for f in jinit.diagnose(s) if f.kind == "saturation"]
    assert sat and sat[0].value > 0.5


@pytest.mark.parametrize(
    "activation,init", [("relu", jinit.he_normal()), ("tanh", jinit.lecun_normal())]
)
def test_healthy_networks_have_no_findings(x, activation, init):
    assert jinit.diagnose(mlp_stats(activation, init, x)) == []


def test_diagnose_rejects_unknown_activation_names():
    with pytest.raises(ValueError, match="unknown activation 'foo'"):
        jinit.diagnose({}, activation="foo")
