"""Mean-field theory: known answers, differentiability, and agreement with wide random nets."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from jinit import theory

# ---------------------------------------------------------------- quadrature known answers


def arccos_kernel(q, c):
    """E[relu(u1) relu(u2)], Cho & Saul 2009."""
    return q / (2 * np.pi) * (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c)


def arcsin_kernel(q, c):
    """E[erf(u1) erf(u2)], Williams 1997."""
    return 2 / np.pi * np.arcsin(2 * q * c / (1 + 2 * q))


def test_gaussian_expectation_known_moments():
    assert float(theory.gaussian_expectation(lambda u: u**2, 2.5)) == pytest.approx(2.5, rel=1e-6)
    assert float(theory.gaussian_expectation(jax.nn.relu, 1.0)) == pytest.approx(
        1 / math.sqrt(2 * math.pi), rel=1e-6
    )
    # The case file's ReLU variance: 1/2 - 1/(2 pi).
    m = theory.post_activation_moments("relu", 1.0)
    assert float(m["std"]) ** 2 == pytest.approx(0.5 - 1 / (2 * math.pi), rel=1e-5)
    # A narrow peak at large q: E[sech(sqrt(q) z)^4] -> (4/3) / sqrt(2 pi q).
    q = 1e4
    val = float(theory.gaussian_expectation(lambda u: 1 / jnp.cosh(u) ** 4, q))
    assert val == pytest.approx(4 / 3 / math.sqrt(2 * math.pi * q), rel=1e-3)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2])
def test_second_moment_leaky_relu(slope):
    got = float(theory.second_moment(theory.activation_fn("leaky_relu", negative_slope=slope)))
    assert got == pytest.approx((1 + slope**2) / 2, rel=1e-6)


def test_selu_fixed_point_moments():
    m = theory.post_activation_moments("selu", 1.0)
    assert abs(float(m["mean"])) < 1e-5
    assert float(m["std"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("c", [-0.6, 0.0, 0.4, 0.95, 1.0])
def test_bivariate_expectation_closed_forms(c):
    q = 1.3
    relu = float(theory.bivariate_expectation(jax.nn.relu, jax.nn.relu, q, c))
    assert relu == pytest.approx(arccos_kernel(q, c), rel=1e-5, abs=1e-7)
    erf = float(theory.bivariate_expectation(jax.scipy.special.erf, jax.scipy.special.erf, q, c))
    assert erf == pytest.approx(arcsin_kernel(q, c), rel=1e-5, abs=1e-7)


def test_unknown_activation_lists_names():
    with pytest.raises(ValueError, match="unknown activation 'rleu'.*relu"):
        theory.activation_fn("rleu")


# ---------------------------------------------------------------- maps and fixed points


def test_linear_maps_closed_form():
    sw, sb, q, c = 1.3, 0.2, 0.7, 0.3
    assert float(theory.variance_map(q, "linear", sw, sb)) == pytest.approx(
        sw**2 * q + sb**2, rel=1e-6
    )
    expected_c = (sw**2 * q * c + sb**2) / (sw**2 * q + sb**2)
    assert float(theory.correlation_map(c, q, "linear", sw, sb)) == pytest.approx(
        expected_c, rel=1e-5
    )
    for sigma_w in (0.5, 1.0, 1.7):
        assert float(theory.chi_1("linear", sigma_w, q=1.0)) == pytest.approx(sigma_w**2, rel=1e-6)


def test_fixed_points_closed_form():
    # Linear: q* = sb^2 / (1 - sw^2); ReLU: q* = sb^2 / (1 - sw^2 / 2).
    assert float(theory.q_star("linear", 0.8, 0.3)) == pytest.approx(0.09 / (1 - 0.64), rel=1e-5)
    assert float(theory.q_star("relu", 1.0, 0.5)) == pytest.approx(0.25 / 0.5, rel=1e-5)
    assert math.isinf(float(theory.q_star("relu", 1.6, 0.1)))  # sw^2 > 2: no fixed point
    # Ordered phase: c* = 1; tanh at sigma_b = 0 in the chaotic phase: odd map, c* = 0.
    assert float(theory.c_star("tanh", 0.9, 0.1)) == 1.0
    assert abs(float(theory.c_star("tanh", 2.0, 0.0))) < 1e-3


def test_depth_scales_relu_closed_form():
    # ReLU: chi_1 = sw^2 / 2 for any q, phi'' = 0, so xi_q = xi_c = -1 / log(sw^2 / 2).
    mf = theory.mean_field("relu", 1.0, 0.5)
    assert float(mf["chi_1"]) == pytest.approx(0.5, rel=1e-6)
    assert float(mf["xi_q"]) == pytest.approx(1 / math.log(2), rel=1e-4)
    assert float(mf["xi_c"]) == pytest.approx(1 / math.log(2), rel=1e-4)
    assert float(mf["c_star"]) == 1.0


def test_depth_scale_diverges_at_criticality():
    sw = theory.critical_sigma_w("tanh", 0.3)
    xi = [float(theory.mean_field("tanh", sw * f, 0.3)["xi_c"]) for f in (0.9, 0.97, 1.03, 1.1)]
    assert xi[1] > 2 * xi[0] and xi[2] > 2 * xi[3]
    assert float(theory.chi_1("tanh", sw, 0.3)) == pytest.approx(1.0, abs=2e-3)


def test_critical_points_closed_form():
    for sigma_b in (0.0, 0.3):  # ReLU: sw^2 = 2 whatever sigma_b
        assert float(theory.critical_sigma_w("relu", sigma_b)) ** 2 == pytest.approx(2.0, rel=1e-5)
    assert float(theory.critical_sigma_w("tanh", 0.0)) == pytest.approx(1.0, abs=1e-3)
    assert float(theory.critical_sigma_w("erf", 0.0)) == pytest.approx(
        math.sqrt(math.pi) / 2, rel=1e-4
    )
    leaky = theory.activation_fn("leaky_relu", negative_slope=0.2)
    assert float(theory.critical_sigma_w(leaky)) ** 2 == pytest.approx(2 / 1.04, rel=1e-5)


def test_theory_is_differentiable():
    d_chi = jax.grad(lambda s: theory.chi_1("linear", s, q=1.0))(1.5)
    assert float(d_chi) == pytest.approx(3.0, rel=1e-5)
    d_map = jax.grad(lambda q: theory.variance_map(q, "relu", 1.2, 0.1))(0.7)
    assert float(d_map) == pytest.approx(1.44 / 2, rel=1e-5)
    d_q = jax.grad(lambda s: theory.q_star("linear", s, 0.3, num_iters=200))(0.8)
    assert float(d_q) == pytest.approx(0.09 * 2 * 0.8 / (1 - 0.64) ** 2, rel=1e-3)


def test_phase_diagram_matches_critical_line():
    sigma_w = jnp.linspace(0.6, 2.4, 10)
    sigma_b = jnp.array([0.0, 0.3])
    pd = theory.phase_diagram("tanh", sigma_w, sigma_b)
    assert pd["chi_1"].shape == (2, 10)
    for i in range(2):
        crit = float(pd["critical_sigma_w"][i])
        np.testing.assert_array_equal(np.asarray(pd["chaotic"][i]), np.asarray(sigma_w) > crit)


# ---------------------------------------------------------------- theory vs simulation


def paired_inputs(key, n_pairs, dim, c):
    """Pairs of inputs with unit second moment and correlation c."""
    k1, k2 = jax.random.split(key)
    a = jax.random.normal(k1, (n_pairs, dim))
    b = c * a + math.sqrt(1 - c * c) * jax.random.normal(k2, (n_pairs, dim))
    return jnp.stack([a, b], 1).reshape(2 * n_pairs, dim)


# its time is running large arrays, not compiling: XLA's full optimization runs it ~2x faster
@pytest.mark.xla_optimized
@pytest.mark.parametrize(
    "activation,sigma_w,sigma_b", [("tanh", 1.5, 0.3), ("relu", math.sqrt(2), 0.0)]
)
def test_wide_network_matches_theory(activation, sigma_w, sigma_b):
    """Width 1000, depth 10, 8 fixed seeds: q_l and c_l within 5% of the mean-field prediction.

    One seed is not enough for ReLU: the weights' fluctuation of the mean (all-positive)
    direction moves q_10 by 10-20% per seed at this width; the seed average is the estimator
    of the mean-field (infinite-width) expectation.
    """
    n_pairs, c_in = 16, 0.6
    x = paired_inputs(jax.random.key(1), n_pairs, 500, c_in)
    a, b = x[0::2], x[1::2]
    q_in = float(jnp.mean(x**2))
    c_measured_in = float(jnp.mean(jnp.sum(a * b, -1) / jnp.sum(a * a, -1)))
    sims = jax.lax.map(
        lambda k: theory.simulate(k, x, activation, sigma_w, sigma_b, depth=10, width=1000),
        jax.random.split(jax.random.key(2), 8),
    )
    pred = theory.propagate(activation, sigma_w, sigma_b, depth=10, q_in=q_in, c_in=c_measured_in)
    q_sim = np.asarray(sims["q"].mean((0, 2)))
    pairs = jnp.diagonal(sims["c"][:, :, 0::2, 1::2], axis1=2, axis2=3)
    c_sim = np.asarray(pairs.mean((0, 2)))
    np.testing.assert_allclose(q_sim, np.asarray(pred["q"]), rtol=0.05)
    np.testing.assert_allclose(c_sim, np.asarray(pred["c"]), rtol=0.05)


def test_edge_of_chaos_initializers():
    kernel_init, bias_init = jinit.edge_of_chaos("tanh", 0.3)
    sw = float(theory.critical_sigma_w("tanh", 0.3))
    w = kernel_init(jax.random.key(0), (400, 500))
    b = bias_init(jax.random.key(1), (100_000,))
    assert float(jnp.var(w)) * 400 == pytest.approx(sw**2, rel=0.03)
    assert float(jnp.std(b)) == pytest.approx(0.3, rel=0.03)
    with pytest.raises(ValueError, match="distribution"):
        jinit.edge_of_chaos("tanh", 0.3, distribution="gaussian")
