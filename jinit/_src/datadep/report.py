"""The report of every data-dependent pass (LSUV, within-layer, weight-norm): measured numbers.

A pytree of per-layer arrays (forward execution order; ``vmap`` stacks them) and static
metadata; ``var_before``/``var_after`` are measured on the layer's real output.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import numpy as np

from jinit._src.checks import InitWarning

CONVERGED, NOT_CONVERGED, SKIPPED, SCALE_INVARIANT, ZERO_VARIANCE, NON_FINITE = range(6)
STATUS_NAMES = tuple(
    "converged not_converged skipped scale_invariant zero_variance non_finite".split()
)
ARRAY_FIELDS = tuple(
    "iterations scale var_before var_after mean_after converged status units_skipped "
    "input_finite".split()
)
META_FIELDS = "method measured target tol on_zero_variance execution paths notes".split()


@dataclasses.dataclass(frozen=True)
class LSUVReport:
    """What a data-dependent initialization pass did, one entry per layer in execution order.

    Attributes:
      method: ``"lsuv"``, ``"within_layer"`` or ``"weight_norm"``.
      measured: ``"pre"`` (the layer's own output) or ``"post"`` (after ``activation``).
      target: the target variance. tol: the tolerance on ``|variance - target|``.
      on_zero_variance: ``"raise"`` or ``"skip"``.
      execution: ``"jit"`` (one compiled program) or ``"eager"`` (see ``jinit.lsuv``'s ``jit``).
      paths: the layer paths, ``"/"``-joined, in forward execution order.
      notes: per layer, why it was skipped before running (``""`` otherwise).
      iterations: ``int32[L]`` kernel rescalings applied (0: already within tolerance).
      scale: ``float32[L]`` the factor the kernel was multiplied by (per-unit methods: the
        root-mean-square of the per-unit factors); 1 for unchanged layers.
      var_before: ``float32[L]`` variance of the measured tensor before the pass, pooled over
        batch, positions and units (NaN for skipped layers).
      var_after: ``float32[L]`` the same, measured on the layer's real output after the pass.
      mean_after: ``float32[L]`` its mean, measured.
      converged: ``bool[L]`` the status is ``converged``.
      status: ``int32[L]`` an index into :data:`STATUS_NAMES` (see :attr:`statuses`).
      units_skipped: ``int32[L]`` per-unit methods: units with zero variance left unchanged.
      input_finite: ``bool[L]`` the layer's input had no NaN/inf.
    """

    method: str
    measured: str
    target: float
    tol: float
    on_zero_variance: str
    execution: str
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
    input_finite: Any

    def __len__(self) -> int:
        return len(self.paths)

    def _first(self, name: str) -> np.ndarray:
        return np.asarray(getattr(self, name)).reshape(-1, len(self.paths))[0]

    @property
    def statuses(self) -> tuple[str, ...]:
        """Per layer, the status name (first member of a stacked report)."""
        return tuple(STATUS_NAMES[int(s)] for s in self._first("status")) if self.paths else ()

    @property
    def skipped(self) -> np.ndarray:
        """``bool[..., L]``: layers left unchanged (skipped, zero variance, scale-invariant)."""
        st = np.asarray(self.status)
        return (st == SKIPPED) | (st == ZERO_VARIANCE) | (st == SCALE_INVARIANT)

    def reasons(self) -> tuple[str, ...]:
        """Per layer (first member if stacked), why it is not ``converged`` (``""`` if it is)."""
        out = []
        for i, st in enumerate(self.statuses):
            vb, va = float(self._first("var_before")[i]), float(self._first("var_after")[i])
            units, iters = int(self._first("units_skipped")[i]), int(self._first("iterations")[i])
            out.append(
                {
                    "converged": "",
                    "not_converged": f"variance {va:.4g} after {iters} rescaling(s), target "
                    f"{self.target:g} +- {self.tol:g}",
                    "skipped": self.notes[i],
                    "scale_invariant": "the output does not change with the kernel's scale "
                    "(normalised kernel or output); left unchanged",
                    "zero_variance": f"{units} unit(s) with zero output variance left unchanged"
                    if units
                    else f"zero output variance ({vb:.3g}): the part of the output that depends "
                    "on the kernel is constant on this batch",
                    "non_finite": "NaN/inf in the layer's input or output",
                }[st]
            )
        return tuple(out)

    def errors(self) -> list[str]:
        """Messages for the layers that make the pass fail (non-finite values; zero variance
        with ``on_zero_variance="raise"``), first per member, in execution order."""
        if not self.paths:
            return []
        status = np.asarray(self.status).reshape(-1, len(self.paths))
        field = {f: np.asarray(getattr(self, f)).reshape(status.shape) for f in ARRAY_FIELDS}
        msgs = []
        for m, i in zip(*np.nonzero(_failing(status, self.on_zero_variance)), strict=True):
            if msgs and msgs[-1][0] == m:
                continue  # the first failing layer of each member
            path, where = self.paths[i], f" (member {m} of the vmapped pass)" * (len(status) > 1)
            if status[m, i] == NON_FINITE and not field["input_finite"][m, i]:
                origin = "the batch" if i == 0 else f"after layer {self.paths[i - 1]!r}"
                msg = f"non-finite values (NaN/inf) first appear in the input of layer {path!r}"
                msg += f"{where}: they come from {origin}."
            elif status[m, i] == NON_FINITE:
                msg = f"non-finite values (NaN/inf) first appear in the output of layer {path!r}"
                msg += f"{where} (its input is finite: check its parameters, or the output "
                msg += "overflows)."
            else:
                n, v = int(field["units_skipped"][m, i]), float(field["var_before"][m, i])
                msg = (
                    f"{n} unit(s) of layer {path!r} have zero output variance"
                    if n
                    else (f"layer {path!r} has zero output variance (measured variance {v!r})")
                )
                msg += f"{where}: the part of its output that depends on the kernel is constant"
                msg += " on this batch (dead units upstream, a constant input), so no rescaling "
                msg += "can reach the target. Pass on_zero_variance='skip' to leave it unchanged"
                msg += " and report it."
            msgs.append((m, msg))
        return [msg for _, msg in msgs]

    def check(self) -> LSUVReport:
        """Raises ``ValueError`` for the first failing layer (see :meth:`errors`); called by the
        pass itself unless traced (then call it on the concrete report). Returns ``self``."""
        msgs = self.errors()
        if msgs:
            raise ValueError(f"{self.method}: {msgs[0]}")
        return self

    def warn(self) -> None:
        """Emits one :class:`jinit.InitWarning` naming every layer that is not ``converged``
        (skipped, unconverged, scale-invariant, zero variance), with the reason; none if all
        converged. Called by the pass itself unless traced."""
        bad = [
            f"{p} [{s}: {r}]"
            for p, s, r in zip(self.paths, self.statuses, self.reasons(), strict=True)
            if s != "converged"
        ]
        if bad:
            warnings.warn(
                f"{self.method}: {len(bad)} of {len(self.paths)} layer(s) not converged: "
                + "; ".join(bad),
                InitWarning,
                stacklevel=3,
            )

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{"<method>/<path>/<stat>": value}`` dict (nanodo-style metrics)."""
        return {
            f"{self.method}/{p}/{f}": np.asarray(getattr(self, f))[..., i]
            for i, p in enumerate(self.paths)
            for f in ARRAY_FIELDS
        }

    def rows(self) -> list[dict[str, Any]]:
        """One dict per layer with Python scalars (first member if stacked)."""
        rows = []
        for i, (p, st, why) in enumerate(
            zip(self.paths, self.statuses, self.reasons(), strict=True)
        ):
            row = {"path": p, **{f: self._first(f)[i].item() for f in ARRAY_FIELDS}}
            rows.append({**row, "status": st, "reason": why})
        return rows

    def summary(self) -> str:
        """A fixed-width table of :meth:`rows` (a string; nothing is printed)."""
        lead = np.shape(self.status)[:-1] if self.paths else ()
        stacked = f" [member 0 of {int(np.prod(lead))} stacked]" if lead else ""
        lines = [
            f"{self.method}: measured={self.measured} target={self.target:g} tol={self.tol:g} "
            f"execution={self.execution}{stacked}",
            f"{'path':<32} {'iters':>5} {'scale':>9} {'var_before':>11} {'var_after':>10} "
            f"{'mean_after':>10}  status",
        ]
        for r in self.rows():
            why = f" ({r['reason']})" if r["reason"] else ""
            lines.append(
                f"{r['path']:<32} {r['iterations']:>5d} {r['scale']:>9.4g} "
                f"{r['var_before']:>11.4g} {r['var_after']:>10.4g} {r['mean_after']:>10.4g}  "
                f"{r['status']}{why}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LSUVReport(method={self.method!r}, layers={len(self.paths)})"


def _failing(status: np.ndarray, on_zero_variance: str) -> np.ndarray:
    zero = status == ZERO_VARIANCE if on_zero_variance == "raise" else False
    return (status == NON_FINITE) | zero


jax.tree_util.register_dataclass(LSUVReport, list(ARRAY_FIELDS), META_FIELDS)
