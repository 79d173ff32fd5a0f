"""Fan conventions for every Flax layer with a kernel, checked on the real layer.

Each row instantiates a linen or NNX layer with a recording initializer, so the test sees the
exact shape the layer passes to ``kernel_init`` (DenseGeneral/LinearGeneral and the attention
projections pass a *flattened* 2-D shape; Einsum, ConvLocal and NNX's fused recurrent cells
pass shapes whose default fans are wrong). It then checks

* the layout: the shape the layer asks for;
* the fans jinit computes with the row's axes (the layer's true fan-in/fan-out, derived from its
  hyper-parameters) and with the default axes;
* the variance each framework preset draws on that shape (Flax/JAX ``lecun_normal``, PyTorch's
  default Linear/Conv init, Keras ``glorot_uniform``, Haiku's uncorrected truncated normal),
  measured against the preset's own formula (within 6%, >= 32768 draws).

docs/conventions.md holds the same table in words.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jinit

KEY = jax.random.key(0)
TN_VAR = jinit.TRUNCATED_NORMAL_STD**2  # variance of a +-2-truncated standard normal


class _Recorder:
    """kernel_init/recurrent_kernel_init stand-ins that record the shapes asked for."""

    def __init__(self):
        self.seen: dict[str, list[tuple[int, ...]]] = {}

    def __call__(self, tag):
        def init(key, shape, dtype=jnp.float32, out_sharding=None):
            self.seen.setdefault(tag, []).append(tuple(int(d) for d in shape))
            return jnp.zeros(shape, dtype)

        return init


def _linen(module_fn, *inputs):
    def run(rec):
        m = module_fn(rec)
        jax.eval_shape(m.init, KEY, *inputs)

    return run


def _cell(cls, hidden, n_in):
    def run(rec):
        c = cls(hidden, kernel_init=rec("kernel"), recurrent_kernel_init=rec("recurrent"))
        carry = c.initialize_carry(KEY, (1, n_in))
        jax.eval_shape(c.init, KEY, carry, jnp.ones((1, n_in)))

    return run


def _nnx(module_fn):
    return lambda rec: module_fn(rec)


R = nnx.Rngs(0)

# (id, run(recorder), tag, shape the layer asks for, true (fan_in, fan_out), jinit kwargs)
LAYERS = [
    ("linen.Dense", _linen(lambda r: nn.Dense(256, kernel_init=r("kernel")), jnp.ones((1, 128))),
     "kernel", (128, 256), (128, 256), {}),
    ("linen.DenseGeneral_out(8,32)", _linen(lambda r: nn.DenseGeneral(
        (8, 32), kernel_init=r("kernel")), jnp.ones((1, 128))), "kernel", (128, 256),
     (128, 256), {}),
    ("linen.DenseGeneral_in(8,32)", _linen(lambda r: nn.DenseGeneral(
        128, axis=(-2, -1), kernel_init=r("kernel")), jnp.ones((1, 8, 32))), "kernel",
     (256, 128), (256, 128), {}),
    ("linen.Einsum_bi,ihd", _linen(lambda r: nn.Einsum(
        (128, 8, 32), "bi,ihd->bhd", kernel_init=r("kernel")), jnp.ones((1, 128))), "kernel",
     (128, 8, 32), (128, 256), dict(in_axis=0, out_axis=(1, 2))),
    ("linen.Conv1D", _linen(lambda r: nn.Conv(64, (5,), kernel_init=r("kernel")),
                            jnp.ones((1, 8, 128))), "kernel", (5, 128, 64), (640, 320), {}),
    ("linen.Conv2D", _linen(lambda r: nn.Conv(64, (3, 3), kernel_init=r("kernel")),
                            jnp.ones((1, 8, 8, 64))), "kernel", (3, 3, 64, 64), (576, 576), {}),
    ("linen.Conv3D", _linen(lambda r: nn.Conv(32, (3, 3, 3), kernel_init=r("kernel")),
                            jnp.ones((1, 4, 4, 4, 64))), "kernel", (3, 3, 3, 64, 32),
     (1728, 864), {}),
    ("linen.Conv2D_groups4", _linen(lambda r: nn.Conv(
        256, (3, 3), feature_group_count=4, kernel_init=r("kernel")), jnp.ones((1, 8, 8, 128))),
     "kernel", (3, 3, 32, 256), (288, 576), dict(groups=4)),
    ("linen.ConvTranspose1D", _linen(lambda r: nn.ConvTranspose(
        64, (5,), kernel_init=r("kernel")), jnp.ones((1, 8, 128))), "kernel", (5, 128, 64),
     (640, 320), {}),
    ("linen.ConvTranspose2D", _linen(lambda r: nn.ConvTranspose(
        64, (3, 3), kernel_init=r("kernel")), jnp.ones((1, 8, 8, 64))), "kernel",
     (3, 3, 64, 64), (576, 576), {}),
    ("linen.ConvTranspose3D", _linen(lambda r: nn.ConvTranspose(
        32, (3, 3, 3), kernel_init=r("kernel")), jnp.ones((1, 4, 4, 4, 64))), "kernel",
     (3, 3, 3, 64, 32), (1728, 864), {}),
    ("linen.ConvLocal2D", _linen(lambda r: nn.ConvLocal(
        32, (3, 3), padding="VALID", kernel_init=r("kernel")), jnp.ones((1, 10, 10, 16))),
     "kernel", (8, 8, 144, 32), (144, 32), dict(batch_axis=(0, 1))),
    ("linen.MultiHeadDotProductAttention", _linen(lambda r: nn.MultiHeadDotProductAttention(
        num_heads=8, qkv_features=256, out_features=128, kernel_init=r("kernel")),
        jnp.ones((1, 3, 128))), "kernel[:3]", (128, 256), (128, 256), {}),
    ("linen.MultiHeadDotProductAttention_out", _linen(
        lambda r: nn.MultiHeadDotProductAttention(num_heads=8, qkv_features=256,
                                                  out_features=128, kernel_init=r("kernel")),
        jnp.ones((1, 3, 128))), "kernel[3:]", (256, 128), (256, 128), {}),
    ("linen.LSTMCell", _cell(nn.LSTMCell, 256, 128), "kernel", (128, 256), (128, 256), {}),
    ("linen.OptimizedLSTMCell", _cell(nn.OptimizedLSTMCell, 256, 128), "kernel", (128, 256),
     (128, 256), {}),
    ("linen.GRUCell", _cell(nn.GRUCell, 256, 128), "kernel", (128, 256), (128, 256), {}),
    ("linen.SimpleCell", _cell(nn.SimpleCell, 256, 128), "recurrent", (256, 256), (256, 256),
     {}),
    ("nnx.Linear", _nnx(lambda r: nnx.Linear(128, 256, kernel_init=r("kernel"), rngs=R)),
     "kernel", (128, 256), (128, 256), {}),
    ("nnx.LinearGeneral", _nnx(lambda r: nnx.LinearGeneral(
        (8, 32), 128, axis=(-2, -1), kernel_init=r("kernel"), rngs=R)), "kernel", (256, 128),
     (256, 128), {}),
    ("nnx.Einsum", _nnx(lambda r: nnx.Einsum(
        "bi,ihd->bhd", (128, 8, 32), kernel_init=r("kernel"), rngs=R)), "kernel",
     (128, 8, 32), (128, 256), dict(in_axis=0, out_axis=(1, 2))),
    ("nnx.Conv2D", _nnx(lambda r: nnx.Conv(64, 64, (3, 3), kernel_init=r("kernel"), rngs=R)),
     "kernel", (3, 3, 64, 64), (576, 576), {}),
    ("nnx.ConvTranspose2D", _nnx(lambda r: nnx.ConvTranspose(
        64, 64, (3, 3), kernel_init=r("kernel"), rngs=R)), "kernel", (3, 3, 64, 64),
     (576, 576), {}),
    ("nnx.MultiHeadAttention", _nnx(lambda r: nnx.MultiHeadAttention(
        num_heads=8, in_features=128, qkv_features=256, out_features=128,
        kernel_init=r("kernel"), decode=False, rngs=R)), "kernel[:3]", (128, 256), (128, 256),
     {}),
    ("nnx.MultiHeadAttention_out", _nnx(lambda r: nnx.MultiHeadAttention(
        num_heads=8, in_features=128, qkv_features=256, out_features=128,
        kernel_init=r("kernel"), decode=False, rngs=R)), "kernel[3:]", (256, 128), (256, 128),
     {}),
    ("nnx.LSTMCell", _nnx(lambda r: nnx.LSTMCell(
        128, 256, kernel_init=r("kernel"), recurrent_kernel_init=r("recurrent"), rngs=R)),
     "kernel", (128, 256), (128, 256), {}),
    ("nnx.OptimizedLSTMCell", _nnx(lambda r: nnx.OptimizedLSTMCell(
        128, 256, kernel_init=r("kernel"), recurrent_kernel_init=r("recurrent"), rngs=R)),
     "kernel", (128, 1024), (128, 256), dict(groups=4)),
    ("nnx.GRUCell", _nnx(lambda r: nnx.GRUCell(
        128, 256, kernel_init=r("kernel"), recurrent_kernel_init=r("recurrent"), rngs=R)),
     "kernel", (128, 768), (128, 256), dict(groups=3)),
    ("nnx.SimpleCell", _nnx(lambda r: nnx.SimpleCell(
        128, 256, kernel_init=r("kernel"), recurrent_kernel_init=r("recurrent"), rngs=R)),
     "kernel", (128, 256), (128, 256), {}),
]  # fmt: skip


def _default_fans(shape):
    """Fans under JAX's (and PyTorch's, Keras's) shape rule: in=-2, out=-1, rest receptive."""
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _preset_variance(preset, shape):
    """Each framework's own formula on the shape it is handed (independent of jinit)."""
    fan_in, fan_out = _default_fans(shape)
    return {
        "flax": 1 / fan_in,  # lecun_normal, truncation-corrected
        "pytorch": 1 / (3 * fan_in),  # kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in))
        "keras": 2 / (fan_in + fan_out),  # glorot_uniform
        "haiku": TN_VAR / math.prod(shape[:-1]),  # TruncatedNormal(1/sqrt(fan_in)), uncorrected
    }[preset]


PRESETS = {
    "flax": jinit.flax_default_kernel(),
    "pytorch": jinit.torch_default_kernel(layout="HWIO"),
    "keras": jinit.get_preset("keras").dense_kernel,
    "haiku": jinit.haiku_default_kernel(),
}


def _seen(run, tag):
    """The shapes recorded for ``tag``; ``'kernel[:3]'`` keeps the first three calls."""
    rec = _Recorder()
    run(rec)
    name, _, part = tag.partition("[")
    seen = rec.seen[name]
    if part:
        lo, hi = (int(x) if x else None for x in part.rstrip("]").split(":"))
        seen = seen[lo:hi]
    return seen


@pytest.mark.parametrize("lid,run,tag,shape,fans,axes", LAYERS, ids=[r[0] for r in LAYERS])
def test_layer_layout_and_fans(lid, run, tag, shape, fans, axes):
    seen = _seen(run, tag)
    assert set(seen) == {shape}, (lid, seen)  # every kernel of this role has this layout
    assert jinit.compute_fans(shape, **axes) == fans
    if not axes:  # the default rule is right for this layer
        assert _default_fans(shape) == fans


@pytest.mark.parametrize("lid,run,tag,shape,fans,axes", LAYERS, ids=[r[0] for r in LAYERS])
def test_preset_variance_on_layer(lid, run, tag, shape, fans, axes):
    (shape,) = set(_seen(run, tag))
    n = math.prod(shape)
    reps = max(1, -(-32768 // n))
    keys = jax.random.split(jax.random.key(7), reps)
    for name, init in PRESETS.items():
        w = np.asarray(jax.vmap(lambda k, i=init: i(k, shape))(keys), np.float64)
        want = _preset_variance(name, shape)
        np.testing.assert_allclose(w.var(), want, rtol=0.06, err_msg=f"{lid} {name}")
    # jinit with the row's axes draws the layer's true LeCun variance 1 / fan_in.
    w = np.asarray(jax.vmap(lambda k: jinit.lecun_normal(**axes)(k, shape))(keys), np.float64)
    np.testing.assert_allclose(w.var(), 1 / fans[0], rtol=0.06, err_msg=lid)


def test_embed_presets_on_real_layers():
    # Embedding tables (num_embeddings, features) have no fan-in (one-hot inputs): Flax scales
    # by features (its default init lists axis 0 as both in and out axis), PyTorch N(0, 1),
    # Keras U(-0.05, 0.05), Haiku TruncatedNormal(1) (uncorrected).
    want = {"flax": 1 / 64, "pytorch": 1.0, "keras": 0.05**2 / 3, "haiku": TN_VAR}
    for name, w in want.items():
        init = jinit.get_preset(name).embedding
        e = nn.Embed(1000, 64, embedding_init=init).init(KEY, jnp.zeros((1,), jnp.int32))
        np.testing.assert_allclose(np.var(e["params"]["embedding"]), w, rtol=0.06, err_msg=name)
        e = nnx.Embed(1000, 64, embedding_init=init, rngs=nnx.Rngs(1)).embedding[...]
        np.testing.assert_allclose(np.var(e), w, rtol=0.06, err_msg=name)


def test_stored_attention_kernels_need_explicit_axes_for_reinit():
    # The attention projections are *drawn* flat (128, 256) but *stored* (128, 8, 32) (q/k/v)
    # and (8, 32, 128) (out). Re-initialising the stored kernels needs the einsum axes; the
    # default axes read (8, 32) as (in, out) with a receptive field of 128.
    m = nn.MultiHeadDotProductAttention(num_heads=8, qkv_features=256, out_features=128)
    params = m.init(KEY, jnp.ones((1, 3, 128)))
    assert params["params"]["query"]["kernel"].shape == (128, 8, 32)
    assert params["params"]["out"]["kernel"].shape == (8, 32, 128)
    assert jinit.compute_fans((128, 8, 32)) == (8 * 128, 32 * 128)  # the failure mode
    rules = [
        (r"(query|key|value)/kernel$", jinit.lecun_normal(in_axis=0, out_axis=(1, 2))),
        (r"out/kernel$", jinit.lecun_normal(in_axis=(0, 1), out_axis=2)),
    ]
    new = jinit.reinit(params, rules, jax.random.key(2))["params"]
    for name, fan_in in [("query", 128), ("key", 128), ("value", 128), ("out", 256)]:
        np.testing.assert_allclose(np.var(new[name]["kernel"]), 1 / fan_in, rtol=0.06)


def test_fused_recurrent_kernels_per_gate():
    # NNX's OptimizedLSTMCell/GRUCell fuse the gates: (in, 4H) / (H, 4H). groups=4 gives the
    # per-gate fan_out; orthogonal(per_gate=4) makes every gate block orthogonal (plain
    # orthogonal only makes the fused (H, 4H) matrix row-orthonormal).
    cell = nnx.OptimizedLSTMCell(
        16, 32, recurrent_kernel_init=jinit.orthogonal(per_gate=4), rngs=nnx.Rngs(0)
    )
    (w,) = [v[...] for _, v in nnx.iter_graph(cell) if isinstance(v, nnx.Param)
            and v[...].shape == (32, 128)]  # fmt: skip
    for g in range(4):
        block = np.asarray(w[:, 32 * g : 32 * (g + 1)], np.float64)
        np.testing.assert_allclose(block.T @ block, np.eye(32), atol=1e-5)
    assert jinit.compute_fans((16, 128), groups=4) == (16, 32)


LEGIT = {
    "OIHW": [(64, 3, 7, 7), (128, 128, 1, 7), (16, 16, 3, 3), (1, 1, 5, 5), (8, 8, 8, 8),
             (32, 16, 3, 3, 3), (4, 1, 16), (256, 512)],
    "HWIO": [(3, 3, 64, 128), (7, 7, 3, 64), (1, 7, 128, 128), (5, 5, 1, 1), (3, 3, 3, 16, 32),
             (16, 1, 4), (512, 256)],
}  # fmt: skip


def test_torch_layout_check_has_no_false_positives():
    # Real kernels of each layout pass; the same conv kernels read in the other layout fail.
    for layout, shapes in LEGIT.items():
        init = jinit.torch_default_kernel(layout=layout)
        other = jinit.torch_default_kernel(layout="HWIO" if layout == "OIHW" else "OIHW")
        for shape in shapes:
            assert jax.eval_shape(lambda k, s=shape, i=init: i(k, s), KEY).shape == shape
        for shape in [(64, 32, 3, 3), (128, 64, 5, 5), (32, 16, 3, 3, 3)]:
            flipped = shape[2:] + shape[:2][::-1] if layout == "OIHW" else None
            if flipped is None:
                continue
            with pytest.raises(ValueError, match="layout='HWIO'"):
                other(KEY, shape)  # an OIHW kernel given to an HWIO preset
            with pytest.raises(ValueError, match="layout='OIHW'"):
                init(KEY, flipped)  # an HWIO kernel given to the OIHW preset
