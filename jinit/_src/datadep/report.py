"""The reports of the data-dependent passes: pytrees of measured per-layer arrays (forward
execution order; ``vmap`` stacks them) and static metadata."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar

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


class Report:
    """What the reports share: their length, member 0 of a stacked report and a table."""

    paths: tuple[str, ...]
    PER_LAYER: ClassVar[tuple[str, ...]]  # array fields with one entry per layer

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={len(self.paths)})"

    def _first(self, name: str) -> np.ndarray:
        """The field for member 0 of a stacked report (per layer, or a scalar)."""
        a = np.asarray(getattr(self, name))
        return a.reshape(-1, len(self.paths))[0] if name in self.PER_LAYER else a.reshape(-1)[0]

    def _table(self, head: str, columns: dict[str, tuple[int, Any]], rows: list[tuple]) -> str:
        """``head``, ``columns`` (name: (width, values)) and a line per row (path, tail)."""
        lines = [head, f"{'path':<32} " + " ".join(f"{c:>{w}}" for c, (w, _) in columns.items())]
        for i, (path, tail) in enumerate(rows):
            cells = " ".join(f"{v[i]:>{w}.4g}" for w, v in columns.values())
            lines.append(f"{path:<32} {cells}{tail}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class LSUVReport(Report):
    """What a data-dependent initialization pass did, one entry per layer in execution order.

    Attributes:
      method: ``"lsuv"``, ``"within_layer"`` or ``"weight_norm"``.
      measured: ``"pre"`` (the layer's own output) or ``"post"`` (after ``activation``).
      target: the target variance. tol: the tolerance on ``|variance - target|``.
      on_zero_variance: ``"raise"`` or ``"skip"``.
      execution: ``"jit"`` (one compiled program) or ``"eager"`` (see ``jinit.lsuv``'s ``jit``).
      paths: the layer paths, ``"/"``-joined, in forward execution order.
      notes: per layer, why it was skipped before running, or why a per-unit layer cannot meet
        ``target_mean`` (no bias); ``""`` otherwise.
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

    PER_LAYER = ARRAY_FIELDS

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
        vb, va, units, its = map(
            self._first, ("var_before", "var_after", "units_skipped", "iterations")
        )
        out = []
        for i, st in enumerate(self.statuses):
            reasons = {
                "not_converged": self.notes[i]
                or f"variance {va[i]:.6g} after {its[i]} rescaling(s), target {self.target:g} +- "
                f"{self.tol:g}",
                "skipped": self.notes[i],
                "scale_invariant": "the output does not change with the kernel's scale "
                "(normalised kernel or output); left unchanged",
                "zero_variance": f"{units[i]} unit(s) with zero output variance left unchanged"
                if units[i]
                else f"zero output variance ({vb[i]:.3g}): {_CONSTANT}",
                "non_finite": "NaN/inf in the layer's input or output",
            }
            out.append(reasons.get(st, ""))
        return tuple(out)

    def _layers(self):
        return zip(self.paths, self.statuses, self.reasons(), strict=True)

    def errors(self) -> list[str]:
        """Messages for the layers that make the pass fail (non-finite values; zero variance
        with ``on_zero_variance="raise"``), first per member, in execution order."""
        if not self.paths:
            return []
        fields = ("status", "input_finite", "units_skipped", "var_before")
        shape = (-1, len(self.paths))
        status, finite, units, vb = (np.asarray(getattr(self, f)).reshape(shape) for f in fields)
        fail = [NON_FINITE] + [ZERO_VARIANCE] * (self.on_zero_variance == "raise")
        msgs = []
        for m, row in enumerate(status):
            bad = np.flatnonzero(np.isin(row, fail))  # the first failing layer of each member
            if not bad.size:
                continue
            i = int(bad[0])
            path, where = self.paths[i], f" (member {m} of the vmapped pass)" * (len(status) > 1)
            origin = "the batch" if i == 0 else f"after layer {self.paths[i - 1]!r}"
            if row[i] == ZERO_VARIANCE:
                n = int(units[m, i])
                what = f"{n} unit(s) of layer {path!r} have" if n else f"layer {path!r} has"
                what += " zero output variance"
                what += "" if n else f" (measured variance {vb[m, i].item()!r})"
                msgs.append(f"{what}{where}: {_CONSTANT} {_ZERO_WORDS}")
            else:
                msgs.append(
                    f"non-finite values (NaN/inf) first appear in the output of layer {path!r}"
                    f"{where} (its input is finite: check its parameters, or the output overflows)."
                    if finite[m, i]
                    else f"non-finite values (NaN/inf) first appear in the input of layer "
                    f"{path!r}{where}: they come from {origin}."
                )
        return msgs

    def check(self) -> LSUVReport:
        """Raises ``ValueError`` for the first failing layer (see :meth:`errors`); called by the
        pass itself unless traced (then call it on the concrete report). Returns ``self``."""
        msgs = self.errors()
        if msgs:
            raise ValueError(f"{self.method}: {msgs[0]}")
        return self

    def warn(self, stacklevel: int = 2) -> None:
        """Emits one :class:`jinit.InitWarning` naming every layer that is not ``converged``
        (skipped, unconverged, scale-invariant, zero variance), with the reason; none if all
        converged. Called by the pass itself unless traced (attributed to the pass's caller)."""
        bad = [f"{p} [{s}: {r}]" for p, s, r in self._layers() if s != "converged"]
        st = np.asarray(self.status).reshape(-1, len(self)) if self.paths else []
        for m, row in list(enumerate(st))[1:]:  # a stacked report: every other member too
            bad += [
                f"{self.paths[i]} [member {m}: {STATUS_NAMES[s]}]" for i, s in enumerate(row) if s
            ]
        if bad:
            of = f"{len(self)} layer(s)" + f" x {len(st)} members" * (len(st) > 1)
            msg = f"{self.method}: {len(bad)} of {of} not converged: "
            warnings.warn(msg + "; ".join(bad), InitWarning, stacklevel=stacklevel)

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{"<method>/<path>/<stat>": value}`` dict (nanodo-style metrics)."""
        fields = {f: np.asarray(getattr(self, f)) for f in ARRAY_FIELDS}
        return {
            f"{self.method}/{p}/{f}": a[..., i]
            for i, p in enumerate(self.paths)
            for f, a in fields.items()
        }

    def rows(self) -> list[dict[str, Any]]:
        """One dict per layer with Python scalars (first member if stacked)."""
        fields = {f: self._first(f) for f in ARRAY_FIELDS}
        return [
            {"path": p, **{f: a[i].item() for f, a in fields.items()}, "status": s, "reason": r}
            for i, (p, s, r) in enumerate(self._layers())
        ]

    def summary(self) -> str:
        """A fixed-width table of :meth:`rows` (a string; nothing is printed)."""
        lead = np.shape(self.status)[:-1] if self.paths else ()
        stacked = f" [member 0 of {int(np.prod(lead))} stacked]" if lead else ""
        head = f"{self.method}: measured={self.measured} target={self.target:g} "
        head += f"tol={self.tol:g} execution={self.execution}{stacked}"
        names = {"iters": "iterations", "scale": "scale"}
        names.update({f: f for f in ("var_before", "var_after", "mean_after")})
        cols = {c: (max(len(c), 9), self._first(f)) for c, f in names.items()}
        rows = [(p, f"  {s}" + (f" ({r})" if r else "")) for p, s, r in self._layers()]
        return self._table(head, cols, rows)


_CONSTANT = "the part of the output that depends on the kernel is constant on this batch"
_ZERO_WORDS = (
    "(dead units upstream, a constant input), so no rescaling can reach the target. Pass "
    "on_zero_variance='skip' to leave it unchanged and report it."
)


jax.tree_util.register_dataclass(LSUVReport, list(ARRAY_FIELDS), META_FIELDS)
