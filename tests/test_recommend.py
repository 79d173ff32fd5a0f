"""recommend(): computed gains and critical points, SELU self-normalization, leaky-ReLU gain."""

import math

import jax
import jax.numpy as jnp
import pytest

import jinit


def forward(kernel_init, activation, x, depth, key):
    """Bias-free square MLP h_l = phi(h_{l-1}) W_l, h_0 = x ~ N(0, 1); returns h_l, phi(h_l)."""
    pre, post = [], []
    h = x
    for layer in range(depth):
        w = kernel_init(jax.random.fold_in(key, layer), (x.shape[1], x.shape[1]))
        h = activation(h) @ w
        pre.append(h)
        post.append(activation(h))
    return jnp.stack(pre), jnp.stack(post)


def test_relu_is_he():
    rec = jinit.recommend("relu")
    assert rec.sigma_w == pytest.approx(math.sqrt(2), rel=1e-5)
    assert rec.critical_sigma_w == pytest.approx(math.sqrt(2), rel=1e-5)
    assert rec.chi_1 == pytest.approx(1.0, abs=1e-4)
    assert "He" in rec.name and "critical point" in rec.rationale
    w = rec.kernel_init(jax.random.key(0), (500, 400))
    assert float(jnp.var(w)) * 500 == pytest.approx(2.0, rel=0.03)


def test_tanh_is_critical_lecun():
    rec = jinit.recommend("tanh")
    assert rec.sigma_w == pytest.approx(1.0, abs=1e-3)
    assert rec.variance_preserving_gain == pytest.approx(1.5925, abs=1e-3)
    assert "glorot_normal" in rec.rationale and "chi_1 = 1.18" in rec.rationale
    rec_b = jinit.recommend("tanh", sigma_b=0.3)
    assert rec_b.sigma_w == pytest.approx(
        float(jinit.theory.critical_sigma_w("tanh", 0.3)), rel=1e-5
    )
    assert rec_b.sigma_b == 0.3


def test_selu_is_lecun_and_50_layers_self_normalize():
    """50-layer SELU MLP with LeCun normal: every layer's activation std in [0.8, 1.2] and mean
    within +-0.15 (Klambauer et al. 2017)."""
    rec = jinit.recommend("selu")
    assert rec.sigma_w == 1.0 and "LeCun" in rec.name and "1.0507" in rec.rationale
    x = jax.random.normal(jax.random.key(0), (256, 256))
    for kernel_init in (rec.kernel_init, jinit.lecun_normal()):
        _, post = forward(kernel_init, jax.nn.selu, x, 50, jax.random.key(1))
        std, mean = jnp.std(post, axis=(1, 2)), jnp.mean(post, axis=(1, 2))
        assert float(std.min()) >= 0.8 and float(std.max()) <= 1.2
        assert float(jnp.abs(mean).max()) <= 0.15


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.5])
def test_leaky_relu_gain_keeps_second_moment_over_10_layers(slope):
    rec = jinit.recommend("leaky_relu", negative_slope=slope)
    assert rec.sigma_w**2 == pytest.approx(2 / (1 + slope**2), rel=1e-5)
    leaky = jinit.theory.activation_fn("leaky_relu", negative_slope=slope)
    x = jax.random.normal(jax.random.key(0), (512, 256))
    pre, _ = forward(rec.kernel_init, leaky, x, 10, jax.random.key(2))
    ratio = jnp.mean(pre**2, axis=(1, 2)) / jnp.mean(x**2)  # E[h_l^2] / E[h_0^2]
    assert float(ratio.max()) <= 1.5 and float(ratio.min()) >= 1 / 1.5


def test_depth_and_normalization_notes():
    deep = jinit.recommend("selu", depth=300)
    assert any("xi_c" in n for n in deep.notes) and any("orthogonal" in n for n in deep.notes)
    assert jinit.recommend("relu", depth=5).notes == ()
    assert any("BatchNorm" in n for n in jinit.recommend("relu", normalization="batch").notes)
    assert jinit.recommend("tanh", distribution="orthogonal").name.startswith("orthogonal(")


def test_validation():
    with pytest.raises(ValueError, match="distribution must be one of"):
        jinit.recommend("relu", distribution="gaussian")
    with pytest.raises(ValueError, match="normalization"):
        jinit.recommend("relu", normalization="group")
    with pytest.raises(ValueError, match="sigma_b"):
        jinit.recommend("tanh", sigma_b=-0.1)
