"""The reports of GradInit and MetaInit: per parameter block, the multiplier and its trajectory.

Pytrees (like ``jinit.LSUVReport``): the numbers are arrays, so a report comes out of ``jit``
and ``vmap`` stacks it (a seed sweep gives ``(n_seeds, ...)``); paths and settings are static.
Nothing prints: :meth:`summary` returns a string.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import numpy as np

from jinit._src.checks import InitWarning

# The arrays every report has; ``T`` iterations, ``L`` blocks (forward order).
COMMON_FIELDS = ("multiplier", "trajectory", "multiplier_grad", "loss", "grad_norm")


def _members(lead: tuple[int, ...]):
    return list(np.ndindex(*lead)) if lead else [()]


class _Report:
    """Checks and summary shared by both reports."""

    method: str
    paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def iterations(self) -> int:
        return int(np.shape(self.trajectory)[-2])

    def _series(self) -> dict[str, np.ndarray]:
        """Per-iteration scalars checked for finiteness (``(..., T)``)."""
        return {"loss": np.asarray(self.loss), "gradient norm": np.asarray(self.grad_norm)}

    def errors(self) -> list[str]:
        """Messages for non-finite values: the first iteration and block, per stacked member."""
        traj = np.asarray(self.trajectory, np.float64)
        grad = np.asarray(self.multiplier_grad, np.float64)
        lead = traj.shape[:-2]
        series = self._series()
        msgs = []
        for m in _members(lead):
            where = f" (member {m} of the vmapped pass)" if lead else ""
            bad_t = [
                t
                for t in range(traj.shape[-2])
                if not (
                    np.isfinite(traj[m][t]).all()
                    and np.isfinite(grad[m][t]).all()
                    and all(np.isfinite(s[m][t]) for s in series.values())
                )
            ]
            if not bad_t:
                continue
            t = bad_t[0]
            blocks = [
                i
                for i in range(len(self.paths))
                if not (np.isfinite(traj[m][t][i]) and np.isfinite(grad[m][t][i]))
            ]
            what = [k for k, s in series.items() if not np.isfinite(s[m][t])]
            if blocks:
                i = blocks[0]
                msgs.append(
                    f"{self.method}: non-finite values at iteration {t}{where}, first in block "
                    f"{self.paths[i]!r} (multiplier {float(traj[m][t][i])!r}, its "
                    f"gradient {float(grad[m][t][i])!r}); lower the learning rate or check the model at init."
                )
            else:
                msgs.append(
                    f"{self.method}: non-finite {', '.join(what)} at iteration {t}{where} "
                    f"(first block {self.paths[0]!r}); the model's outputs or loss overflow at "
                    "these multipliers."
                )
        return msgs

    def check(self) -> _Report:
        """Raises ``ValueError`` for the first non-finite value (block and iteration named).

        The passes call this themselves when not traced; under an outer ``jit``/``vmap`` call
        it on the concrete report afterwards.
        """
        msgs = self.errors()
        if msgs:
            raise ValueError(msgs[0])
        return self

    def rows(self) -> list[dict[str, Any]]:
        """Per block (forward order; first member if stacked): path, start and final multiplier."""
        traj = np.asarray(self.trajectory).reshape(-1, self.iterations, len(self.paths))[0]
        mult = np.asarray(self.multiplier).reshape(-1, len(self.paths))[0]
        return [
            {"path": p, "first_step": float(traj[0, i]), "multiplier": float(mult[i])}
            for i, p in enumerate(self.paths)
        ]

    def _head(self) -> str:
        raise NotImplementedError

    def summary(self) -> str:
        """A fixed-width table (a string); for a stacked report, of its first member."""
        lead = np.shape(self.multiplier)[:-1]
        stacked = f" [member 0 of {int(np.prod(lead))} stacked]" if lead else ""
        lines = [f"{self._head()}{stacked}", f"{'block':<40} {'after step 1':>12} {'final':>10}"]
        for r in self.rows():
            lines.append(f"{r['path']:<40} {r['first_step']:>12.4g} {r['multiplier']:>10.4g}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{"<method>/<path>/multiplier": value}`` plus the per-iteration series."""
        out = {
            f"{self.method}/{p}/multiplier": np.asarray(self.multiplier)[..., i]
            for i, p in enumerate(self.paths)
        }
        for name in self._series_fields():
            out[f"{self.method}/{name}"] = np.asarray(getattr(self, name))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(blocks={len(self.paths)}, iterations={self.iterations})"


@dataclasses.dataclass(frozen=True, repr=False)
class GradInitReport(_Report):
    """What :func:`jinit.gradinit` did; ``T`` iterations, ``L`` blocks in forward order.

    Attributes:
      method: ``"gradinit"``.
      paths: the blocks with a multiplier (``jinit.path_string`` paths), in forward order.
      floors: per block, the floor its multiplier is kept above.
      settings: the pass's hyper-parameters as ``(name, value)`` pairs.
      multiplier: ``float32[L]`` the learned multipliers (output block = multiplier * input).
      trajectory: ``float32[T, L]`` the multipliers after each iteration.
      multiplier_grad: ``float32[T, L]`` the gradient of that iteration's objective w.r.t.
        the multipliers (before clipping).
      loss: ``float32[T]`` the loss on the step batch at the iteration's multipliers.
      grad_norm: ``float32[T]`` the norm of the parameter gradient on the step batch (l1 for
        ``optimizer="adam"``, l2 for ``"sgd"``), compared with ``gamma``.
      lookahead_loss: ``float32[T]`` the loss on the lookahead batch after the simulated step.
      constrained: ``bool[T]`` the iteration minimized the gradient norm (it was > gamma)
        instead of the lookahead loss.
      grad_norm_after: ``float32[]`` the gradient norm at the learned multipliers.
    """

    method: str
    paths: tuple[str, ...]
    floors: tuple[float, ...]
    settings: tuple[tuple[str, Any], ...]
    multiplier: Any
    trajectory: Any
    multiplier_grad: Any
    loss: Any
    grad_norm: Any
    lookahead_loss: Any
    constrained: Any
    grad_norm_after: Any

    def _series_fields(self):
        return ("loss", "grad_norm", "lookahead_loss", "constrained", "grad_norm_after")

    def _series(self):
        return {**super()._series(), "lookahead loss": np.asarray(self.lookahead_loss)}

    def pinned(self) -> tuple[str, ...]:
        """Blocks whose final multiplier sits at its floor (any stacked member)."""
        mult = np.asarray(self.multiplier).reshape(-1, len(self.paths))
        floors = np.asarray(self.floors)
        hit = (mult <= floors * (1 + 1e-6) + 1e-12).any(0)
        return tuple(p for p, h in zip(self.paths, hit, strict=True) if h)

    def warn(self, stacklevel: int = 2) -> None:
        """One :class:`jinit.InitWarning` per block whose multiplier ended at its floor (any
        member of a stacked report). The pass calls it unless traced; under an outer
        ``jit``/``vmap`` call it (with :meth:`check`) on the concrete report."""
        for path in self.pinned():
            warnings.warn(
                f"gradinit: the multiplier of block {path!r} ended at its floor "
                f"{self.floors[self.paths.index(path)]:g}: the pass wanted it smaller; lower "
                "floor, or check this block's initial scale.",
                InitWarning,
                stacklevel=stacklevel,
            )

    def _head(self) -> str:
        s = dict(self.settings)
        cons = np.asarray(self.constrained).reshape(-1, self.iterations)[0]
        return (
            f"gradinit: optimizer={s['optimizer']} lr={s['lr']:g} gamma={s['gamma']:g} "
            f"iterations={self.iterations} (constrained {int(cons.sum())}), grad norm after "
            f"{float(np.asarray(self.grad_norm_after).reshape(-1)[0]):.4g}"
        )


@dataclasses.dataclass(frozen=True, repr=False)
class MetaInitReport(_Report):
    """What :func:`jinit.metainit` did; ``T`` iterations, ``L`` blocks in forward order.

    Attributes:
      method: ``"metainit"``.
      paths: the blocks whose norm was tuned, in forward order.
      settings: the pass's hyper-parameters as ``(name, value)`` pairs.
      multiplier: ``float32[L]`` the learned multipliers (final norm / initial norm).
      trajectory: ``float32[T, L]`` the multipliers after each iteration.
      multiplier_grad: ``float32[T, L]`` d(gradient quotient)/d(multiplier) at each iteration.
      loss: ``float32[T]`` the loss at the iteration's multipliers.
      grad_norm: ``float32[T]`` the l2 norm of the parameter gradient.
      quotient: ``float32[T]`` the gradient quotient before each update (``quotient[0]``:
        at the input parameters).
      quotient_after: ``float32[]`` the gradient quotient at the learned multipliers.
    """

    method: str
    paths: tuple[str, ...]
    settings: tuple[tuple[str, Any], ...]
    multiplier: Any
    trajectory: Any
    multiplier_grad: Any
    loss: Any
    grad_norm: Any
    quotient: Any
    quotient_after: Any

    def _series_fields(self):
        return ("loss", "grad_norm", "quotient", "quotient_after")

    def _series(self):
        return {**super()._series(), "gradient quotient": np.asarray(self.quotient)}

    @property
    def quotient_before(self) -> Any:
        return np.asarray(self.quotient)[..., 0]

    def warn(self, stacklevel: int = 2) -> None:
        """:class:`jinit.InitWarning` s for a gradient quotient that did not decrease and for
        multipliers driven to or through 0, per member of a stacked report. The pass calls it
        unless traced; under an outer ``jit``/``vmap`` call it (with :meth:`check`) afterwards."""
        before = np.asarray(self.quotient).reshape(-1, self.iterations)[:, 0]
        after = np.asarray(self.quotient_after).reshape(-1)
        mult = np.asarray(self.multiplier).reshape(-1, len(self.paths))
        for m, (q0, q1, row) in enumerate(zip(before, after, mult, strict=True)):
            where = f" (member {m} of the stacked report)" if len(after) > 1 else ""
            if not q1 < q0:
                warnings.warn(
                    f"metainit: the gradient quotient did not decrease ({q0:.4g} -> {q1:.4g})"
                    f"{where}; blocks {list(self.paths)} kept multipliers "
                    f"{np.round(row, 4).tolist()}. Try a smaller lr.",
                    InitWarning,
                    stacklevel=stacklevel,
                )
            for path, a in zip(self.paths, row, strict=True):
                if not a > 0:
                    warnings.warn(
                        f"metainit: the multiplier of block {path!r} reached {a:.4g} <= 0{where} "
                        "(its norm was driven through zero; the tensor's sign flipped): lower lr.",
                        InitWarning,
                        stacklevel=stacklevel,
                    )

    def _head(self) -> str:
        s = dict(self.settings)
        before = float(np.asarray(self.quotient_before).reshape(-1)[0])
        after = float(np.asarray(self.quotient_after).reshape(-1)[0])
        return (
            f"metainit: lr={s['lr']:g} momentum={s['momentum']:g} steps={self.iterations}, "
            f"gradient quotient {before:.4g} -> {after:.4g}"
        )


jax.tree_util.register_dataclass(
    GradInitReport,
    data_fields=[*COMMON_FIELDS, "lookahead_loss", "constrained", "grad_norm_after"],
    meta_fields=["method", "paths", "floors", "settings"],
)
jax.tree_util.register_dataclass(
    MetaInitReport,
    data_fields=[*COMMON_FIELDS, "quotient", "quotient_after"],
    meta_fields=["method", "paths", "settings"],
)
