"""Review fixes of jinit.theory: q* converges near the critical line (against the exact ReLU
fixed point sigma_b^2 / (1 - sigma_w^2 / 2), Poole et al. 2016), is inf past it, warns when
unresolved; chi_1 refuses a negative q."""

import math
import warnings

import jax
import jax.numpy as jnp
import pytest

import jinit
from jinit import theory

SB = 0.1


def exact_relu(sw, sb=SB):
    return sb**2 / (1 - sw**2 / 2)


@pytest.mark.parametrize("sw", [1.0, 1.40, 1.41, 1.4126])
def test_relu_q_star_near_criticality_matches_the_exact_fixed_point(sw):
    # 1 - sigma_w^2/2 = 0.5 ... 2.3e-3: the plain map (rate sigma_w^2/2) needed ~1/(1 - rate)
    # iterations and stopped at 1.646 (sw=1.41) and 3.30 (sw=1.4126).
    with warnings.catch_warnings():
        warnings.simplefilter("error", jinit.InitWarning)
        q = float(theory.q_star("relu", sw, SB))
        mf = float(theory.mean_field("relu", sw, SB)["q_star"])
    assert q == pytest.approx(exact_relu(sw), rel=1e-4)
    assert mf == pytest.approx(exact_relu(sw), rel=1e-4)


def test_relu_q_star_at_and_past_criticality_is_inf():
    with pytest.warns(jinit.InitWarning, match=r"q_star: .*sigma_w=1.41421, sigma_b=0.1"):
        assert math.isinf(float(theory.q_star("relu", math.sqrt(2), SB)))  # was 6.0
    with pytest.warns(jinit.InitWarning, match=r"sigma_w=1.41421"):  # through jit
        assert math.isinf(float(theory.mean_field("relu", math.sqrt(2), SB)["q_star"]))
    with warnings.catch_warnings():  # clearly chaotic: inf is the answer, no warning
        warnings.simplefilter("error", jinit.InitWarning)
        assert math.isinf(float(theory.q_star("relu", 1.45, SB)))


def test_q_star_under_vmap_and_jit_warns_and_matches_eager():
    sw = jnp.array([1.2, 1.41, math.sqrt(2)])
    with pytest.warns(jinit.InitWarning, match=r"sigma_w=1.41421"):
        q = jax.vmap(lambda s: theory.q_star("relu", s, SB))(sw)
    assert float(q[0]) == pytest.approx(exact_relu(1.2), rel=1e-4)
    assert float(q[1]) == pytest.approx(exact_relu(1.41), rel=1e-4)
    assert math.isinf(float(q[2]))
    # Smooth activation: the fixed point satisfies q = f(q) to the documented tolerance.
    for sw_t in (0.9, 1.05, 1.5):
        qt = float(theory.q_star("tanh", sw_t, 0.3))
        fq = float(theory.variance_map(qt, "tanh", sw_t, 0.3))
        assert abs(fq - qt) <= 1e-4 * qt


def test_chi_1_rejects_negative_q():
    with pytest.raises(ValueError, match=r"chi_1: q must be >= 0, got -1.0"):
        theory.chi_1("tanh", 1.0, q=-1.0)
    assert float(theory.chi_1("relu", 1.2, q=0.5)) == pytest.approx(0.72, rel=1e-5)
