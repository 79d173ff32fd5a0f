"""Per-unit data-dependent initializations (within-layer, weight-norm) on the LSUV pass: every
output unit of every selected layer is normalised on the batch (docs/lsuv.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from jinit._src.datadep.lsuv import run_pass
from jinit._src.datadep.report import LSUVReport


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
    jit: bool | None = None,
    input_key: str | int | None = None,
    rngs: Mapping[str, jax.Array] | None = None,
) -> tuple[Any, LSUVReport]:
    r"""Krähenbühl et al.'s within-layer data-dependent initialization (per-unit normalization).

    Every output unit :math:`u` of every selected layer, in forward execution order, gets
    variance ``target`` (:math:`\tau`) and mean ``target_mean`` (:math:`\beta`; layers without
    a bias keep their mean) on ``batch``: :math:`W_{:,u} \leftarrow c_u W_{:,u}`,
    :math:`b_u \leftarrow \beta - c_u(\mu_u - b_u)`, :math:`c_u = \sqrt{\tau}/\sigma_u`,
    measured after the pass. ``tol``: a layer is ``converged`` when every unit is within ``tol``
    of both targets. ``on_zero_variance="skip"`` leaves constant units unchanged, counts them in
    ``report.units_skipped`` and gives the layer the status ``zero_variance``. The other
    arguments, the return value (a :class:`jinit.LSUVReport` with ``method="within_layer"`` and
    ``scale`` the root-mean-square of the per-unit factors) and the errors raised (also: for
    constant units, naming the layer) are as for :func:`jinit.lsuv`.

    References:
      Krähenbühl, Doersch, Donahue & Darrell, "Data-dependent Initializations of Convolutional
      Neural Networks", arXiv:1511.06856, 2015 (within-layer initialization).
    """
    return run_pass("within_layer_init", "within_layer", max_iters=1, **locals())


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
    jit: bool | None = None,
    input_key: str | int | None = None,
    rngs: Mapping[str, jax.Array] | None = None,
) -> tuple[Any, LSUVReport]:
    r"""Salimans & Kingma's data-dependent initialization of weight-normalized layers.

    For ``nn.WeightNorm``/``nnx.WeightNorm`` over a Dense/Linear/Conv kernel, with
    :math:`t_u = v_u \cdot x/\lVert v_u\rVert`: :math:`g_u \leftarrow \sqrt{\tau}/\sigma(t_u)`,
    :math:`b_u \leftarrow \beta - \sqrt{\tau}\,\mu(t_u)/\sigma(t_u)` (:math:`\tau`:
    ``target``, :math:`\beta`: ``target_mean``); the direction :math:`v` is unchanged. Plain
    layers get the equivalent update of their kernel columns. The other arguments, the return
    value (``report.method == "weight_norm"``) and the errors are as for
    :func:`jinit.within_layer_init`.

    References:
      Salimans & Kingma, "Weight Normalization: A Simple Reparameterization to Accelerate
      Training of Deep Neural Networks", arXiv:1602.07868, 2016 (Section 3).
    """
    return run_pass("weight_norm_init", "weight_norm", max_iters=1, **locals())
