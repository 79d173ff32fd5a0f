"""The fast Keras SimpleRNN equals Flax's own nn.RNN(nn.SimpleCell), values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from experiments.models import ImdbRNN, SimpleRNN, tanh_recurrence


def _reference(params, x, features):
    """nn.RNN(nn.SimpleCell) with the same parameters, last hidden state."""
    rnn = nn.RNN(nn.SimpleCell(features))
    return rnn.apply({"params": {"cell": params}}, x)[:, -1]


def test_simple_rnn_has_simplecell_params_and_matches_nn_rnn(key):
    x = jax.random.normal(key, (4, 7, 5))
    layer = SimpleRNN(6)
    params = layer.init(jax.random.key(1), x)["params"]
    assert jax.tree.map(jnp.shape, params) == {
        "i": {"kernel": (5, 6), "bias": (6,)},
        "h": {"kernel": (6, 6)},
    }
    params = jax.tree.map(lambda p: p + 0.1, params)  # nonzero bias too
    np.testing.assert_allclose(
        layer.apply({"params": params}, x), _reference(params, x, 6), rtol=1e-5, atol=1e-6
    )


def test_hand_written_vjp_equals_autodiff(key):
    k1, k2, k3 = jax.random.split(key, 3)
    kernel = jax.random.normal(k1, (8, 8)) * 0.4
    z = jax.random.normal(k2, (30, 3, 8))
    g = jax.random.normal(k3, (30, 3, 8))

    def auto(kernel, z):
        def step(h, z_t):
            h = jnp.tanh(z_t + h @ kernel)
            return h, h

        return jax.lax.scan(step, jnp.zeros((3, 8)), z)[1]

    f = lambda fn: jax.grad(lambda k, z: jnp.sum(fn(k, z) * g), argnums=(0, 1))(kernel, z)
    for a, b in zip(f(tanh_recurrence), f(auto), strict=True):
        # float32 sums of 90 products in a different order: agree to ~1e-6 absolute.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_imdb_model_gradients_match_reference_composition(key):
    model = ImdbRNN(vocab_size=50, embed_dim=4, hidden=5)
    tokens = jax.random.randint(key, (3, 9), 0, 50)
    params = model.init(jax.random.key(2), tokens)["params"]

    def ours(p):
        return jnp.sum(model.apply({"params": p}, tokens) ** 2)

    def ref(p):
        e = p["Embed_0"]["embedding"][tokens]
        h = _reference(p["rnn"], e, 5)
        out = h @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
        return jnp.sum(out[:, 0] ** 2)

    np.testing.assert_allclose(ours(params), ref(params), rtol=1e-5)
    for a, b in zip(
        jax.tree.leaves(jax.grad(ours)(params)),
        jax.tree.leaves(jax.grad(ref)(params)),
        strict=False,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_keras_default_initializers(key):
    model = ImdbRNN()
    p = model.init(key, jnp.zeros((1, 200), jnp.int32))["params"]
    emb = p["Embed_0"]["embedding"]
    assert emb.shape == (10_000, 32) and float(jnp.abs(emb).max()) <= 0.05
    u = p["rnn"]["h"]["kernel"]
    np.testing.assert_allclose(u.T @ u, np.eye(32), atol=1e-5)  # orthogonal recurrent kernel
    w = p["rnn"]["i"]["kernel"]
    assert float(jnp.abs(w).max()) <= np.sqrt(6 / 64)  # glorot_uniform bound
    assert not np.any(p["rnn"]["i"]["bias"])
