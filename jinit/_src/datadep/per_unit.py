r"""Per-unit data-dependent initializations, as the same single jitted pass as ``jinit.lsuv``.

Both methods below normalise every output unit (feature, channel) of every selected affine layer
separately, from the layer's pre-activation output on a batch, in forward execution order (each
layer sees the already-normalised earlier layers). For unit :math:`u` of a layer with output
:math:`y_u = z_u + b_u` (:math:`z_u` the kernel part), mean :math:`\mu_u` and variance
:math:`\sigma_u^2` over the batch and all non-unit positions:

.. math::  W_{:,u} \leftarrow W_{:,u}\, c_u, \quad b_u \leftarrow \beta - c_u (\mu_u - b_u),
           \quad c_u = \sqrt{\tau} / \sigma_u,

so every unit's output has mean :math:`\beta` (when the layer has a bias) and variance
:math:`\tau` on the batch, exactly, in one step (the layers are affine in ``W`` and ``b``).
Units with zero variance (constant: a dead ReLU upstream) cannot be normalised: by default a
``ValueError`` names the layer and the number of such units; with ``on_zero_variance="skip"`` they
are left unchanged and counted in ``report.units_skipped`` (never an inf). Only Dense/Conv/Embed-
like layers qualify; others are reported as skipped. Usage and the report are as for
:func:`jinit.lsuv`.

On a plain layer the two methods give the same numbers: weight normalisation writes
:math:`w = g\, v/\lVert v\rVert`, and its data-dependent init sets :math:`g_u = 1/\sigma(t_u)`,
:math:`b_u = -\mu(t_u)/\sigma(t_u)` for :math:`t_u = v_u \cdot x / \lVert v_u\rVert`, i.e. the
effective kernel column is :math:`v_u / (\lVert v_u \rVert \sigma(t_u))`, which is
:math:`v_u / \sigma(v_u \cdot x)` -- Krähenbühl et al.'s within-layer rule with
:math:`\beta = 0`. They differ on ``nn.WeightNorm``-wrapped layers, where both set the scale
``g`` (rescaling the direction ``v`` would be a no-op) and leave ``v`` bitwise unchanged, as
Salimans & Kingma prescribe. Krähenbühl et al.'s between-layer rescaling (equalising the rates at
which layers' weights change under SGD) needs gradients, not one forward pass: it is
:func:`jinit.between_layer_scaling`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from jinit._src import lsuv_engine as eng
from jinit._src.lsuv import run_pass
from jinit._src.lsuv_report import LSUVReport


def _per_unit(
    fn: str,
    method_name: str,
    model,
    params,
    batch,
    *,
    target,
    target_mean,
    tol,
    include,
    exclude,
    on_zero_variance,
    min_values,
    orthogonal_key,
    method,
    apply_kwargs,
    exact,
    jit,
):
    cfg = eng.make_config(
        fn,
        method=method_name,
        target=target,
        tol=tol,
        max_iters=1,
        measure="pre",
        activation=None,
        center=False,
        target_mean=target_mean,
        include=include,
        exclude=exclude,
        on_zero_variance=on_zero_variance,
        min_values=min_values,
        exact=exact,
        orthogonal=orthogonal_key is not None,
    )
    return run_pass(fn, cfg, model, params, batch, method, apply_kwargs, orthogonal_key, jit)


def within_layer_init(
    model: nn.Module | nnx.GraphDef | nnx.Module | Callable[..., Any],
    params: Any,
    batch: Any,
    *,
    target: float = 1.0,
    target_mean: float = 0.0,
    tol: float = 0.1,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    on_zero_variance: str = "raise",
    min_values: int = 2,
    orthogonal_key: jax.Array | None = None,
    method: str | Callable[..., Any] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    exact: bool = False,
    jit: bool = True,
) -> tuple[Any, LSUVReport]:
    r"""Krähenbühl et al.'s within-layer data-dependent initialization (per-unit normalization).

    See the module docstring for the formula: every output unit of every selected layer gets
    variance ``target`` (:math:`\tau`) and mean ``target_mean`` (:math:`\beta`, needs a bias) on
    ``batch``, in forward execution order, in one jitted pass.

    Args:
      model: as for :func:`jinit.lsuv`.
      params: as for :func:`jinit.lsuv`.
      batch: as for :func:`jinit.lsuv`.
      target: per-unit target variance :math:`\tau` of the pre-activation output.
      target_mean: per-unit target mean :math:`\beta` (layers without bias keep their mean).
      tol: ``converged`` in the report means every unit is within ``tol`` of both targets.
      include: regex(es) selecting layers by path.
      exclude: regex(es) excluding layers by path.
      on_zero_variance: ``"raise"`` or ``"skip"`` for constant units (see module docstring).
      min_values: fewest values per unit on the batch (at least 2).
      orthogonal_key: optional orthonormal pre-init of the selected kernels (as in ``lsuv``;
        the paper draws Gaussian kernels, which the model's own ``kernel_init`` can do).
      method: linen only: the method to apply.
      apply_kwargs: extra keyword arguments of the forward pass.
      exact: always re-run layers for their corrected output.
      jit: one jitted program (``True``) or an eager pass of per-layer jitted kernels
        (``False``); as for :func:`jinit.lsuv`.

    Returns:
      ``(new_params, report)`` as for :func:`jinit.lsuv` (``report.method == "within_layer"``;
      ``report.scale`` is the root-mean-square of the per-unit factors).

    Raises:
      ValueError: as for :func:`jinit.lsuv`; for constant units, naming the layer and how many.

    References:
      Krähenbühl, Doersch, Donahue & Darrell, "Data-dependent Initializations of Convolutional
      Neural Networks", arXiv:1511.06856, 2015 (Algorithm 1, within-layer initialization).
    """
    return _per_unit(
        "within_layer_init",
        "within_layer",
        model,
        params,
        batch,
        target=target,
        target_mean=target_mean,
        tol=tol,
        include=include,
        exclude=exclude,
        on_zero_variance=on_zero_variance,
        min_values=min_values,
        orthogonal_key=orthogonal_key,
        method=method,
        apply_kwargs=apply_kwargs,
        exact=exact,
        jit=jit,
    )


def weight_norm_init(
    model: nn.Module | nnx.GraphDef | nnx.Module | Callable[..., Any],
    params: Any,
    batch: Any,
    *,
    target: float = 1.0,
    target_mean: float = 0.0,
    tol: float = 0.1,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    on_zero_variance: str = "raise",
    min_values: int = 2,
    method: str | Callable[..., Any] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    exact: bool = False,
    jit: bool = True,
) -> tuple[Any, LSUVReport]:
    r"""Salimans & Kingma's data-dependent initialization of weight-normalized layers.

    For a layer :math:`y = g\, (v \cdot x)/\lVert v \rVert + b` (``nn.WeightNorm`` or
    ``nnx.WeightNorm`` over a Dense/Linear/Conv kernel), with
    :math:`t_u = v_u \cdot x/\lVert v_u\rVert` on the batch:
    :math:`g_u \leftarrow \sqrt{\tau}/\sigma(t_u)`, :math:`b_u \leftarrow \beta -
    \sqrt{\tau}\,\mu(t_u)/\sigma(t_u)` (the paper: :math:`\tau = 1, \beta = 0`), leaving the
    direction :math:`v` unchanged. Plain layers (no weight norm) get the equivalent update of
    their kernel columns (see the module docstring). One jitted pass, execution order.

    Args:
      model: as for :func:`jinit.lsuv`.
      params: as for :func:`jinit.lsuv`.
      batch: the first batch of data, as for :func:`jinit.lsuv`.
      target: per-unit target variance :math:`\tau`.
      target_mean: per-unit target mean :math:`\beta`.
      tol: tolerance of the ``converged`` flag.
      include: regex(es) selecting layers by path.
      exclude: regex(es) excluding layers by path.
      on_zero_variance: ``"raise"`` or ``"skip"`` for constant units.
      min_values: fewest values per unit on the batch (at least 2).
      method: linen only: the method to apply.
      apply_kwargs: extra keyword arguments of the forward pass.
      exact: always re-run layers for their corrected output.
      jit: one jitted program (``True``) or an eager pass of per-layer jitted kernels
        (``False``); as for :func:`jinit.lsuv`.

    Returns:
      ``(new_params, report)`` as for :func:`jinit.lsuv` (``report.method == "weight_norm"``).

    Raises:
      ValueError: as for :func:`within_layer_init`.

    References:
      Salimans & Kingma, "Weight Normalization: A Simple Reparameterization to Accelerate
      Training of Deep Neural Networks", arXiv:1602.07868, 2016 (Section 3, data-dependent
      initialization of parameters).
    """
    return _per_unit(
        "weight_norm_init",
        "weight_norm",
        model,
        params,
        batch,
        target=target,
        target_mean=target_mean,
        tol=tol,
        include=include,
        exclude=exclude,
        on_zero_variance=on_zero_variance,
        min_values=min_values,
        orthogonal_key=None,
        method=method,
        apply_kwargs=apply_kwargs,
        exact=exact,
        jit=jit,
    )
