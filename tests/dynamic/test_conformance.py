"""GradInit and MetaInit on the linen and NNX versions of a plain CNN, an MLP and an LSTM
classifier (issue 16's "done when"): jitted, rescaling only, finite, linen == NNX, and a
vmapped seed sweep equal to separate runs."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.dynamic.conftest import run_pass
from tests.dynamic.models import flat, nnx_path

METHODS = ("gradinit", "metainit")
FAMILIES = ("cnn", "mlp", "rnn")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("framework", ("linen", "nnx"))
@pytest.mark.parametrize("method", METHODS)
def test_pass_rescales_only_and_reports_finite_values(conformance, method, framework, family):
    p_in, p_out, report, _ = conformance(method, framework, family)
    before, after = flat(p_in), flat(p_out)
    assert sorted(after) == sorted(before)
    if method == "gradinit":  # default: every trainable block
        assert sorted(report.paths) == sorted(before)
    else:  # default: every block with >= 2 dims (kernels, the embedding table)
        assert sorted(report.paths) == sorted(k for k, v in before.items() if np.ndim(v) >= 2)
    assert dict(report.settings)["loop"] == "scan"  # one jitted program
    multiplier = dict(zip(report.paths, np.asarray(report.multiplier), strict=True))
    for path, w in before.items():
        w, out = np.asarray(w), np.asarray(after[path])
        if path in multiplier:
            np.testing.assert_array_equal(out, w * np.float32(multiplier[path]), err_msg=path)
        else:
            np.testing.assert_array_equal(out, w, err_msg=path)
    report.check()
    for leaf in jax.tree.leaves(report):
        assert np.isfinite(np.asarray(leaf, np.float64)).all()
    assert report.trajectory.shape == (2, len(report.paths))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHODS)
def test_linen_and_nnx_give_the_same_multipliers(conformance, method, family):
    """The NNX twin holds the linen model's weights, so the passes see the same function; the
    multipliers agree to float32 round-off (rtol 1e-5: the two frameworks order some
    reductions differently)."""
    _, out_linen, r_linen, _ = conformance(method, "linen", family)
    _, out_nnx, r_nnx, _ = conformance(method, "nnx", family)
    m_linen = {nnx_path(p): m for p, m in zip(r_linen.paths, np.asarray(r_linen.multiplier))}
    m_nnx = dict(zip(r_nnx.paths, np.asarray(r_nnx.multiplier), strict=True))
    assert sorted(m_nnx) == sorted(m_linen)
    for path, m in m_nnx.items():
        np.testing.assert_allclose(m, m_linen[path], rtol=1e-5, err_msg=path)
    np.testing.assert_allclose(r_nnx.loss, r_linen.loss, rtol=1e-5)
    linen_out = {nnx_path(p): v for p, v in flat(out_linen).items()}
    for path, v in flat(out_nnx).items():
        np.testing.assert_allclose(v, linen_out[path], rtol=1e-5, atol=1e-7, err_msg=path)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHODS)
def test_vmapped_seed_sweep_equals_separate_runs(family_cases, method, family):
    """One program over init keys (linen model) == the same pass run per key."""
    fam, _ = family_cases[family]
    keys = jax.random.split(jax.random.key(1), 2)

    def one(k):
        return run_pass(method, fam.linen, fam.linen.init(k, fam.batch["x"]), fam.batch)

    out, stacked = jax.jit(jax.vmap(one))(keys)
    stacked.check()
    assert stacked.multiplier.shape == (2, len(stacked.paths))
    for i, k in enumerate(keys):
        single_out, single = one(k)
        np.testing.assert_allclose(stacked.multiplier[i], single.multiplier, rtol=1e-5)
        np.testing.assert_allclose(stacked.loss[i], single.loss, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(single_out), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7)
