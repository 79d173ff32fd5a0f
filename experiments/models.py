"""Models of the studies, in Flax linen.

``SimpleRNN`` is Keras's ``SimpleRNN`` (h_t = tanh(x_t W + h_{t-1} U + b); W glorot_uniform,
U orthogonal, b zeros) with exactly the parameters of ``nn.RNN(nn.SimpleCell(H))``
(``{'i': {'kernel', 'bias'}, 'h': {'kernel'}}``), so jinit's parameter rules, LSUV and
diagnostics see a standard Flax cell. It is computed faster than the cell in a scan:

* the input projection x_t W + b of all time steps is one (T*B, E) x (E, H) matmul, hoisted
  out of the recurrence (the ``i`` Dense is called once on the whole sequence);
* the recurrence h_t = tanh(z_t + h_{t-1} U) has a hand-written VJP: the backward scan carries
  only dh_t -> dz_t = (dh_t + g_t)(1 - h_t^2), dh_{t-1} = dz_t U^T, and the weight gradient
  dU = sum_t h_{t-1}^T dz_t is one matmul after the scan instead of an accumulation inside it.

Both are checked against ``nn.RNN(nn.SimpleCell)`` and autodiff in ``tests/test_imdb_model.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

import jinit


@jax.custom_vjp
def tanh_recurrence(kernel: jax.Array, z: jax.Array) -> jax.Array:
    """All hidden states of h_t = tanh(z_t + h_{t-1} @ kernel), h_{-1} = 0.

    Args:
      kernel: ``(H, H)`` recurrent kernel (Flax layout: h @ kernel).
      z: ``(T, B, H)`` time-major input projections (x_t W + b).

    Returns:
      ``(T, B, H)`` hidden states.
    """
    return _forward(kernel, z)


def _forward(kernel, z):
    def step(h, z_t):
        h = jnp.tanh(z_t + h @ kernel)
        return h, h

    return jax.lax.scan(step, jnp.zeros(z.shape[1:], z.dtype), z)[1]


def _fwd(kernel, z):
    hs = _forward(kernel, z)
    return hs, (kernel, hs)


def _bwd(res, g):
    kernel, hs = res

    def step(dh, inputs):
        g_t, h_t = inputs
        dz = (dh + g_t) * (1 - h_t * h_t)
        return dz @ kernel.T, dz

    _, dz = jax.lax.scan(step, jnp.zeros(hs.shape[1:], hs.dtype), (g, hs), reverse=True)
    h_prev = jnp.concatenate([jnp.zeros_like(hs[:1]), hs[:-1]], axis=0)
    dkernel = jnp.einsum("tbh,tbk->hk", h_prev, dz)
    return dkernel, dz


tanh_recurrence.defvjp(_fwd, _bwd)


class _Recurrent(nn.Module):
    features: int
    kernel_init: Callable = jinit.orthogonal()

    @nn.compact
    def __call__(self, z):
        kernel = self.param("kernel", self.kernel_init, (self.features, self.features), jnp.float32)
        return tanh_recurrence(kernel, z)


class SimpleRNN(nn.Module):
    """Keras ``SimpleRNN(features)`` returning the last hidden state.

    Attributes:
      features: hidden size H.
      kernel_init: input kernel W ``(E, H)``, Keras default glorot_uniform.
      recurrent_kernel_init: recurrent kernel U ``(H, H)``, Keras default orthogonal.
      bias_init: bias ``(H,)``, Keras default zeros.

    Input ``(B, T, E)`` batch-major, or ``(T, B, E)`` with ``time_major=True``; output ``(B, H)``.
    """

    features: int
    kernel_init: Callable = jinit.glorot_uniform()
    recurrent_kernel_init: Callable = jinit.orthogonal()
    bias_init: Callable = jinit.zeros()
    time_major: bool = False

    @nn.compact
    def __call__(self, x):
        if not self.time_major:
            x = jnp.swapaxes(x, 0, 1)
        z = nn.Dense(self.features, kernel_init=self.kernel_init, bias_init=self.bias_init, name="i")(x)
        hs = _Recurrent(self.features, self.recurrent_kernel_init, name="h")(z)
        return hs[-1]


class ImdbRNN(nn.Module):
    """Embedding(V, E) -> SimpleRNN(H) -> Dense(1): the seed study's sentiment classifier.

    Returns the logit ``(B,)`` of the positive class (the sigmoid lives in the loss,
    ``optax.sigmoid_binary_cross_entropy``: the same function as Keras's sigmoid + BCE,
    computed stably).
    """

    vocab_size: int = 10_000
    embed_dim: int = 32
    hidden: int = 32
    embedding_init: Callable = jinit.uniform_symmetric(0.05)

    @nn.compact
    def __call__(self, tokens):
        # Time-major from the start: the recurrence scans axis 0 without a transpose.
        e = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=self.embedding_init)(tokens.T)
        h = SimpleRNN(self.hidden, time_major=True, name="rnn")(e)
        return nn.Dense(1, kernel_init=jinit.glorot_uniform())(h)[:, 0]
