r"""Fixup: initialising a residual network so that it trains without normalization.

Zhang, Dauphin & Ma (2019) show that a ResNet without normalization and with a standard
(He) initialization starts with an output variance that grows exponentially with the number of
residual branches, and replace normalization by three rules:

1. the classification layer and the last layer of every residual branch start at 0
   (``jinit.zeros()``);
2. every other layer uses a standard initialization (He), and the weight layers *inside*
   residual branches are multiplied by :math:`L^{-1/(2m-2)}` (:func:`fixup_scale`,
   :func:`fixup`), :math:`L` the number of residual branches and :math:`m` the number of
   weight layers in each branch;
3. a scalar multiplier (init 1) in every branch and a scalar bias (init 0) before each
   convolution, linear and element-wise activation layer -- these are parameters of the
   model, not an initializer, and are left to the model definition.
"""

from __future__ import annotations

import jax.numpy as jnp

from jinit._src.initializers import (
    DTypeLike,
    Initializer,
    canonicalize_dtype,
    check_int,
    check_random_dtype,
    compute_dtype,
    he_normal,
)

__all__ = ["fixup", "fixup_scale"]


def fixup_scale(num_branches: int, branch_depth: int) -> float:
    r"""The Fixup multiplier :math:`L^{-1/(2m-2)}` of the weight layers inside residual branches.

    With :math:`L` residual branches of :math:`m` weight layers each, multiplying a standard
    initialization of the first :math:`m-1` layers of every branch by this factor (the last
    layer is 0) makes one SGD step change the network's output by :math:`\Theta(\eta)`,
    independently of :math:`L` (Zhang et al. 2019, Section 3). E.g. :math:`m = 2`:
    :math:`L^{-1/2}` (16 branches: 0.25); :math:`m = 3`: :math:`L^{-1/4}`.

    Args:
      num_branches: :math:`L`, the number of residual branches in the network (>= 1), a
        static Python int (not a traced value).
      branch_depth: :math:`m`, the number of weight layers in each branch (>= 2).

    Returns:
      The multiplier, a Python float in :math:`(0, 1]`.

    Raises:
      ValueError: if ``num_branches < 1`` or ``branch_depth < 2`` (for :math:`m = 1` the
        exponent :math:`-1/(2m-2)` is undefined: a one-layer branch is only zero-initialised).
      TypeError: if either argument is not an int.

    Examples:
      >>> import jinit
      >>> jinit.fixup_scale(16, 2)
      0.25

    References:
      Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning Without Normalization",
      arXiv:1901.09321, ICLR 2019.
    """
    L = check_int("fixup_scale", "num_branches", num_branches, minimum=1)
    try:
        m = check_int("fixup_scale", "branch_depth", branch_depth, minimum=2)
    except ValueError as e:  # say why m = 1 has no Fixup scale
        raise ValueError(
            f"{e}; the Fixup exponent -1/(2m-2) is undefined for m = 1 (a one-layer branch is "
            "just initialised to zero)"
        ) from None
    return float(L) ** (-1.0 / (2 * m - 2))


def fixup(
    num_branches: int,
    branch_depth: int,
    base: Initializer | None = None,
    dtype: DTypeLike | None = None,
) -> Initializer:
    r"""Builds the Fixup initializer of the non-last weight layers inside residual branches.

    .. math::
       W = L^{-1/(2m-2)}\, W_\text{base}, \qquad
       \operatorname{Var}[W] = L^{-1/(m-1)} \operatorname{Var}[W_\text{base}],

    with :math:`W_\text{base}` drawn by ``base`` (default :func:`jinit.he_normal`: truncated
    normal, post-truncation variance :math:`2/\text{fan\_in}`), so the standard deviation is
    the base's times :func:`fixup_scale` ``(num_branches, branch_depth)``. The last layer of
    each branch and the classification layer use ``jinit.zeros()``; layers outside the branches
    (the stem) use the base initializer unscaled.

    The shape is whatever ``base`` accepts (``(in, out)`` dense kernels, HWIO convolution
    kernels; pass e.g. ``base=jinit.he_normal(batch_axis=0)`` for a stack of per-block kernels
    ``(L, in, out)``). The requested dtype wins (it is also passed to ``base``); 16-bit floats
    are drawn and scaled in float32 and cast once.

    Args:
      num_branches: :math:`L`, the number of residual branches (>= 1).
      branch_depth: :math:`m`, the number of weight layers in each branch (>= 2).
      base: the standard initializer to rescale (default ``jinit.he_normal()``), with the
        signature of jinit's and ``jax.nn.initializers``' initializers,
        ``init(key, shape, dtype=None, out_sharding=None)`` (it is called with all four).
      dtype: the initializer's default dtype.

    Returns:
      An initializer ``init(key, shape, dtype=dtype, out_sharding=None)``.

    Raises:
      ValueError, TypeError: at build time, as :func:`fixup_scale`; TypeError if ``base`` is
        not callable.
      TypeError: at call time, for integer or bool dtypes; otherwise as ``base``.

    Examples:
      >>> import jax, jinit
      >>> w = jinit.fixup(16, 2)(jax.random.key(0), (512, 512))
      >>> round(float(w.std()) / ((2 / 512) ** 0.5 * 0.25), 2)  # He std x 16^(-1/2)
      1.0

    References:
      Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning Without Normalization",
      arXiv:1901.09321, ICLR 2019 (reference code: github.com/hongyi-zhang/Fixup).
    """
    scale = fixup_scale(num_branches, branch_depth)
    if base is None:
        base = he_normal()
    elif not callable(base):
        raise TypeError(f"fixup: base must be an initializer (a callable), got {base!r}")

    def init(key, shape, dtype=dtype, out_sharding=None):
        dtype = canonicalize_dtype(dtype)
        check_random_dtype("fixup", dtype)
        w = base(key, shape, compute_dtype(dtype), out_sharding)
        return (w * jnp.asarray(scale, w.dtype)).astype(dtype)

    return init
