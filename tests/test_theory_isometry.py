"""Dynamical isometry: Jacobian singular values of random MLPs at init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from jinit import theory


def test_jacobian_singular_values_of_a_linear_map():
    w = jnp.diag(jnp.array([3.0, 2.0, 0.5]))
    s = jinit.jacobian_singular_values(lambda v: v @ w, jnp.ones((2, 3)))
    np.testing.assert_allclose(np.asarray(s), [[3.0, 2.0, 0.5]] * 2, rtol=1e-6)


def test_orthogonal_linear_network_is_exactly_isometric():
    s = jinit.mlp_jacobian_singular_values(
        jax.random.key(0), "linear", 1.0, depth=8, width=64, weights="orthogonal", num_inputs=1
    )
    np.testing.assert_allclose(np.asarray(s), 1.0, rtol=1e-4)


def test_isometry_gaussian_vs_orthogonal_tanh_and_relu():
    """Critical tanh near q* = 0: orthogonal weights keep the spectrum concentrated while
    Gaussian weights spread it with depth (mean squared singular value ~chi_1**depth = 1 for
    both); ReLU at He scale spreads it even with orthogonal weights (Pennington et al. 2017)."""
    depths, width, sigma_b = (4, 16), 64, 0.005
    crit = theory.critical_point("tanh", sigma_b)
    sw, q = float(crit["sigma_w"]), float(crit["q_star"])
    stats = {}
    for name, act, w, b, weights in [
        ("tanh_gauss", "tanh", sw, sigma_b, "gaussian"),
        ("tanh_orth", "tanh", sw, sigma_b, "orthogonal"),
        ("relu_orth", "relu", 2**0.5, 0.0, "orthogonal"),
    ]:
        s = jinit.mlp_jacobian_singular_values(
            jax.random.key(3), act, w, b, depth=depths, width=width, weights=weights, q_in=q
        )
        assert s.shape == (2, 4, width)
        stats[name] = [
            {k.rsplit("/", 1)[1]: float(v) for k, v in jinit.spectrum_stats(s_d).items()}
            for s_d in s
        ]
    for name in ("tanh_gauss", "tanh_orth"):
        assert stats[name][-1]["mean_sq"] == pytest.approx(1.0, rel=0.3), name
    gauss, orth, relu = (stats[n][-1] for n in ("tanh_gauss", "tanh_orth", "relu_orth"))
    assert stats["tanh_gauss"][1]["std_sq"] > stats["tanh_gauss"][0]["std_sq"]  # spreads
    assert orth["std_sq"] < 0.25 * gauss["std_sq"] and orth["max"] < 1.5
    assert relu["max"] > 2.0 and relu["std_sq"] > 4 * orth["std_sq"]
