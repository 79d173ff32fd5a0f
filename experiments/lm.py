"""A small decoder-only byte-level transformer LM (linen), written the way researchers write one.

Embedding + learned positions, ``n_layers`` blocks of causal multi-head attention
(``flax.linen.MultiHeadDotProductAttention``, so its query/key/value/out kernels have Flax's
DenseGeneral layout) and a GELU MLP (``mlp/fc1``, ``mlp/fc2``), a final LayerNorm (pre-LN)
and a readout ``head``. Options cover the studies: pre-LN / post-LN / no norm (T-Fixup),
DeepNorm's residual weight ``alpha``, ReZero gains, a residual-branch multiplier
(Depth-muP) and muP's attention scale and readout multiplier.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit

VOCAB = 256


class Mlp(nn.Module):
    d_ff: int

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        return nn.Dense(d, name="fc2")(nn.gelu(nn.Dense(self.d_ff, name="fc1")(x)))


class Block(nn.Module):
    heads: int
    d_ff: int
    norm: str = "pre"  # "pre", "post" or "none"
    alpha: float = 1.0  # DeepNorm: x <- LN(alpha * x + F(x))
    branch_mult: float = 1.0  # Depth-muP's 1/sqrt(L) on every branch
    rezero: bool = False  # a learnable gain on each branch (ReZero/SkipInit), param "rezero_*"
    attention_fn: Callable | None = None

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2], jnp.int32))
        kw = {} if self.attention_fn is None else {"attention_fn": self.attention_fn}
        attn = nn.MultiHeadDotProductAttention(self.heads, qkv_features=d, name="attn", **kw)
        mlp = Mlp(self.d_ff, name="mlp")
        branches = (lambda h: attn(h, mask=mask), mlp)
        for i, f in enumerate(branches):
            g = self.param(f"rezero_{i}", nn.initializers.ones, ()) if self.rezero else 1.0
            if self.norm == "pre":
                x = x + self.branch_mult * g * f(nn.LayerNorm(name=f"ln_{i}")(x))
            elif self.norm == "post":
                x = nn.LayerNorm(name=f"ln_{i}")(self.alpha * x + self.branch_mult * g * f(x))
            else:
                x = self.alpha * x + self.branch_mult * g * f(x)
        return x


class TransformerLM(nn.Module):
    """``(batch, seq)`` uint8/int bytes -> ``(batch, seq, 256)`` next-byte logits."""

    width: int
    n_layers: int = 2
    heads: int = 4
    seq_len: int = 64
    norm: str = "pre"
    alpha: float = 1.0
    branch_mult: float = 1.0
    rezero: bool = False
    mup_base_head_dim: int | None = None  # muP attention scale sqrt(d0)/d (None: 1/sqrt(d))
    readout_mult: float = 1.0

    @nn.compact
    def __call__(self, tokens):
        tokens = tokens.astype(jnp.int32)
        x = nn.Embed(VOCAB, self.width, name="embed")(tokens)
        x = x + nn.Embed(self.seq_len, self.width, name="pos_embed")(jnp.arange(tokens.shape[1]))
        fn = None if self.mup_base_head_dim is None else jinit.attention_fn(self.mup_base_head_dim)
        for i in range(self.n_layers):
            x = Block(
                self.heads,
                4 * self.width,
                self.norm,
                self.alpha,
                self.branch_mult,
                self.rezero,
                fn,
                name=f"block_{i}",
            )(x)
        if self.norm == "pre":
            x = nn.LayerNorm(name="ln_f")(x)
        return self.readout_mult * nn.Dense(VOCAB, name="head")(x)


def lm_loss(logits, batch):
    """Mean next-byte cross-entropy (nats) of ``logits`` for ``batch`` (tokens ``(B, T)``)."""
    tokens = batch["x"] if isinstance(batch, dict) else batch
    return optax.softmax_cross_entropy_with_integer_labels(
        logits[:, :-1], tokens[:, 1:].astype(jnp.int32)
    ).mean()


def windows(stream: np.ndarray, key: jax.Array, steps: int, batch: int, seq: int) -> np.ndarray:
    """``(steps, batch, seq)`` random windows of a byte stream; the key alone fixes them."""
    starts = np.asarray(jax.random.randint(key, (steps, batch), 0, len(stream) - seq))
    return stream[starts[..., None] + np.arange(seq)]
