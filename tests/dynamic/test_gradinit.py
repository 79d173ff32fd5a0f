"""jinit.gradinit: the first iteration in closed form, the constraint, rescaling only, and
jit/eager/scan/python/vmap/linen/NNX agreement."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jinit


def linear(p, x):
    return x @ p["w"]


def mse(out, batch):
    return 0.5 * jnp.mean(jnp.sum((out - batch["y"]) ** 2, -1))


def lin_data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x": jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
        "y": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
    }


W = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)), jnp.float32)


def np_loss_grad(w, b):
    x, y = np.asarray(b["x"], np.float64), np.asarray(b["y"], np.float64)
    r = x @ w - y
    return 0.5 * np.mean(np.sum(r**2, -1)), x.T @ r / x.shape[0]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_first_iteration_matches_the_closed_form(optimizer):
    """Iteration 0 (alpha = 1): step batch = first half, lookahead batch = second half;
    simulated step eta g/|g|_2 (SGD) or eta sign(g) (Adam); outer gradient
    <grad L_b(w'), w> / eta; the first RescaleAdam step moves alpha by outer_lr * sign."""
    batch, eta, tau = lin_data(), 0.1, 0.01
    _, r = jinit.gradinit(
        linear,
        {"w": W},
        batch,
        mse,
        optimizer=optimizer,
        lr=eta,
        gamma=1e9,
        iters=1,
        outer_lr=tau,
        grad_clip=0.0,
    )
    a = {k: v[:4] for k, v in batch.items()}
    b = {k: v[4:] for k, v in batch.items()}
    w = np.asarray(W, np.float64)
    loss_a, g = np_loss_grad(w, a)
    norm = np.abs(g).sum() if optimizer == "adam" else np.linalg.norm(g)
    step = eta * np.sign(g) if optimizer == "adam" else eta * g / norm
    look, gb = np_loss_grad(w - step, b)
    dalpha = np.sum(gb * w) / eta
    np.testing.assert_allclose(float(r.loss[0]), loss_a, rtol=1e-5)
    np.testing.assert_allclose(float(r.grad_norm[0]), norm, rtol=1e-5)
    np.testing.assert_allclose(float(r.lookahead_loss[0]), look, rtol=1e-5)
    np.testing.assert_allclose(float(r.multiplier_grad[0, 0]), dalpha, rtol=1e-4)
    assert not bool(r.constrained[0])
    np.testing.assert_allclose(float(r.multiplier[0]), 1 - tau * np.sign(dalpha), rtol=1e-6)


def test_outer_optimizer_replaces_rescale_adam():
    _, r = jinit.gradinit(
        linear,
        {"w": W},
        lin_data(),
        mse,
        gamma=1e9,
        iters=1,
        grad_clip=0.0,
        outer_optimizer=optax.sgd(0.05),
    )
    np.testing.assert_allclose(
        float(r.multiplier[0]), 1 - 0.05 * float(r.multiplier_grad[0, 0]), rtol=1e-6
    )


def test_gradient_norm_above_gamma_is_lowered_and_the_floor_holds_and_warns():
    with pytest.warns(jinit.InitWarning, match="'w'.*floor"):
        _, r = jinit.gradinit(
            linear, {"w": W}, lin_data(), mse, gamma=1e-6, iters=6, outer_lr=0.05, floor=0.9
        )
    assert np.asarray(r.constrained).all()
    d = np.diff(np.asarray(r.grad_norm))
    assert np.all(d[:2] < 0) and np.all(d <= 1e-5)  # shrinking w shrinks the gradient, then floor
    assert float(r.multiplier[0]) == pytest.approx(0.9)
    assert r.pinned() == ("w",)


def test_explicit_lookahead_batch():
    batch, look = lin_data(4, seed=2), lin_data(4, seed=3)
    _, r = jinit.gradinit(linear, {"w": W}, batch, mse, lookahead_batch=look, gamma=1e9, iters=1)
    w = np.asarray(W, np.float64)
    _, g = np_loss_grad(w, batch)
    expected, _ = np_loss_grad(w - 0.1 * g / np.linalg.norm(g), look)
    np.testing.assert_allclose(float(r.lookahead_loss[0]), expected, rtol=1e-5)


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(8, name="l0")(x))
        x = nn.relu(nn.Dense(8, name="l1")(x))
        return nn.Dense(3, name="l2")(x)


def xent(out, batch):
    return optax.softmax_cross_entropy_with_integer_labels(out, batch["y"]).mean()


def data(n=16):
    return {"x": jax.random.normal(jax.random.key(3), (n, 5)), "y": jnp.arange(n) % 3}


ITERS = 5  # one iteration count everywhere: the compiled programs are shared across tests


def test_rescales_only_in_forward_order():
    params = MLP().init(jax.random.key(0), data()["x"])
    out, r = jinit.gradinit(MLP(), params, data(), xent, include=r"kernel$", iters=ITERS)
    assert r.paths == ("l0/kernel", "l1/kernel", "l2/kernel")
    assert r.trajectory.shape == (ITERS, 3) and r.lookahead_loss.shape == (ITERS,)
    for i, path in enumerate(r.paths):
        layer = path.split("/")[0]
        np.testing.assert_array_equal(
            out["params"][layer]["kernel"],
            params["params"][layer]["kernel"] * np.float32(r.multiplier[i]),
        )
        np.testing.assert_array_equal(out["params"][layer]["bias"], params["params"][layer]["bias"])
    assert "gradinit" in r.summary() and "l1/kernel" in r.summary()
    # Default: every block, biases included (their floor is 0; a zero bias keeps multiplier 1).
    _, r_all = jinit.gradinit(MLP(), params, data(), xent, iters=ITERS)
    assert r_all.paths[:2] == ("l0/kernel", "l0/bias") and len(r_all) == 6
    assert r_all.floors[:2] == (0.01, 0.0)
    np.testing.assert_array_equal(np.asarray(r_all.multiplier)[1::2], 1.0)


def two_layer(p, x):
    return jnp.tanh(x @ p["w1"]) @ p["w2"]


def two_layer_params(key):
    k1, k2 = jax.random.split(key)
    return {"w1": 3.0 * jax.random.normal(k1, (5, 6)), "w2": jax.random.normal(k2, (6, 3))}


def test_jit_eager_scan_python_agree():
    params, batch = two_layer_params(jax.random.key(0)), data()
    runs = [
        jinit.gradinit(two_layer, params, batch, xent, iters=3, loop=loop, jit=jit)[1]
        for loop, jit in (("scan", True), ("python", True), ("python", False))
    ]
    for r in runs[1:]:
        np.testing.assert_allclose(r.trajectory, runs[0].trajectory, rtol=1e-5)
        np.testing.assert_allclose(r.lookahead_loss, runs[0].lookahead_loss, rtol=1e-5)


def test_vmap_over_init_keys_equals_separate_runs():
    keys = jax.random.split(jax.random.key(7), 3)
    batch = data()

    def one(k):
        return jinit.gradinit(two_layer, two_layer_params(k), batch, xent, iters=3)

    out, stacked = jax.jit(jax.vmap(one))(keys)
    assert stacked.multiplier.shape == (3, 2) and out["w1"].shape == (3, 5, 6)
    for i, k in enumerate(keys):
        _, r = one(k)
        np.testing.assert_allclose(stacked.multiplier[i], r.multiplier, rtol=1e-5)
        np.testing.assert_allclose(stacked.grad_norm[i], r.grad_norm, rtol=1e-5)
    stacked.check()


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.l0 = nnx.Linear(5, 8, rngs=rngs)
        self.l1 = nnx.Linear(8, 8, rngs=rngs)
        self.l2 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.l1(nnx.relu(self.l0(x)))))


def test_linen_and_nnx_give_the_same_multipliers():
    params = MLP().init(jax.random.key(0), data()["x"])
    _, r_linen = jinit.gradinit(MLP(), params, data(), xent, include=r"kernel$", iters=ITERS)
    m = NnxMLP(nnx.Rngs(0))
    for name in ("l0", "l1", "l2"):
        getattr(m, name).kernel.value = params["params"][name]["kernel"]
        getattr(m, name).bias.value = params["params"][name]["bias"]
    state, r_nnx = jinit.gradinit(m, None, data(), xent, include=r"kernel$", iters=ITERS)
    assert r_nnx.paths == r_linen.paths
    np.testing.assert_allclose(r_nnx.multiplier, r_linen.multiplier, rtol=1e-5)
    np.testing.assert_array_equal(
        state["l2"]["kernel"].value, params["params"]["l2"]["kernel"] * r_nnx.multiplier[2]
    )


def test_non_finite_names_the_block_and_iteration():
    def chain(p, x):
        return x @ p["a"] @ p["b"]

    p = {"a": jnp.full((5, 4), 1e20), "b": jnp.full((4, 3), 1e20)}
    with pytest.raises(ValueError, match=r"non-finite .*iteration 0"):
        jinit.gradinit(chain, p, data(), xent, iters=1)


def test_dead_network_has_all_zero_gradients():
    def apply(p, x):
        return jax.nn.relu(x @ p["w1"]) @ p["w2"]

    p = {"w1": jnp.zeros((5, 4)), "w2": jnp.zeros((4, 3))}
    with pytest.raises(ValueError, match="exactly zero"):
        jinit.gradinit(apply, p, data(), xent, iters=1)


def test_batchnorm_train_mode_and_dropout():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=True):
            x = nn.Dense(8)(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.Dropout(0.2, deterministic=not train)(nn.relu(x))
            return nn.Dense(3)(x)

    b = data()
    v = Net().init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, b["x"])
    out, r = jinit.gradinit(
        Net(),
        v,
        b,
        xent,
        iters=3,
        rngs={"dropout": jax.random.key(2)},
        apply_kwargs={"train": True, "mutable": ["batch_stats"]},
    )
    assert "BatchNorm_0/scale" in r.paths  # norm scales get a multiplier too (reference)
    assert np.isfinite(np.asarray(r.lookahead_loss)).all()
    for a, b_ in zip(
        jax.tree.leaves(out["batch_stats"]), jax.tree.leaves(v["batch_stats"]), strict=True
    ):
        np.testing.assert_array_equal(a, b_)


def test_second_call_compiles_nothing():
    params, batch = two_layer_params(jax.random.key(0)), data()
    jinit.gradinit(two_layer, params, batch, xent, iters=3)
    with jax.log_compiles():
        import logging

        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("jax").addHandler(handler)
        try:
            jinit.gradinit(two_layer, params, batch, xent, iters=3)
        finally:
            logging.getLogger("jax").removeHandler(handler)
    assert not [r for r in records if "_scan_body" in r.getMessage()]
