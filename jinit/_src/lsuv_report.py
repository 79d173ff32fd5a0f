"""The report returned by every data-dependent initialization pass (LSUV and per-unit methods).

The report is a pytree: its numbers are arrays with one entry per layer (in forward execution
order), so it can be returned from ``jit`` and stacked by ``vmap`` (a seed sweep gives arrays of
shape ``(n_seeds, n_layers)``); the layer paths, the static skip reasons and the settings are
static metadata. Nothing here prints: :meth:`LSUVReport.summary` returns a string and
:meth:`LSUVReport.to_dict` a flat ``{"<method>/<path>/<stat>": array}`` dict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

# Per-layer status codes (the ``status`` field).
OK = 0
"""The layer was processed (see ``converged`` for whether the tolerance was met)."""
SKIPPED = 1
"""Skipped for a static reason (see ``notes``): zero-size, inside a lifted transform, ..."""
ZERO_VARIANCE = 2
"""The part of the output that depends on the kernel has (numerically) zero variance."""
NONFINITE_INPUT = 3
"""The layer's input contains NaN or inf."""
NONFINITE_OUTPUT = 4
"""The layer's input is finite but its output or a statistic of it is NaN or inf."""

STATUS_NAMES = {
    OK: "ok",
    SKIPPED: "skipped",
    ZERO_VARIANCE: "zero variance",
    NONFINITE_INPUT: "non-finite input",
    NONFINITE_OUTPUT: "non-finite output",
}

ARRAY_FIELDS = (
    "iterations",
    "scale",
    "var_before",
    "var_after",
    "mean_after",
    "converged",
    "status",
    "units_skipped",
)


@dataclasses.dataclass(frozen=True)
class LSUVReport:
    """What a data-dependent initialization pass did, one entry per layer in execution order.

    Attributes:
      method: ``"lsuv"``, ``"within_layer"`` or ``"weight_norm"``.
      measured: which tensor the variance was measured on: ``"pre"`` (the layer's own output,
        before its activation; the paper's choice) or ``"post"`` (after the given activation).
      target: the target variance.
      tol: the tolerance on ``|variance - target|``.
      on_zero_variance: ``"raise"`` or ``"skip"``.
      paths: the layer paths, ``"/"``-joined, in forward execution order.
      notes: per layer, a static note: ``""`` or why the layer was skipped before running.
      iterations: ``int32[L]`` number of kernel rescalings applied (0 if already in tolerance).
      scale: ``float32[L]`` the factor the kernel was multiplied by (for per-unit methods the
        root-mean-square of the per-unit factors); 1 for skipped layers.
      var_before: ``float32[L]`` variance of the measured tensor before the pass, pooled over
        the batch and every non-batch position and unit. NaN for statically skipped layers.
      var_after: ``float32[L]`` the same after the pass (the tensor passed on to later layers).
      mean_after: ``float32[L]`` mean of the measured tensor after the pass.
      converged: ``bool[L]`` ``|var_after - target| < tol`` (per-unit methods: for every unit,
        and ``|mean - target_mean| < tol`` when the layer has a bias).
      status: ``int32[L]`` one of ``OK, SKIPPED, ZERO_VARIANCE, NONFINITE_INPUT,
        NONFINITE_OUTPUT`` (module constants).
      units_skipped: ``int32[L]`` per-unit methods: units left unchanged because their
        variance was zero (``on_zero_variance="skip"``); 0 for LSUV.
    """

    method: str
    measured: str
    target: float
    tol: float
    on_zero_variance: str
    paths: tuple[str, ...]
    notes: tuple[str, ...]
    iterations: Any
    scale: Any
    var_before: Any
    var_after: Any
    mean_after: Any
    converged: Any
    status: Any
    units_skipped: Any

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def skipped(self) -> np.ndarray:
        """``bool[..., L]``: layers whose parameters were left unchanged."""
        status = np.asarray(self.status)
        return (status == SKIPPED) | (status == ZERO_VARIANCE)

    def reasons(self) -> tuple[str, ...]:
        """Per layer (first member of a stacked report), why it was skipped, or ``""``."""
        status = np.asarray(self.status).reshape(-1, len(self.paths))[0] if self.paths else []
        var = np.asarray(self.var_before).reshape(-1, len(self.paths))[0] if self.paths else []
        out = []
        for i, note in enumerate(self.notes):
            if note:
                out.append(note)
            elif status[i] == ZERO_VARIANCE:
                out.append(f"zero output variance (variance {float(var[i]):.3g})")
            elif status[i] in (NONFINITE_INPUT, NONFINITE_OUTPUT):
                out.append(STATUS_NAMES[int(status[i])])
            else:
                out.append("")
        return tuple(out)

    def errors(self) -> list[str]:
        """Messages for the layers that make the pass fail, in execution order.

        A layer fails when its input or output is non-finite, or when its output variance is
        zero and ``on_zero_variance == "raise"``. Works on stacked (vmapped) reports too; the
        member index is then named.
        """
        if not self.paths:
            return []
        status = np.asarray(self.status)
        var = np.asarray(self.var_before)
        units = np.asarray(self.units_skipped)
        lead = status.shape[:-1]
        msgs: list[str] = []
        for member in np.ndindex(*lead) if lead else [()]:
            where = f" (member {member} of the vmapped pass)" if lead else ""
            for i, path in enumerate(self.paths):
                st = int(status[member + (i,)])
                if st == NONFINITE_INPUT:
                    origin = (
                        "the batch, or from operations before this first layer"
                        if i == 0
                        else f"operations between layer {self.paths[i - 1]!r} and this layer"
                    )
                    msgs.append(
                        f"non-finite values (NaN/inf) first appear in the input of layer {path!r}"
                        f"{where}: they come from {origin}."
                    )
                    break
                if st == NONFINITE_OUTPUT:
                    msgs.append(
                        f"non-finite values (NaN/inf) first appear in the output of layer "
                        f"{path!r}{where} (its input is finite: check its parameters, or the "
                        "output overflows)."
                    )
                    break
                n_dead = int(units[member + (i,)])
                partial = self.method != "lsuv" and n_dead > 0
                if (st == ZERO_VARIANCE or partial) and self.on_zero_variance == "raise":
                    v = float(var[member + (i,)])
                    n_units = int(units[member + (i,)])
                    what = (
                        f"{n_units} unit(s) of layer {path!r} have zero output variance"
                        if self.method != "lsuv"
                        else f"layer {path!r} has zero output variance (measured variance {v!r})"
                    )
                    msgs.append(
                        f"{what}{where}: the part of its output that depends on the kernel is "
                        "constant on this batch (dead units upstream, e.g. a ReLU that is never "
                        "active, or a constant input), so no rescaling can reach the target. "
                        "Pass on_zero_variance='skip' to leave the layer unchanged and report it."
                    )
                    break
        return msgs

    def check(self) -> LSUVReport:
        """Raises ``ValueError`` for the first failing layer (see :meth:`errors`).

        ``jinit.lsuv`` calls this itself when it is not traced; under an outer ``jit``/``vmap``
        the values are not known in Python, so call it on the concrete report afterwards.

        Returns:
          ``self``, when nothing failed.

        Raises:
          ValueError: naming the layer path and the offending value.
        """
        msgs = self.errors()
        if msgs:
            raise ValueError(f"{self.method}: {msgs[0]}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{"<method>/<path>/<stat>": value}`` dict (nanodo-style metrics)."""
        out: dict[str, Any] = {}
        for i, path in enumerate(self.paths):
            for name in ARRAY_FIELDS:
                out[f"{self.method}/{path}/{name}"] = np.asarray(getattr(self, name))[..., i]
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One dict per layer (execution order) with Python scalars (first member if stacked)."""
        reasons = self.reasons()
        rows = []
        for i, path in enumerate(self.paths):
            row: dict[str, Any] = {"path": path}
            for name in ARRAY_FIELDS:
                v = np.asarray(getattr(self, name)).reshape(-1, len(self.paths))[0, i]
                row[name] = v.item()
            row["status"] = STATUS_NAMES[int(row["status"])]
            row["reason"] = reasons[i]
            rows.append(row)
        return rows

    def summary(self) -> str:
        """A fixed-width table of :meth:`rows` (a string; nothing is printed); for a stacked
        (vmapped) report, of its first member (the header says so)."""
        lead = np.shape(self.status)[:-1] if self.paths else ()
        stacked = f" [member 0 of {int(np.prod(lead))} stacked]" if lead else ""
        head = (
            f"{self.method}: measured={self.measured} target={self.target:g} tol={self.tol:g}"
            f"{stacked}\n"
            f"{'path':<32} {'iters':>5} {'scale':>9} {'var_before':>11} {'var_after':>10} "
            f"{'mean_after':>10} {'conv':>5}  status"
        )
        lines = [head]
        for r in self.rows():
            status = r["status"] + (f" ({r['reason']})" if r["reason"] else "")
            nums = (
                f"{r['iterations']:>5d} {r['scale']:>9.4g} {r['var_before']:>11.4g} "
                f"{r['var_after']:>10.4g} {r['mean_after']:>10.4g} {str(r['converged']):>5}"
            )
            lines.append(f"{r['path']:<32} {nums}  {status}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LSUVReport(method={self.method!r}, layers={len(self.paths)})"


jax.tree_util.register_dataclass(
    LSUVReport,
    data_fields=list(ARRAY_FIELDS),
    meta_fields=["method", "measured", "target", "tol", "on_zero_variance", "paths", "notes"],
)


def make_report(meta: Mapping[str, Any], rows: list[dict[str, Any]], table) -> LSUVReport:
    """Builds a report from the rows' static parts and the per-layer arrays in ``table``."""
    import jax.numpy as jnp

    dtypes = {
        "iterations": jnp.int32,
        "status": jnp.int32,
        "units_skipped": jnp.int32,
        "converged": jnp.bool_,
    }
    fields = {k: jnp.asarray(table[k].astype(dtypes.get(k, jnp.float32))) for k in ARRAY_FIELDS}
    return LSUVReport(
        paths=tuple(r["path"] for r in rows),
        notes=tuple(r["note"] for r in rows),
        **meta,
        **fields,
    )
