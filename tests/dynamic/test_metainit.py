"""jinit.metainit: the gradient quotient in closed form, rescaling only, jit/vmap/NNX agreement."""

from __future__ import annotations

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jinit
from jinit._src.dynamic.metainit import gradient_quotient


def linear(p, x):
    return x @ p["w"]


def mse(out, batch):
    return 0.5 * jnp.mean(jnp.sum((out - batch["y"]) ** 2, -1))


def whitened_batch(n=8, d=4, k=3, c=2.0, seed=0):
    """Inputs with X^T X / n = c I exactly (orthogonal columns), targets random."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, d)))
    x = np.sqrt(n * c) * q
    return {
        "x": jnp.asarray(x, jnp.float32),
        "y": jnp.asarray(rng.normal(size=(n, k)), jnp.float32),
    }


def test_gradient_quotient_of_a_linear_least_squares_model_is_known():
    """For L = 1/2 mean ||x W - y||^2, H acts as V -> X^T X V / n = c V when X^T X / n = c I, so
    Hg = c g and GQ = mean |(g - c g)/(g + e) - 1| = mean |(c g + e)/(g + e)| (e = eps sign g):
    c itself when eps << |g|."""
    c, eps = 2.0, 1e-5
    batch = whitened_batch(c=c)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)), jnp.float32)

    def loss_at(leaves, b):
        return mse(linear({"w": leaves[0]}, b["x"]), b)

    gq, (loss, gnorm) = gradient_quotient(loss_at, [w], batch, eps)
    gq_rev, _ = gradient_quotient(loss_at, [w], batch, eps, hvp="reverse")
    np.testing.assert_allclose(float(gq_rev), float(gq), rtol=1e-5)
    x, y = np.asarray(batch["x"], np.float64), np.asarray(batch["y"], np.float64)
    g = x.T @ (x @ np.asarray(w, np.float64) - y) / x.shape[0]
    e = eps * np.where(g >= 0, 1.0, -1.0)
    expected = np.mean(np.abs((c * g + e) / (g + e)))
    np.testing.assert_allclose(float(gq), expected, rtol=1e-5)
    np.testing.assert_allclose(float(gq), c, rtol=1e-3)
    np.testing.assert_allclose(float(gnorm), np.linalg.norm(g), rtol=1e-5)
    # The pass reports the same value before its first step.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jinit.InitWarning)
        _, report = jinit.metainit(linear, {"w": w}, batch, mse, steps=2)
    np.testing.assert_allclose(float(report.quotient[0]), expected, rtol=1e-5)


def test_first_step_is_signsgd_on_the_norm():
    """Step 1 moves ||w|| by -lr * sign(dGQ/d||w||) (momentum starts at 0)."""
    batch = whitened_batch(c=2.0)
    w = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)), jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jinit.InitWarning)
        _, r = jinit.metainit(linear, {"w": w}, batch, mse, steps=1, lr=0.1)
    norm = float(jnp.linalg.norm(w))
    sign = float(np.sign(r.multiplier_grad[0, 0]))
    np.testing.assert_allclose(float(r.multiplier[0]), (norm - 0.1 * sign) / norm, rtol=1e-6)


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(8, name="l0")(x))
        x = jnp.tanh(nn.Dense(8, name="l1")(x))
        return nn.Dense(3, name="l2")(x)


def xent(out, batch):
    return optax.softmax_cross_entropy_with_integer_labels(out, batch["y"]).mean()


def data(n=16):
    x = jax.random.normal(jax.random.key(3), (n, 5))
    return {"x": x, "y": jnp.arange(n) % 3}


def scaled_init(key, scale=4.0):
    p = MLP().init(key, data()["x"])
    return jax.tree_util.tree_map_with_path(
        lambda path, v: v * scale if jinit.path_string(path).endswith("kernel") else v, p
    )


STEPS = 5  # one step count everywhere: the compiled programs are shared across tests


def test_rescales_only_and_lowers_the_quotient():
    params = scaled_init(jax.random.key(0))
    out, r = jinit.metainit(MLP(), params, data(), xent, steps=STEPS)
    assert r.paths == ("l0/kernel", "l1/kernel", "l2/kernel")  # forward order, kernels only
    assert float(r.quotient_after) < float(r.quotient[0])
    for i, path in enumerate(r.paths):
        layer = path.split("/")[0]
        a = np.float32(r.multiplier[i])
        np.testing.assert_array_equal(
            out["params"][layer]["kernel"], params["params"][layer]["kernel"] * a
        )
        assert out["params"][layer]["bias"] is params["params"][layer]["bias"] or np.array_equal(
            out["params"][layer]["bias"], params["params"][layer]["bias"]
        )
    assert r.trajectory.shape == (STEPS, 3) and r.quotient.shape == (STEPS,)
    assert "gradient quotient" in r.summary()


def two_layer(p, x):
    return jnp.tanh(x @ p["w1"]) @ p["w2"]


def two_layer_params(key):
    k1, k2 = jax.random.split(key)
    return {"w1": 3.0 * jax.random.normal(k1, (5, 6)), "w2": jax.random.normal(k2, (6, 3))}


def test_jit_eager_scan_python_agree():
    params, batch = two_layer_params(jax.random.key(0)), data()
    runs = [
        jinit.metainit(two_layer, params, batch, xent, steps=2, loop=loop, jit=jit)[1]
        for loop, jit in (("scan", True), ("python", True), ("python", False))
    ]
    for r in runs[1:]:
        np.testing.assert_allclose(r.trajectory, runs[0].trajectory, rtol=1e-5)
        np.testing.assert_allclose(r.quotient, runs[0].quotient, rtol=1e-5)


def test_vmap_over_init_keys_equals_separate_runs():
    keys = jax.random.split(jax.random.key(7), 3)
    batch = data()

    def one(k):
        return jinit.metainit(two_layer, two_layer_params(k), batch, xent, steps=3)

    _, stacked = jax.jit(jax.vmap(one))(keys)
    assert stacked.multiplier.shape == (3, 2)
    for i, k in enumerate(keys):
        _, r = one(k)
        np.testing.assert_allclose(stacked.multiplier[i], r.multiplier, rtol=1e-5)
        np.testing.assert_allclose(stacked.quotient[i], r.quotient, rtol=1e-5)
    stacked.check()  # finite: no error


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.l0 = nnx.Linear(5, 8, rngs=rngs)
        self.l1 = nnx.Linear(8, 8, rngs=rngs)
        self.l2 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(jnp.tanh(self.l1(jnp.tanh(self.l0(x)))))


def nnx_copy(params):
    m = NnxMLP(nnx.Rngs(0))
    for name in ("l0", "l1", "l2"):
        getattr(m, name).kernel.value = params["params"][name]["kernel"]
        getattr(m, name).bias.value = params["params"][name]["bias"]
    return m


def test_linen_and_nnx_give_the_same_multipliers():
    params = scaled_init(jax.random.key(0))
    _, r_linen = jinit.metainit(MLP(), params, data(), xent, steps=STEPS)
    module = nnx_copy(params)
    state, r_nnx = jinit.metainit(module, None, data(), xent, steps=STEPS)
    assert r_nnx.paths == r_linen.paths
    np.testing.assert_allclose(r_nnx.multiplier, r_linen.multiplier, rtol=1e-5)
    np.testing.assert_array_equal(
        state["l1"]["kernel"].value, params["params"]["l1"]["kernel"] * r_nnx.multiplier[1]
    )
    # a GraphDef with its state gives the same too
    graphdef, full = nnx.split(module)
    _, r_gd = jinit.metainit(graphdef, full, data(), xent, steps=STEPS)
    np.testing.assert_allclose(r_gd.multiplier, r_linen.multiplier, rtol=1e-5)


def test_constant_quotient_warns_it_did_not_decrease():
    """L = 1/2 ||w||^2 has H = I, so g - Hg = 0 and GQ = 1 exactly at every scale."""
    p = {"w": jnp.ones((2, 2), jnp.float32)}
    with pytest.warns(jinit.InitWarning, match="did not decrease"):
        jinit.metainit(
            lambda p, x: p["w"], p, jnp.ones((1, 1)), lambda o, b: 0.5 * jnp.sum(o**2), steps=3
        )


def test_non_finite_names_the_block_and_iteration():
    """A linear chain with kernels of norm ~1e20 overflows float32 at the first step."""

    def chain(p, x):
        return x @ p["a"] @ p["b"]

    p = {"a": jnp.full((5, 4), 1e20), "b": jnp.full((4, 3), 1e20)}
    with pytest.raises(ValueError, match=r"non-finite .*iteration 0.*'a'"):
        jinit.metainit(chain, p, data(), xent, steps=1)


def test_all_zero_gradients_are_an_error():
    """A dead ReLU net (all kernels and biases zero): every gradient is exactly zero."""

    def apply(p, x):
        return jax.nn.relu(x @ p["w1"]) @ p["w2"]

    p = {"w1": jnp.zeros((5, 4)), "w2": jnp.zeros((4, 3))}
    with pytest.raises(ValueError, match="exactly zero"):
        jinit.metainit(apply, p, data(), xent, steps=1)


def test_batchnorm_train_mode_and_dropout():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=True):
            x = nn.Dense(8)(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.Dropout(0.2, deterministic=not train)(jnp.tanh(x))
            return nn.Dense(3)(x)

    b = data()
    v = Net().init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, b["x"])
    out, r = jinit.metainit(
        Net(),
        v,
        b,
        xent,
        steps=3,
        rngs={"dropout": jax.random.key(2)},
        apply_kwargs={"train": True, "mutable": ["batch_stats"]},
    )
    assert np.isfinite(np.asarray(r.quotient)).all()
    for a, b_ in zip(
        jax.tree.leaves(out["batch_stats"]), jax.tree.leaves(v["batch_stats"]), strict=True
    ):
        np.testing.assert_array_equal(a, b_)
