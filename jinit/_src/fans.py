"""Fan computation for initializers: which axes are inputs, outputs, batch or receptive field.

All arithmetic here is static Python on concrete shapes, so the initializers that use it work
under ``jax.jit``, ``jax.vmap`` and ``jax.eval_shape`` (the shape is always static there).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

from jinit._src.checks import check_int, check_shape

Axes = int | Sequence[int]

__all__ = ["compute_fans"]


def check_axes_spec(name: str, axes: Axes, *, allow_empty: bool = True) -> tuple[int, ...]:
    """Validates an ``in_axis``/``out_axis``/``batch_axis`` argument at factory build time.

    Args:
      name: the argument's name, echoed in error messages.
      axes: an int or a sequence of ints.
      allow_empty: whether an empty sequence is accepted.

    Returns:
      The axes as a tuple of ints (not yet normalised against a rank).

    Raises:
      TypeError: if ``axes`` is not an int or a sequence of ints.
      ValueError: if the same axis appears twice, or the sequence is empty when not allowed.
    """
    if isinstance(axes, bool):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {axes!r}")
    try:
        tup = (operator.index(axes),)
    except TypeError:
        if not isinstance(axes, Sequence) or isinstance(axes, str):
            raise TypeError(f"{name} must be an int or a sequence of ints, got {axes!r}") from None
        try:
            tup = tuple(operator.index(a) for a in axes)
        except TypeError:
            raise TypeError(f"{name} must be an int or a sequence of ints, got {axes!r}") from None
    if len(set(tup)) != len(tup):
        raise ValueError(f"{name} lists the same axis twice: {axes!r}")
    if not tup and not allow_empty:
        raise ValueError(f"{name} must name at least one axis, got {axes!r}")
    return tup


def normalize_axes(name: str, axes: Axes, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Normalises axes against a concrete shape (negative axes count from the end).

    Raises:
      ValueError: if an axis is out of range for ``shape`` or listed twice.
    """
    rank = len(shape)
    out = []
    for a in check_axes_spec(name, axes):
        if not -rank <= a < rank:
            raise ValueError(
                f"{name}={axes!r} is out of range for a rank-{rank} shape {shape}; "
                f"valid axes are {-rank}..{rank - 1}"
            )
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}={axes!r} names the same axis twice for shape {shape}")
    return tuple(out)


def compute_fans(
    shape: Sequence[int],
    in_axis: Axes = -2,
    out_axis: Axes = -1,
    batch_axis: Axes = (),
    groups: int = 1,
) -> tuple[float, float]:
    r"""Effective fan-in and fan-out of a dense, convolutional or einsum kernel.

    .. math::
       r = \frac{\prod_i s_i}{n_\text{in}\, n_\text{out}\, n_\text{batch}}, \qquad
       \text{fan\_in} = n_\text{in}\, r, \qquad
       \text{fan\_out} = \frac{n_\text{out}\, r}{\text{groups}}

    where :math:`n_\text{in}` (:math:`n_\text{out}`, :math:`n_\text{batch}`) is the product of
    the sizes of the axes in ``in_axis`` (``out_axis``, ``batch_axis``) and every other axis is
    receptive field (:math:`r`). This is exactly ``jax.nn.initializers``' rule (same float
    arithmetic), plus ``groups``: a grouped convolution stores a kernel of shape
    ``(*window, in_features // groups, out_features)`` (Flax HWIO) or
    ``(out_features, in_features // groups, *window)`` (PyTorch OIHW), so the stored input axis
    is already per group, but each output unit is one of ``out_features // groups`` per group;
    a depthwise ``(3, 3, 1, 64)`` kernel with ``groups=64`` has fan_in = fan_out = 9.

    Axes may be tuples, for einsum kernels such as a query projection ``(d_model, heads,
    head_dim)`` with ``in_axis=0, out_axis=(1, 2)`` (fan_in = d_model). An axis listed in both
    ``in_axis`` and ``out_axis`` is counted in both (as in JAX; Flax's default embedding
    initializer relies on this).

    Args:
      shape: the kernel shape (static ints).
      in_axis: axis or axes of the input dimension.
      out_axis: axis or axes of the output dimension.
      batch_axis: axis or axes that are neither (ignored), e.g. the stacked Q/K/V axis of a fused
        kernel or the channel axis of a TF-layout depthwise kernel.
      groups: number of convolution groups; divides the output size (see above).

    Returns:
      ``(fan_in, fan_out)`` as Python floats.

    Raises:
      ValueError: if the shape has a negative dimension or fewer than 2 dimensions while the
        default axes are used, an axis is out of range, ``batch_axis`` overlaps
        ``in_axis``/``out_axis``, ``groups < 1``, or the output size is not divisible by
        ``groups``.
      TypeError: if the shape or ``groups`` is not made of ints.

    References:
      Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
      networks", AISTATS 2010. He et al., "Delving Deep into Rectifiers", arXiv:1502.01852, 2015.
    """
    shape = check_shape("compute_fans", "shape", shape)
    groups = check_int("compute_fans", "groups", groups)
    rank = len(shape)
    if rank < 2 and isinstance(in_axis, int) and in_axis == -2:
        raise ValueError(
            f"fan-based initializers need a shape with at least 2 dimensions, got rank {rank} "
            f"(shape {shape}); fans of a {rank}-D tensor are undefined. Use zeros()/constant() for "
            "biases, or pass in_axis and out_axis explicitly."
        )
    ins = normalize_axes("in_axis", in_axis, shape)
    outs = normalize_axes("out_axis", out_axis, shape)
    bats = normalize_axes("batch_axis", batch_axis, shape)
    overlap = set(bats) & (set(ins) | set(outs))
    if overlap:
        raise ValueError(
            f"batch_axis={batch_axis!r} overlaps in_axis={in_axis!r} or out_axis={out_axis!r} "
            f"(axes {sorted(overlap)}) for shape {shape}"
        )
    in_size = math.prod(shape[i] for i in ins)
    out_size = math.prod(shape[i] for i in outs)
    batch_size = math.prod(shape[i] for i in bats)
    if groups != 1 and out_size % groups:
        raise ValueError(
            f"compute_fans: groups={groups} does not divide the output size {out_size} of shape "
            f"{shape} (out_axis={out_axis!r}); expected a divisor of {out_size}"
        )
    if in_size and out_size and batch_size:  # JAX's formula (an in-and-out axis counts twice)
        receptive_field_size = math.prod(shape) / in_size / out_size / batch_size
    else:  # a zero-size shape: the product of the remaining axes, never a division by zero
        named = set(ins) | set(outs) | set(bats)
        receptive_field_size = float(math.prod(d for i, d in enumerate(shape) if i not in named))
    fan_in = in_size * receptive_field_size
    fan_out = out_size * receptive_field_size
    if groups != 1:
        fan_out = fan_out / groups
    return fan_in, fan_out
