"""GradInit and MetaInit on the linen and NNX versions of a plain CNN without normalization,
an MLP and an LSTM classifier with an Embed front (issue 16's "done when"): each pass runs as
one jitted program, only rescales, reports finite values, gives the same multipliers on linen
and NNX for the same weights, and a vmapped seed sweep equals separate runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from tests.dynamic.conftest import KEYS, run_pass
from tests.dynamic.models import (
    DEAD_PARAMS,
    OVERFLOWING_CHAIN,
    chain,
    data,
    dead_relu,
    flat,
    lin_data,
    linear,
    mse,
    nnx_path,
    xent,
)

METHODS = ("gradinit", "metainit")
FAMILIES = ("cnn", "mlp", "rnn")


def member(report, i):
    return jax.tree.map(lambda a: a[i], report)


def check_rescaled_only(p_in, p_out, report):
    before, after = flat(p_in), flat(p_out)
    assert sorted(after) == sorted(before)
    if report.method == "gradinit":  # default: every trainable block
        assert sorted(report.paths) == sorted(before)
    else:  # default: every block with >= 2 dims (kernels, the embedding table)
        assert sorted(report.paths) == sorted(k for k, v in before.items() if np.ndim(v) >= 2)
    multiplier = dict(zip(report.paths, np.asarray(report.multiplier), strict=True))
    for path, w in before.items():
        w, out = np.asarray(w), np.asarray(after[path])
        if path in multiplier:  # exactly multiplier * block, in the block's dtype
            np.testing.assert_array_equal(out, w * np.float32(multiplier[path]), err_msg=path)
        else:  # every other leaf bitwise unchanged
            np.testing.assert_array_equal(out, w, err_msg=path)
    report.check()
    for leaf in jax.tree.leaves(report):
        assert np.isfinite(np.asarray(leaf, np.float64)).all()
    assert np.shape(report.trajectory) == (2, len(report.paths))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("framework", ("linen", "nnx"))
@pytest.mark.parametrize("method", METHODS)
def test_pass_rescales_only_and_reports_finite_values(conformance, method, framework, family):
    runs = conformance(method, family)
    for i in range(KEYS):
        if framework == "linen":  # member i of the vmapped sweep
            report = member(runs.linen_report, i)
            check_rescaled_only(runs.linen_in[i], runs.linen_out[i], report)
        else:
            report = runs.nnx_reports[i]
            assert dict(report.settings)["loop"] == "scan"  # one jitted program
            check_rescaled_only(runs.nnx_in[i], runs.nnx_out[i], report)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHODS)
def test_linen_sweep_and_separate_nnx_runs_give_the_same_multipliers(conformance, method, family):
    """Member i of the linen sweep (vmapped over init keys) == the NNX twin holding seed i's
    weights, run on its own: linen == NNX and vmap == separate runs at once (the MLP test
    below checks vmap == separate runs within linen). Tolerance rtol 1e-5: float32 round-off of
    reductions that the two frameworks and the batched program order differently."""
    runs = conformance(method, family)
    stacked = runs.linen_report
    for i in range(KEYS):
        r_nnx = runs.nnx_reports[i]
        m_linen = {
            nnx_path(p): m
            for p, m in zip(stacked.paths, np.asarray(stacked.multiplier[i]), strict=True)
        }
        m_nnx = dict(zip(r_nnx.paths, np.asarray(r_nnx.multiplier), strict=True))
        assert sorted(m_nnx) == sorted(m_linen)
        for path, m in m_nnx.items():
            np.testing.assert_allclose(m, m_linen[path], rtol=1e-5, err_msg=path)
        np.testing.assert_allclose(r_nnx.loss, stacked.loss[i], rtol=1e-5)
        np.testing.assert_allclose(r_nnx.trajectory[:, 0], stacked.trajectory[i][:, 0], rtol=1e-5)
        linen_out = {nnx_path(p): v for p, v in flat(runs.linen_out[i]).items()}
        for path, v in flat(runs.nnx_out[i]).items():
            np.testing.assert_allclose(v, linen_out[path], rtol=1e-5, atol=1e-7, err_msg=path)
    # the seeds differ, so the sweep is not one run repeated
    assert not np.array_equal(stacked.loss[0], stacked.loss[1])


@pytest.mark.parametrize("method", METHODS)
def test_vmapped_seed_sweep_equals_separate_linen_runs(conformance, method):
    runs = conformance(method, "mlp")
    fam = runs.family
    for i in range(KEYS):
        variables = jax.tree.map(lambda a, i=i: a[i], runs.variables)
        out, r = run_pass(method, fam.linen, variables, fam.batch)
        np.testing.assert_allclose(runs.linen_report.multiplier[i], r.multiplier, rtol=1e-5)
        np.testing.assert_allclose(runs.linen_report.loss[i], r.loss, rtol=1e-5)
        for a, b in zip(
            jax.tree.leaves(runs.linen_out[i]), jax.tree.leaves(out["params"]), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "fn, kw, field",
    [(jinit.gradinit, {"iters": 3}, "lookahead_loss"), (jinit.metainit, {"steps": 2}, "quotient")],
    ids=["gradinit", "metainit"],
)
def test_jit_eager_scan_python_agree(fn, kw, field):
    # A linear least-squares model: the eager run compiles every primitive it dispatches, so
    # few primitives (no softmax, no tanh, through third-order autodiff) keep it fast.
    params = {"w": jnp.asarray(np.random.default_rng(5).normal(size=(4, 3)), jnp.float32)}
    runs = [
        fn(linear, params, lin_data(), mse, **kw, loop=loop, jit=jit)[1]
        for loop, jit in (("scan", True), ("python", True), ("python", False))
    ]
    for r in runs[1:]:
        np.testing.assert_allclose(r.trajectory, runs[0].trajectory, rtol=1e-5)
        np.testing.assert_allclose(getattr(r, field), getattr(runs[0], field), rtol=1e-5)


@pytest.mark.parametrize(
    "fn, kw",
    [(jinit.gradinit, {"iters": 1}), (jinit.metainit, {"steps": 1})],
    ids=["gradinit", "metainit"],
)
def test_degenerate_starts_are_errors(fn, kw):
    # A linear chain with kernels of norm ~1e20 overflows float32 at the first iteration.
    with pytest.raises(ValueError, match=r"non-finite .*iteration 0.*'a'"):
        fn(chain, OVERFLOWING_CHAIN, data(), xent, **kw)
    # A dead ReLU net (all kernels and biases zero): every gradient is exactly zero.
    with pytest.raises(ValueError, match="exactly zero"):
        fn(dead_relu, DEAD_PARAMS, data(), xent, **kw)


def test_eager_passes_take_a_model_holding_a_list():
    # nn.Sequential([...]) cannot be hashed (a jit cache key); jit=False needs no hash and
    # gives the result of the same model built from a tuple, bit for bit.
    import flax.linen as nn
    import optax

    x = jax.random.normal(jax.random.key(0), (64, 16))
    batch = (x, jnp.zeros(64, jnp.int32))

    def loss(o, b):
        return optax.softmax_cross_entropy_with_integer_labels(o, b[1]).mean()

    as_list = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(4)])
    as_tuple = nn.Sequential((nn.Dense(8), nn.relu, nn.Dense(4)))
    v = as_tuple.init(jax.random.key(1), x)
    a, ra = jinit.gradinit(as_list, v, batch, loss, iters=2, jit=False)
    b, rb = jinit.gradinit(as_tuple, v, batch, loss, iters=2, jit=False)
    assert not np.allclose(jax.tree.leaves(a)[1], jax.tree.leaves(v)[1])  # it did rescale
    for u, w in zip(jax.tree.leaves((a, ra)), jax.tree.leaves((b, rb)), strict=True):
        assert jnp.array_equal(u, w)
