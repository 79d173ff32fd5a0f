"""The batch rule of the data-dependent passes: the model inputs are taken out of ``batch`` as
in ``jinit.fit`` and ``jinit.layer_statistics`` (tuple/list: first element; mapping: "inputs" or
"x"; ``input_key=`` otherwise), so ``(x, y)`` gives exactly what ``x`` gives."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import jinit

X = jax.random.normal(jax.random.key(1), (64, 8))
Y = jnp.arange(64) % 3
MODEL = nn.Sequential((nn.Dense(16), nn.relu, nn.Dense(4)))
V = MODEL.init(jax.random.key(0), X[:1])
LAYERS = [(("params", "layers_0", "kernel"), None), (("params", "layers_2", "kernel"), None)]


def same(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(bool(jnp.array_equal(u, w)) for u, w in pairs)


@pytest.mark.parametrize("fn", [jinit.lsuv, jinit.within_layer_init, jinit.weight_norm_init])
def test_tuple_list_and_mapping_batches_give_what_the_inputs_give(fn):
    ref, rep = fn(MODEL, V, X, jit=False)
    assert rep.paths == ("layers_0", "layers_2")
    for batch, key in [
        ((X, Y), None),
        ([X, Y], None),
        ({"inputs": X, "label": Y}, None),
        ({"x": X, "y": Y}, None),
        ({"image": X, "label": Y}, "image"),
        ((Y, X), 1),
    ]:
        new, rep2 = fn(MODEL, V, batch, jit=False, input_key=key)
        assert same(new, ref), batch if key is None else key
        assert same(rep2.var_after, rep.var_after)


def test_jitted_pass_takes_the_same_inputs():
    ref, _ = jinit.lsuv(MODEL, V, X, jit=True)
    new, rep = jinit.lsuv(MODEL, V, {"image": X, "label": Y}, input_key="image", jit=True)
    assert rep.execution == "jit" and same(new, ref)


def test_between_layer_scaling_takes_the_same_inputs():
    key = jax.random.key(2)
    ref, _ = jinit.between_layer_scaling(MODEL.apply, V, X, key, layers=LAYERS, max_iters=2)
    new, _ = jinit.between_layer_scaling(MODEL.apply, V, (X, Y), key, layers=LAYERS, max_iters=2)
    assert same(new, ref)
    new, _ = jinit.between_layer_scaling(
        MODEL.apply, V, {"img": X}, key, layers=LAYERS, max_iters=2, input_key="img"
    )
    assert same(new, ref)


def test_a_batch_without_the_inputs_is_named():
    with pytest.raises(ValueError, match=r"lsuv: .*keys \['image', 'label'\].*input_key"):
        jinit.lsuv(MODEL, V, {"image": X, "label": Y})
    with pytest.raises(ValueError, match=r"within_layer_init: input_key='img' is not in"):
        jinit.within_layer_init(MODEL, V, {"image": X}, input_key="img")
    with pytest.raises(ValueError, match=r"lsuv: the batch is empty"):
        jinit.lsuv(MODEL, V, (X[:0], Y[:0]))


def test_rngs_reach_a_linen_model_and_are_only_for_linen():
    class Noisy(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = x + 0.1 * jax.random.normal(self.make_rng("noise"), x.shape)
            return nn.Dense(4)(x)

    model = Noisy()
    v = model.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, X)
    new, rep = jinit.lsuv(model, v, X, rngs={"noise": jax.random.key(3)}, jit=False)
    assert rep.statuses == ("converged",)
    y = model.apply(new, X, rngs={"noise": jax.random.key(3)})
    assert abs(float(jnp.var(y)) - 1.0) < 0.1
    with pytest.raises(ValueError, match="rngs= is only for linen"):
        jinit.lsuv(lambda p, x: x @ p["kernel"], {"kernel": jnp.ones((8, 2))}, X, rngs={})
