"""The model adapter (jinit/_src/models.py): every kind of model as the same pure function of its
trainable params, and the one batch rule."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jinit._src.models import as_apply, model_inputs


class _Linen(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.tanh(nn.Dense(5)(x)))


class _NNX(nnx.Module):
    def __init__(self, rngs):
        self.a, self.b = nnx.Linear(4, 5, rngs=rngs), nnx.Linear(5, 3, rngs=rngs)

    def __call__(self, x):
        return self.b(nnx.tanh(self.a(x)))


def _kinds(x):
    """(name, model, params, the model's own output) for the four kinds as_apply takes."""
    lin = _Linen()
    v = lin.init(jax.random.key(0), x)
    n = _NNX(nnx.Rngs(0))
    graphdef, state = nnx.split(n)
    plain = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
    pp = {"w1": jnp.full((4, 5), 0.3), "w2": jnp.full((5, 3), -0.2)}
    return [
        ("linen variables", lin, v, lin.apply(v, x)),
        ("linen params", lin, v["params"], lin.apply(v, x)),
        ("nnx module", n, None, n(x)),
        ("nnx graphdef", graphdef, state, n(x)),
        ("plain", plain, pp, plain(pp, x)),
    ]


@pytest.mark.parametrize("i", range(5))
def test_as_apply_is_the_model_as_a_pure_function_of_its_params(i):
    x = jax.random.normal(jax.random.key(1), (6, 4))
    name, model, params, want = _kinds(x)[i]
    apply, p0, merge = as_apply(model, params)
    np.testing.assert_allclose(apply(p0, x), want, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(jax.jit(apply)(p0, x), want, rtol=1e-6, err_msg=name)
    # Other params give another output: the model runs on p, not on params it closed over.
    doubled = jax.tree.map(lambda a: 2 * a, p0)
    assert not np.allclose(apply(doubled, x), want), name
    assert jax.tree.structure(merge(p0)) == jax.tree.structure(params if params is not None else p0)


def test_model_inputs_rule():
    x = jnp.ones((2, 3))
    assert model_inputs({"inputs": x, "y": 0}) is x
    assert model_inputs({"x": x, "label": 0}) is x
    assert model_inputs((x, 1)) is x and model_inputs([x]) is x and model_inputs(x) is x
    assert model_inputs({"img": x}, input_key="img") is x
    with pytest.raises(ValueError, match="input_key='img'.*keys"):
        model_inputs({"x": x}, input_key="img")
    with pytest.raises(ValueError, match="pass input_key="):
        model_inputs({"img": x})
    with pytest.raises(ValueError, match=r"f: the batch is empty"):
        model_inputs(jnp.ones((0, 3)), fn="f")
    with pytest.raises(ValueError, match=r"f: the batch contains 1 non-finite.*\(1, 2\)"):
        model_inputs(x.at[1, 2].set(jnp.inf), fn="f")


def test_as_apply_nnx_rnn_draws_its_carry_inside_jit():
    # nnx.RNN's initialize_carry draws from the cell's stored Rngs: merging the caller's own
    # Variables inside a trace raised TraceContextError (fit, gradinit and metainit hit it).
    class Classifier(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(20, 8, rngs=rngs)
            self.rnn = nnx.RNN(nnx.LSTMCell(8, 8, rngs=rngs))
            self.out = nnx.Linear(8, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(self.rnn(self.embed(x))[:, -1])

    model = Classifier(nnx.Rngs(0))
    x = jax.random.randint(jax.random.key(1), (4, 5), 0, 20)
    eager = model(x)
    apply, p0, _ = as_apply(model, None)
    np.testing.assert_allclose(jax.jit(apply)(p0, x), eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(apply)(p0, x), eager, rtol=1e-6, atol=1e-6)
    grads = jax.jit(jax.grad(lambda p: apply(p, x).sum()))(p0)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
