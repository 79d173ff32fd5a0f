"""jinit.mup / standard_parametrization: classification, init variances, lr multipliers (TP-V
Table 3 and mup's MuAdam/MuSGD), SP == muP at base width, NNX, Depth-muP, attention scale."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jinit
from experiments.lm import TransformerLM


class MLP(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width, name="inp")(x))
        x = nn.relu(nn.Dense(self.width, name="hid")(x))
        return nn.Dense(10, name="out")(x)


X = jnp.ones((2, 20))


def params(width, seed=0):
    return MLP(width).init(jax.random.key(seed), X)


BASE = jax.eval_shape(lambda: params(16))


def test_classification_of_a_transformer_lm():
    tok = jnp.zeros((1, 8), jnp.int32)
    base = jax.eval_shape(TransformerLM(32, n_layers=1, seq_len=8).init, jax.random.key(0), tok)
    p = jax.eval_shape(TransformerLM(64, n_layers=1, seq_len=8).init, jax.random.key(0), tok)
    cls = jinit.mup(base, p, readout="head/kernel").classes()
    assert cls["embed/embedding"] == cls["pos_embed/embedding"] == "input"
    for name in ("query", "key", "value", "out"):
        assert cls[f"block_0/attn/{name}/kernel"] == "hidden"
        assert cls[f"block_0/attn/{name}/bias"] == "vector"
    assert cls["block_0/mlp/fc1/kernel"] == cls["block_0/mlp/fc2/kernel"] == "hidden"
    assert cls["head/kernel"] == "output" and cls["head/bias"] == "vector"
    assert cls["ln_f/scale"] == "vector"
    table = str(jinit.mup(base, p))
    assert "head/kernel" in table and "output" in table and "m_in" in table


def test_multi_axis_fans_of_attention_kernels():
    tok = jnp.zeros((1, 8), jnp.int32)
    base = jax.eval_shape(TransformerLM(32, n_layers=1, seq_len=8).init, jax.random.key(0), tok)
    p = jax.eval_shape(TransformerLM(128, n_layers=1, seq_len=8).init, jax.random.key(0), tok)
    s = jinit.mup(base, p).leaves
    q, o = s["block_0/attn/query/kernel"], s["block_0/attn/out/kernel"]
    assert q.fan_in_axes == (0,) and q.m_in == 4 and q.m_out == 4  # (d, heads, head_dim)
    assert o.fan_in_axes == (0, 1) and o.m_in == 4 and o.m_out == 4  # (heads, head_dim, d)


@pytest.mark.parametrize(
    "opt,form,expected",
    [
        # (input, hidden, output, vector hidden bias, vector output bias): lr multipliers, m=4
        ("adam", "table3", (1, 1 / 4, 1 / 4, 1, 1)),
        ("sgd", "table3", (4, 1, 1 / 4, 4, 1)),
        ("adam", "multipliers", (1, 1 / 4, 1, 1, 1)),
        ("sgd", "multipliers", (4, 1, 4, 4, 1)),
    ],
)
def test_lr_multipliers_follow_tp5_table3_and_mup(opt, form, expected):
    par = jinit.mup(BASE, params(64), optimizer=opt, formulation=form)
    lr = par.lr_multipliers(params(64))["params"]
    got = (
        lr["inp"]["kernel"],
        lr["hid"]["kernel"],
        lr["out"]["kernel"],
        lr["hid"]["bias"],
        lr["out"]["bias"],
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    fwd = 1 / 4 if form == "multipliers" else 1.0
    assert par.readout_multiplier() == pytest.approx(fwd)


@pytest.mark.parametrize("form,out_var", [("table3", 1 / (256 * 16)), ("multipliers", 1 / 256)])
def test_init_variances_match_the_formula(form, out_var):
    """width 256 (m = 16): input 1/fan_in = 1/20, hidden 1/256, readout 1/(256 m) or 1/256."""
    p = params(256)
    q = jinit.mup(BASE, p, formulation=form).init(jax.random.key(1), p)["params"]
    np.testing.assert_allclose(jnp.var(q["inp"]["kernel"]), 1 / 20, rtol=0.1)
    np.testing.assert_allclose(jnp.var(q["hid"]["kernel"]), 1 / 256, rtol=0.05)
    np.testing.assert_allclose(jnp.var(q["out"]["kernel"]), out_var, rtol=0.15)
    np.testing.assert_array_equal(q["hid"]["bias"], p["params"]["hid"]["bias"])  # kept


def test_init_std_is_the_base_width_std_and_readout_zero_init():
    p = params(256)
    par = jinit.mup(BASE, p, init_std=0.02, readout_zero_init=True)
    q = par.init(jax.random.key(1), p)["params"]
    np.testing.assert_allclose(jnp.std(q["inp"]["kernel"]), 0.02, rtol=0.1)
    np.testing.assert_allclose(jnp.std(q["hid"]["kernel"]), 0.02 / 4, rtol=0.05)  # 1/sqrt(m)
    assert not np.any(np.asarray(q["out"]["kernel"]))


def test_sp_equals_mup_at_base_width():
    delta = jax.eval_shape(lambda: params(32))
    p = params(16)
    for opt in ("adam", "sgd"):
        mu = jinit.mup(BASE, p, delta_params=delta, optimizer=opt)
        sp = jinit.standard_parametrization(BASE, p, delta_params=delta, optimizer=opt)
        assert mu.classes()["hid/kernel"] == "hidden"  # the delta tells which dims grow
        for a, b in zip(
            jax.tree.leaves(mu.init(jax.random.key(2), p)),
            jax.tree.leaves(sp.init(jax.random.key(2), p)),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
        assert set(jax.tree.leaves(mu.lr_multipliers(p))) == {1.0}
        assert set(jax.tree.leaves(sp.lr_multipliers(p))) == {1.0}


def test_sp_at_width_is_lecun_with_unit_lr():
    p = params(256)
    sp = jinit.standard_parametrization(BASE, p)
    assert set(jax.tree.leaves(sp.lr_multipliers(p))) == {1.0}
    q = sp.init(jax.random.key(3), p)["params"]
    np.testing.assert_allclose(jnp.var(q["out"]["kernel"]), 1 / 256, rtol=0.15)


def test_optimizer_scales_updates_per_leaf_exactly():
    p = params(64)
    par = jinit.mup(BASE, p)
    g = jax.tree.map(lambda x: jnp.full_like(x, 0.3), p)
    base_tx, tx = optax.adam(1e-2), par.optimizer(optax.adam(1e-2))
    u0, _ = base_tx.update(g, base_tx.init(p), p)
    u1, _ = jax.jit(tx.update)(g, tx.init(p), p)
    mult = par.lr_multipliers(p)
    for a, b, m in zip(
        jax.tree.leaves(u0), jax.tree.leaves(u1), jax.tree.leaves(mult), strict=True
    ):
        np.testing.assert_allclose(b, a * m, rtol=1e-6)
    # the inner dict (no "params" level) is matched by path too
    u2, _ = tx.update(g["params"], tx.init(p["params"]), p["params"])
    np.testing.assert_allclose(u2["hid"]["kernel"], u1["params"]["hid"]["kernel"])


def test_init_is_reproducible_under_jit_and_vmap():
    p = params(64)
    par = jinit.mup(BASE, p)
    k = jax.random.key(5)
    eager = par.init(k, p)
    jitted = jax.jit(par.init)(k, p)
    vm = jax.vmap(par.init, in_axes=(0, None))(jnp.stack([k, k]), p)
    for a, b, c in zip(
        jax.tree.leaves(eager), jax.tree.leaves(jitted), jax.tree.leaves(vm), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # XLA fusion: 1 ulp
        np.testing.assert_allclose(a, c[1], rtol=1e-6, atol=1e-7)


class NnxMLP(nnx.Module):
    def __init__(self, width, rngs):
        self.inp = nnx.Linear(20, width, rngs=rngs)
        self.hid = nnx.Linear(width, width, rngs=rngs)
        self.out = nnx.Linear(width, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hid(nnx.relu(self.inp(x)))))


def test_nnx_state_is_classified_initialized_and_optimized():
    base = nnx.state(NnxMLP(16, nnx.Rngs(0)), nnx.Param)
    model = NnxMLP(64, nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    par = jinit.mup(base, state)
    assert par.classes() == jinit.mup(BASE, params(64)).classes()
    new = par.init(jax.random.key(0), state)
    nnx.update(model, new)
    np.testing.assert_allclose(jnp.var(model.hid.kernel[...]), 1 / 64, rtol=0.15)
    tx = par.optimizer(optax.sgd(0.1))
    g = jax.tree.map(jnp.ones_like, new)
    u, _ = tx.update(g, tx.init(new))
    np.testing.assert_allclose(u["out"]["kernel"], -0.1 / 4)


def test_depth_mup_branch_multiplier_and_adam_lr():
    p = params(16)
    par = jinit.mup(BASE, p, depth=16, base_depth=4, residual_branch=r"^hid/")
    assert par.residual_multiplier == pytest.approx(0.5)
    lr = par.lr_multipliers(p)["params"]
    assert lr["hid"]["kernel"] == pytest.approx(0.5) and lr["inp"]["kernel"] == 1.0
    sgd = jinit.mup(BASE, p, optimizer="sgd", depth=16, base_depth=4, residual_branch=r"^hid/")
    assert sgd.lr_multipliers(p)["params"]["hid"]["kernel"] == 1.0


def test_attention_scale_and_attention_fn():
    assert jinit.attention_scale(64) == 1 / 64
    assert jinit.attention_scale(64, 16) == pytest.approx(4 / 64)
    assert jinit.attention_scale(16, 16) == pytest.approx(1 / math.sqrt(16))
    x = jax.random.normal(jax.random.key(0), (2, 5, 32))
    std = nn.MultiHeadDotProductAttention(2)
    mu0 = nn.MultiHeadDotProductAttention(2, attention_fn=jinit.attention_fn(16))
    mu = nn.MultiHeadDotProductAttention(2, attention_fn=jinit.attention_fn())
    v = std.init(jax.random.key(1), x)
    np.testing.assert_allclose(mu0.apply(v, x), std.apply(v, x), rtol=1e-5, atol=1e-6)
    # 1/d logits = 1/sqrt(d) logits of a query scaled by 1/sqrt(d)
    q = jax.random.normal(jax.random.key(2), (1, 3, 2, 16))
    ref = nn.dot_product_attention(q / 4.0, q, q)
    np.testing.assert_allclose(jinit.attention_fn()(q, q, q), ref, rtol=1e-5)
    assert mu.apply(v, x).shape == x.shape


def test_bad_inputs_name_the_argument():
    p = params(64)
    with pytest.raises(ValueError, match="optimizer"):
        jinit.mup(BASE, p, optimizer="lion")
    with pytest.raises(ValueError, match="readout"):
        jinit.mup(BASE, p, readout="hid/kernel")
    with pytest.raises(ValueError, match="missing from base_params"):
        jinit.mup({"params": {"inp": BASE["params"]["inp"]}}, p)
    with pytest.raises(ValueError, match="depth"):
        jinit.mup(BASE, p, depth=4)
    with pytest.raises(KeyError, match="not in this parametrization"):
        jinit.mup(BASE, p).init(jax.random.key(0), {"other": jnp.ones((3, 3))})
    with pytest.warns(jinit.InitWarning, match="out/kernel"):
        jinit.mup(BASE, p, readout="nothing_matches")


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_attention_fn_keeps_the_causal_mask(api):
    """Flax passes the mask only if the attention_fn's signature names it (linen filters)."""
    x = jax.random.normal(jax.random.key(0), (1, 6, 32))
    x2 = x.at[0, 4].add(1.0)  # change a later position
    if api == "linen":
        m = nn.MultiHeadDotProductAttention(2, attention_fn=jinit.attention_fn(4))
        v = m.init(jax.random.key(1), x)
        mask = nn.make_causal_mask(jnp.ones((1, 6)))
        f = lambda z: m.apply(v, z, mask=mask)
    else:
        m = nnx.MultiHeadAttention(
            2, 32, decode=False, attention_fn=jinit.attention_fn(4), rngs=nnx.Rngs(0)
        )
        mask = nnx.make_causal_mask(jnp.ones((1, 6)))
        f = lambda z: m(z, mask=mask)
    d = jnp.abs(f(x) - f(x2)).max(-1)[0]
    np.testing.assert_array_equal(d[:4], 0.0)  # earlier positions never see position 4
    assert float(d[4]) > 0


def test_readout_pattern_accepted_at_base_width_where_mup_is_sp():
    """coord_check includes the base width: the same readout= must work there (all factors 1)."""
    p = params(16)
    par = jinit.mup(BASE, p, readout="head/kernel")
    sp = jinit.standard_parametrization(BASE, p)
    for a, b in zip(
        jax.tree.leaves(par.lr_multipliers(p)), jax.tree.leaves(sp.lr_multipliers(p)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
