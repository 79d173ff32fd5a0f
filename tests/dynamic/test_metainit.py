"""jinit.metainit: the gradient quotient in closed form, rescaling only, jit/vmap/NNX agreement."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jinit
from jinit._src.dynamic.metainit import gradient_quotient
from tests.dynamic.models import (
    DenseBNDropout,
    LinenMLP,
    data,
    families,
    linear,
    mse,
    nnx_twin,
    xent,
)


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


def scaled_init(key, scale=4.0):
    p = LinenMLP().init(key, data()["x"])
    return jax.tree_util.tree_map_with_path(
        lambda path, v: v * scale if jinit.path_string(path).endswith("kernel") else v, p
    )


STEPS = 5  # one step count everywhere: the compiled programs are shared across tests


def test_rescales_only_and_lowers_the_quotient():
    params = scaled_init(jax.random.key(0))
    out, r = jinit.metainit(LinenMLP(), params, data(), xent, steps=STEPS)
    assert r.paths == ("l0/kernel", "l1/kernel", "l2/kernel", "out/kernel")  # forward, kernels
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
    assert r.trajectory.shape == (STEPS, 4) and r.quotient.shape == (STEPS,)
    assert "gradient quotient" in r.summary()


def test_graphdef_with_state_equals_the_module():
    """An NNX module and its (GraphDef, State) are the same model (one compiled program)."""
    fam = families()["mlp"]
    params = fam.linen.init(jax.random.key(0), fam.batch["x"])["params"]
    module = nnx_twin(fam, params)
    graphdef, full = nnx.split(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jinit.InitWarning)  # convergence is not the point here
        state, r_module = jinit.metainit(module, None, fam.batch, xent, steps=STEPS)
        full_out, r_gd = jinit.metainit(graphdef, full, fam.batch, xent, steps=STEPS)
    np.testing.assert_array_equal(r_gd.multiplier, r_module.multiplier)
    np.testing.assert_array_equal(
        full_out["l1"]["kernel"].get_value(), state["l1"]["kernel"].get_value()
    )


def test_constant_quotient_warns_it_did_not_decrease():
    """L = 1/2 ||w||^2 has H = I, so g - Hg = 0 and GQ = 1 exactly at every scale."""
    p = {"w": jnp.ones((2, 2), jnp.float32)}
    with pytest.warns(jinit.InitWarning, match="did not decrease"):
        jinit.metainit(
            lambda p, x: p["w"], p, jnp.ones((1, 1)), lambda o, b: 0.5 * jnp.sum(o**2), steps=3
        )


def test_batchnorm_train_mode_and_dropout():
    b = data()
    v = DenseBNDropout(jnp.tanh).init(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, b["x"]
    )
    out, r = jinit.metainit(
        DenseBNDropout(jnp.tanh),
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


def stack(batches):
    return jax.tree.map(lambda *a: jnp.stack(a), *batches)


def test_per_iteration_batches_identical_equal_the_fixed_batch():
    batch, w, T = whitened_batch(c=2.0), {"w": jnp.asarray(np.eye(4, 3), jnp.float32)}, 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jinit.InitWarning)  # GQ = c at every scale
        _, fixed = jinit.metainit(linear, w, batch, mse, steps=T)
        for loop in ("scan", "python"):
            _, per = jinit.metainit(
                linear, w, stack([batch] * T), mse, steps=T, per_iteration=True, loop=loop
            )
            for field in ("trajectory", "loss", "quotient", "quotient_after"):
                np.testing.assert_allclose(
                    getattr(per, field), getattr(fixed, field), rtol=1e-6, err_msg=field
                )


def test_per_iteration_batches_step_t_reads_batch_t():
    """Whitened batches with X^T X / n = c_t I: the quotient of a linear least-squares model is
    c_t at any scale (see above), so quotient[t] = c_t says step t used batch t, and
    quotient_after = c_0 that it is measured on batch 0. Only rescaling still."""
    cs = (1.5, 2.0, 3.0)
    batches = [whitened_batch(c=c, seed=t) for t, c in enumerate(cs)]
    w = jnp.asarray(np.random.default_rng(4).normal(size=(4, 3)), jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jinit.InitWarning)
        out, r = jinit.metainit(linear, {"w": w}, stack(batches), mse, steps=3, per_iteration=True)
    np.testing.assert_allclose(np.asarray(r.quotient), cs, rtol=1e-3)
    np.testing.assert_allclose(float(r.quotient_after), cs[0], rtol=1e-3)
    np.testing.assert_array_equal(out["w"], w * np.float32(r.multiplier[0]))


def test_stacked_report_warns_per_member():
    # what a vmapped sweep returns: the pass cannot warn from inside the trace, so
    # report.warn() on the concrete report names each member's problem
    from jinit._src.dynamic.report import MetaInitReport

    t, L = 2, 2
    rep = MetaInitReport(
        method="metainit",
        paths=("a/kernel", "b/kernel"),
        settings=(("lr", 1.0), ("momentum", 0.9)),
        multiplier=np.array([[1.2, 0.8], [1.1, -0.5]], np.float32),
        trajectory=np.ones((2, t, L), np.float32),
        multiplier_grad=np.zeros((2, t, L), np.float32),
        loss=np.ones((2, t), np.float32),
        grad_norm=np.ones((2, t), np.float32),
        quotient=np.array([[3.0, 2.0], [3.0, 2.5]], np.float32),
        quotient_after=np.array([4.0, 1.0], np.float32),
    )
    with pytest.warns(jinit.InitWarning) as record:
        rep.warn()
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert "did not decrease (3 -> 4) (member 0 of the stacked report)" in messages[0]
    assert "'b/kernel' reached -0.5 <= 0 (member 1 of the stacked report)" in messages[1]
