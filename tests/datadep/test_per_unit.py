"""Tests of the per-unit data-dependent initializations: Krähenbühl et al.'s within-layer
initialization and Salimans & Kingma's weight-norm init (jinit.within_layer_init,
jinit.weight_norm_init), which share LSUV's single jitted pass and report."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jinit

ORTH = jinit.lsuv_ready_orthogonal()


@pytest.fixture(autouse=True)
def _strict_numerics():
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


def normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), kernel_init=ORTH)(x))
        x = nn.relu(nn.Conv(8, (3, 3), bias_init=nn.initializers.constant(0.3))(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(6, use_bias=False)(x)


def unit_stats(y):
    red = tuple(range(y.ndim - 1))
    return np.asarray(jnp.mean(y, axis=red)), np.asarray(jnp.var(y, axis=red))


def layer_outputs(model, variables, x):
    _, st = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    it = st["intermediates"]
    return {k: it[k]["__call__"][0] for k in it if k != "__call__"}


def test_within_layer_every_unit_zero_mean_unit_variance():
    x = normal(1, (16, 6, 6, 3))
    model = Net()
    v = model.init(jax.random.key(0), x)
    with pytest.warns(jinit.InitWarning, match=r"Dense_0 \[not_converged: no bias"):
        v2, report = jinit.within_layer_init(model, v, x)
    assert report.method == "within_layer"
    assert report.paths == ("Conv_0", "Conv_1", "Dense_0")
    # Dense_0 has no bias: its unit means stay off target_mean, so it is not "converged"
    assert report.statuses == ("converged", "converged", "not_converged")
    outs = layer_outputs(model, v2, x)
    for name in ("Conv_0", "Conv_1"):
        mean, var = unit_stats(outs[name])
        np.testing.assert_allclose(mean, 0.0, atol=1e-5)
        np.testing.assert_allclose(var, 1.0, rtol=1e-4)
    _, var = unit_stats(outs["Dense_0"])  # no bias: only the variance is set
    np.testing.assert_allclose(var, 1.0, rtol=1e-4)
    # target and target_mean are configurable.
    v3, _ = jinit.within_layer_init(model, v, x, target=4.0, target_mean=0.5)
    mean, var = unit_stats(layer_outputs(model, v3, x)["Conv_1"])
    np.testing.assert_allclose(mean, 0.5, atol=1e-5)
    np.testing.assert_allclose(var, 4.0, rtol=1e-4)


def test_constant_unit_raises_or_is_skipped():
    x = normal(1, (64, 5))
    model = nn.Dense(8)
    v = model.init(jax.random.key(0), x)
    v["params"]["kernel"] = v["params"]["kernel"].at[:, 3].set(0.0)  # unit 3 is constant
    with pytest.raises(ValueError, match=r"1 unit\(s\) of layer 'Dense' have zero output variance"):
        jinit.within_layer_init(model, v, x)
    v2, report = jinit.within_layer_init(model, v, x, on_zero_variance="skip")
    assert int(report.units_skipped[0]) == 1 and not bool(report.converged[0])
    assert report.statuses == ("zero_variance",)  # a skipped unit is never "converged"
    assert jnp.array_equal(v2["params"]["kernel"][:, 3], v["params"]["kernel"][:, 3])
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(v2))
    mean, var = unit_stats(model.apply(v2, x))
    live = np.arange(8) != 3
    np.testing.assert_allclose(var[live], 1.0, rtol=1e-4)


class WN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.WeightNorm(nn.Dense(16, kernel_init=nn.initializers.normal(0.05)))(x)
        return nn.WeightNorm(nn.Dense(4))(nn.relu(x))


def test_weight_norm_sets_g_and_b_and_keeps_directions():
    x = normal(1, (128, 8))
    model = WN()
    v = model.init(jax.random.key(0), x)
    v2, report = jinit.weight_norm_init(model, v, x)
    assert report.method == "weight_norm" and report.paths == ("WeightNorm_0", "WeightNorm_1")
    p, p2 = v["params"], v2["params"]
    for d in ("Dense_0", "Dense_1"):
        assert jnp.array_equal(p[d]["kernel"], p2[d]["kernel"])  # v: bitwise unchanged
        assert not jnp.array_equal(p[d]["bias"], p2[d]["bias"])
    for w in ("WeightNorm_0", "WeightNorm_1"):
        (g,) = p[w].values()
        (g2,) = p2[w].values()
        assert not jnp.array_equal(g, g2)
    y = model.apply(v2, x)
    mean, var = unit_stats(y)
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(var, 1.0, rtol=1e-4)


def test_plain_layers_weight_norm_equals_within_layer():
    x = normal(1, (16, 6, 6, 3))
    model = Net()
    v = model.init(jax.random.key(0), x)
    a, _ = jinit.within_layer_init(model, v, x)
    b, _ = jinit.weight_norm_init(model, v, x)
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    assert all(bool(jnp.array_equal(p, q)) for p, q in pairs)


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.lin = nnx.Linear(8, 5, rngs=rngs)

    def __call__(self, x):
        return self.lin(jnp.mean(jax.nn.relu(self.conv(x)), axis=(1, 2)))


def test_nnx_and_non_affine_layers():
    x = normal(1, (16, 6, 6, 3))
    m = NnxNet(nnx.Rngs(0))
    state, report = jinit.within_layer_init(m, None, x)
    assert report.paths == ("conv", "lin")
    m2 = nnx.merge(nnx.graphdef(m), state)
    mean, var = unit_stats(m2(x))
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(var, 1.0, rtol=1e-4)

    class E(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Einsum((3, 4), "bi,ij->bj")(x)

    xe = normal(2, (32, 3))
    e = E()
    ve = e.init(jax.random.key(0), xe)
    ve2, rep = jinit.within_layer_init(e, ve, xe)  # units line up: normalised, verified
    assert rep.statuses == ("converged",)
    mean, var = unit_stats(e.apply(ve2, xe))
    np.testing.assert_allclose(var, 1.0, rtol=1e-4)
    with pytest.raises(ValueError, match="per output unit"):
        jinit.within_layer_init(model := nn.Dense(3), model.init(jax.random.key(0), xe), xe[:1])


class NnxWN(nnx.Module):
    def __init__(self, rngs):
        self.wn1 = nnx.WeightNorm(nnx.Linear(16, 32, rngs=rngs), rngs=rngs)
        self.wn2 = nnx.WeightNorm(nnx.Conv(1, 8, (3,), rngs=rngs), rngs=rngs)
        self.out = nnx.Linear(32 * 8, 4, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.wn1(x))
        h = jax.nn.relu(self.wn2(h[..., None]))
        return self.out(h.reshape(h.shape[0], -1))


@pytest.mark.parametrize("jit", [True, False])
def test_nnx_weight_norm_sets_g_and_b_and_keeps_directions(jit):
    # Salimans & Kingma 2016, section 3: g_u = 1 / sigma(t_u), b_u = -mu(t_u) / sigma(t_u) for
    # t_u = v_u . x / ||v_u||, so every unit of the wrapped layer has mean 0 and variance 1 on
    # the batch; nnx.WeightNorm re-normalises v in every call, so v itself is left as it was.
    x = jax.random.normal(jax.random.key(1), (128, 16)) * 3 + 1
    gd, st = nnx.split(NnxWN(nnx.Rngs(0)))
    st2, report = jinit.weight_norm_init(gd, st, x, jit=jit)
    assert report.paths == ("wn1", "wn2", "out")  # the WeightNorm, not its layer_instance
    assert bool(jnp.all(report.converged))
    flat, flat2 = dict(nnx.to_flat_state(st)), dict(nnx.to_flat_state(st2))
    for name in ("wn1", "wn2"):
        v = (name, "layer_instance", "kernel")
        assert jnp.array_equal(flat[v].get_value(), flat2[v].get_value())  # v unchanged
        g, g2 = flat[(name, "scales", ("kernel",))], flat2[(name, "scales", ("kernel",))]
        assert g.shape == g2.shape and not jnp.array_equal(g, g2)
    m2 = nnx.merge(gd, st2, copy=True)
    y1 = m2.wn1(x)
    np.testing.assert_allclose(y1.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y1.var(0), 1.0, rtol=1e-4)
    h = jax.nn.relu(y1)[..., None]
    y2 = m2.wn2(h).reshape(-1, 8)  # pooled over batch and positions, per channel
    np.testing.assert_allclose(y2.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y2.var(0), 1.0, rtol=1e-4)
    # LSUV on the same model rescales g too (one pooled factor), again leaving v unchanged.
    st3, r3 = jinit.lsuv(gd, st, x, jit=jit)
    assert r3.paths == ("wn1", "wn2", "out")
    np.testing.assert_allclose(r3.var_after, 1.0, rtol=1e-5)
    flat3 = dict(nnx.to_flat_state(st3))
    v = ("wn1", "layer_instance", "kernel")
    assert jnp.array_equal(flat[v].get_value(), flat3[v].get_value())


def test_bias_free_layers_keep_their_means_and_say_so():
    # Without a bias nothing can move a unit's mean to target_mean: each unit's variance is
    # still exactly the target, but the layer is not "converged" and the warning names it.
    m = nn.Sequential([nn.Dense(16, use_bias=False), nn.relu, nn.Dense(8, use_bias=False)])
    x = jax.random.normal(jax.random.key(0), (256, 8)) + 2.0
    v = m.init(jax.random.key(1), x)
    with pytest.warns(jinit.InitWarning, match=r"layers_2 \[not_converged: no bias"):
        v2, rep = jinit.within_layer_init(m, v, x, target_mean=0.5)
    assert rep.statuses == ("not_converged", "not_converged")
    _, st = m.apply(v2, x, capture_intermediates=True, mutable=["intermediates"])
    h = st["intermediates"]["layers_2"]["__call__"][0]
    np.testing.assert_allclose(h.var(0), 1.0, rtol=1e-4)  # the variance target is met
    assert float(jnp.max(jnp.abs(h.mean(0) - 0.5))) > 0.5  # the means are not (measured)
