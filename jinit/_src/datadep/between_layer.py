r"""Krähenbühl et al.'s between-layer scaling: equal relative update rates for every layer
(the derivation, the bias rule and ``samples``: docs/lsuv.md, "Between-layer scaling")."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src.checks import check_int, check_key, check_number
from jinit._src.datadep.report import Report
from jinit._src.datadep.solve import traced
from jinit._src.models import model_inputs
from jinit._src.paths import flat, is_float, path_string, replace_leaves

_FN = "between_layer_scaling"
ARRAY_FIELDS = tuple(
    "ratio_before ratio_after scale iterations converged output_std_before output_std_after".split()
)


@dataclasses.dataclass(frozen=True)
class BetweenLayerReport(Report):
    """What :func:`jinit.between_layer_scaling` did; a pytree (``vmap`` stacks the arrays).

    Attributes:
      paths: the kernel paths in the given forward order. max_iters, tol: the settings.
      ratio_before, ratio_after: ``float32[L]`` the rates :math:`r_k`, measured on the initial
        and on the returned params. scale: ``float32[L]`` the total factor of each kernel (its
        bias got ``cumprod(scale)[k]``). iterations: ``int32[]``. converged: ``bool[]`` every
        ``|log r_k / log t - 1| < tol``. output_std_before, output_std_after: ``float32[]``
        mean over output units of the std over the batch.
    """

    paths: tuple[str, ...]
    max_iters: int
    tol: float
    ratio_before: Any
    ratio_after: Any
    scale: Any
    iterations: Any
    converged: Any
    output_std_before: Any
    output_std_after: Any
    PER_LAYER = ARRAY_FIELDS[:3]

    def summary(self) -> str:
        """A fixed-width table, one row per layer (first member of a stacked report)."""
        f = self._first
        head = f"between_layer: iterations={int(f('iterations'))}/{self.max_iters} "
        head += f"converged={bool(f('converged'))} tol={self.tol:g} output_std "
        head += f"{float(f('output_std_before')):.4g} -> {float(f('output_std_after')):.4g}"
        cols = {c: (max(len(c), 10), f(c)) for c in self.PER_LAYER}
        return self._table(head, cols, [(p, "") for p in self.paths])

    def check(self) -> None:
        """Raises ``ValueError`` for a zero or non-finite rate (naming the first layer and the
        member of a stacked report) or output std; called by the pass unless traced."""
        for name in ARRAY_FIELDS[:2] + ARRAY_FIELDS[-2:]:
            a = np.asarray(getattr(self, name), np.float64)
            a = a.reshape(-1, len(self.paths)) if name in self.PER_LAYER else a.reshape(-1, 1)
            bad = np.argwhere(~(np.isfinite(a) & (a > 0)))
            if not len(bad):
                continue
            m, k = (int(i) for i in bad[0])
            if name.startswith("output"):
                why = "the output is constant or not finite on this batch"
                raise ValueError(f"{_FN}: the output's std is {float(a[m, k])} ({name}): {why}.")
            member = f" (member {m} of the stacked report)" if a.shape[0] > 1 else ""
            raise ValueError(
                f"{_FN}: layer {self.paths[k]!r} has rate {float(a[m, k])} in {name}{member}: "
                "its gradient or kernel is zero or not finite (a dead or zero layer, NaN "
                "parameters, or NaN/inf produced inside the network); nothing was rescaled "
                "from that point on."
            )


jax.tree_util.register_dataclass(
    BetweenLayerReport, list(ARRAY_FIELDS), ["paths", "max_iters", "tol"]
)


def _check_layers(layers: Any, leaves: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Validates ``layers``; returns their ``(kernel, bias or None)`` path strings."""
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(
            f"{_FN}: layers must be a non-empty sequence of (kernel_path, bias_path_or_None) in "
            f"forward execution order, got {layers!r}"
            + " (layers is empty)" * (not layers)
            + " (automatic layer discovery is not offered: a params tree's key order is sorted)."
        )
    out, seen = [], {}
    for i, layer in enumerate(layers):
        if not isinstance(layer, tuple | list) or len(layer) != 2:
            raise ValueError(f"{_FN}: layers[{i}] must be a pair (kernel, bias or None): {layer!r}")
        ok = lambda p: isinstance(p, str | tuple | list)  # noqa: E731  path_string takes both
        out.append(tuple(p if p is None else path_string(p) if ok(p) else "" for p in layer))
        for j, (role, name) in enumerate(zip(("kernel", "bias"), out[-1], strict=True)):
            at = f"{_FN}: layers[{i}] {role}"
            if name is None and role == "bias":
                continue
            if name not in leaves:
                raise ValueError(f"{at} path {name or layer[j]!r} is not a leaf of params.")
            if not is_float(leaves[name]) or leaves[name].ndim < 2 - 2 * j:
                a = leaves[name]
                raise ValueError(
                    f"{at} {name!r} must be a floating array"
                    + " with at least 2 dimensions" * (role == "kernel")
                    + f", got dtype {getattr(a, 'dtype', None)} and shape {getattr(a, 'shape', None)}"
                )
            if name in seen:
                raise ValueError(f"{_FN}: path {name!r} appears twice in layers ({seen[name]}).")
            seen[name] = f"first as layers[{i}]"
    return out


def between_layer_scaling(
    apply_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    batch: Any,
    key: jax.Array,
    *,
    layers: Sequence[tuple[tuple, tuple | None]],
    max_iters: int = 10,
    tol: float = 0.01,
    samples: int = 16,
    input_key: str | int | None = None,
) -> tuple[Any, BetweenLayerReport]:
    r"""Krähenbühl et al.'s between-layer scaling: every layer learns at the same relative rate.

    Each iteration measures the rates
    :math:`r_k = \sqrt{\operatorname{mean}(G_k^2)/\operatorname{mean}(W_k^2)}` with one
    ``jax.vjp`` and rescales kernel :math:`k` by :math:`\sqrt{r_k / t}` (its bias by the product
    of the factors so far) until every :math:`|\log r_k / \log t - 1| <` ``tol``; at most
    ``max_iters`` iterations in a ``lax.while_loop`` (jittable, vmappable). See docs/lsuv.md.

    Args:
      apply_fn: ``apply_fn(params, inputs) -> array`` (linen: ``model.apply`` with the variables
        dict; BatchNorm in train mode must drop its mutated statistics).
      params: a pytree of arrays; only the listed kernels and biases change.
      batch: real data, with the model inputs taken out as by :func:`jinit.lsuv` (``input_key``).
      key: a JAX PRNG key.
      layers: the layers in forward execution order, pairs ``(kernel_path, bias_path_or_None)``,
        key tuples (``("params", "Dense_0", "kernel")``) or path strings as reports print them
        (``"params/Dense_0/kernel"``); floating kernels with ``ndim >= 2``, each path once.
      max_iters: the most rescaling iterations (``>= 0``; the reference's 10).
      tol: the reference's relative tolerance on :math:`\log r_k` (1%).
      samples: random top gradients per iteration, averaged (``1`` is the reference).
      input_key: key or index of the inputs in ``batch``.

    Returns:
      ``(new_params, report)``: ``new_params`` with the structure, key order and dtypes of
      ``params``; a :class:`BetweenLayerReport`.

    Raises:
      ValueError: bad ``layers`` (empty, not pairs, not a leaf, twice, a kernel not floating or
        ``ndim < 2``), ``max_iters < 0``, ``tol < 0``, ``samples < 1``, a bad key or batch, an
        output with fewer than 2 samples; a zero or non-finite rate or output std (naming the
        first such layer; under ``jit``/``vmap`` call ``report.check()``).
      TypeError: ``max_iters`` or ``samples`` not an int, ``tol`` not a number.

    References:
      Krähenbühl, Doersch, Donahue & Darrell, arXiv:1511.06856, 2015 (Section 3); reference
      implementation ``calibrateGradientRatio`` in ``philkr/magic_init``.
    """
    max_iters = check_int(_FN, "max_iters", max_iters, minimum=0)
    tol = float(check_number(_FN, "tol", tol, nonnegative=True))
    samples = check_int(_FN, "samples", samples, minimum=1)
    check_key(_FN, "key", key)
    inputs = model_inputs(batch, input_key, _FN)
    leaves = flat(params)[0]
    pairs = _check_layers(layers, leaves)
    n = len(pairs)

    def rescale(x, s):  # in float32 (float64 for float64 leaves), back to x's dtype
        wide = jnp.float64 if x.dtype == jnp.float64 else jnp.float32
        return (x.astype(wide) * s.astype(wide)).astype(x.dtype)

    def build(kernels, scale):
        """Params with the given kernels and the biases for the total kernel ``scale``."""
        new = {k: w for (k, _), w in zip(pairs, kernels, strict=True)}
        cum = jnp.cumprod(scale)
        new.update({b: rescale(leaves[b], cum[j]) for j, (_, b) in enumerate(pairs) if b})
        return replace_leaves(params, new)

    scaled = lambda scale: [rescale(leaves[k], scale[j]) for j, (k, _) in enumerate(pairs)]

    def measure(scale, it):
        """Rates ``r[L]`` and the output std for the params with total kernel ``scale``."""
        kernels = scaled(scale)
        out, vjp = jax.vjp(lambda ks: apply_fn(build(ks, scale), inputs), kernels)
        if not is_float(out):
            what = f"{type(out).__name__} with dtype {getattr(out, 'dtype', None)}"
            raise ValueError(f"{_FN}: apply_fn must return one floating array, got {what}.")
        rows = out.reshape(-1, 1) if out.ndim <= 1 else out.reshape(-1, out.shape[-1])
        if rows.shape[0] < 2:
            why = "fewer than 2 samples per output unit (the last axis), so its std is undefined"
            raise ValueError(f"{_FN}: the output of apply_fn has shape {out.shape}: {why}.")
        kit = jax.random.fold_in(key, it)

        def add_sample(j, acc):
            # samples=1: g from fold_in(key, it) itself, the reference's single draw
            kj = jax.random.fold_in(kit, j) if samples > 1 else kit
            g = jax.random.normal(kj, out.shape, jnp.float32)
            (grads,) = vjp(g.astype(out.dtype))
            return acc + jnp.stack([jnp.mean(jnp.square(gk.astype(jnp.float32))) for gk in grads])

        gsq = jax.lax.fori_loop(0, samples, add_sample, jnp.zeros((n,), jnp.float32)) / samples
        wsq = jnp.stack([jnp.mean(jnp.square(wk.astype(jnp.float32))) for wk in kernels])
        return jnp.sqrt(gsq / wsq), jnp.mean(jnp.std(rows.astype(jnp.float32), axis=0))

    def decide(r, std):
        """``(valid, converged, c)`` for the rates ``r`` and output ``std`` of one iteration."""
        log_r = jnp.log(r)
        log_t = jnp.mean(log_r) + jnp.log(std) / n
        valid = jnp.all(jnp.isfinite(log_r)) & jnp.isfinite(log_t)
        # |log r_k / log t - 1| < tol, without dividing by log t (never true when log t == 0).
        conv = valid & jnp.all(jnp.abs(log_r - log_t) < tol * jnp.abs(log_t))
        return valid, conv, jnp.exp(0.5 * (log_r - log_t))

    def cond(state):
        it, _, r, std = state
        valid, conv, _ = decide(r, std)
        return (it < max_iters) & valid & ~conv

    def body(state):
        it, scale, r, std = state
        scale = scale * decide(r, std)[2]
        return it + 1, scale, *measure(scale, it + 1)

    ones = jnp.ones((n,), jnp.float32)
    r0, std0 = measure(ones, 0)
    it, scale, r, std = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), ones, r0, std0))
    ratios = (r0, r, scale, it, decide(r, std)[1], std0, std)
    report = BetweenLayerReport(tuple(k for k, _ in pairs), max_iters, tol, *ratios)
    if not traced(report):
        report.check()
    return build(scaled(scale), scale), report
