"""Per-layer statistics of a Flax model on a batch, and the check that reads them.

The contract, for training loops that log it every N steps::

    layer_statistics(
        model,                # flax.linen.Module, flax.nnx.Module, or apply_fn(params, inputs)
        params,               # linen: params or {"params": ..., "batch_stats": ...};
                              # nnx: nnx.State of nnx.Param (None: the model's own)
        batch,                # inputs array, (inputs, targets, ...) tuple, or a mapping
        loss_fn=None,         # loss_fn(outputs, batch) -> scalar; default mean(outputs)
        *,
        input_key=None,       # key or index of the inputs inside `batch`
        rngs=None,            # linen only: rngs for apply (dropout)
        apply_kwargs=None,    # extra keyword arguments for the model call (train=False)
        include=None,         # include(path, module) -> bool: which submodules to record
    ) -> dict[str, jax.Array] # flat, keyed "group/path/stat", float32 scalars

It is a pure function of (params, batch): ``jax.jit`` it (close over the model and loss), and
``jax.vmap`` it over stacked params or batches. One call costs one forward and one backward
pass. Groups:

* ``output/<module path>/{index, mean, std, zero_frac, dead_frac, sat_frac, sat01_frac}``:
  each submodule call's output (for Dense/Conv: the pre-activation); ``index`` is the call's
  position in execution order (calls are numbered when they start, so a block precedes the
  layers inside it).
* ``input/<module path>/{mean, std, zero_frac, dead_frac, sat_frac, sat01_frac}``: the call's
  first positional argument. For a layer that follows an activation function this *is* the
  activation's output, which is how dead ReLUs and saturated tanh units are seen even though
  Flax activations are plain functions, not modules.
* ``output_grad/<module path>/{norm, std}``: gradient of the loss with respect to the call's
  output (obtained by adding a zero perturbation to the output and differentiating by it).
* ``param/<param path>/{mean, std, norm, fan_in_var}`` and ``param_grad/<param path>/{norm,
  std}``; ``fan_in_var`` (kernels only) is ``prod(shape[:-1]) * Var(W)``, the sigma_w**2 of
  mean-field theory for (fan_in..., fan_out) kernels: 2 for He, 1 for LeCun.
* ``summary/loss/value``, ``summary/param/norm``, ``summary/param_grad/norm``.

Statistic definitions: ``zero_frac`` is the fraction of entries exactly 0; ``dead_frac`` the
fraction of units (last axis) that are exactly 0 for every example and position of the batch;
``sat_frac`` the fraction with ``|a| > 0.99`` (saturated tanh), reported as 0 when the tensor
leaves [-1, 1]; ``sat01_frac`` the fraction with ``a < 0.01`` or ``a > 0.99`` (saturated
sigmoid), reported as 0 when the tensor leaves [0, 1]. A module that returns a pytree gets one
entry per floating leaf, named ``path[k]``; a module called more than once gets ``path@1``,
``path@2``, ... for the later calls.

Capture uses ``flax.linen.intercept_methods`` for linen (so it also works inside a plain
``apply_fn`` that calls linen modules) and, for NNX, a temporary wrapper around ``__call__`` of
the model's submodule classes during tracing (the approach ``nnx.capture`` takes). Modules
inside lifted transforms (``nn.scan``, ``nn.remat``, ``nnx.scan``, ...) cannot be recorded;
exclude them with ``include``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jinit._src import reinit

#: Gradient-norm ratio (first layer / last layer) beyond which :func:`diagnose` reports
#: vanishing (< 1/GRADIENT_RATIO) or exploding (> GRADIENT_RATIO) gradients.
GRADIENT_RATIO = 100.0
#: Same for the forward signal: std of the last hidden layer's output / the first layer's.
ACTIVATION_RATIO = 100.0
#: A layer whose input has at least this fraction of dead units is reported.
DEAD_FRACTION = 0.5
#: A layer whose input has at least this fraction of saturated entries is reported.
SATURATED_FRACTION = 0.5


# --------------------------------------------------------------------------- statistics


def _means(*features: jax.Array) -> jax.Array:
    """Means of same-shaped features in one fused reduction (few kernels per measured tensor)."""
    stacked = jnp.stack([f.astype(jnp.float32) for f in features])
    return jnp.mean(stacked, axis=tuple(range(1, stacked.ndim)))


def _std(mean: jax.Array, mean_sq: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.maximum(mean_sq - jnp.square(mean), 0.0))


def activation_stats(a: jax.Array) -> dict[str, jax.Array]:
    """Mean, std, zero/dead fractions and saturated fractions of one activation tensor.

    All statistics come from two reductions: the means of stacked elementwise features, and
    the per-unit fraction of zeros. The std is ``sqrt(E[a**2] - E[a]**2)`` in float32, accurate
    while ``|mean| / std`` stays below ~1e3.

    Args:
      a: array whose last axis indexes units (batch and positions before it).

    Returns:
      ``{"mean", "std", "zero_frac", "dead_frac", "sat_frac", "sat01_frac"}``, float32
      scalars; see the module docstring for the definitions.
    """
    a = jnp.asarray(a).astype(jnp.float32)
    units = a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)
    mean, mean_sq, tanh_sat, sigmoid_sat, outside_pm1, outside_01 = _means(
        a,
        a * a,
        jnp.abs(a) > 0.99,
        (a < 0.01) | (a > 0.99),
        jnp.abs(a) > 1.0,
        (a < 0.0) | (a > 1.0),
    )
    zeros_per_unit = jnp.mean((units == 0).astype(jnp.float32), axis=0)
    zero = jnp.float32(0.0)
    return {
        "mean": mean,
        "std": _std(mean, mean_sq),
        "zero_frac": jnp.mean(zeros_per_unit),
        "dead_frac": jnp.mean((zeros_per_unit == 1.0).astype(jnp.float32)),
        "sat_frac": jnp.where(outside_pm1 == 0, tanh_sat, zero),
        "sat01_frac": jnp.where(outside_01 == 0, sigmoid_sat, zero),
    }


def _grad_stats(g: jax.Array) -> dict[str, jax.Array]:
    g = jnp.asarray(g).astype(jnp.float32)
    mean, mean_sq = _means(g, g * g)
    return {"norm": jnp.sqrt(mean_sq * g.size), "std": _std(mean, mean_sq)}


def _param_stats(w: jax.Array) -> dict[str, jax.Array]:
    w = jnp.asarray(w).astype(jnp.float32)
    mean, mean_sq = _means(w, w * w)
    std = _std(mean, mean_sq)
    out = {"mean": mean, "std": std, "norm": jnp.sqrt(mean_sq * w.size)}
    if w.ndim >= 2:
        out["fan_in_var"] = math.prod(w.shape[:-1]) * jnp.square(std)
    return out


def _grouped(fn, arrays: Mapping[str, jax.Array], group: str, stats: dict) -> None:
    """Sets ``stats[f"{group}/{name}/{stat}"] = fn(arrays[name])[stat]``.

    Arrays of equal shape and dtype (the hidden layers of a uniform network) are stacked and
    measured by one vmapped ``fn``, so the compiled program does not grow with depth.
    """
    by_shape = collections.defaultdict(list)
    for name, a in arrays.items():
        by_shape[(a.shape, a.dtype)].append(name)
    for names in by_shape.values():
        out = jax.vmap(fn)(jnp.stack([arrays[n] for n in names]))
        for i, name in enumerate(names):
            for stat, v in out.items():
                stats[f"{group}/{name}/{stat}"] = v[i]


def _flat_with_paths(tree) -> list[tuple[str, jax.Array]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(reinit.path_string(p), leaf) for p, leaf in leaves if _is_float_array(leaf)]


def _is_float_array(x) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape") and jnp.issubdtype(x.dtype, jnp.inexact)


# --------------------------------------------------------------------------- capture


class _Tape:
    """Records module inputs/outputs during one trace; adds the output perturbations."""

    def __init__(self, perturb: Mapping[str, jax.Array] | None, include):
        self.perturb = perturb
        self.include = include
        self.order: list[str] = []
        self.inputs: dict[str, jax.Array] = {}
        self.outputs: dict[str, jax.Array] = {}
        self._calls: collections.Counter = collections.Counter()
        self._active: list[int] = []

    def call(self, path: str, module: Any, fn: Callable, args, kwargs):
        if (self._active and self._active[-1] == id(module)) or (
            self.include is not None and not self.include(path, module)
        ):
            return fn(*args, **kwargs)
        n = self._calls[path]
        self._calls[path] += 1
        name = path if n == 0 else f"{path}@{n}"
        self.order.append(name)
        if args and _is_float_array(args[0]):
            self.inputs[name] = args[0]
        self._active.append(id(module))
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
            self.outputs[key] = leaves[i]
        return jax.tree_util.tree_unflatten(treedef, leaves)


@contextlib.contextmanager
def _linen_capture(tape: _Tape):
    def interceptor(next_fun, args, kwargs, context):
        path = context.module.path
        if context.method_name != "__call__" or not path:
            return next_fun(*args, **kwargs)
        return tape.call("/".join(map(str, path)), context.module, next_fun, args, kwargs)

    with nn.intercept_methods(interceptor):
        yield


@contextlib.contextmanager
def _nnx_capture(root: nnx.Module, tape: _Tape):
    paths = {id(m): "/".join(map(str, p)) for p, m in nnx.iter_modules(root) if p}
    modules = [m for p, m in nnx.iter_modules(root) if p]
    classes = list(dict.fromkeys(type(m) for m in modules))
    originals = {cls: (cls.__dict__.get("__call__"), cls.__call__) for cls in classes}

    def make_wrapper(orig):
        def wrapper(self, *args, **kwargs):
            path = paths.get(id(self))
            if path is None:
                return orig(self, *args, **kwargs)
            return tape.call(path, self, lambda *a, **k: orig(self, *a, **k), args, kwargs)

        return wrapper

    try:
        for cls, (_, resolved) in originals.items():
            cls.__call__ = make_wrapper(resolved)
        yield
    finally:
        for cls, (own, _) in originals.items():
            if own is None:
                del cls.__call__
            else:
                cls.__call__ = own


def _model_inputs(batch, input_key):
    if input_key is not None:
        return batch[input_key]
    if isinstance(batch, Mapping):
        for key in ("inputs", "x"):
            if key in batch:
                return batch[key]
        raise ValueError(
            f"batch is a mapping with keys {sorted(batch)}; pass input_key= to say which holds "
            "the model inputs (tried 'inputs' and 'x')"
        )
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def _default_loss(outputs, batch):
    del batch
    leaves = [x for x in jax.tree_util.tree_leaves(outputs) if _is_float_array(x)]
    return sum(jnp.mean(x.astype(jnp.float32)) for x in leaves)


def _runner(model, params, rngs, apply_kwargs):
    """Returns (run(diff_params, inputs, tape) -> outputs, diff_params)."""
    apply_kwargs = dict(apply_kwargs or {})
    if isinstance(model, nnx.Module):
        graphdef, own_params, rest = nnx.split(model, nnx.Param, ...)
        diff = own_params if params is None else params

        def run(p, x, tape):
            merged = nnx.merge(graphdef, p, rest)
            with _nnx_capture(merged, tape):
                return merged(x, **apply_kwargs)

        return run, diff
    if params is None:
        raise ValueError("params is required for linen modules and apply functions")
    if isinstance(model, nn.Module):
        is_variables = isinstance(params, Mapping) and "params" in params
        others = {k: v for k, v in params.items() if k != "params"} if is_variables else {}
        diff = params["params"] if is_variables else params
        mutable = apply_kwargs.pop("mutable", False)

        def run(p, x, tape):
            with _linen_capture(tape):
                out = model.apply(
                    {"params": p, **others}, x, rngs=rngs, mutable=mutable, **apply_kwargs
                )
            return out[0] if mutable else out

        return run, diff
    if not callable(model):
        raise TypeError(
            f"model must be a linen Module, an nnx Module or apply_fn(params, x); got {type(model)}"
        )

    def run(p, x, tape):
        with _linen_capture(tape):
            return model(p, x, **apply_kwargs)

    return run, params


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
    ``group/path/stat``; the module docstring lists them and defines each statistic.

    The gradient with respect to a layer's output ``y`` is obtained by running the model with
    ``y + e`` in its place and differentiating by ``e`` at ``e = 0``.

    Args:
      model: a ``flax.linen.Module``, a ``flax.nnx.Module``, or ``apply_fn(params, inputs)``
        (linen modules called inside it are recorded).
      params: linen: the ``params`` collection, or the full variables dict (other collections
        are held fixed); nnx: an ``nnx.State`` of ``nnx.Param`` (``None``: the model's own);
        apply_fn: whatever it takes.
      batch: the inputs, a tuple whose first element is the inputs, or a mapping (see
        ``input_key``).
      loss_fn: ``loss_fn(outputs, batch) -> scalar``. Default ``mean(outputs)``, whose gradient
        with respect to the outputs is constant, so the backward statistics measure the
        network's Jacobians alone.
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
      ValueError: if the inputs cannot be found in ``batch``, or ``params`` is missing.
      TypeError: if ``model`` is neither a Flax module nor callable.

    Example::

      stats = jax.jit(lambda p, b: layer_statistics(model, p, b, loss))(params, batch)
      stats["input/Dense_1/dead_frac"]  # dead ReLUs between Dense_0 and Dense_1
    """
    inputs = _model_inputs(batch, input_key)
    loss_fn = _default_loss if loss_fn is None else loss_fn
    run, diff_params = _runner(model, params, rngs, apply_kwargs)

    # Pass 1 (tracing only): which calls happen, and the shapes of their outputs.
    order: list[str] = []

    def probe(p, x):
        tape = _Tape(None, include)
        run(p, x, tape)
        order.extend(tape.order)
        return tape.outputs

    shapes = jax.eval_shape(probe, diff_params, inputs)
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
    out_keys = [k for name in order for k in outs if k == name or k.startswith(name + "[")]
    for index, name in enumerate(order):
        for key in out_keys:
            if key == name or key.startswith(name + "["):
                stats[f"output/{key}/index"] = jnp.asarray(index, jnp.int32)
    _grouped(activation_stats, {k: outs[k] for k in out_keys}, "output", stats)
    _grouped(_grad_stats, {k: g_out[k] for k in out_keys}, "output_grad", stats)
    _grouped(activation_stats, {n: ins[n] for n in order if n in ins}, "input", stats)
    params = dict(_flat_with_paths(diff_params))
    grads = dict(_flat_with_paths(g_params))
    _grouped(_param_stats, params, "param", stats)
    _grouped(_grad_stats, grads, "param_grad", stats)
    stats["summary/loss/value"] = jnp.asarray(loss, jnp.float32)
    for group, names in (("param", params), ("param_grad", grads)):
        squares = [jnp.square(stats[f"{group}/{n}/norm"]) for n in names]
        stats[f"summary/{group}/norm"] = jnp.sqrt(sum(squares, jnp.float32(0.0)))
    return stats


# --------------------------------------------------------------------------- reading stats


def split_key(key: str) -> tuple[str, str, str]:
    """``"group/a/b/stat"`` -> ``("group", "a/b", "stat")``."""
    group, rest = key.split("/", 1)
    path, stat = rest.rsplit("/", 1)
    return group, path, stat


def layer_order(stats: Mapping[str, Any], *, leaves_only: bool = False) -> list[str]:
    """Recorded module paths in execution order (from the ``output/<path>/index`` entries).

    Args:
      stats: output of :func:`layer_statistics` (arrays, numbers or a logged copy).
      leaves_only: drop paths that contain other recorded paths (blocks, Sequential wrappers).

    Returns:
      List of paths.
    """
    index = {}
    for key, value in stats.items():
        if key.startswith("output/") and key.endswith("/index"):
            index[split_key(key)[1]] = int(np.asarray(value))
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
    scales = [
        float(np.asarray(v))
        for k, v in stats.items()
        if k.startswith("param/") and k.endswith("/fan_in_var")
    ]
    if not scales:
        return ""
    sw2 = float(np.median(scales))
    text = (
        f" Kernels have fan_in*Var(W) = {sw2:.3g} (median over layers; "
        f"sigma_w = {math.sqrt(sw2):.3g})"
    )
    if activation is None:
        return text + "; pass activation= for the mean-field verdict and a fix."
    from jinit._src import recommend as recommend_lib
    from jinit._src import theory

    name = (
        activation if isinstance(activation, str) else getattr(activation, "__name__", "activation")
    )
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
    gradient_ratio: float = GRADIENT_RATIO,
    activation_ratio: float = ACTIVATION_RATIO,
    dead_fraction: float = DEAD_FRACTION,
    saturated_fraction: float = SATURATED_FRACTION,
) -> list[Finding]:
    """Reads :func:`layer_statistics` output and reports signal-propagation problems.

    Checks, over the leaf layers in execution order (first, ..., last):

    * gradients: ``r = |dL/dy_first| / |dL/dy_last|`` (norms of the output gradients). Vanishing
      if ``r < 1/gradient_ratio``, exploding if ``r > gradient_ratio``; the per-layer factor
      ``r**(1/(L-1))`` is reported too. With fan-in scaled kernels at the critical point the
      norms stay roughly equal whatever the widths.
    * forward signal: std of the last hidden layer's output (the last layer is the readout and
      is skipped when there are at least 3 layers) over the first layer's output, against
      ``activation_ratio`` both ways.
    * dead units: ``input/<layer>/dead_frac >= dead_fraction`` for any layer but the first
      (whose input is the data).
    * saturation: ``input/<layer>/sat_frac >= saturated_fraction`` (``sat01_frac`` when
      ``activation`` is ``"sigmoid"``), again skipping the data.
    * non-finite statistics.

    Args:
      stats: output of :func:`layer_statistics` (arrays or plain numbers).
      activation: the hidden activation, if known: adds the mean-field verdict (chi_1 of the
        measured kernel scale) and the recommended initializer to the messages.
      gradient_ratio: threshold factor for the gradient check (default 100).
      activation_ratio: threshold factor for the forward check (default 100).
      dead_fraction: threshold for dead units (default 0.5).
      saturated_fraction: threshold for saturation (default 0.5).

    Returns:
      A list of :class:`Finding`, in the order nonfinite, gradient, forward signal, dead
      units, saturation; empty when nothing crossed a threshold.
    """
    if activation is not None:
        from jinit._src.theory import activation_fn

        activation_fn(activation)  # ValueError naming the known activations for an unknown name

    def get(key):
        return float(np.asarray(stats[key])) if key in stats else None

    findings: list[Finding] = []
    bad = [k for k, v in stats.items() if not np.all(np.isfinite(np.asarray(v, dtype=np.float64)))]
    if bad:
        findings.append(
            Finding(
                "nonfinite",
                f"{len(bad)} statistics are NaN or inf, e.g. {', '.join(bad[:3])}: the signal "
                "overflowed (exploding) or the loss is undefined.",
                float(len(bad)),
                0.0,
                tuple(split_key(k)[1] for k in bad[:3]),
            )
        )
    layers = [p for p in layer_order(stats, leaves_only=True) if f"output_grad/{p}/norm" in stats]
    if len(layers) < 2:
        return findings
    first, last = layers[0], layers[-1]
    depth = len(layers)
    q_first = get(f"output/{first}/std")
    q_first = None if q_first is None else q_first**2

    unit_findings = []
    sat_stat = "sat01_frac" if activation == "sigmoid" else "sat_frac"
    for stat, kind, threshold, words in (
        (
            "dead_frac",
            "dead_units",
            dead_fraction,
            "units are exactly 0 for the whole batch (dead ReLUs: their pre-activations are "
            "negative for every example, e.g. from a large negative bias or an oversized step)",
        ),
        (
            sat_stat,
            "saturation",
            saturated_fraction,
            "of the entries are saturated (|tanh| > 0.99, or a sigmoid within 0.01 of 0 or 1): "
            "the pre-activations are too large for a saturating activation, whose derivative "
            "is then ~0",
        ),
    ):
        hits = [(p, get(f"input/{p}/{stat}")) for p in layers[1:]]
        hits = [(p, v) for p, v in hits if v is not None and v >= threshold]
        if hits:
            listed = ", ".join(f"{p} {v:.0%}" for p, v in hits[:4])
            unit_findings.append(
                Finding(
                    kind,
                    f"at the input of {len(hits)} layer(s) ({listed}) {words}; "
                    f"threshold {threshold:.0%}.",
                    max(v for _, v in hits),
                    threshold,
                    tuple(p for p, _ in hits),
                )
            )
    dead = next((f for f in unit_findings if f.kind == "dead_units"), None)

    g_first, g_last = get(f"output_grad/{first}/norm"), get(f"output_grad/{last}/norm")
    if g_last == 0.0:
        findings.append(
            Finding(
                "zero_gradient",
                f"the loss gradient at the last layer ({last}) is exactly 0: the loss does not "
                "depend on the output here (a constant loss, or a zero readout seen from below).",
                0.0,
                0.0,
                (last,),
            )
        )
    elif g_first is not None and math.isfinite(g_first) and math.isfinite(g_last):
        ratio = g_first / g_last
        if ratio < 1.0 / gradient_ratio or ratio > gradient_ratio:
            vanishing = ratio < 1.0
            kind = "vanishing_gradient" if vanishing else "exploding_gradient"
            if ratio == 0.0:
                change = (
                    f"is exactly 0 at the first layer ({first}) while the last ({last}) "
                    f"has {g_last:.3g}"
                )
            else:
                factor = 1.0 / ratio if vanishing else ratio
                change = (
                    f"{'falls' if vanishing else 'grows'} by a factor {factor:.3g} from the last "
                    f"layer ({last}: {g_last:.3g}) to the first ({first}: {g_first:.3g}) over "
                    f"{depth} layers, {ratio ** (1.0 / (depth - 1)):.3g} per layer"
                )
            if dead is not None:
                cause = (
                    f". The dead units at {', '.join(dead.layers[:3])} block the backward signal."
                )
            else:
                cause = _kernel_scale_context(stats, activation, q_first)
            findings.append(
                Finding(
                    kind,
                    f"gradient norm {change}: {kind.split('_')[0]} (threshold: factor "
                    f"{gradient_ratio:g}){cause}",
                    ratio,
                    1.0 / gradient_ratio if vanishing else gradient_ratio,
                    (first, last),
                )
            )

    hidden = layers[:-1] if depth >= 3 else layers
    s_first, s_last = get(f"output/{hidden[0]}/std"), get(f"output/{hidden[-1]}/std")
    if s_first and s_last is not None and math.isfinite(s_first) and math.isfinite(s_last):
        ratio = s_last / s_first
        if ratio < 1.0 / activation_ratio or ratio > activation_ratio:
            vanishing = ratio < 1.0
            kind = "vanishing_activation" if vanishing else "exploding_activation"
            if ratio == 0.0:
                change = f"drops from {s_first:.3g} at {hidden[0]} to exactly 0 at {hidden[-1]}"
            else:
                change = (
                    f"{'shrinks' if vanishing else 'grows'} by a factor "
                    f"{(1.0 / ratio if vanishing else ratio):.3g} from {s_first:.3g} at "
                    f"{hidden[0]} to {s_last:.3g} at {hidden[-1]}"
                )
            findings.append(
                Finding(
                    kind,
                    f"output std {change} (threshold: factor {activation_ratio:g}).",
                    ratio,
                    1.0 / activation_ratio if vanishing else activation_ratio,
                    (hidden[0], hidden[-1]),
                )
            )
    return findings + unit_findings
