"""BatchNorm's scale invariance (Ioffe & Szegedy 2015, section 3.3): BN(Wu) = BN((aW)u).

Checked on Flax's ``nn.BatchNorm`` after Dense and Conv layers, in training mode (batch
statistics) and in evaluation mode once the running statistics are recomputed with the scaled
weights; with epsilon > 0 the exact size of the deviation the paper's identity ignores.
The experiment ``experiments/papers/ioffe2015.py`` relies on all of these.

Reference: Ioffe, Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing
Internal Covariate Shift", arXiv:1502.03167, 2015.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit

SCALES = (1e-3, 0.1, 7.0, 1e3)


@pytest.fixture(autouse=True)
def _strict_numerics():
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


class DenseBN(nn.Module):
    """``depth`` x [Dense -> BatchNorm -> ReLU] (no ReLU after the last), kernels He normal."""

    depth: int = 1
    use_bias: bool = False
    epsilon: float = 0.0
    momentum: float = 0.99

    @nn.compact
    def __call__(self, x, train: bool = True):
        for i in range(self.depth):
            x = nn.Dense(16, use_bias=self.use_bias, kernel_init=jinit.he_normal(),
                         bias_init=jinit.normal(1.0))(x)  # fmt: skip
            x = nn.BatchNorm(
                use_running_average=not train, epsilon=self.epsilon, momentum=self.momentum
            )(x)
            if i < self.depth - 1:
                x = nn.relu(x)
        return x


class ConvBN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Conv(8, (3, 3), use_bias=False, kernel_init=jinit.he_normal())(x)
        return nn.BatchNorm(use_running_average=not train, epsilon=0.0)(x)


def scaled(variables, a, names=("kernel",)):
    """``variables`` with every param leaf named in ``names`` multiplied by ``a``."""
    return jax.tree_util.tree_map_with_path(
        lambda path, p: p * a if getattr(path[-1], "key", None) in names else p, variables
    )


def train_out(model, variables, x):
    return model.apply(variables, x, train=True, mutable=["batch_stats"])[0]


def data(seed, shape):
    return 3.0 * jax.random.normal(jax.random.key(seed), shape) + 1.0


@pytest.mark.parametrize("a", SCALES)
@pytest.mark.parametrize("depth", [1, 4])
def test_dense_train_mode_is_invariant_to_kernel_scale(a, depth):
    model = DenseBN(depth=depth)
    x = data(1, (64, 10))
    v = model.init(jax.random.key(0), x)
    ref = train_out(model, v, x)
    np.testing.assert_allclose(train_out(model, scaled(v, a), x), ref, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("a", SCALES)
def test_dense_with_bias_is_invariant_when_the_bias_is_scaled_too(a):
    model = DenseBN(use_bias=True)
    x = data(2, (64, 10))
    v = model.init(jax.random.key(0), x)
    assert float(jnp.abs(v["params"]["Dense_0"]["bias"]).max()) > 0.1  # a non-zero bias
    out = train_out(model, scaled(v, a, ("kernel", "bias")), x)
    np.testing.assert_allclose(out, train_out(model, v, x), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("a", SCALES)
def test_conv_train_mode_is_invariant_to_kernel_scale(a):
    model = ConvBN()
    x = data(3, (8, 9, 9, 3))
    v = model.init(jax.random.key(0), x)
    out = train_out(model, scaled(v, a), x)
    np.testing.assert_allclose(out, train_out(model, v, x), rtol=1e-4, atol=2e-5)


def test_scale_invariance_breaks_without_batchnorm():
    """The control: the same Dense alone scales its output by exactly ``a``."""
    x = data(4, (64, 10))
    dense = nn.Dense(16, use_bias=False, kernel_init=jinit.he_normal())
    v = dense.init(jax.random.key(0), x)
    np.testing.assert_allclose(
        dense.apply(scaled(v, 7.0), x), 7.0 * dense.apply(v, x), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("a", SCALES)
def test_eval_mode_is_invariant_once_running_stats_are_recomputed(a):
    """Running stats taken on batch A (momentum 0: they equal A's statistics), applied to B."""
    model = DenseBN(depth=3, momentum=0.0)
    xa, xb = data(5, (128, 10)), data(6, (32, 10))
    v = model.init(jax.random.key(0), xa)

    def eval_after_recompute(variables):
        _, upd = model.apply(variables, xa, train=True, mutable=["batch_stats"])
        return model.apply({**variables, **upd}, xb, train=False), upd["batch_stats"]

    ref, stats = eval_after_recompute(v)
    out, stats_a = eval_after_recompute(scaled(v, a))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=2e-5)
    # The running variance of the first BN really moved with the scale: a^2 times.
    np.testing.assert_allclose(
        stats_a["BatchNorm_0"]["var"], a**2 * stats["BatchNorm_0"]["var"], rtol=1e-4
    )
    # And evaluation on the recomputation batch itself is the training-mode output.
    np.testing.assert_allclose(
        model.apply({**v, "batch_stats": stats}, xa, train=False),
        train_out(model, v, xa),
        rtol=1e-4,
        atol=2e-5,
    )


@pytest.mark.parametrize("a", (0.1, 3.0))
def test_epsilon_makes_the_deviation_exactly_predictable(a):
    """With epsilon > 0: BN(aWu) = BN(Wu) sqrt((var + eps) / (var + eps / a^2)), per feature."""
    eps = 1e-2
    model = DenseBN(epsilon=eps)
    x = data(7, (64, 10))
    v = model.init(jax.random.key(0), x)
    h = x @ v["params"]["Dense_0"]["kernel"]
    var = jnp.var(h, axis=0)
    factor = jnp.sqrt((var + eps) / (var + eps / a**2))[None, :]
    out = train_out(model, scaled(v, a), x)
    np.testing.assert_allclose(out, train_out(model, v, x) * factor, rtol=1e-4, atol=2e-5)
    assert float(jnp.abs(factor - 1.0).max()) > 1e-4  # the deviation is really there
