"""Per-layer activation, gradient and weight statistics as a flat ``group/path/stat`` dict: a pure,
jittable, vmappable function of (params, batch); keys and definitions: docs/diagnosing.md."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from jinit._src.checks import InitWarning
from jinit._src.datadep.capture import Marked, capture
from jinit._src.models import as_apply, model_inputs
from jinit._src.paths import flat, is_float

_FN = "layer_statistics"


def _stats(arrays: Mapping[str, jax.Array], kind: str) -> dict[str, jax.Array]:
    """``{"name/stat": scalar}`` of ``kind`` "act", "grad" or "param" (docs/diagnosing.md)."""
    out = {}
    for name, a in arrays.items():
        if not a.size:
            continue
        a, n = a.astype(jnp.float32), a.size
        mean, sq = jnp.sum(a) / n, jnp.sum(a * a)
        std = jnp.sqrt(jnp.maximum(sq / n - jnp.square(mean), 0.0))
        col = {"mean": mean, "std": std} if kind != "grad" else {"std": std}
        if kind != "act":
            col["norm"] = jnp.sqrt(sq)
        if kind == "param" and a.ndim >= 2:  # mean-field sigma_w**2 of (fan_in..., out) kernels
            col["fan_in_var"] = math.prod(a.shape[:-1]) * std**2
        if kind == "act":
            units = jnp.abs(a).reshape(-1, a.shape[-1] if a.ndim else 1)
            zero = jnp.float32(0.0)
            col["zero_frac"] = jnp.sum(a == 0) / n
            col["dead_frac"] = jnp.sum(jnp.max(units, axis=0) == 0) / units.shape[1]
            saturated = _positive(jnp.abs(a) - 0.99) / n
            col["sat_frac"] = jnp.where(jnp.max(units) > 1.0, zero, saturated)
            near01 = (_positive(0.01 - a) + _positive(a - 0.99)) / n
            col["sat01_frac"] = jnp.where((jnp.min(a) < 0.0) | (jnp.max(a) > 1.0), zero, near01)
        out.update({f"{name}/{stat}": v for stat, v in col.items()})
    return out


def _positive(x: jax.Array) -> jax.Array:
    """The number of entries ``> 0`` as a float sum of signs (cheap to compile on XLA:CPU)."""
    return jnp.sum(jnp.sign(jnp.maximum(x, 0.0)))


def activation_stats(a: jax.Array) -> dict[str, jax.Array]:
    """Mean, std, zero/dead fractions and saturated fractions of one activation tensor.

    Args:
      a: array whose last axis indexes units (batch and positions before it).

    Returns:
      ``{"mean", "std", "zero_frac", "dead_frac", "sat_frac", "sat01_frac"}``, float32
      scalars defined in docs/diagnosing.md.

    Raises:
      ValueError: ``a`` is empty (no value to measure).
    """
    a = jnp.asarray(a)
    if a.size == 0:
        raise ValueError(f"activation_stats: a has shape {a.shape}, no value to measure")
    return {k.split("/")[1]: v for k, v in _stats({"a": a}, "act").items()}


def _normalizes(module: Any, kwargs) -> bool:
    """Whether the call removes the scale of its input (train-mode BatchNorm, LayerNorm, ...)."""
    if isinstance(module, (nn.BatchNorm, nnx.BatchNorm)):
        running = kwargs.get("use_running_average")
        return not (module.use_running_average if running is None else running)
    norms = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nnx.LayerNorm, nnx.GroupNorm, nnx.RMSNorm)
    return isinstance(module, norms)


def _run(model, params, inputs, perturb, include, rngs, apply_kwargs) -> dict[str, Any]:
    """One capture pass: each call's input (``in:path``) and perturbed outputs (``path``)."""
    tape: dict[str, Any] = {"values": {}, "skipped": {}, "normalizing": set()}
    start: dict[str, int] = {}

    def hook(call):
        if not call.enclosing and not isinstance(call.module, Marked) and start:
            return None  # the model itself (it returns last); kept when it is the only layer
        if include is not None and not include(call.path, call.module):
            return None
        if call.lifted and not call.addressable:
            tape["skipped"][call.path.split("@")[0]] = call.lifted
            return None
        start[call.path] = call.start
        if _normalizes(call.module, call.kwargs):
            tape["normalizing"].add(call.path)
        leaves, treedef = jax.tree_util.tree_flatten(call.output)
        slots = [i for i, leaf in enumerate(leaves) if is_float(leaf)]
        found = {}
        for k, i in enumerate(slots):
            key = call.path if len(slots) == 1 else f"{call.path}[{k}]"
            leaves[i] = leaves[i] if perturb is None else leaves[i] + perturb[key]
            found[key] = leaves[i]
        if call.args and is_float(call.args[0]):
            found[f"in:{call.path}"] = call.args[0]
        if call.lifted:  # inside nn.remat: the values leave through the capture layer
            call.record(**{k.replace("/", "|"): v for k, v in found.items()})
        else:
            tape["values"].update(found)
        return jax.tree_util.tree_unflatten(treedef, leaves)

    captured = capture(model, params, inputs, hook, rngs=rngs, apply_kwargs=apply_kwargs, fn=_FN)
    for record in captured.records.values():
        tape["values"].update({k.replace("|", "/"): v for k, v in record.items()})
    tape.update(order=sorted(start, key=start.get), out=captured.outputs)
    for path in captured.missed:  # containers (nnx.List, ...) are never called themselves
        if not any(q.startswith(f"{path}/") for q in start):
            tape["skipped"].setdefault(path, "not called outside an NNX lifted transform")
    return tape


def _default_loss(outputs, _batch):
    leaves = [x for x in jax.tree_util.tree_leaves(outputs) if is_float(x)]
    return sum(jnp.mean(x.astype(jnp.float32)) for x in leaves)


def layer_statistics(
    model,
    params,
    batch,
    loss_fn: Callable[[Any, Any], jax.Array] | None = None,
    *,
    input_key: str | int | None = None,
    rngs: Mapping[str, jax.Array] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    include: Callable[[str, Any], bool] | None = None,
) -> dict[str, jax.Array]:
    """Activation, gradient and weight statistics of every layer, as a flat dict.

    Per module call: its output's and input's mean, std, dead and saturated fractions and
    ``dL/d output``; per parameter its scale and gradient. Keys ``group/path/stat`` are defined
    in docs/diagnosing.md; calls inside ``nn.scan``, ``nn.RNN``, ``nn.vmap`` or an NNX
    transform are skipped with one ``InitWarning`` naming their paths.

    Args:
      model: as for :func:`jinit.lsuv` (a plain ``apply_fn(params, inputs)``: the linen
        modules it calls are recorded).
      params: as for :func:`jinit.lsuv`.
      batch: the inputs, a tuple starting with them, or a mapping (see ``input_key``).
      loss_fn: ``loss_fn(outputs, batch) -> scalar``; default ``mean(outputs)``.
      input_key: key or index of the inputs in ``batch`` (the rule of :func:`jinit.lsuv`).
      rngs: linen only, passed to ``apply`` (e.g. ``{"dropout": key}``).
      apply_kwargs: extra keyword arguments of the call, e.g. ``{"train": False}``; linen
        ``mutable=[...]`` is accepted and the updated collections dropped.
      include: ``include(path, module) -> bool``, the calls recorded (default: all but the
        model itself).

    Returns:
      ``dict[str, jax.Array]`` of float32 scalars (``index``, ``normalizes``: int32).

    Raises:
      ValueError: inputs missing from ``batch``, empty or (concrete) non-finite; ``params``
        missing; a BatchNorm in eval mode without ``batch_stats``; no layer recorded.
      TypeError: ``model`` is neither a Flax module nor callable; ``include`` not callable.
    """
    inputs = model_inputs(batch, input_key, _FN)  # also: not empty, finite where concrete
    if include is not None and not callable(include):  # e.g. a regex string, as lsuv takes
        raise TypeError(f"{_FN}: include must be include(path, module) -> bool, got {include!r}")
    loss_fn = _default_loss if loss_fn is None else loss_fn
    _, p0, merge = as_apply(model, params, rngs=rngs, apply_kwargs=apply_kwargs, fn=_FN)

    def run(p, x, perturb):
        return _run(model, merge(p), x, perturb, include, rngs, apply_kwargs)

    probed: list[dict] = []

    def probe(p, x):  # pass 1, tracing only: which calls happen, the shapes of their values
        probed.append(run(p, x, None))
        return probed[-1]["values"]

    shapes = jax.eval_shape(probe, p0, inputs)
    order, skipped, normalizing = (probed[-1][k] for k in ("order", "skipped", "normalizing"))
    if skipped:
        msg = "; ".join(f"{p} ({why})" for p, why in skipped.items())
        warnings.warn(f"{_FN}: {len(skipped)} layer(s) not recorded: {msg}", InitWarning, 2)
    if not order:
        raise ValueError(
            f"{_FN}: the model call recorded no layer (model is a {type(model).__name__}; "
            "plain-JAX functions have no modules to record, and include= may exclude all)"
        )
    outs = {k: i for i, n in enumerate(order) for k in shapes if k == n or k.startswith(n + "[")}
    perturb = {k: jnp.zeros(shapes[k].shape, shapes[k].dtype) for k in outs}

    def loss_with_taps(p, e):  # pass 2: zero perturbations on every output give dL/d output
        tape = run(p, inputs, e)
        loss = loss_fn(tape["out"], batch)
        return loss, (loss, tape["values"])

    (g_params, g_out), (loss, values) = jax.grad(loss_with_taps, (0, 1), has_aux=True)(p0, perturb)
    stats = {f"output/{k}/index": jnp.asarray(i, jnp.int32) for k, i in outs.items()}
    stats.update({f"output/{k}/normalizes": jnp.int32(1) for k in normalizing & set(outs)})
    params, grads = ({k: v for k, v in flat(t)[0].items() if is_float(v)} for t in (p0, g_params))
    for group, arrays, kind in (
        ("output", {k: values[k] for k in outs}, "act"),
        ("output_grad", {k: g_out[k] for k in outs}, "grad"),
        ("input", {n: values[f"in:{n}"] for n in order if f"in:{n}" in values}, "act"),
        ("param", params, "param"),
        ("param_grad", grads, "grad"),
    ):
        stats.update({f"{group}/{k}": v for k, v in _stats(arrays, kind).items()})
    stats["summary/loss/value"] = jnp.asarray(loss, jnp.float32)
    for group, names in (("param", params), ("param_grad", grads)):
        squares = [jnp.square(stats[f"{group}/{n}/norm"]) for n in names if names[n].size]
        stats[f"summary/{group}/norm"] = jnp.sqrt(sum(squares, jnp.float32(0.0)))
    return stats
