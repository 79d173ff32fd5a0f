"""Structured initializers JAX lacks: identity, Dirac, sparse, ZerO and convolution-orthogonal.

Same contract as :mod:`jinit._src.initializers`: factories that validate their arguments when
built and return a pure ``init(key, shape, dtype=None, out_sharding=None)``; shape arithmetic
is static Python, index arrays are small NumPy constants, and large matrices (Hadamard) are
computed with ``lax`` ops from iotas, never embedded as constants.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jinit._src.initializers import (
    DTypeLike,
    Initializer,
    _is_empty,
    _no_sharding,
    canonicalize_dtype,
    canonicalize_shape,
    check_choice,
    check_int,
    check_key,
    check_number,
    check_random_dtype,
    compute_dtype,
    fused,
    haar_orthogonal,
)

LAYOUTS = ("HWIO", "OIHW")
CENTERS = ("same", "torch")


def _layout_io(layout: str, shape: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
    """(in_axis, out_axis, spatial axes) of a kernel in ``layout``."""
    r = len(shape)
    if layout == "HWIO":
        return r - 2, r - 1, tuple(range(r - 2))
    return 1, 0, tuple(range(2, r))


def identity(gain: Any = 1.0, dtype: DTypeLike | None = None) -> Initializer:
    r"""Builds the identity initializer for 2-D kernels: :math:`W = \text{gain}\cdot I_{m\times n}`.

    Rectangular shapes get a zero-padded identity (``jnp.eye(m, n)``, like ``tf.eye`` and
    PyTorch's ``eye_``; Keras once tiled identity blocks, which is not done here). Any dtype is
    accepted (it is deterministic). Conv kernels are rejected: use :func:`dirac`.

    Args:
      gain: multiplier of the identity.
      dtype: the initializer's default dtype.

    Returns:
      An initializer (the key is ignored).

    Raises:
      ValueError: if the shape is not 2-D (the message names the rank and points to
        :func:`dirac`).

    References:
      Le, Jaitly & Hinton, "A Simple Way to Initialize Recurrent Networks of Rectified Linear
      Units", arXiv:1504.00941, 2015.
    """
    check_number("identity", "gain", gain)

    def init(key, shape, dtype=dtype, out_sharding=None):
        del key
        _no_sharding("identity", out_sharding)
        dtype = canonicalize_dtype(dtype)
        shape = canonicalize_shape("identity", shape, dtype)
        if len(shape) != 2:
            raise ValueError(
                f"identity: needs a 2-D shape, got rank {len(shape)} (shape {shape}); for "
                "3-5-D convolution kernels use jinit.dirac()"
            )
        cd = compute_dtype(dtype)
        return (jnp.eye(*shape, dtype=cd) * jnp.array(gain, cd)).astype(dtype)

    return init


eye = identity


def dirac(
    groups: int = 1,
    gain: Any = 1.0,
    dtype: DTypeLike | None = None,
    *,
    layout: Literal["HWIO", "OIHW"] = "HWIO",
    center: Literal["same", "torch"] = "same",
) -> Initializer:
    r"""Builds a Dirac (identity-convolution) initializer for 3-, 4- and 5-D kernels.

    .. math:: W[c, i, g\,n_\text{out}/G + i] = \text{gain}, \quad
       i < \min(n_\text{in}, n_\text{out}/G), \quad \text{all other entries } 0

    for every group ``g < G`` and centre tap ``c``: a convolution with this kernel copies as
    many input channels per group as possible (PyTorch ``dirac_``). Centre for window size
    ``k``: ``center='same'`` (default) puts it at ``(k-1)//2``, the tap that makes an XLA/Flax
    ``padding='SAME'`` convolution the exact identity (also ``delta_orthogonal``'s centre);
    ``center='torch'`` uses PyTorch's ``k//2``. They differ only for even windows.

    Args:
      groups: number of convolution groups ``G``; must divide the output channels.
      gain: value of the non-zero taps.
      dtype: the initializer's default dtype (any dtype; deterministic).
      layout: ``'HWIO'`` (Flax/TF: ``(*window, in/G, out)``) or ``'OIHW'`` (PyTorch:
        ``(out, in/G, *window)``).
      center: ``'same'`` or ``'torch'``, see above.

    Returns:
      An initializer (the key is ignored).

    Raises:
      ValueError: for a bad ``layout``/``center``/``groups`` at build time; at call time if
        the kernel is not 3-5-D or ``groups`` does not divide the output channels.

    References:
      PyTorch ``torch.nn.init.dirac_``. Zagoruyko & Komodakis, "DiracNets: Training Very Deep
      Neural Networks Without Skip-Connections", arXiv:1706.00388, 2017.
    """
    groups = check_int("dirac", "groups", groups)
    check_number("dirac", "gain", gain)
    check_choice("dirac", "layout", layout, LAYOUTS)
    check_choice("dirac", "center", center, CENTERS)

    def init(key, shape, dtype=dtype, out_sharding=None):
        del key
        _no_sharding("dirac", out_sharding)
        dtype = canonicalize_dtype(dtype)
        shape = canonicalize_shape("dirac", shape, dtype)
        if len(shape) not in (3, 4, 5):
            raise ValueError(
                f"dirac: needs a 3-D, 4-D or 5-D convolution kernel, got rank {len(shape)} "
                f"(shape {shape}); for 2-D matrices use jinit.identity()"
            )
        in_ax, out_ax, sp = _layout_io(layout, shape)
        n_in, n_out = shape[in_ax], shape[out_ax]
        if n_out % groups:
            raise ValueError(
                f"dirac: groups={groups} does not divide the {n_out} output channels of {shape}"
            )
        out_pg = n_out // groups
        m = min(n_in, out_pg)
        cd = compute_dtype(dtype)
        w = jnp.zeros(shape, cd)
        if m == 0 or _is_empty(shape):
            return w.astype(dtype)
        d = np.tile(np.arange(m), groups)
        o = np.repeat(np.arange(groups) * out_pg, m) + d
        idx: list[Any] = [None] * len(shape)
        idx[in_ax], idx[out_ax] = d, o
        for a in sp:
            k = shape[a]
            idx[a] = (k - 1) // 2 if center == "same" else k // 2
        return w.at[tuple(idx)].set(jnp.array(gain, cd)).astype(dtype)

    return init


def sparse(
    sparsity: float | None = None,
    stddev: Any = 0.01,
    dtype: DTypeLike | None = None,
    *,
    num_nonzero: int | None = None,
) -> Initializer:
    r"""Builds the sparse initializer of Martens (2010) / PyTorch ``sparse_`` for 2-D kernels.

    Each column ``W[:, j]`` gets exactly ``z`` zeros at uniformly random rows and
    :math:`\mathcal{N}(0, \text{stddev}^2)` values elsewhere, with
    ``z = ceil(sparsity * rows)`` (PyTorch) or ``z = rows - num_nonzero`` (Martens: 15
    non-zero incoming weights per unit). In Flax's ``(in, out)`` layout a column is one output
    unit, so ``num_nonzero`` is the number of its non-zero *incoming* weights (Martens'
    definition); on PyTorch's ``(out, in)`` layout the same call zeroes rows per column exactly
    as ``torch.nn.init.sparse_`` does. Element variance: :math:`(1 - z/\text{rows})\,
    \text{stddev}^2`.

    Args:
      sparsity: fraction of zeros per column, in [0, 1).
      stddev: std of the non-zero entries.
      dtype: the initializer's default dtype.
      num_nonzero: number of non-zeros per column (keyword-only; exclusive with ``sparsity``).

    Returns:
      An initializer.

    Raises:
      ValueError: at build time unless exactly one of ``sparsity``/``num_nonzero`` is given
        and in range; at call time for non-2-D shapes.
      TypeError: for integer or bool dtypes.

    References:
      Martens, "Deep learning via Hessian-free optimization", ICML 2010.
    """
    if (sparsity is None) == (num_nonzero is None):
        raise ValueError(
            f"sparse: pass exactly one of sparsity (got {sparsity!r}) or num_nonzero "
            f"(got {num_nonzero!r})"
        )
    if sparsity is not None:
        check_number("sparse", "sparsity", sparsity, nonnegative=True)
        if not float(sparsity) < 1.0:
            raise ValueError(f"sparse: sparsity must be in [0, 1), got {sparsity!r}")
    else:
        num_nonzero = check_int("sparse", "num_nonzero", num_nonzero, minimum=1)
    check_number("sparse", "stddev", stddev, nonnegative=True)

    def init(key, shape, dtype=dtype, out_sharding=None):
        _no_sharding("sparse", out_sharding)
        dtype = canonicalize_dtype(dtype)
        check_random_dtype("sparse", dtype, complex_ok=False)
        check_key("sparse", "key", key)
        shape = canonicalize_shape("sparse", shape, dtype)
        if len(shape) != 2:
            raise ValueError(f"sparse: needs a 2-D shape, got rank {len(shape)} (shape {shape})")
        rows = shape[0]
        if sparsity is not None:
            n_zeros = int(math.ceil(float(sparsity) * rows))
        else:
            n_zeros = max(rows - num_nonzero, 0)
        return _sparse.call(key, stddev, shape, dtype, n_zeros)

    return init


@fused(static_argnums=(2, 3, 4))
def _sparse(key, stddev, shape, dtype, n_zeros, *, eager=False):
    cd = compute_dtype(dtype)
    k_val, k_pos = jax.random.split(key)
    w = jax.random.normal(k_val, shape, cd) * jnp.array(stddev, cd)
    if n_zeros and not _is_empty(shape):
        u = jax.random.uniform(k_pos, shape, cd)
        zero_rows = jnp.argsort(u, axis=0)[:n_zeros]  # (n_zeros, cols)
        w = w.at[zero_rows, np.arange(shape[1])[None, :]].set(0)
    return w.astype(dtype)


def _hadamard_block(n_rows: int, n_cols: int, dtype) -> jax.Array:
    """``H[:n_rows, :n_cols]`` of the Sylvester Hadamard matrix: (-1)**popcount(i & j)."""
    i = lax.broadcasted_iota(jnp.uint32, (n_rows, n_cols), 0)
    j = lax.broadcasted_iota(jnp.uint32, (n_rows, n_cols), 1)
    parity = lax.population_count(lax.bitwise_and(i, j)) & jnp.uint32(1)
    return (1 - 2 * parity.astype(jnp.int32)).astype(dtype)


def zero_hadamard(
    dtype: DTypeLike | None = None,
    *,
    layout: Literal["HWIO", "OIHW"] = "HWIO",
) -> Initializer:
    r"""Builds the deterministic ZerO initializer (Zhao et al. 2022): only zeros, ones, Hadamard.

    For a layer mapping ``n_in`` to ``n_out`` features, with the paper's ``(out, in)`` matrix
    :math:`M`:

    * :math:`n_\text{out} \le n_\text{in}`: :math:`M = I^*` (partial identity ``eye(out, in)``);
    * :math:`n_\text{out} > n_\text{in}`: :math:`M = c\, I^*_{n_\text{out}\times 2^m}\, H_m\,
      I^*_{2^m\times n_\text{in}}`, :math:`m = \lceil\log_2 n_\text{out}\rceil`, :math:`H_m` the
      Sylvester Hadamard matrix (:math:`H_{ij} = (-1)^{\text{popcount}(i \,\&\, j)}`), and
      :math:`c = 2^{-m/2}` (so :math:`c H_m` is orthogonal). This follows the authors'
      reference code (``example_mnist.ipynb``); the paper's Algorithm 1 prints
      :math:`c = 2^{-(m-1)/2}`.

    Kernels are stored transposed in Flax (``(in, out)``, ``layout='HWIO'``); for 3-5-D
    convolution kernels the matrix is placed at the centre tap ``(k-1)//2`` and every other tap
    is 0 (Algorithm 2). The key is ignored: every call returns the same array.

    Args:
      dtype: the initializer's default dtype (floating).
      layout: ``'HWIO'`` (``(*window, in, out)``) or ``'OIHW'`` (``(out, in, *window)``).

    Returns:
      An initializer.

    Raises:
      ValueError: for a bad ``layout`` or a rank < 2 shape.
      TypeError: for integer or bool dtypes (the Hadamard branch is not integer-valued).

    References:
      Zhao, Schafer & Anandkumar, "ZerO Initialization: Initializing Neural Networks with only
      Zeros and Ones", arXiv:2110.12661, TMLR 2022.
    """
    check_choice("zero_hadamard", "layout", layout, LAYOUTS)

    def init(key, shape, dtype=dtype, out_sharding=None):
        del key
        _no_sharding("zero_hadamard", out_sharding)
        dtype = canonicalize_dtype(dtype)
        check_random_dtype("zero_hadamard", dtype, complex_ok=False)
        shape = canonicalize_shape("zero_hadamard", shape, dtype)
        if len(shape) < 2:
            raise ValueError(
                f"zero_hadamard: needs a shape with at least 2 dimensions, got rank "
                f"{len(shape)} (shape {shape})"
            )
        in_ax, out_ax, sp = _layout_io(layout, shape)
        n_in, n_out = shape[in_ax], shape[out_ax]
        cd = compute_dtype(dtype)
        if _is_empty(shape):
            return jnp.zeros(shape, dtype)
        if n_out <= n_in:
            m_io = jnp.eye(n_in, n_out, dtype=cd)  # (in, out) = (eye(out, in)).T
        else:
            m = math.ceil(math.log2(n_out))
            c = 2.0 ** (-m / 2)
            # Hadamard is symmetric, so (M.T)[j, i] = c * H[i, j] = c * H[j, i].
            m_io = _hadamard_block(n_in, n_out, cd) * jnp.array(c, cd)
        if not sp:
            w = m_io if layout == "HWIO" else m_io.T
            return w.astype(dtype)
        centre = tuple((shape[a] - 1) // 2 for a in sp)
        if layout == "HWIO":
            w = jnp.zeros(shape, cd).at[centre].set(m_io)
        else:
            w = jnp.zeros(shape, cd).at[(slice(None), slice(None), *centre)].set(m_io.T)
        return w.astype(dtype)

    return init


def conv_orthogonal(scale: Any = 1.0, dtype: DTypeLike | None = None) -> Initializer:
    r"""Builds a convolution-orthogonal kernel (Xiao et al. 2018, block-orthogonal construction).

    Unlike :func:`jinit.delta_orthogonal` (orthogonal centre tap, zeros elsewhere) every tap is
    non-zero, yet the convolution with circular padding is an isometry: for a kernel
    ``(*window, in, out)`` with ``in <= out`` its symbol
    :math:`\hat K(\omega) = \sum_t K_t e^{i\omega\cdot t}` satisfies
    :math:`\hat K(\omega)\hat K(\omega)^* = \text{scale}^2 I_\text{in}` for every frequency.

    Construction (as TF's ``ConvolutionOrthogonal{1,2,3}D``, generalised to any window):
    start from the 1-tap identity kernel and, for each round ``r`` and spatial dim ``d`` with
    ``r < k_d - 1``, matrix-convolve with the 2-tap paraunitary factor ``(P, I - P)`` along
    ``d``, where :math:`P = Q D Q^T` is a random orthogonal projection (:math:`Q` Haar,
    :math:`D` a random 0/1 diagonal). Finally every tap is multiplied on the left by a random
    row-orthonormal ``(in, out)`` matrix and by ``scale``. QR runs in float32 for 16-bit dtypes.

    Args:
      scale: singular value of the convolution operator.
      dtype: the initializer's default dtype (real floating).

    Returns:
      An initializer.

    Raises:
      ValueError: if the kernel is not 3-5-D or ``in > out``.
      TypeError: for integer, bool or complex dtypes.

    References:
      Xiao et al., "Dynamical Isometry and a Mean Field Theory of CNNs: How to Train
      10,000-Layer Vanilla Convolutional Neural Networks", arXiv:1806.05393, 2018 (Alg. 1,
      block-orthogonal convolution).
    """
    check_number("conv_orthogonal", "scale", scale)
    name = "conv_orthogonal"

    def init(key, shape, dtype=dtype, out_sharding=None):
        _no_sharding(name, out_sharding)
        dtype = canonicalize_dtype(dtype)
        check_random_dtype(name, dtype, complex_ok=False)
        check_key(name, "key", key)
        shape = canonicalize_shape(name, shape, dtype)
        if len(shape) not in (3, 4, 5):
            raise ValueError(
                f"{name}: needs a 3-D, 4-D or 5-D kernel (*window, in, out), got rank "
                f"{len(shape)} (shape {shape})"
            )
        n_in, n_out = shape[-2], shape[-1]
        if n_in > n_out:
            raise ValueError(
                f"{name}: needs in <= out, got in={n_in} > out={n_out} for shape {shape}"
            )
        if _is_empty(shape):
            return jnp.zeros(shape, dtype)
        return _conv_orthogonal.call(key, scale, shape, dtype)

    return init


@fused(static_argnums=(2, 3))
def _conv_orthogonal(key, scale, shape, dtype, *, eager=False):
    window, n_in, n_out = shape[:-2], shape[-2], shape[-1]
    cd = compute_dtype(dtype)
    steps = [
        (r, d) for r in range(max(window) - 1) for d in range(len(window)) if r < window[d] - 1
    ]
    k_orth, k_q, k_mask = jax.random.split(key, 3)
    orth = jax.random.orthogonal(k_orth, n_in, (), cd, n_out)  # (in, out), rows orthonormal
    p = jnp.eye(n_out, dtype=cd).reshape((1,) * len(window) + (n_out, n_out))
    if steps:
        qs = haar_orthogonal(k_q, n_out, n_out, (len(steps),), cd)
        masks = jax.random.bernoulli(k_mask, 0.5, (len(steps), n_out)).astype(cd)
        projs = jnp.einsum("sij,sj,skj->sik", qs, masks, qs)
        for s, (_, d) in enumerate(steps):
            kp = p @ projs[s]  # taps (..., n, n) @ (n, n)
            pad_lo = [(0, 0)] * p.ndim
            pad_hi = [(0, 0)] * p.ndim
            pad_lo[d] = (0, 1)
            pad_hi[d] = (1, 0)
            p = jnp.pad(kp, pad_lo) + jnp.pad(p - kp, pad_hi)
    w = jnp.einsum("io,...oj->...ij", orth, p) * jnp.array(scale, cd)
    return w.astype(dtype)
