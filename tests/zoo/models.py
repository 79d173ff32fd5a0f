"""The model zoo: small models written the way researchers write them (idiomatic Flax linen and
NNX, and plain JAX), none of them shaped for jinit. Each ``Case`` bundles a model, its
variables, a batch and the keyword arguments of its forward pass."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

B = 8  # batch size of every case


@dataclasses.dataclass
class Case:
    name: str
    model: Any  # linen Module, nnx Module, or apply_fn(params, x)
    variables: Any  # linen variables dict, nnx.State of nnx.Param, or plain params
    x: Any
    apply_kwargs: dict = dataclasses.field(default_factory=dict)
    healthy: bool = True  # diagnose must find nothing


# ----------------------------------------------------------------------------- NNX transformer


class MLP(nnx.Module):
    def __init__(self, d, rngs):
        self.fc1 = nnx.Linear(d, 4 * d, rngs=rngs)
        self.fc2 = nnx.Linear(4 * d, d, rngs=rngs)

    def __call__(self, x):
        return self.fc2(nnx.gelu(self.fc1(x)))


class PreLNBlock(nnx.Module):
    def __init__(self, d, heads, rngs):
        self.ln1 = nnx.LayerNorm(d, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d, rngs=rngs)
        self.mlp = MLP(d, rngs)

    def __call__(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Transformer(nnx.Module):
    def __init__(self, d=16, heads=2, depth=2, out=4, *, rngs):
        self.embed = nnx.Linear(d, d, rngs=rngs)
        self.blocks = nnx.List([PreLNBlock(d, heads, rngs) for _ in range(depth)])
        self.ln_f = nnx.LayerNorm(d, rngs=rngs)
        self.head = nnx.Linear(d, out, rngs=rngs)

    def __call__(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


# ----------------------------------------------------------------------------- linen


class ResBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        y = nn.relu(norm()(nn.Conv(self.features, (3, 3), use_bias=False)(x)))
        y = norm()(nn.Conv(self.features, (3, 3), use_bias=False)(y))
        return nn.relu(x + y)


class ResNet(nn.Module):
    features: int = 8
    classes: int = 4

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Conv(self.features, (3, 3), use_bias=False)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        x = ResBlock(self.features)(x, train)
        x = ResBlock(self.features)(x, train)
        return nn.Dense(self.classes)(jnp.mean(x, axis=(1, 2)))


class RecurrentNet(nn.Module):
    cell: str = "lstm"

    @nn.compact
    def __call__(self, x):
        cell = nn.LSTMCell(16) if self.cell == "lstm" else nn.GRUCell(16)
        h = nn.RNN(cell)(x)
        return nn.Dense(4)(h[:, -1])


class DepthwiseCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        x = nn.relu(nn.Conv(16, (3, 3), feature_group_count=16)(x))  # depthwise
        x = nn.relu(nn.Conv(32, (1, 1))(x))  # pointwise
        return nn.Dense(4)(jnp.mean(x, axis=(1, 2)))


class Conv1D(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (5,))(x))
        x = nn.relu(nn.Conv(16, (3,), kernel_dilation=2)(x))
        return nn.Dense(4)(jnp.mean(x, axis=1))


class ScanBlock(nn.Module):
    @nn.compact
    def __call__(self, h, _):
        return nn.relu(nn.Dense(h.shape[-1])(h)), None


class ScanMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(16)(x))
        stack = nn.scan(
            ScanBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=3
        )
        h, _ = stack()(h, None)
        return nn.Dense(4)(h)


class MLPBlock(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Dense(self.width)(x))


class RematMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(3):
            x = nn.remat(MLPBlock)(16)(x)
        return nn.Dense(4)(x)


def _standardize(w, axis, eps=1e-5):
    w = w - jnp.mean(w, axis=axis, keepdims=True)
    return w * jax.lax.rsqrt(jnp.var(w, axis=axis, keepdims=True) + eps)


class StdConv(nn.Conv):
    """Weight-standardized conv (Qiao et al. 2019; as in Big Transfer's StdConv)."""

    def param(self, name, init_fn, *init_args, unbox=True, **init_kwargs):
        param = super().param(name, init_fn, *init_args, unbox=unbox, **init_kwargs)
        if name == "kernel":
            param = _standardize(param, axis=(0, 1, 2))
        return param


class WSCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(StdConv(8, (3, 3))(x))
        x = nn.relu(StdConv(8, (3, 3))(x))
        return nn.Dense(4)(jnp.mean(x, axis=(1, 2)))


class OffsetDense(nn.Dense):
    """A Dense whose effective kernel is the learned one plus a fixed offset."""

    offset: float = 0.05

    def param(self, name, init_fn, *init_args, unbox=True, **init_kwargs):
        param = super().param(name, init_fn, *init_args, unbox=unbox, **init_kwargs)
        return param + self.offset if name == "kernel" else param


class OffsetMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(OffsetDense(32)(x))
        return OffsetDense(4)(x)


class NormedDense(nn.Dense):
    """A Dense with a unit-norm kernel: its output does not depend on the kernel's scale."""

    def param(self, name, init_fn, *init_args, unbox=True, **init_kwargs):
        param = super().param(name, init_fn, *init_args, unbox=unbox, **init_kwargs)
        return param / jnp.linalg.norm(param) if name == "kernel" else param


class ScaleInvariantMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(32)(x))
        x = nn.relu(NormedDense(32)(x))
        return nn.Dense(4)(x)


class ConvAutoencoder(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
        h = nn.relu(nn.Conv(16, (3, 3), strides=2)(h))
        h = nn.relu(nn.ConvTranspose(8, (3, 3), strides=(2, 2))(h))
        return nn.ConvTranspose(3, (3, 3), strides=(2, 2))(h)


class EmbedAttention(nn.Module):
    vocab: int = 50
    d: int = 16

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(self.vocab, self.d)(tokens)
        x = x + nn.MultiHeadDotProductAttention(num_heads=2)(nn.LayerNorm()(x))
        return nn.Dense(self.vocab)(nn.LayerNorm()(x))


class MLP6(nn.Module):
    """A plain ReLU MLP; the broken case draws every kernel 1000x too small."""

    kernel_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.variance_scaling(2.0 * self.kernel_scale**2, "fan_in", "normal")
        for _ in range(5):
            x = nn.relu(nn.Dense(32, kernel_init=init)(x))
        return nn.Dense(4, kernel_init=init)(x)


# ----------------------------------------------------------------------------- plain JAX


def plain_init(key, sizes=(8, 32, 32, 4)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m),
            "b": jnp.zeros(n),
        }
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def plain_apply(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


# ----------------------------------------------------------------------------- the cases


def _linen(name, model, x, **kw):
    return Case(name, model, model.init(jax.random.key(0), x), x, **kw)


# The cases' names in ``cases()``'s order and the unhealthy ones, known without building the
# models: test modules parametrize from these at collection, where building every model costs
# each xdist worker ~10 s of eager compiles (the ``zoo`` fixture checks they agree).
NAMES = (
    "transformer_nnx",
    "resnet_bn_train",
    "resnet_bn_eval",
    "plain_jax",
    "lstm",
    "gru",
    "depthwise_cnn",
    "conv1d",
    "scan_mlp",
    "remat_mlp",
    "ws_conv",
    "offset_dense",
    "scale_invariant",
    "conv_autoencoder",
    "embed_attention",
    "mlp_tiny_init",
)
UNHEALTHY = frozenset({"mlp_tiny_init"})


def cases() -> dict[str, Case]:
    """Every zoo case, built with fixed keys (a few ms each once jax's eager ops are compiled)."""
    keys = jax.random.split(jax.random.key(42), 8)
    img = jax.random.normal(keys[0], (B, 8, 8, 3))
    seq = jax.random.normal(keys[1], (B, 6, 4))
    vec = jax.random.normal(keys[2], (B, 8))
    emb = jax.random.normal(keys[3], (B, 6, 16))
    tokens = jax.random.randint(keys[4], (B, 6), 0, 50)
    resnet = ResNet()
    resnet_vars = resnet.init(jax.random.key(0), img, train=False)
    transformer = Transformer(rngs=nnx.Rngs(0))
    out = {
        "transformer_nnx": Case(
            "transformer_nnx", transformer, nnx.state(transformer, nnx.Param), emb
        ),
        "resnet_bn_train": Case(
            "resnet_bn_train",
            resnet,
            resnet_vars,
            img,
            {"train": True, "mutable": ["batch_stats"]},
        ),
        "resnet_bn_eval": Case("resnet_bn_eval", resnet, resnet_vars, img, {"train": False}),
        "plain_jax": Case("plain_jax", plain_apply, plain_init(keys[5]), vec),
    }
    for case in (
        _linen("lstm", RecurrentNet("lstm"), seq),
        _linen("gru", RecurrentNet("gru"), seq),
        _linen("depthwise_cnn", DepthwiseCNN(), img),
        _linen("conv1d", Conv1D(), jax.random.normal(keys[6], (B, 32, 4))),
        _linen("scan_mlp", ScanMLP(), vec),
        _linen("remat_mlp", RematMLP(), vec),
        _linen("ws_conv", WSCNN(), img),
        _linen("offset_dense", OffsetMLP(), vec),
        _linen("scale_invariant", ScaleInvariantMLP(), vec),
        _linen("conv_autoencoder", ConvAutoencoder(), img),
        _linen("embed_attention", EmbedAttention(), tokens),
        _linen("mlp_tiny_init", MLP6(kernel_scale=1e-3), vec, healthy=False),
    ):
        out[case.name] = case
    return out
