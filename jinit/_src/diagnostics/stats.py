"""Per-layer activation, gradient and weight statistics of a model on a batch, as a flat
``group/path/stat`` dict of scalars; a pure, jittable, vmappable function of (params, batch).
Keys, definitions and how layers inside lifted transforms are handled: docs/diagnosing.md."""

from __future__ import annotations

import collections
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from jax.extend import core as jex_core

from jinit._src.checks import InitWarning
from jinit._src.datadep.capture import as_apply, model_inputs
from jinit._src.reinit import path_string

_FN = "layer_statistics"
# Private linen collection that carries values out of nn.remat-like transforms.
_COLLECTION = "jinit_tape"


def _sums(a: jax.Array, kind: str) -> jax.Array:
    """The sums of one tensor that its statistics are computed from."""
    a = a.astype(jnp.float32)
    sums = [jnp.sum(a), jnp.sum(a * a)]
    if kind == "act":
        units = a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)
        sums += [
            jnp.sum(a == 0),
            jnp.sum(jnp.abs(a) > 0.99),
            jnp.sum((a < 0.01) | (a > 0.99)),
            jnp.sum(jnp.abs(a) > 1.0),
            jnp.sum((a < 0.0) | (a > 1.0)),
            jnp.sum(jnp.all(units == 0, axis=0)),
        ]
    return jnp.stack([x.astype(jnp.float32) for x in sums])


def _stats(arrays: Mapping[str, jax.Array], kind: str) -> dict[str, jax.Array]:
    """``{"name/stat": scalar}`` for ``kind`` "act", "grad" or "param": per-tensor sums, then
    vector arithmetic over all tensors at once (a small compiled program)."""
    names = [k for k, a in arrays.items() if a.size]
    if not names:
        return {}
    shapes = [arrays[k].shape for k in names]
    sums = jnp.stack([_sums(arrays[k], kind) for k in names])
    size = jnp.asarray([math.prod(s) for s in shapes], jnp.float32)
    mean, mean_sq = sums[:, 0] / size, sums[:, 1] / size
    cols = {"mean": mean, "std": jnp.sqrt(jnp.maximum(mean_sq - jnp.square(mean), 0.0))}
    if kind != "act":
        cols["norm"] = jnp.sqrt(sums[:, 1])
    if kind == "grad":
        del cols["mean"]
    if kind == "act":
        zero = jnp.float32(0.0)
        cols["zero_frac"] = sums[:, 2] / size
        cols["dead_frac"] = sums[:, 7] / jnp.asarray([s[-1] if s else 1 for s in shapes])
        cols["sat_frac"] = jnp.where(sums[:, 5] == 0, sums[:, 3] / size, zero)
        cols["sat01_frac"] = jnp.where(sums[:, 6] == 0, sums[:, 4] / size, zero)
    out = {f"{k}/{stat}": col[i] for stat, col in cols.items() for i, k in enumerate(names)}
    if kind == "param":  # fan_in * Var(W): the mean-field sigma_w**2 of (fan_in..., out) kernels
        for i, k in enumerate(names):
            if len(shapes[i]) >= 2:
                out[f"{k}/fan_in_var"] = math.prod(shapes[i][:-1]) * cols["std"][i] ** 2
    return out


def activation_stats(a: jax.Array) -> dict[str, jax.Array]:
    """Mean, std, zero/dead fractions and saturated fractions of one activation tensor.

    The std is ``sqrt(E[a**2] - E[a]**2)`` in float32, accurate while ``|mean| / std`` stays
    below ~1e3.

    Args:
      a: array whose last axis indexes units (batch and positions before it).

    Returns:
      ``{"mean", "std", "zero_frac", "dead_frac", "sat_frac", "sat01_frac"}``, float32
      scalars, defined in docs/diagnosing.md.

    Raises:
      ValueError: ``a`` is empty (no value to measure).
    """
    a = jnp.asarray(a)
    if a.size == 0:
        raise ValueError(f"activation_stats: a has shape {a.shape}, no value to measure")
    return {k.split("/")[1]: v for k, v in _stats({"a": a}, "act").items()}


def _is_float_array(x) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape") and jnp.issubdtype(x.dtype, jnp.inexact)


def _flat(tree) -> dict[str, jax.Array]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {path_string(p): leaf for p, leaf in leaves if _is_float_array(leaf)}


def _trace():
    return jex_core.get_opaque_trace_state(convention="nnx")


class _Tape:
    """Inputs and outputs of the module calls of one trace, keyed by module path.

    Values traced at the level of the ``layer_statistics`` call are kept here. Inside a lifted
    transform they leave only through a channel the transform carries (``sow``, linen); where
    there is none the layer is listed in ``skipped`` instead (never a tracer leak).
    """

    def __init__(self, perturb: Mapping[str, jax.Array] | None, include):
        self.perturb, self.include, self.top = perturb, include, _trace()
        self.order: list[str] = []
        self.inputs: dict[str, jax.Array] = {}
        self.outputs: dict[str, jax.Array] = {}
        self.skipped: dict[str, str] = {}
        self.normalizing: set[str] = set()
        self._calls: collections.Counter = collections.Counter()
        self._active: list[Any] = []

    def call(self, path: str, module: Any, fn: Callable, args, kwargs, sow=None):
        if (self._active and self._active[-1] is module) or (
            self.include is not None and not self.include(path, module)
        ):
            return fn(*args, **kwargs)
        n = self._calls[path]
        name = path if n == 0 else f"{path}@{n}"
        x = args[0] if args and _is_float_array(args[0]) else None
        inner = _trace() != self.top
        if inner and (sow is None or not sow(f"in:{name}", () if x is None else x)):
            self.skipped[path] = "it runs inside a lifted transform (scan, vmap, RNN, ...)"
            return fn(*args, **kwargs)
        self._calls[path] += 1
        self.order.append(name)
        if _normalizes(module, kwargs):
            self.normalizing.add(name)
        if x is not None and not inner:
            self.inputs[name] = x
        self._active.append(module)
        try:
            out = fn(*args, **kwargs)
        finally:
            self._active.pop()
        leaves, treedef = jax.tree_util.tree_flatten(out)
        slots = [i for i, leaf in enumerate(leaves) if _is_float_array(leaf)]
        for k, i in enumerate(slots):
            key = name if len(slots) == 1 else f"{name}[{k}]"
            if self.perturb is not None:
                leaves[i] = leaves[i] + self.perturb[key]
            if inner:
                sow(f"out:{key}", leaves[i])
            else:
                self.outputs[key] = leaves[i]
        return jax.tree_util.tree_unflatten(treedef, leaves)

    def read_sown(self, collection) -> None:
        """Adds the values sown inside lifted transforms (``in:name`` / ``out:key``)."""
        for path, value in jax.tree_util.tree_flatten_with_path(
            collection, is_leaf=lambda v: isinstance(v, tuple)
        )[0]:
            kind, _, name = str(getattr(path[-1], "key", "")).partition(":")
            if value and _is_float_array(value[0]):
                (self.inputs if kind == "in" else self.outputs)[name] = value[0]


def _normalizes(module: Any, kwargs) -> bool:
    """Whether the call removes the scale of its input (train-mode BatchNorm, LayerNorm, ...)."""
    if isinstance(module, (nn.BatchNorm, nnx.BatchNorm)):
        running = kwargs.get("use_running_average")
        return not (module.use_running_average if running is None else running)
    return isinstance(
        module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nnx.LayerNorm, nnx.GroupNorm, nnx.RMSNorm)
    )


def _check_batch_stats(module: nn.Module, path: str, kwargs) -> None:
    if not isinstance(module, nn.BatchNorm):
        return
    running = nn.merge_param(
        "use_running_average", module.use_running_average, kwargs.get("use_running_average")
    )
    if running and not module.has_variable("batch_stats", "mean"):
        raise ValueError(
            f"{_FN}: BatchNorm {path!r} runs in eval mode (use_running_average=True) but params "
            "holds no batch_stats; pass the full variables dict {'params': ..., 'batch_stats': "
            "...}, or run it in train mode"
        )


def _linen_recording(tape: _Tape, call: Callable[[], Any]):
    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not module.path:
            return next_fun(*args, **kwargs)
        path = "/".join(map(str, module.path))
        _check_batch_stats(module, path, kwargs)
        sow = lambda name, value: module.sow(_COLLECTION, name, value)  # noqa: E731
        return tape.call(path, module, next_fun, args, kwargs, sow)

    with nn.intercept_methods(interceptor):
        return call()


_RECORDING: dict[type, type] = {}


def _recording_class(cls: type) -> type:
    """A subclass of ``cls`` whose ``__call__`` reports to the instance's ``_jinit_tape``.

    Only the private copy that ``nnx.merge`` makes inside each trace gets it (``cls`` and the
    user's objects are untouched). Copies made inside NNX transforms keep the class and the
    static ``_jinit_tape``/``_jinit_path``, so the tape sees their calls and skips them.
    """
    if cls not in _RECORDING:

        def __call__(self, *args, **kwargs):
            parent = super(sub, self).__call__
            return self._jinit_tape.call(self._jinit_path, self, parent, args, kwargs)

        sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})
        _RECORDING[cls] = sub
    return _RECORDING[cls]


def _runner(model, params, rngs, apply_kwargs):
    """Returns ``(run(p, x, tape) -> outputs, p0)`` with every module call reported to tape."""
    kwargs = dict(apply_kwargs or {})
    if isinstance(model, (nnx.Module, nnx.GraphDef)):
        if isinstance(model, nnx.Module):
            graphdef, own, rest = nnx.split(model, nnx.Param, ...)
            p0 = own if params is None else params
        else:
            graphdef = model
            p0, rest = nnx.State(params).split(nnx.Param, ...)

        def run(p, x, tape):
            merged = nnx.merge(graphdef, p, rest)
            for path, m in nnx.iter_modules(merged):
                if path:
                    object.__setattr__(m, "__class__", _recording_class(type(m)))
                    object.__setattr__(m, "_jinit_path", path_string(path))
                    object.__setattr__(m, "_jinit_tape", tape)
            return merged(x, **kwargs)

        return run, p0
    if isinstance(model, nn.Module):
        if params is None:
            raise ValueError(f"{_FN}: params is None; a linen module needs its variables")
        is_variables = isinstance(params, Mapping) and "params" in params
        others = {k: v for k, v in params.items() if k != "params"} if is_variables else {}
        mutable = kwargs.pop("mutable", [])
        mutable = [mutable] if isinstance(mutable, str) else list(mutable or [])

        def run(p, x, tape):
            out, state = _linen_recording(
                tape,
                lambda: model.apply(
                    {"params": p, **others},
                    x,
                    rngs=rngs,
                    mutable=[*mutable, _COLLECTION],
                    **kwargs,
                ),
            )
            tape.read_sown(state.get(_COLLECTION, {}))
            return out

        return run, params["params"] if is_variables else params
    apply, p0, _ = as_apply(model, params, rngs=rngs, apply_kwargs=kwargs)
    return (lambda p, x, tape: _linen_recording(tape, lambda: apply(p, x))), p0


def _default_loss(outputs, batch):
    del batch
    leaves = [x for x in jax.tree_util.tree_leaves(outputs) if _is_float_array(x)]
    return sum(jnp.mean(x.astype(jnp.float32)) for x in leaves)


def _check_inputs(inputs) -> None:
    for leaf in jax.tree_util.tree_leaves(inputs):
        shape = getattr(leaf, "shape", ())
        if shape and (shape[0] == 0 or math.prod(shape) == 0):
            raise ValueError(
                f"{_FN}: batch holds an empty input of shape {tuple(shape)}; statistics need "
                "at least one example"
            )


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

    For each submodule call, in execution order: the output's mean, std, dead and saturated
    fractions, the same for its input (the previous activation function's output), and the
    norm and std of ``dL/d output``; for every parameter its mean, std, norm and
    ``fan_in * Var(W)``, and the norm and std of ``dL/d param``. Keys are
    ``group/path/stat`` (``output``, ``input``, ``output_grad``, ``param``, ``param_grad``,
    ``summary``); docs/diagnosing.md lists them and defines each statistic. The gradient with
    respect to a layer's output ``y`` is obtained by running the model with ``y + e`` in its
    place and differentiating by ``e`` at ``e = 0``. Layers inside ``nn.remat`` are recorded;
    layers inside ``nn.scan``, ``nn.RNN``, ``nn.vmap`` and NNX transforms are skipped with an
    ``InitWarning`` naming them.

    Args:
      model: a ``flax.linen.Module``, a ``flax.nnx.Module``, an ``nnx.GraphDef`` (with its
        state as ``params``), or ``apply_fn(params, inputs)`` (linen modules called inside it
        at its top level are recorded).
      params: linen: the ``params`` collection, or the full variables dict (other collections
        are held fixed); nnx: an ``nnx.State`` of ``nnx.Param`` (``None``: the model's own);
        apply_fn: whatever it takes.
      batch: the inputs, a tuple whose first element is the inputs, or a mapping (see
        ``input_key``).
      loss_fn: ``loss_fn(outputs, batch) -> scalar``. Default ``mean(outputs)``.
      input_key: key or index of the inputs in ``batch``; by default a mapping's ``"inputs"``
        or ``"x"`` entry, a sequence's first element, or the batch itself.
      rngs: linen only, passed to ``apply`` (e.g. ``{"dropout": key}``).
      apply_kwargs: extra keyword arguments of the model call, e.g. ``{"train": False}``.
        For linen, ``mutable=[...]`` is accepted and the updated collections are dropped.
      include: ``include(path, module) -> bool`` selects the submodules recorded (default:
        all but the root).

    Returns:
      ``dict[str, jax.Array]`` of float32 scalars (``index`` entries are int32).

    Raises:
      ValueError: the inputs cannot be found in ``batch`` or are empty; ``params`` is
        missing; a linen BatchNorm in eval mode has no ``batch_stats``; no layer was recorded.
      TypeError: if ``model`` is neither a Flax module nor callable.

    Example::

      stats = jax.jit(lambda p, b: layer_statistics(model, p, b, loss))(params, batch)
      stats["input/Dense_1/dead_frac"]  # dead ReLUs between Dense_0 and Dense_1
    """
    inputs = model_inputs(batch, input_key)
    _check_inputs(inputs)
    loss_fn = _default_loss if loss_fn is None else loss_fn
    run, diff_params = _runner(model, params, rngs, apply_kwargs)

    # Pass 1 (tracing only): which calls happen, and the shapes of their outputs.
    probed: list[_Tape] = []

    def probe(p, x):
        probed.append(_Tape(None, include))
        run(p, x, probed[-1])
        return probed[-1].outputs

    shapes = jax.eval_shape(probe, diff_params, inputs)
    order, skipped, normalizing = probed[-1].order, probed[-1].skipped, probed[-1].normalizing
    if skipped:
        warnings.warn(
            f"{_FN}: {len(skipped)} layer(s) not recorded: "
            + "; ".join(f"{p} ({why})" for p, why in skipped.items()),
            InitWarning,
            stacklevel=2,
        )
    if not order:
        raise ValueError(
            f"{_FN}: the model call recorded no layer (model is a {type(model).__name__}; "
            "plain-JAX functions have no modules to record, and include= may exclude all)"
        )
    perturb = {k: jnp.zeros(s.shape, s.dtype) for k, s in shapes.items()}

    # Pass 2: forward and backward with zero perturbations on every recorded output.
    def loss_with_taps(p, e):
        tape = _Tape(e, include)
        out = run(p, inputs, tape)
        loss = loss_fn(out, batch)
        return loss, (loss, tape.inputs, tape.outputs)

    (g_params, g_out), (loss, ins, outs) = jax.grad(loss_with_taps, argnums=(0, 1), has_aux=True)(
        diff_params, perturb
    )

    stats: dict[str, jax.Array] = {}
    out_keys = []
    for index, name in enumerate(order):
        for key in outs:
            if key == name or key.startswith(name + "["):
                out_keys.append(key)
                stats[f"output/{key}/index"] = jnp.asarray(index, jnp.int32)
        if name in normalizing and name in outs:
            stats[f"output/{name}/normalizes"] = jnp.asarray(1, jnp.int32)
    params, grads = _flat(diff_params), _flat(g_params)
    for group, arrays, kind in (
        ("output", {k: outs[k] for k in out_keys}, "act"),
        ("output_grad", {k: g_out[k] for k in out_keys}, "grad"),
        ("input", {n: ins[n] for n in order if n in ins}, "act"),
        ("param", params, "param"),
        ("param_grad", grads, "grad"),
    ):
        stats.update({f"{group}/{k}": v for k, v in _stats(arrays, kind).items()})
    stats["summary/loss/value"] = jnp.asarray(loss, jnp.float32)
    for group, names in (("param", params), ("param_grad", grads)):
        squares = [jnp.square(stats[f"{group}/{n}/norm"]) for n in names if names[n].size]
        stats[f"summary/{group}/norm"] = jnp.sqrt(sum(squares, jnp.float32(0.0)))
    return stats
