"""Framework presets: each framework's default initializers, exact to its conventions.

A ported model initialises as in its home framework when every parameter uses the matching
preset. Layout matters: PyTorch stores weights ``(out, in, *window)`` ("OIHW"); Flax, Keras/TF
and Haiku store ``(in, out)`` / ``(*window, in, out)`` ("HWIO"). The ``torch_*`` factories
take ``layout`` and default to PyTorch's own OIHW; pass ``layout='HWIO'`` to get PyTorch's
distributions on Flax-layout kernels (e.g. ``nn.Dense(kernel_init=torch_default_kernel(
layout='HWIO'))``). See ``docs/conventions.md`` for the side-by-side table.

Random streams differ between frameworks, so "exact" means same distribution, bounds, fans
and layout, not the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax.numpy as jnp

from jinit._src import initializers as _i
from jinit._src.gains import calculate_gain

Layout = Literal["OIHW", "HWIO"]
LAYOUTS = ("OIHW", "HWIO")

__all__ = [
    "Preset",
    "PRESETS",
    "get_preset",
    "torch_default_kernel",
    "torch_default_bias",
    "torch_kaiming_uniform",
    "torch_kaiming_normal",
    "torch_xavier_uniform",
    "torch_xavier_normal",
    "torch_orthogonal",
    "torch_trunc_normal",
    "torch_embedding",
    "torch_rnn_uniform",
    "keras_variance_scaling",
    "keras_random_uniform",
    "keras_random_normal",
    "keras_truncated_normal",
    "keras_lstm_bias",
    "haiku_default_kernel",
    "haiku_variance_scaling",
    "haiku_embedding",
    "flax_default_kernel",
    "flax_embedding",
]


def _axes(fn: str, layout: str) -> tuple[int, int]:
    _i.check_choice(fn, "layout", layout, LAYOUTS)
    return (1, 0) if layout == "OIHW" else (-2, -1)


def check_layout(fn: str, layout: str, shape: tuple[int, ...]) -> None:
    """Refuses a conv kernel whose shape contradicts ``layout``, where the shape can tell.

    For rank >= 4 (2-D and 3-D convolutions) the kernel is refused when the *other* layout reads
    a typical convolution (a square/cubic window smaller than both channel counts) while
    ``layout`` reads a window larger than its channels (each >= 2): e.g. a Flax HWIO
    ``(3, 3, 64, 128)`` read as OIHW, or a PyTorch ``(128, 64, 3, 3)`` read as HWIO. Ambiguous
    shapes (``(1, 1, 5, 5)``, ``(8, 8, 8, 8)``), dense kernels and 1-D convs pass unchecked.
    """
    if len(shape) < 4:
        return
    if layout == "OIHW":
        chans, window, o_chans, o_window = shape[:2], shape[2:], shape[-2:], shape[:-2]
    else:
        chans, window, o_chans, o_window = shape[-2:], shape[:-2], shape[:2], shape[2:]
    other_is_conv = len(set(o_window)) == 1 and max(o_window) < min(o_chans)
    if other_is_conv and min(chans) >= 2 and max(window) > max(chans):
        want = "HWIO" if layout == "OIHW" else "OIHW"
        raise ValueError(
            f"{fn}: layout={layout!r} contradicts the kernel shape {shape}: read as {layout} it "
            f"has a {'x'.join(map(str, window))} window over {chans} channels, while {want} reads "
            f"a {'x'.join(map(str, o_window))} window; expected a {layout} kernel (pass "
            f"layout={want!r} for this one)"
        )


def _layout_checked(fn: str, layout: str, base: _i.Initializer) -> _i.Initializer:
    def init(key, shape, dtype=None, out_sharding=None):
        check_layout(fn, layout, _i.canonicalize_shape(fn, shape))
        if dtype is None:  # keep the factory's default dtype
            return base(key, shape, out_sharding=out_sharding)
        return base(key, shape, dtype, out_sharding)

    return init


# --------------------------------------------------------------------------------------------
# PyTorch (torch.nn.init and the layers' reset_parameters).
# --------------------------------------------------------------------------------------------


def torch_kaiming_uniform(
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    dtype: Any = None,
    *,
    layout: Layout = "OIHW",
) -> _i.Initializer:
    r"""PyTorch ``kaiming_uniform_``: :math:`U(-b, b)`, :math:`b = g\sqrt{3/\text{fan}}`.

    :math:`g` = ``calculate_gain(nonlinearity, a)``; ``fan`` = fan_in or fan_out of the kernel
    in ``layout`` (PyTorch: ``fan_in = size(1) * prod(window)``).

    Args:
      a: negative slope of the rectifier (only used with ``'leaky_relu'``).
      mode: ``'fan_in'`` or ``'fan_out'``.
      nonlinearity: a :func:`jinit.calculate_gain` name.
      dtype: the initializer's default dtype.
      layout: ``'OIHW'`` (PyTorch, default) or ``'HWIO'`` (Flax).

    Returns:
      An initializer.

    Raises:
      ValueError: for an unknown mode, nonlinearity or layout.

    References:
      He et al., arXiv:1502.01852, 2015; PyTorch ``torch.nn.init.kaiming_uniform_``.
    """
    _i.check_choice("torch_kaiming_uniform", "mode", mode, ("fan_in", "fan_out"))
    gain = calculate_gain(nonlinearity, a)
    in_axis, out_axis = _axes("torch_kaiming_uniform", layout)
    return _layout_checked(
        "torch_kaiming_uniform",
        layout,
        _i.variance_scaling(
            gain**2, mode, "uniform", in_axis, out_axis, (), dtype, name="torch_kaiming_uniform"
        ),
    )


def torch_kaiming_normal(
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    dtype: Any = None,
    *,
    layout: Layout = "OIHW",
) -> _i.Initializer:
    r"""PyTorch ``kaiming_normal_``: :math:`\mathcal{N}(0, g^2/\text{fan})`, *untruncated*.

    Args:
      a: negative slope of the rectifier (only used with ``'leaky_relu'``).
      mode: ``'fan_in'`` or ``'fan_out'``.
      nonlinearity: a :func:`jinit.calculate_gain` name.
      dtype: the initializer's default dtype.
      layout: ``'OIHW'`` (default) or ``'HWIO'``.

    Returns:
      An initializer.

    Raises:
      ValueError: for an unknown mode, nonlinearity or layout.

    References:
      He et al., arXiv:1502.01852, 2015; PyTorch ``torch.nn.init.kaiming_normal_``.
    """
    _i.check_choice("torch_kaiming_normal", "mode", mode, ("fan_in", "fan_out"))
    gain = calculate_gain(nonlinearity, a)
    in_axis, out_axis = _axes("torch_kaiming_normal", layout)
    return _layout_checked(
        "torch_kaiming_normal",
        layout,
        _i.variance_scaling(
            gain**2, mode, "normal", in_axis, out_axis, (), dtype, name="torch_kaiming_normal"
        ),
    )


def torch_default_kernel(dtype: Any = None, *, layout: Layout = "OIHW") -> _i.Initializer:
    r"""PyTorch's default ``Linear``/``Conv*d`` weight: :math:`U(\pm 1/\sqrt{\text{fan\_in}})`.

    ``reset_parameters`` calls ``kaiming_uniform_(w, a=sqrt(5))``: gain
    :math:`\sqrt{2/(1+5)}`, bound :math:`\sqrt{1/3}\sqrt{3/\text{fan\_in}} =
    1/\sqrt{\text{fan\_in}}` (deliberate, see PyTorch issue #57109), variance
    :math:`1/(3\,\text{fan\_in})`. Equals ``he_uniform(negative_slope=sqrt(5))``.

    Args:
      dtype: the initializer's default dtype.
      layout: ``'OIHW'`` (default) or ``'HWIO'``.

    Returns:
      An initializer.
    """
    return torch_kaiming_uniform(math.sqrt(5.0), dtype=dtype, layout=layout)


def torch_default_bias(fan_in: int, dtype: Any = None) -> _i.Initializer:
    r"""PyTorch's default ``Linear``/``Conv*d`` bias: :math:`U(\pm 1/\sqrt{\text{fan\_in}})`.

    The bias shape does not carry the kernel's fan-in, so pass it (``in_features`` for Linear,
    ``in_channels // groups * prod(kernel_size)`` for Conv). ``fan_in = 0`` gives zeros.

    Args:
      fan_in: the fan-in of the layer's weight.
      dtype: the initializer's default dtype.

    Returns:
      An initializer.

    Raises:
      ValueError: if ``fan_in < 0``.
    """
    fan_in = _i.check_int("torch_default_bias", "fan_in", fan_in, minimum=0)
    if fan_in == 0:
        return _i.constant(0, dtype)
    return _i.uniform_symmetric(1.0 / math.sqrt(fan_in), dtype)


def torch_xavier_uniform(
    gain: float = 1.0, dtype: Any = None, *, layout: Layout = "OIHW"
) -> _i.Initializer:
    r"""PyTorch ``xavier_uniform_``: :math:`U(\pm g\sqrt{6/(\text{fan\_in}+\text{fan\_out})})`.

    Note PyTorch's packed attention in-projection ``(3E, E)`` gets fan_out = 3E here, as in
    PyTorch; for Q/K/V-equivalent statistics use :func:`jinit.glorot_uniform` with a
    ``batch_axis`` on a ``(E, 3, E)`` kernel.

    Args:
      gain: std multiplier.
      dtype: the initializer's default dtype.
      layout: ``'OIHW'`` (default) or ``'HWIO'``.

    Returns:
      An initializer.
    """
    _i.check_number("torch_xavier_uniform", "gain", gain, positive=True)
    in_axis, out_axis = _axes("torch_xavier_uniform", layout)
    return _layout_checked("torch_xavier_uniform", layout, _i.variance_scaling(
        float(gain) ** 2, "fan_avg", "uniform", in_axis, out_axis, (), dtype,
        name="torch_xavier_uniform",
    ))  # fmt: skip


def torch_xavier_normal(
    gain: float = 1.0, dtype: Any = None, *, layout: Layout = "OIHW"
) -> _i.Initializer:
    r"""PyTorch ``xavier_normal_``: untruncated :math:`\mathcal{N}(0, 2g^2/(n_{in}+n_{out}))`.

    Args:
      gain: std multiplier.
      dtype: the initializer's default dtype.
      layout: ``'OIHW'`` (default) or ``'HWIO'``.

    Returns:
      An initializer.
    """
    _i.check_number("torch_xavier_normal", "gain", gain, positive=True)
    in_axis, out_axis = _axes("torch_xavier_normal", layout)
    return _layout_checked("torch_xavier_normal", layout, _i.variance_scaling(
        float(gain) ** 2, "fan_avg", "normal", in_axis, out_axis, (), dtype,
        name="torch_xavier_normal",
    ))  # fmt: skip


def torch_orthogonal(
    gain: float = 1.0, dtype: Any = None, *, layout: Layout = "OIHW"
) -> _i.Initializer:
    r"""PyTorch ``orthogonal_``: the kernel flattened to ``(out, in*window)`` is semi-orthogonal.

    PyTorch flattens to ``(size(0), numel/size(0))``; in OIHW that is ``column_axis=0`` of
    :func:`jinit.orthogonal`, in HWIO ``column_axis=-1``.

    Args:
      gain: multiplier.
      dtype: the initializer's default dtype.
      layout: ``'OIHW'`` (default) or ``'HWIO'``.

    Returns:
      An initializer.
    """
    _i.check_choice("torch_orthogonal", "layout", layout, LAYOUTS)
    base = _i.orthogonal(gain, 0 if layout == "OIHW" else -1, dtype)
    return _layout_checked("torch_orthogonal", layout, base)


def torch_trunc_normal(
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    dtype: Any = None,
) -> _i.Initializer:
    r"""PyTorch ``trunc_normal_``: :math:`\mathcal{N}(\text{mean}, \text{std}^2)` truncated to
    the *absolute* interval :math:`[a, b]`.

    Unlike JAX/Keras ``truncated_normal`` (bounds in units of std), ``a`` and ``b`` are values:
    the common ``trunc_normal_(w, std=0.02)`` truncates at +-2 = 100 std, i.e. effectively not
    at all (sample std 0.02, not 0.0176). ``std`` is the std before truncation.

    Args:
      mean: mean of the underlying normal.
      std: std of the underlying normal (> 0).
      a: lower bound (absolute).
      b: upper bound (absolute).
      dtype: the initializer's default dtype.

    Returns:
      An initializer.

    Raises:
      ValueError: if ``std <= 0`` or ``a >= b``.

    References:
      PyTorch ``torch.nn.init.trunc_normal_``; timm ``trunc_normal_``.
    """
    _i.check_number("torch_trunc_normal", "std", std, positive=True)
    for n, v in (("mean", mean), ("a", a), ("b", b)):
        _i.check_number("torch_trunc_normal", n, v)
    if not float(a) < float(b):
        raise ValueError(f"torch_trunc_normal: need a < b, got a={a!r}, b={b!r}")
    lo, hi = (float(a) - float(mean)) / float(std), (float(b) - float(mean)) / float(std)
    base = _i.truncated_normal(std, dtype, lo, hi)

    def init(key, shape, dtype=dtype, out_sharding=None):
        dtype = _i.canonicalize_dtype(dtype)
        x = base(key, shape, _i.compute_dtype(dtype), out_sharding)
        return (x + jnp.array(mean, x.dtype)).astype(dtype)

    return init


def torch_embedding(dtype: Any = None) -> _i.Initializer:
    """PyTorch ``nn.Embedding`` default: :math:`\\mathcal{N}(0, 1)`.

    Args:
      dtype: the initializer's default dtype.

    Returns:
      An initializer.
    """
    return _i.normal(1.0, dtype)


def torch_rnn_uniform(hidden_size: int, dtype: Any = None) -> _i.Initializer:
    r"""PyTorch ``RNN``/``LSTM``/``GRU`` default for *every* weight and bias:
    :math:`U(\pm 1/\sqrt{H})`.

    Args:
      hidden_size: ``H``.
      dtype: the initializer's default dtype.

    Returns:
      An initializer.
    """
    h = _i.check_int("torch_rnn_uniform", "hidden_size", hidden_size)
    return _i.uniform_symmetric(1.0 / math.sqrt(h), dtype)


# --------------------------------------------------------------------------------------------
# Keras / TensorFlow.
# --------------------------------------------------------------------------------------------

_KERAS_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "normal", "uniform")


def _tf_fans(shape: tuple[int, ...]) -> tuple[float, float]:
    """Keras/TF/Haiku fans: rank 0 -> (1, 1), rank 1 -> (n, n), else JAX's default rule."""
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    return _i._fans.compute_fans(shape)


def _tf_variance_scaling(fn, scale, mode, dist, dtype):
    def init(key, shape, dtype=dtype, out_sharding=None):
        dtype = _i.canonicalize_dtype(dtype)
        _i.check_random_dtype(fn, dtype)
        _i.check_key(fn, "key", key)
        shape = _i.canonicalize_shape(fn, shape, dtype)
        if _i._is_empty(shape):
            return jnp.zeros(shape, dtype)
        fan_in, fan_out = _tf_fans(shape)
        var = scale / max(1.0, _i.fan_denominator(mode, fan_in, fan_out))
        return _i.sample_with_variance(key, shape, dtype, var, dist, out_sharding)

    return init


def keras_variance_scaling(
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    dtype: Any = None,
) -> _i.Initializer:
    r"""Keras/TF ``VarianceScaling``: variance ``scale / max(1, n)`` after truncation.

    Differences from :func:`jinit.variance_scaling`: ``distribution='normal'`` means the
    *truncated* normal (the TF1/Keras-2 alias, kept by ``tf.keras``), ``'untruncated_normal'``
    is the plain normal; rank-1 shapes use ``fan_in = fan_out = n`` and rank 0 uses 1 (TF's
    choice, whereas jinit's fan-based initializers raise); ``n`` is clamped at 1. Fans of
    rank >= 2 kernels: receptive field = all but the last two axes (HWIO).

    Args:
      scale: variance multiplier (> 0).
      mode: ``'fan_in'``, ``'fan_out'`` or ``'fan_avg'``.
      distribution: ``'truncated_normal'``, ``'normal'`` (= truncated), ``'untruncated_normal'``
        or ``'uniform'``.
      dtype: the initializer's default dtype.

    Returns:
      An initializer.

    Raises:
      ValueError: for an unknown mode/distribution or ``scale <= 0``.

    References:
      Keras ``keras.initializers.VarianceScaling``.
    """
    fn = "keras_variance_scaling"
    _i.check_number(fn, "scale", scale, positive=True)
    _i.check_choice(fn, "mode", mode, ("fan_in", "fan_out", "fan_avg"))
    _i.check_choice(fn, "distribution", distribution, _KERAS_DISTRIBUTIONS)
    dist = {"normal": "truncated_normal", "untruncated_normal": "normal"}.get(
        distribution, distribution
    )
    return _tf_variance_scaling(fn, float(scale), mode, dist, dtype)


def keras_random_uniform(
    minval: float = -0.05, maxval: float = 0.05, dtype: Any = None
) -> _i.Initializer:
    """Keras ``RandomUniform`` (the ``'uniform'`` string, Keras's Embedding default).

    Args:
      minval: lower bound.
      maxval: upper bound.
      dtype: the initializer's default dtype.

    Returns:
      An initializer sampling :math:`U[\\text{minval}, \\text{maxval})`.
    """
    return _i.uniform(dtype=dtype, minval=minval, maxval=maxval)


def keras_random_normal(mean: float = 0.0, stddev: float = 0.05, dtype: Any = None):
    """Keras ``RandomNormal`` (untruncated): :math:`\\mathcal{N}(\\text{mean}, \\text{stddev}^2)`.

    Args:
      mean: mean.
      stddev: std (> 0).
      dtype: the initializer's default dtype.

    Returns:
      An initializer.
    """
    return _i.normal(stddev, dtype, mean=mean)


def keras_truncated_normal(mean: float = 0.0, stddev: float = 0.05, dtype: Any = None):
    """Keras ``TruncatedNormal``: normal with pre-truncation std ``stddev``, cut at 2 std.

    Same convention as :func:`jinit.truncated_normal` (sample std 0.8796 * stddev).

    Args:
      mean: mean.
      stddev: std of the underlying normal.
      dtype: the initializer's default dtype.

    Returns:
      An initializer.
    """
    base = _i.truncated_normal(stddev, dtype)
    if float(mean) == 0.0:
        return base

    def init(key, shape, dtype=dtype, out_sharding=None):
        dtype = _i.canonicalize_dtype(dtype)
        x = base(key, shape, _i.compute_dtype(dtype), out_sharding)
        return (x + jnp.array(mean, x.dtype)).astype(dtype)

    return init


def keras_lstm_bias(
    unit_forget_bias: bool = True, gates: int = 4, forget_gate: int = 1, dtype: Any = None
) -> _i.Initializer:
    """Keras fused LSTM bias ``(4H,)``: zeros, and ones on the forget gate (gate order i, f, c, o).

    Keras ``LSTM(unit_forget_bias=True)`` (the default) adds 1 to the forget-gate bias
    (Jozefowicz et al. 2015). For Flax's ``LSTMCell`` (one Dense per gate) use
    ``constant(1.0)`` as the forget gate's ``bias_init`` instead.

    Args:
      unit_forget_bias: whether the forget block is 1 (else all zeros).
      gates: number of gate blocks in the fused vector.
      forget_gate: index of the forget block.
      dtype: the initializer's default dtype.

    Returns:
      An initializer (key ignored).

    Raises:
      ValueError: if the shape is not 1-D with a size divisible by ``gates``.

    References:
      Jozefowicz, Zaremba & Sutskever, "An Empirical Exploration of Recurrent Network
      Architectures", ICML 2015.
    """
    gates = _i.check_int("keras_lstm_bias", "gates", gates)
    forget_gate = _i.check_int("keras_lstm_bias", "forget_gate", forget_gate, minimum=0)
    if forget_gate >= gates:
        raise ValueError(f"keras_lstm_bias: forget_gate={forget_gate} must be < gates={gates}")

    def init(key, shape, dtype=dtype, out_sharding=None):
        del key
        dtype = _i.canonicalize_dtype(dtype)
        shape = _i.canonicalize_shape("keras_lstm_bias", shape, dtype)
        if len(shape) != 1 or shape[0] % gates:
            raise ValueError(
                f"keras_lstm_bias: needs a 1-D shape divisible by gates={gates}, got {shape}"
            )
        h = shape[0] // gates
        b = jnp.zeros(shape, dtype)
        if unit_forget_bias:
            b = b.at[forget_gate * h : (forget_gate + 1) * h].set(1)
        return b

    return init


# --------------------------------------------------------------------------------------------
# Haiku and Flax.
# --------------------------------------------------------------------------------------------


def haiku_default_kernel(dtype: Any = None) -> _i.Initializer:
    r"""Haiku ``Linear``/``ConvND`` default: uncorrected ``TruncatedNormal(1/sqrt(fan_in))``.

    :math:`\text{fan\_in} = \prod(\text{shape}[:-1])` (HWIO; ``in/groups`` for grouped convs).
    ``stddev`` is the *pre-truncation* std and truncation is at 2 std, so the samples have std
    :math:`0.8796/\sqrt{\text{fan\_in}}` -- unlike :func:`jinit.lecun_normal`, which corrects.

    Args:
      dtype: the initializer's default dtype.

    Returns:
      An initializer.

    Raises:
      ValueError: for rank < 2 shapes.

    References:
      Haiku ``hk.Linear`` / ``hk.ConvND`` (``w_init`` default).
    """
    fn = "haiku_default_kernel"

    def init(key, shape, dtype=dtype, out_sharding=None):
        dtype = _i.canonicalize_dtype(dtype)
        _i.check_random_dtype(fn, dtype, complex_ok=False)
        _i.check_key(fn, "key", key)
        shape = _i.canonicalize_shape(fn, shape, dtype)
        if len(shape) < 2:
            raise ValueError(f"{fn}: needs at least 2 dimensions, got rank {len(shape)} {shape}")
        fan_in = math.prod(shape[:-1])
        if fan_in == 0 or _i._is_empty(shape):
            return jnp.zeros(shape, dtype)
        return _i.truncated_normal(1.0 / math.sqrt(fan_in))(key, shape, dtype, out_sharding)

    return init


def haiku_variance_scaling(
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    dtype: Any = None,
) -> _i.Initializer:
    """Haiku ``VarianceScaling`` (truncated normal corrected by 0.8796; TF-style small-rank fans).

    Args:
      scale: variance multiplier (> 0).
      mode: ``'fan_in'``, ``'fan_out'`` or ``'fan_avg'``.
      distribution: ``'truncated_normal'``, ``'normal'`` (untruncated) or ``'uniform'``.
      dtype: the initializer's default dtype.

    Returns:
      An initializer.

    References:
      Haiku ``hk.initializers.VarianceScaling``.
    """
    fn = "haiku_variance_scaling"
    _i.check_number(fn, "scale", scale, positive=True)
    _i.check_choice(fn, "mode", mode, ("fan_in", "fan_out", "fan_avg"))
    _i.check_choice(fn, "distribution", distribution, _i.DISTRIBUTIONS)
    return _tf_variance_scaling(fn, float(scale), mode, distribution, dtype)


def haiku_embedding(dtype: Any = None) -> _i.Initializer:
    """Haiku ``Embed`` default: ``TruncatedNormal(stddev=1.0)`` (sample std 0.8796).

    Args:
      dtype: the initializer's default dtype.

    Returns:
      An initializer.
    """
    return _i.truncated_normal(1.0, dtype)


def flax_default_kernel(dtype: Any = None) -> _i.Initializer:
    """Flax ``Dense``/``Conv``/``*Cell`` input kernels: :func:`jinit.lecun_normal`.

    Args:
      dtype: the initializer's default dtype.

    Returns:
      An initializer.
    """
    return _i.lecun_normal(dtype=dtype)


def flax_embedding(dtype: Any = None) -> _i.Initializer:
    r"""Flax ``Embed`` default: ``variance_scaling(1.0, 'fan_in', 'normal', out_axis=0)``.

    For an embedding table ``(num_embeddings, features)`` both ``in_axis=-2`` and
    ``out_axis=0`` name axis 0, so fan_in = features and the std is
    :math:`1/\sqrt{\text{features}}` (untruncated).

    Args:
      dtype: the initializer's default dtype.

    Returns:
      An initializer.
    """
    return _i.variance_scaling(1.0, "fan_in", "normal", out_axis=0, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Named presets.
# --------------------------------------------------------------------------------------------


class Preset(NamedTuple):
    """One framework's default initializers by parameter role.

    Attributes:
      name: ``'pytorch'``, ``'keras'``, ``'haiku'`` or ``'flax'``.
      layout: kernel layout the initializers assume (``'OIHW'`` or ``'HWIO'``).
      dense_kernel: Linear/Dense weight.
      conv_kernel: convolution weight.
      bias: ``bias(fan_in) -> Initializer`` (PyTorch's depends on the fan-in; others ignore it).
      embedding: embedding table ``(num_embeddings, features)``.
      rnn_kernel: ``rnn_kernel(hidden_size) -> Initializer`` for recurrent input kernels.
      rnn_recurrent_kernel: ``rnn_recurrent_kernel(hidden_size) -> Initializer`` for the
        hidden-to-hidden kernel (Keras: orthogonal over the whole fused kernel).
      rnn_bias: ``rnn_bias(hidden_size) -> Initializer`` for SimpleRNN/GRU biases.
      lstm_bias: ``lstm_bias(hidden_size) -> Initializer`` for a fused ``(4H,)`` LSTM bias
        (Keras: forget block 1; Haiku adds its +1 in the forward pass instead).
    """

    name: str
    layout: str
    dense_kernel: _i.Initializer
    conv_kernel: _i.Initializer
    bias: Callable[[int], _i.Initializer]
    embedding: _i.Initializer
    rnn_kernel: Callable[[int], _i.Initializer]
    rnn_recurrent_kernel: Callable[[int], _i.Initializer]
    rnn_bias: Callable[[int], _i.Initializer]
    lstm_bias: Callable[[int], _i.Initializer]


def _const(init: _i.Initializer) -> Callable[[int], _i.Initializer]:
    return lambda _=0: init


def get_preset(name: str, layout: Layout | None = None) -> Preset:
    """Returns the named framework preset, optionally for another kernel layout.

    ======== =============== ================= ================ ============================
    preset   dense/conv      bias              embedding        recurrent (kernel, rec, bias)
    ======== =============== ================= ================ ============================
    pytorch  U(+-1/sqrt(fi)) U(+-1/sqrt(fi))   N(0, 1)          all U(+-1/sqrt(H))
    keras    glorot_uniform  zeros             U(-0.05, 0.05)   glorot_u, orthogonal, zeros
    haiku    TN(1/sqrt(fi))  zeros             TN(1)            as Linear, zeros
    flax     lecun_normal    zeros             N(0, 1/features) lecun_n, orthogonal, zeros
    ======== =============== ================= ================ ============================

    (TN = truncated normal with the given *pre-truncation* std, uncorrected.)

    Args:
      name: ``'pytorch'`` (alias ``'torch'``), ``'keras'`` (``'tf'``), ``'haiku'`` or
        ``'flax'``.
      layout: kernel layout; defaults to the framework's own (``'OIHW'`` for PyTorch,
        ``'HWIO'`` otherwise). Only PyTorch's kernels may be asked for another layout.

    Returns:
      A :class:`Preset`.

    Raises:
      ValueError: for an unknown name or layout.
    """
    canon = {"torch": "pytorch", "tf": "keras", "tensorflow": "keras"}.get(name, name)
    _i.check_choice("get_preset", "name", canon, ("pytorch", "keras", "haiku", "flax"))
    if canon == "pytorch":
        layout = layout or "OIHW"
        _i.check_choice("get_preset", "layout", layout, LAYOUTS)
        k = torch_default_kernel(layout=layout)
        return Preset(
            "pytorch", layout, k, k, torch_default_bias, torch_embedding(),
            torch_rnn_uniform, torch_rnn_uniform, torch_rnn_uniform, torch_rnn_uniform,
        )  # fmt: skip
    layout = layout or "HWIO"
    if layout != "HWIO":
        raise ValueError(
            f"get_preset: the {canon!r} preset only supports layout='HWIO', got {layout!r}"
        )
    zeros = _const(_i.zeros())
    if canon == "keras":
        g = _i.glorot_uniform()
        return Preset(
            "keras", "HWIO", g, g, zeros, keras_random_uniform(), _const(g),
            _const(_i.orthogonal()), zeros, _const(keras_lstm_bias()),
        )  # fmt: skip
    if canon == "haiku":
        k = haiku_default_kernel()
        return Preset(
            "haiku", "HWIO", k, k, zeros, haiku_embedding(), _const(k), _const(k), zeros, zeros
        )
    k = flax_default_kernel()
    return Preset(
        "flax", "HWIO", k, k, zeros, flax_embedding(), _const(k), _const(_i.orthogonal()),
        zeros, zeros,
    )  # fmt: skip


#: Every preset in its framework's native layout.
PRESETS = {n: get_preset(n) for n in ("pytorch", "keras", "haiku", "flax")}
