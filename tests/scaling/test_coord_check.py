"""jinit.coord_check: under SP with Adam the hidden activations' change from init grows with
width (slope ~ 0.5 in log-log), under muP it stays flat (TP-V Fig. 5), on an MLP and an LM."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from flax import nnx

import jinit
from experiments.lm import TransformerLM, lm_loss


class MLP(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width, name="inp")(x))
        x = nn.relu(nn.Dense(self.width, name="hid")(x))
        return nn.Dense(10, name="out")(x)


X = jax.random.normal(jax.random.key(0), (32, 20))
BATCH = {"x": X, "y": jax.random.randint(jax.random.key(1), (32,), 0, 10)}
WIDTHS = (64, 256, 1024)  # a 16x range: slopes well resolved from 2 seeds


def xent(logits, batch):
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def run(models, base, batch, loss, which, lr):
    fn = jinit.mup if which == "mup" else jinit.standard_parametrization
    return jinit.coord_check(
        models,
        batch,
        loss,
        optax.adam(lr),
        lambda p: fn(base, p),
        key=jax.random.key(2),
        seeds=2,
        steps=3,
    )


@pytest.fixture(scope="module")
def mlp_runs():
    # jitted init: one program per model instead of eager op-by-op compiles (~1 s saved; the
    # same params bit for bit, checked on this machine)
    models = {w: (MLP(w), jax.jit(MLP(w).init)(jax.random.key(0), X)) for w in WIDTHS}
    base = jax.eval_shape(MLP(64).init, jax.random.key(0), X)
    return {k: run(models, base, BATCH, xent, k, 1e-2) for k in ("sp", "mup")}


def test_mlp_hidden_change_grows_under_sp_and_is_flat_under_mup(mlp_runs):
    sp, mu = (dict(zip(r.layers, r.slope_change, strict=True)) for r in mlp_runs.values())
    assert sp["hid"] > 0.35 and sp["out"] > 0.35, sp
    assert abs(mu["hid"]) < 0.15 and abs(mu["out"]) < 0.2, mu
    r = mlp_runs["mup"]
    assert r.size.shape == (3, len(r.layers), 2, 4) and r.change.shape == r.size.shape
    assert np.all(r.change[..., 0] == 0) and np.all(np.isfinite(r.loss))
    flat = r.as_dict()
    assert flat["slope_change/hid"] == r.slope_change[r.layers.index("hid")]


@pytest.mark.slow  # four compilations of a transformer: ~30 s on an idle 2-core CPU
def test_transformer_lm_coord_check():
    tok = jax.random.randint(jax.random.key(3), (4, 8), 0, 256)
    make = lambda w: TransformerLM(w, n_layers=1, heads=2, seq_len=8, mup_base_head_dim=8)
    models = {w: (make(w), jax.jit(make(w).init)(jax.random.key(0), tok)) for w in (16, 64)}
    base = jax.eval_shape(make(16).init, jax.random.key(0), tok)
    sp = run(models, base, {"x": tok}, lm_loss, "sp", 1e-2)
    mu = run(models, base, {"x": tok}, lm_loss, "mup", 1e-2)
    s, m = (dict(zip(r.layers, r.slope_change, strict=True)) for r in (sp, mu))
    for layer in ("block_0", "block_0/mlp/fc2", "block_0/attn/value"):
        assert s[layer] > 0.3 and abs(m[layer]) < 0.2, (layer, s[layer], m[layer])


class NnxMLP(nnx.Module):
    def __init__(self, width, rngs):
        self.inp = nnx.Linear(20, width, rngs=rngs)
        self.out = nnx.Linear(width, 10, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.inp(x))
        self.sow(nnx.Intermediate, "hidden", h)
        return self.out(h)


def test_nnx_model_with_sown_layers_and_errors():
    models = {w: (NnxMLP(w, nnx.Rngs(0)), None) for w in (16, 32)}
    base = nnx.state(NnxMLP(16, nnx.Rngs(0)), nnx.Param)
    r = run(models, base, BATCH, xent, "mup", 1e-2)
    assert set(r.layers) == {"hidden", "output"}
    with pytest.raises(ValueError, match="at least two widths"):
        run({16: models[16]}, base, BATCH, xent, "mup", 1e-2)
    with pytest.raises(TypeError, match="linen.Module"):
        run({1: (lambda p, x: x, {}), 2: (lambda p, x: x, {})}, base, BATCH, xent, "mup", 1e-2)
