"""Layer order and the signal-propagation checks of ``diagnose``; criteria: docs/diagnosing.md."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jinit._src.checks import check_number, check_probability

_DEAD_WORDS = (
    "units are exactly 0 for the whole batch (dead ReLUs: their pre-activations are negative "
    "for every example, e.g. from a large negative bias or an oversized step)"
)
_SATURATED_WORDS = (
    "of the entries are saturated (|tanh| > 0.99, or a sigmoid within 0.01 of 0 or 1): the "
    "pre-activations are too large for a saturating activation, whose derivative is then ~0"
)


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def layer_order(stats: Mapping[str, Any], *, leaves_only: bool = False) -> list[str]:
    """Recorded module paths of :func:`layer_statistics` output in execution order;
    ``leaves_only`` drops paths containing other recorded paths."""
    index = {}
    for key, value in stats.items():
        if key.startswith("output/") and key.endswith("/index"):
            index[key[len("output/") : -len("/index")]] = int(np.asarray(value))
    paths = sorted(index, key=lambda p: (index[p], p))
    if leaves_only:
        paths = [p for p in paths if not any(q.startswith(p + "/") for q in paths)]
    return paths


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem found by :func:`diagnose`.

    Attributes:
      kind: ``"vanishing_gradient"``, ``"exploding_gradient"``, ``"vanishing_activation"``,
        ``"exploding_activation"``, ``"dead_units"``, ``"saturation"``, ``"zero_gradient"``
        or ``"nonfinite"``.
      message: the finding in words and numbers, with the likely cause and fix.
      value: the measured quantity (e.g. the gradient-norm ratio first/last layer).
      threshold: the threshold it crossed.
      layers: module paths involved.
    """

    kind: str
    message: str
    value: float
    threshold: float
    layers: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


def _kernel_scale_context(stats, activation, q: float | None) -> str:
    """Words about the kernels' mean-field scale and, given the activation, the fix."""
    scales = [float(np.asarray(v)) for k, v in stats.items() if k.endswith("/fan_in_var")]
    if not scales:
        return ""
    sw2 = float(np.median(scales))
    text = f" Kernels have fan_in*Var(W) = {sw2:.3g} (median over layers; sigma_w = "
    text += f"{math.sqrt(sw2):.3g})"
    if activation is None:
        return text + "; pass activation= for the mean-field verdict and a fix."
    from jinit._src import recommend as recommend_lib
    from jinit._src import theory

    name = getattr(activation, "__name__", activation)
    q = 1.0 if q is None or not q > 0 or not math.isfinite(q) else q
    chi = float(theory.chi_1(activation, math.sqrt(sw2), 0.0, q=q))
    rec = recommend_lib.recommend(activation)
    return (
        f". With {name} at the first layer's pre-activation variance q = {q:.3g} that is "
        f"chi_1 = {chi:.3g} per layer (1 keeps gradient norms steady). Fix: {rec.name}, "
        f"sigma_w = {rec.sigma_w:.3g} ({rec.rationale.split('. ')[0].rstrip('.')})."
    )


def diagnose(
    stats: Mapping[str, Any],
    *,
    activation: str | Callable | None = None,
    gradient_ratio: float = 100.0,
    activation_ratio: float = 100.0,
    dead_fraction: float = 0.5,
    saturated_fraction: float = 0.5,
) -> list[Finding]:
    """Reads :func:`layer_statistics` output and reports signal-propagation problems.

    Over the leaf layers in execution order: output-gradient norms first/last and output
    stds last/first against their ratios, both ways; dead units and saturation at each
    layer's input; non-finite statistics. Layers feeding a normalizing layer are left out of
    the ratios (docs/diagnosing.md, section 9, gives each criterion and why).

    Args:
      stats: output of :func:`layer_statistics` (arrays or plain numbers).
      activation: the hidden activation, if known: adds the mean-field verdict (chi_1 of the
        measured kernel scale) and the recommended initializer to the messages.
      gradient_ratio: threshold factor (> 1) for the gradient check.
      activation_ratio: threshold factor (> 1) for the forward check.
      dead_fraction: threshold in (0, 1] for dead units.
      saturated_fraction: threshold in (0, 1] for saturation.

    Returns:
      A list of :class:`Finding` (nonfinite, gradient, forward, dead, saturation); empty when
      nothing crossed a threshold.

    Raises:
      ValueError: an unknown activation name, a threshold out of range, or ``stats`` that
        recorded no layer (nothing measured is not "healthy").
    """
    if activation is not None:
        from jinit._src.theory import activation_fn

        activation_fn(activation)  # ValueError naming the known activations for an unknown name
    for arg, value in (("gradient_ratio", gradient_ratio), ("activation_ratio", activation_ratio)):
        if not check_number("diagnose", arg, value) > 1:
            raise ValueError(f"diagnose: {arg} must be > 1, got {value!r}")
    check_probability("diagnose", "dead_fraction", dead_fraction)
    check_probability("diagnose", "saturated_fraction", saturated_fraction)
    if not isinstance(stats, Mapping):
        raise TypeError(f"diagnose: stats must be a dict, got {type(stats).__name__}")
    if any(np.ndim(v) for k, v in stats.items() if k.endswith("/index")):
        raise ValueError("diagnose: stats of a vmapped sweep; pass one member's: stats[m] per leaf")
    leaves = layer_order(stats, leaves_only=True)
    if not leaves:
        raise ValueError(
            "diagnose: stats holds no recorded layer (no 'output/<path>/index' entry); pass "
            "the output of jinit.layer_statistics"
        )

    get = lambda key: float(np.asarray(stats[key])) if key in stats else None
    findings: list[Finding] = []
    bad = [k for k, v in stats.items() if not np.all(np.isfinite(np.asarray(v, dtype=np.float64)))]
    if bad:
        msg = f"{len(bad)} statistics are NaN or inf, e.g. {', '.join(bad[:3])}: the signal "
        msg += "overflowed (exploding) or the loss is undefined."
        paths = tuple(k.split("/", 1)[-1].rsplit("/", 1)[0] for k in bad[:3])
        findings.append(Finding("nonfinite", msg, float(len(bad)), 0.0, paths))
    layers = [p for p in leaves if f"output_grad/{p}/norm" in stats]
    if len(layers) < 2:
        return findings
    # Ratios skip layers whose output feeds a normalizing layer (scale removed both ways).
    normalized = {p for p in layers if get(f"output/{p}/normalizes")}
    scaled = [p for p, q in zip(layers, [*layers[1:], None], strict=True) if q not in normalized]
    first, last = scaled[0], scaled[-1]
    depth = len(scaled)
    q_first = (get(f"output/{first}/std") or 0.0) ** 2  # 0: unknown, _kernel_scale_context uses 1

    unit_findings = []
    sat_stat = "sat01_frac" if activation == "sigmoid" else "sat_frac"
    for stat, kind, threshold, words in (
        ("dead_frac", "dead_units", dead_fraction, _DEAD_WORDS),
        (sat_stat, "saturation", saturated_fraction, _SATURATED_WORDS),
    ):
        values = {p: get(f"input/{p}/{stat}") for p in layers[1:]}
        hits = {p: v for p, v in values.items() if v is not None and v >= threshold}
        if hits:
            listed = ", ".join(f"{p} {v:.0%}" for p, v in list(hits.items())[:4])
            msg = f"at the input of {len(hits)} layer(s) ({listed}) {words}; "
            msg += f"threshold {threshold:.0%}."
            unit_findings.append(Finding(kind, msg, max(hits.values()), threshold, tuple(hits)))
    dead = next((f for f in unit_findings if f.kind == "dead_units"), None)

    g_first, g_last = get(f"output_grad/{first}/norm"), get(f"output_grad/{last}/norm")
    if g_last == 0.0:
        msg = f"the loss gradient at the last layer ({last}) is exactly 0: the loss does not "
        msg += "depend on the output here (a constant loss, or a zero readout seen from below)."
        findings.append(Finding("zero_gradient", msg, 0.0, 0.0, (last,)))
    elif depth >= 2 and _finite(g_first, g_last) and _crossed(g_first / g_last, gradient_ratio):
        ratio = g_first / g_last
        change = f"is exactly 0 at the first layer ({first}) while the last ({last}) has "
        change += f"{g_last:.3g}"
        if ratio:
            change = (
                f"{'falls' if ratio < 1.0 else 'grows'} by a factor {max(ratio, 1 / ratio):.3g} "
                f"from the last layer ({last}: {g_last:.3g}) to the first ({first}: "
                f"{g_first:.3g}) over {depth} layers, {ratio ** (1.0 / (depth - 1)):.3g} per layer"
            )
        if dead is not None:
            cause = f". The dead units at {', '.join(dead.layers[:3])} block the backward signal."
        else:
            cause = _kernel_scale_context(stats, activation, q_first)
        msg = f"gradient norm {change}: {_direction(ratio)} (threshold: factor "
        msg += f"{gradient_ratio:g}){cause}"
        findings.append(_finding("gradient", ratio, gradient_ratio, msg, (first, last)))
    hidden = scaled[:-1] if depth >= 3 else scaled
    s_first, s_last = get(f"output/{hidden[0]}/std"), get(f"output/{hidden[-1]}/std")
    ratio = s_last / s_first if depth >= 2 and s_first and _finite(s_first, s_last) else 1.0
    if _crossed(ratio, activation_ratio):
        change = f"drops from {s_first:.3g} at {hidden[0]} to exactly 0 at {hidden[-1]}"
        if ratio:
            change = (
                f"{'shrinks' if ratio < 1.0 else 'grows'} by a factor {max(ratio, 1 / ratio):.3g} "
                f"from {s_first:.3g} at {hidden[0]} to {s_last:.3g} at {hidden[-1]}"
            )
        msg = f"output std {change} (threshold: factor {activation_ratio:g})."
        ends = (hidden[0], hidden[-1])
        findings.append(_finding("activation", ratio, activation_ratio, msg, ends))
    return findings + unit_findings


def _direction(ratio: float) -> str:
    return "vanishing" if ratio < 1.0 else "exploding"


def _finding(what: str, ratio: float, factor: float, msg: str, layers: tuple) -> Finding:
    """A vanishing/exploding finding; its threshold is ``1 / factor`` below 1, else ``factor``."""
    limit = 1.0 / factor if ratio < 1.0 else factor
    return Finding(f"{_direction(ratio)}_{what}", msg, ratio, limit, layers)


def _crossed(ratio: float, factor: float) -> bool:
    return ratio < 1.0 / factor or ratio > factor
