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
    """Critical tanh: orthogonal concentrates the spectrum, Gaussian spreads it; ReLU (He) spreads
    it with either. The mean squared singular value is ~chi_1**depth = 1 in all critical cases."""
    depth, width, sigma_b = 16, 64, 0.05
    sw = float(theory.critical_sigma_w("tanh", sigma_b))
    q = float(theory.critical_point("tanh", sigma_b)["q_star"])
    stats = {}
    for name, act, w, b, weights in [
        ("tanh_gauss", "tanh", sw, sigma_b, "gaussian"),
        ("tanh_orth", "tanh", sw, sigma_b, "orthogonal"),
        ("relu_gauss", "relu", 2**0.5, 0.0, "gaussian"),
        ("relu_orth", "relu", 2**0.5, 0.0, "orthogonal"),
    ]:
        s = jinit.mlp_jacobian_singular_values(
            jax.random.key(3), act, w, b, depth=depth, width=width, weights=weights, q_in=q
        )
        stats[name] = {k.rsplit("/", 1)[1]: float(v) for k, v in jinit.spectrum_stats(s).items()}
    for name in stats:
        assert stats[name]["mean_sq"] == pytest.approx(1.0, rel=0.35), name
    assert stats["tanh_orth"]["std_sq"] < 0.5 * stats["tanh_gauss"]["std_sq"]
    assert stats["tanh_orth"]["std_sq"] < 0.5 * stats["relu_orth"]["std_sq"]
    assert stats["relu_gauss"]["max"] > 2.0 and stats["relu_orth"]["max"] > 2.0
