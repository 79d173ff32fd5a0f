"""Review fixes of the scaling area: coord_check refuses bad batches/arguments and warns when
training diverged or only the output was recorded; mup checks init_std and the params' shapes."""

import math
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jinit

X = jax.random.normal(jax.random.key(0), (8, 6))
BATCH = {"x": X, "y": jax.random.randint(jax.random.key(1), (8,), 0, 3)}
WIDTHS = (8, 32)


class MLP(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width, name="hid")(x))
        return nn.Dense(3, name="out")(x)


class NoSow(nnx.Module):  # hidden layer not sown: only the output can be recorded
    def __init__(self, width, rngs):
        self.hid = nnx.Linear(6, width, rngs=rngs)
        self.out = nnx.Linear(width, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hid(x)))


def xent(logits, batch):
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


@pytest.fixture(scope="module")
def linen():
    models = {w: (MLP(w), MLP(w).init(jax.random.key(0), X)) for w in WIDTHS}
    return models, models[WIDTHS[0]][1]


def check(models, base, batch=BATCH, tx=None, parametrize=None):
    return jinit.coord_check(
        models,
        batch,
        xent,
        tx or optax.adam(1e-2),
        parametrize or (lambda p: jinit.mup(base, p)),
        key=jax.random.key(2),
        seeds=1,
        steps=2,
    )


def test_nan_or_empty_batch_is_a_value_error_naming_the_batch(linen):
    models, base = linen
    with pytest.raises(ValueError, match=r"coord_check: the batch contains 1 non-finite"):
        check(models, base, {"x": X.at[0, 0].set(jnp.nan), "y": BATCH["y"]})
    with pytest.raises(ValueError, match=r"coord_check: the batch is empty"):
        check(models, base, {"x": jnp.zeros((0, 6)), "y": BATCH["y"][:0]})


def test_divergence_warns_naming_widths_and_layers(linen):
    models, base = linen
    with pytest.warns(jinit.InitWarning, match=r"diverged .* widths \[8, 32\], layers \[") as w:
        r = check(models, base, tx=optax.sgd(1e12))  # loss NaN after 2 steps
    assert "'out'" in str(w[0].message) and np.isnan(r.slope_change).any()
    # A healthy run gives finite slopes and no divergence warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", jinit.InitWarning)
        r = check(models, base)
    assert np.all(np.isfinite(r.slope_size)) and r.layers == ("hid", "out", "output")


def test_unsown_nnx_model_warns_that_only_the_output_was_checked():
    models = {w: (NoSow(w, nnx.Rngs(0)), None) for w in WIDTHS}
    base = nnx.state(models[WIDTHS[0]][0], nnx.Param)
    with pytest.warns(jinit.InitWarning, match=r"only the model output was checked.*sow"):
        r = check(models, base)
    assert r.layers == ("output",)


def test_models_list_and_params_returning_parametrize_are_type_errors(linen):
    models, base = linen
    with pytest.raises(TypeError, match=r"models must be a mapping \{width: \(model, params\)\}"):
        check(list(models.values()), base)
    with pytest.raises(TypeError, match=r"parametrize\(params\) must return a Parametrization"):
        check(models, base, parametrize=lambda p: p)


def test_mup_init_std_must_be_positive_and_match_a_leaf(linen):
    models, base = linen
    p = models[32][1]
    with pytest.raises(ValueError, match=r"init_std must be > 0, got -1.0"):
        jinit.mup(base, p, init_std=-1.0)
    with pytest.raises(ValueError, match=r"init_std pattern 'layer_9' matches no leaf"):
        jinit.mup(base, p, init_std={"layer_9": 0.5})
    with pytest.raises(ValueError, match=r"init_std pattern '\[' is not a valid regex"):
        jinit.mup(base, p, init_std={"[": 0.5})
    # A matching pattern sets that leaf's base std; the hidden variance is std^2 / m_in (m_in=1).
    par = jinit.mup(base, p, init_std={"hid/kernel": 0.5})
    assert par.init_std_of(par.leaves["hid/kernel"]) == pytest.approx(0.5)


def test_init_on_params_of_another_width_raises_naming_leaf_and_shapes(linen):
    models, base = linen
    par = jinit.mup(base, models[32][1])
    with pytest.raises(ValueError, match=r"'hid/bias' has shape \(8,\).*built for shape \(32,\)"):
        par.init(jax.random.key(0), models[8][1])


def test_swapped_mup_arguments_give_width_multipliers_below_one(linen):
    # mup.set_base_shapes(proxy, base) accepts a base wider than the model (proxy models), so
    # m < 1 is legal: the swap is not an error, but the parametrization is for the narrow
    # shapes (m_in = 8/32) and refuses the wide params.
    models, _ = linen
    narrow, wide = models[8][1], models[32][1]
    par = jinit.mup(wide, narrow)
    out = par.leaves["out/kernel"]
    assert out.cls == "output" and out.m_in == pytest.approx(0.25)
    assert out.init_var == pytest.approx(16.0)  # 1 / m_in^2 (TP-V Table 3)
    with pytest.raises(ValueError, match=r"has shape \(32,\).*built for shape \(8,\)"):
        par.init(jax.random.key(0), wide)
    # The right order: the width-32 readout draws with variance (1/8) / 4^2 = 1/128.
    w = jinit.mup(narrow, wide).init(jax.random.key(0), wide)["params"]["out"]["kernel"]
    assert math.isclose(float(jnp.var(w)), 1 / 128, rel_tol=0.35)
