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

# The random-MLP helpers (init_mlp, apply, preactivations) used by phase_diagram.py and
# papers/poole2016.py.
from jinit import random_mlp as random_mlp  # noqa: F401


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
        z = nn.Dense(
            self.features, kernel_init=self.kernel_init, bias_init=self.bias_init, name="i"
        )(x)
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


# --- CIFAR-10 CNN -------------------------------------------------------------------------------


class Conv(nn.Conv):
    """``nn.Conv`` (same fields, parameters and numbers) with an im2col path for CPUs.

    On this project's 2-core CPU, XLA's convolution of the seed CNN trains at a fraction of
    the speed of the same convolution written as patches x kernel (one GEMM), and a vmapped
    (seed-swept) convolution becomes a grouped convolution that is slower still, while a
    vmapped GEMM stays a batched GEMM (benchmarks/train_throughput.py measures both). With
    ``impl='im2col'`` a 2-D, stride-1, undilated, ungrouped 'VALID' convolution is computed as
    ``concat_{i,j}(x[:, i:i+Ho, j:j+Wo, :]) @ kernel.reshape(kh*kw*cin, cout)``; the patch
    order (i, j, c) is the row-major order of the HWIO kernel, so the numbers equal
    ``nn.Conv``'s (to float32 rounding). Any other configuration uses ``nn.Conv``.
    """

    impl: str = "xla"

    @nn.compact
    def __call__(self, inputs):
        ks = (
            tuple(self.kernel_size)
            if not isinstance(self.kernel_size, int)
            else (self.kernel_size,)
        )
        simple = (
            self.impl == "im2col"
            and len(ks) == 2
            and self.padding == "VALID"
            and self.strides in (None, 1, (1, 1))
            and self.kernel_dilation in (None, 1, (1, 1))
            and self.input_dilation in (None, 1, (1, 1))
            and self.feature_group_count == 1
        )
        if not simple:
            return super().__call__(inputs)
        kh, kw = ks
        cin = inputs.shape[-1]
        kernel = self.param(
            "kernel", self.kernel_init, (kh, kw, cin, self.features), self.param_dtype
        )
        ho, wo = inputs.shape[-3] - kh + 1, inputs.shape[-2] - kw + 1
        patches = jnp.concatenate(
            [inputs[..., i : i + ho, j : j + wo, :] for i in range(kh) for j in range(kw)], axis=-1
        )
        y = patches @ kernel.reshape(kh * kw * cin, self.features)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        return y


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, 'VALID' (Keras MaxPooling2D()), as a reshape + max.

    Equal to ``nn.max_pool(x, (2, 2), (2, 2))``; its gradient is an elementwise select instead
    of XLA's select-and-scatter, which is slow on CPU.
    """
    b, h, w, c = x.shape[-4:]
    h2, w2 = h // 2, w // 2
    x = x[..., : 2 * h2, : 2 * w2, :]
    return x.reshape(x.shape[:-3] + (h2, 2, w2, 2, c)).max(axis=(-4, -2))


class CifarCNN(nn.Module):
    """The seed study's CNN: Conv(32, 3x3, relu) -> MaxPool -> Conv(64, 3x3, relu) -> MaxPool
    -> Flatten -> Dense(64, relu) -> Dense(10) (logits; softmax is in the loss).

    Attributes:
      kernel_init: initializer of every Conv and Dense kernel (Keras: glorot_uniform).
      bias_init: initializer of every bias (Keras: zeros).
      batch_norm: BatchNorm after each conv/dense (before the ReLU), as in the BN study.
      conv_impl: ``'im2col'`` (fast on CPU) or ``'xla'`` (``lax.conv``; the GPU/TPU choice).
    Input ``(B, 32, 32, 3)`` in [0, 1]; output ``(B, 10)``.
    """

    kernel_init: Callable = jinit.glorot_uniform()
    bias_init: Callable = jinit.zeros()
    batch_norm: bool = False
    conv_impl: str = "im2col"

    @nn.compact
    def __call__(self, x, train: bool = False):
        def norm(h):
            if not self.batch_norm:
                return h
            return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3)(h)

        kw = dict(kernel_init=self.kernel_init, bias_init=self.bias_init)
        x = max_pool_2x2(
            nn.relu(norm(Conv(32, (3, 3), padding="VALID", impl=self.conv_impl, **kw)(x)))
        )
        x = max_pool_2x2(
            nn.relu(norm(Conv(64, (3, 3), padding="VALID", impl=self.conv_impl, **kw)(x)))
        )
        x = x.reshape(x.shape[:-3] + (-1,))
        x = nn.relu(norm(nn.Dense(64, **kw)(x)))
        return nn.Dense(10, **kw)(x)
