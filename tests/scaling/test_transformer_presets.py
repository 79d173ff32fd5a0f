"""Transformer init presets: each leaf's variance against the preset's formula, on a linen LM
(flax.linen.MultiHeadDotProductAttention) and an NNX block (flax.nnx.MultiHeadAttention)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jinit
from experiments.lm import TransformerLM

D, L, H = 64, 3, 4
TOK = jnp.zeros((1, 8), jnp.int32)


def lm(**kw):
    return TransformerLM(D, n_layers=L, heads=H, seq_len=8, **kw).init(jax.random.key(0), TOK)


@functools.cache
def rezero_lm():
    """The ReZero LM's variables, built on first use (not at collection, on every xdist worker)."""
    return lm(rezero=True)


def apply(rules, params=None, seed=1):
    params = rezero_lm() if params is None else params
    return jinit.reinit(params, rules, jax.random.key(seed), strict=True)["params"]


def std(x):
    return float(jnp.std(x))


def test_gpt2():
    q = apply(jinit.gpt2_init(L))
    b = q["block_1"]
    for leaf in (b["attn"]["query"]["kernel"], b["mlp"]["fc1"]["kernel"], q["embed"]["embedding"]):
        assert std(leaf) == pytest.approx(0.02, rel=0.06)
    for leaf in (b["attn"]["out"]["kernel"], b["mlp"]["fc2"]["kernel"]):
        assert std(leaf) == pytest.approx(0.02 / math.sqrt(2 * L), rel=0.06)
    assert not np.any(np.asarray(b["attn"]["query"]["bias"]))
    np.testing.assert_array_equal(b["ln_0"]["scale"], 1.0)  # norm gains untouched


def test_neox_small_init_and_wang_init():
    q = apply(jinit.neox_init(L, D))["block_0"]
    assert std(q["attn"]["key"]["kernel"]) == pytest.approx(math.sqrt(2 / (5 * D)), rel=0.06)
    assert std(q["mlp"]["fc2"]["kernel"]) == pytest.approx(2 / (L * math.sqrt(D)), rel=0.06)


def test_t5():
    q = apply(jinit.t5_init())
    b = q["block_0"]
    dkv = D // H
    assert std(b["attn"]["query"]["kernel"]) == pytest.approx((D * dkv) ** -0.5, rel=0.06)
    assert std(b["attn"]["key"]["kernel"]) == pytest.approx(D**-0.5, rel=0.06)
    assert std(b["attn"]["out"]["kernel"]) == pytest.approx((H * dkv) ** -0.5, rel=0.06)
    assert std(b["mlp"]["fc2"]["kernel"]) == pytest.approx((4 * D) ** -0.5, rel=0.06)
    assert std(q["embed"]["embedding"]) == pytest.approx(1.0, rel=0.06)


def test_deepnorm_constants_and_init():
    assert jinit.deepnorm_constants(L) == pytest.approx(((2 * L) ** 0.25, (8 * L) ** -0.25))
    n, m = 6, 4
    enc = jinit.deepnorm_constants(n, n_decoder_layers=m, part="encoder")
    dec = jinit.deepnorm_constants(n, n_decoder_layers=m, part="decoder")
    assert enc == pytest.approx((0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16)))
    assert dec == pytest.approx(((3 * m) ** 0.25, (12 * m) ** -0.25))
    beta = (8 * L) ** -0.25
    q = apply(jinit.deepnorm_init(L))["block_2"]
    xav = lambda fi, fo: math.sqrt(2 / (fi + fo))
    assert std(q["attn"]["value"]["kernel"]) == pytest.approx(beta * xav(D, D), rel=0.06)
    assert std(q["attn"]["out"]["kernel"]) == pytest.approx(beta * xav(D, D), rel=0.06)
    assert std(q["mlp"]["fc1"]["kernel"]) == pytest.approx(beta * xav(D, 4 * D), rel=0.06)
    assert std(q["attn"]["query"]["kernel"]) == pytest.approx(xav(D, D), rel=0.06)


def test_tfixup_decoder_and_encoder():
    s = (9 * L) ** -0.25
    q = apply(jinit.tfixup_init(L, D))
    xav = math.sqrt(2 / (D + D))
    assert std(q["block_0"]["attn"]["value"]["kernel"]) == pytest.approx(s * xav, rel=0.06)
    assert std(q["block_0"]["attn"]["key"]["kernel"]) == pytest.approx(xav, rel=0.06)
    assert std(q["embed"]["embedding"]) == pytest.approx(s * D**-0.5, rel=0.06)
    e = apply(jinit.tfixup_init(L, D, part="encoder"))
    s_enc = 0.67 * L**-0.25
    assert std(e["block_0"]["mlp"]["fc2"]["kernel"]) == pytest.approx(
        s_enc * math.sqrt(2 / (5 * D)), rel=0.06
    )


def test_rezero_zeroes_the_branch_gains():
    assert float(rezero_lm()["params"]["block_0"]["rezero_0"]) == 1.0
    q = apply(jinit.rezero_init())
    assert all(float(q[f"block_{i}"][f"rezero_{j}"]) == 0.0 for i in range(L) for j in (0, 1))
    x = jax.random.randint(jax.random.key(3), (2, 8), 0, 256)
    model = TransformerLM(D, n_layers=L, heads=H, seq_len=8, rezero=True, norm="none")
    # every block is the identity: the logits only see the embeddings
    ref = TransformerLM(D, n_layers=0, heads=H, seq_len=8, norm="none")
    qq = {k: v for k, v in q.items() if not k.startswith("block")}
    np.testing.assert_allclose(
        model.apply({"params": q}, x), ref.apply({"params": qq}, x), rtol=1e-5, atol=1e-5
    )


def test_mimetic_attention_products():
    one = TransformerLM(D, n_layers=1, heads=1, seq_len=8).init(jax.random.key(0), TOK)
    q = jinit.mimetic_attention(one, jax.random.key(4))["params"]["block_0"]["attn"]
    wq, wk = q["query"]["kernel"][:, 0], q["key"]["kernel"][:, 0]
    wv, wo = q["value"]["kernel"].reshape(D, D), q["out"]["kernel"].reshape(D, D)
    qk, vo = wq @ wk.T, wv @ wo
    # full rank (one head of size D, and heads*head_dim = D): exact factorisations
    eye = jnp.eye(D)
    z1 = (qk - 0.7 * eye) / 0.7
    z2 = (vo + 0.4 * eye) / 0.4
    for z in (z1, z2):
        assert float(jnp.var(z)) == pytest.approx(1 / D, rel=0.1)  # Z ~ N(0, 1/d)
        assert abs(float(jnp.mean(jnp.diag(z)))) < 3 / D
    multi = jinit.mimetic_attention(rezero_lm(), jax.random.key(4))["params"]["block_0"]["attn"]
    qk4 = jnp.einsum("dhk,ehk->hde", multi["query"]["kernel"], multi["key"]["kernel"])
    assert float(jnp.mean(jnp.diagonal(qk4, axis1=1, axis2=2))) > 0.1  # + beta I survives


class NnxBlock(nnx.Module):
    def __init__(self, d, rngs):
        self.attn = nnx.MultiHeadAttention(H, d, decode=False, rngs=rngs)
        self.mlp = nnx.Dict(
            fc1=nnx.Linear(d, 4 * d, rngs=rngs), fc2=nnx.Linear(4 * d, d, rngs=rngs)
        )

    def __call__(self, x):
        x = x + self.attn(x)
        return x + self.mlp["fc2"](nnx.gelu(self.mlp["fc1"](x)))


def test_presets_on_an_nnx_block():
    block = NnxBlock(D, nnx.Rngs(0))
    state = nnx.state(block, nnx.Param)
    new = jinit.reinit(state, jinit.gpt2_init(L), jax.random.key(0), strict=True)
    nnx.update(block, new)
    assert std(block.attn.out.kernel[...]) == pytest.approx(0.02 / math.sqrt(2 * L), rel=0.06)
    assert std(block.mlp["fc2"].kernel[...]) == pytest.approx(0.02 / math.sqrt(2 * L), rel=0.06)
    assert std(block.attn.query.kernel[...]) == pytest.approx(0.02, rel=0.06)
    new = jinit.mimetic_attention(state, jax.random.key(1))
    nnx.update(block, new)
    assert block(jnp.ones((1, 5, D))).shape == (1, 5, D)


def test_bad_layout_role_and_missing_attention():
    with pytest.raises(ValueError, match="layout role"):
        jinit.gpt2_init(L, layout={"qeury": "x"})
    with pytest.raises(ValueError, match="no leaf matches the query pattern"):
        jinit.mimetic_attention({"w": jnp.ones((3, 3))}, jax.random.key(0))
    with pytest.raises(ValueError, match="n_layers"):
        jinit.deepnorm_constants(0)
