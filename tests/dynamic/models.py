"""Models, data and losses shared by the GradInit / MetaInit tests.

One object per helper (a loss, an apply function, a linen module) so that the passes' jitted
programs, keyed on them, compile once and are shared across tests. The conformance families
(plain CNN without normalization, MLP, LSTM classifier with an Embed front) come in linen and
NNX with the same parameter names up to :func:`nnx_path`, so the NNX model can be given the
linen model's weights (:func:`nnx_twin`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jinit

# ---------------------------------------------------------------- closed-form helpers


def linear(p, x):
    return x @ p["w"]


def mse(out, batch):
    return 0.5 * jnp.mean(jnp.sum((out - batch["y"]) ** 2, -1))


def xent(out, batch):
    return optax.softmax_cross_entropy_with_integer_labels(out, batch["y"]).mean()


def lin_data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x": jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
        "y": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
    }


def data(n=16, seed=3):
    """Gaussian inputs (n, 5), labels 0..2 cycling."""
    return {"x": jax.random.normal(jax.random.key(seed), (n, 5)), "y": jnp.arange(n) % 3}


def two_layer(p, x):
    return jnp.tanh(x @ p["w1"]) @ p["w2"]


def two_layer_params(key):
    k1, k2 = jax.random.split(key)
    return {"w1": 3.0 * jax.random.normal(k1, (5, 6)), "w2": jax.random.normal(k2, (6, 3))}


def chain(p, x):
    return x @ p["a"] @ p["b"]


OVERFLOWING_CHAIN = {"a": jnp.full((5, 4), 1e20), "b": jnp.full((4, 3), 1e20)}


def dead_relu(p, x):
    return jax.nn.relu(x @ p["w1"]) @ p["w2"]


DEAD_PARAMS = {"w1": jnp.zeros((5, 4)), "w2": jnp.zeros((4, 3))}


class DenseBNDropout(nn.Module):
    """Dense -> BatchNorm (train mode) -> activation -> Dropout -> Dense."""

    act: Any = nn.relu

    @nn.compact
    def __call__(self, x, train=True):
        x = nn.Dense(8)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.2, deterministic=not train)(self.act(x))
        return nn.Dense(3)(x)


# ---------------------------------------------------------------- conformance families


class LinenCNN(nn.Module):
    """A plain CNN without normalization: ``depth`` 3x3 ReLU convs, one 2x2 average pool,
    global average pool, Dense (the VGG-like net of the GradInit reproduction, tiny)."""

    depth: int = 3
    width: int = 4
    classes: int = 3

    @nn.compact
    def __call__(self, x):
        for i in range(self.depth):
            x = nn.relu(nn.Conv(self.width, (3, 3), name=f"conv{i}")(x))
            if i == 1:
                x = nn.avg_pool(x, (2, 2), (2, 2))
        return nn.Dense(self.classes, name="out")(x.mean(axis=(1, 2)))


class NnxCNN(nnx.Module):
    def __init__(self, rngs, depth=3, width=4, channels=3, classes=3, **init):
        self.depth = depth
        for i in range(depth):
            c_in = channels if i == 0 else width
            setattr(self, f"conv{i}", nnx.Conv(c_in, width, (3, 3), rngs=rngs, **init))
        self.out = nnx.Linear(width, classes, rngs=rngs, **init)

    def __call__(self, x):
        for i in range(self.depth):
            x = nnx.relu(getattr(self, f"conv{i}")(x))
            if i == 1:
                x = nnx.avg_pool(x, (2, 2), (2, 2))
        return self.out(x.mean(axis=(1, 2)))


class LinenMLP(nn.Module):
    """Three tanh Dense layers and a readout."""

    @nn.compact
    def __call__(self, x):
        for i in range(3):
            x = jnp.tanh(nn.Dense(8, name=f"l{i}")(x))
        return nn.Dense(3, name="out")(x)


class NnxMLP(nnx.Module):
    def __init__(self, rngs, d_in=5, **init):
        self.l0 = nnx.Linear(d_in, 8, rngs=rngs, **init)
        self.l1 = nnx.Linear(8, 8, rngs=rngs, **init)
        self.l2 = nnx.Linear(8, 8, rngs=rngs, **init)
        self.out = nnx.Linear(8, 3, rngs=rngs, **init)

    def __call__(self, x):
        for layer in (self.l0, self.l1, self.l2):
            x = jnp.tanh(layer(x))
        return self.out(x)


VOCAB, EMBED, HIDDEN = 20, 4, 4


class LinenRNN(nn.Module):
    """The IMDB classifier's shape: Embed -> nn.RNN(LSTMCell) -> last state -> Dense."""

    @nn.compact
    def __call__(self, tokens):
        e = nn.Embed(VOCAB, EMBED, name="embed")(tokens)
        h = nn.RNN(nn.LSTMCell(HIDDEN, name="cell"))(e)
        return nn.Dense(2, name="out")(h[:, -1])


class NnxRNN(nnx.Module):
    """Embed -> nnx.RNN(LSTMCell) (its carry drawn from the cell's stored Rngs) -> Dense."""

    def __init__(self, rngs, **init):
        k = init.get("kernel_init")
        self.embed = nnx.Embed(VOCAB, EMBED, rngs=rngs, **({"embedding_init": k} if k else {}))
        cell_init = {"recurrent_kernel_init": k, **init} if k else {}
        self.rnn = nnx.RNN(nnx.LSTMCell(EMBED, HIDDEN, rngs=rngs, **cell_init))
        self.out = nnx.Linear(HIDDEN, 2, rngs=rngs, **init)

    def __call__(self, tokens):
        return self.out(self.rnn(self.embed(tokens))[:, -1])


def nnx_path(linen_path: str) -> str:
    """The NNX twin's name of a linen parameter (``jinit.path_string`` paths)."""
    if linen_path.startswith("cell/"):
        linen_path = "rnn/" + linen_path
    return linen_path.replace("/if/", "/if_/")


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    linen: nn.Module
    nnx_cls: type
    batch: dict  # {"x": inputs, "y": integer labels}


def families() -> dict[str, Family]:
    rng = np.random.default_rng(0)
    n = 8
    images = jnp.asarray(rng.normal(size=(n, 8, 8, 3)), jnp.float32)
    vectors = jnp.asarray(rng.normal(size=(n, 5)), jnp.float32)
    tokens = jnp.asarray(rng.integers(0, VOCAB, size=(n, 4)), jnp.int32)
    return {
        "cnn": Family("cnn", LinenCNN(), NnxCNN, {"x": images, "y": jnp.arange(n) % 3}),
        "mlp": Family("mlp", LinenMLP(), NnxMLP, {"x": vectors, "y": jnp.arange(n) % 3}),
        "rnn": Family("rnn", LinenRNN(), NnxRNN, {"x": tokens, "y": jnp.arange(n) % 2}),
    }


def flat(tree) -> dict[str, Any]:
    """``{path_string: leaf}`` of a params pytree (linen dict or nnx.State)."""
    return {jinit.path_string(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def nnx_twin(family: Family, linen_params) -> nnx.Module:
    """The NNX model of ``family`` holding exactly ``linen_params`` (linen's ``params``)."""
    # built with zeros (no random init to compile), then given the linen weights
    model = family.nnx_cls(nnx.Rngs(0), kernel_init=nnx.initializers.zeros_init())
    weights = {nnx_path(k): v for k, v in flat(linen_params).items()}
    _, state, _ = nnx.split(model, nnx.Param, ...)
    own = flat(state)
    assert sorted(own) == sorted(weights), (sorted(own), sorted(weights))
    new = jax.tree_util.tree_map_with_path(
        lambda p, v: weights[jinit.path_string(p)].astype(v.dtype), state
    )
    nnx.update(model, new)
    return model
