"""jinit.gradinit: the first iteration in closed form, the constraint, rescaling only, and
jit/eager/scan/python/vmap/linen/NNX agreement."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jinit
from tests.dynamic.models import (
    DenseBNDropout,
    LinenMLP,
    data,
    lin_data,
    linear,
    mse,
    two_layer,
    two_layer_params,
    xent,
)

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


ITERS = 5  # one iteration count everywhere: the compiled programs are shared across tests


def test_rescales_only_in_forward_order():
    params = LinenMLP().init(jax.random.key(0), data()["x"])
    out, r = jinit.gradinit(LinenMLP(), params, data(), xent, include=r"kernel$", iters=ITERS)
    assert r.paths == ("l0/kernel", "l1/kernel", "l2/kernel", "out/kernel")
    assert r.trajectory.shape == (ITERS, 4) and r.lookahead_loss.shape == (ITERS,)
    for i, path in enumerate(r.paths):
        layer = path.split("/")[0]
        np.testing.assert_array_equal(
            out["params"][layer]["kernel"],
            params["params"][layer]["kernel"] * np.float32(r.multiplier[i]),
        )
        np.testing.assert_array_equal(out["params"][layer]["bias"], params["params"][layer]["bias"])
    assert "gradinit" in r.summary() and "l1/kernel" in r.summary()
    # Default: every block, biases included (their floor is 0; a zero bias keeps multiplier 1).
    _, r_all = jinit.gradinit(LinenMLP(), params, data(), xent, iters=ITERS)
    assert r_all.paths[:2] == ("l0/kernel", "l0/bias") and len(r_all) == 8
    assert r_all.floors[:2] == (0.01, 0.0)
    np.testing.assert_array_equal(np.asarray(r_all.multiplier)[1::2], 1.0)


def test_batchnorm_train_mode_and_dropout():
    b = data()
    v = DenseBNDropout().init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, b["x"])
    out, r = jinit.gradinit(
        DenseBNDropout(),
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


def stack(batches):
    return jax.tree.map(lambda *a: jnp.stack(a), *batches)


def test_per_iteration_batches_identical_equal_the_fixed_batch():
    """T copies of one batch along a leading axis: the same pass as that batch fixed."""
    batch, T = lin_data(), 3
    kw = dict(iters=T, gamma=1e9)
    _, fixed = jinit.gradinit(linear, {"w": W}, batch, mse, **kw)
    for loop in ("scan", "python"):
        _, per = jinit.gradinit(
            linear, {"w": W}, stack([batch] * T), mse, per_iteration=True, loop=loop, **kw
        )
        for field in ("trajectory", "loss", "lookahead_loss", "grad_norm", "grad_norm_after"):
            np.testing.assert_allclose(
                getattr(per, field), getattr(fixed, field), rtol=1e-6, err_msg=field
            )
        assert dict(per.settings)["per_iteration"] is True


def test_per_iteration_batches_iteration_t_reads_batch_t():
    """Iteration t's step loss is the closed-form loss of its batch's first half at the
    multiplier after iteration t-1, its lookahead loss that of the second half after the
    simulated step; the output is still the input times the multiplier."""
    T, eta = 3, 0.1
    batches = [lin_data(8, seed=10 + t) for t in range(T)]
    out, r = jinit.gradinit(
        linear, {"w": W}, stack(batches), mse, per_iteration=True, iters=T, gamma=1e9, lr=eta
    )
    w = np.asarray(W, np.float64)
    alpha = np.concatenate([[1.0], np.asarray(r.trajectory[:, 0], np.float64)])
    for t, b in enumerate(batches):
        a = {k: v[:4] for k, v in b.items()}
        look = {k: v[4:] for k, v in b.items()}
        loss, g = np_loss_grad(alpha[t] * w, a)
        expected_look, _ = np_loss_grad(alpha[t] * w - eta * g / np.linalg.norm(g), look)
        np.testing.assert_allclose(float(r.loss[t]), loss, rtol=1e-5)
        np.testing.assert_allclose(float(r.lookahead_loss[t]), expected_look, rtol=1e-5)
    # grad_norm_after: at the learned multiplier on iteration 0's step batch
    _, g0 = np_loss_grad(alpha[-1] * w, {k: v[:4] for k, v in batches[0].items()})
    np.testing.assert_allclose(float(r.grad_norm_after), np.linalg.norm(g0), rtol=1e-5)
    _, fixed = jinit.gradinit(linear, {"w": W}, batches[0], mse, iters=T, gamma=1e9, lr=eta)
    assert not np.allclose(r.lookahead_loss[1:], fixed.lookahead_loss[1:])
    np.testing.assert_array_equal(out["w"], W * np.float32(r.multiplier[0]))


def test_per_iteration_lookahead_batches():
    T = 2
    steps = [lin_data(4, seed=20 + t) for t in range(T)]
    looks = [lin_data(4, seed=30 + t) for t in range(T)]
    _, r = jinit.gradinit(
        linear,
        {"w": W},
        stack(steps),
        mse,
        lookahead_batch=stack(looks),
        per_iteration=True,
        iters=T,
        gamma=1e9,
    )
    w = np.asarray(W, np.float64) * float(r.trajectory[0, 0])
    _, g = np_loss_grad(w, steps[1])
    expected, _ = np_loss_grad(w - 0.1 * g / np.linalg.norm(g), looks[1])
    np.testing.assert_allclose(float(r.lookahead_loss[1]), expected, rtol=1e-5)
