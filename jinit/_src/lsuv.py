r"""LSUV (Mishkin & Matas 2015) as ONE pure, jitted, vmappable pass over a Flax model's params.

API (everything returns new values; nothing is mutated)::

    import jinit

    # Flax linen: orthonormal pre-init in the model, then one call on a batch of real data.
    model = MLP(kernel_init=jinit.lsuv_ready_orthogonal())
    variables = model.init(key, x)                              # or variables["params"]
    variables, report = jinit.lsuv(model, variables, x)         # same structure back
    print(report.summary())                                     # per-layer table (a string)

    # Flax NNX: the state of nnx.split (or pass the module itself with its state).
    graphdef, state = nnx.split(model)
    state, report = jinit.lsuv(graphdef, state, x)
    model = nnx.merge(graphdef, state)                          # or nnx.update(model, state)

    # A plain apply(params, x) whose layers are marked with jinit.lsuv_layer(...).
    params, report = jinit.lsuv(apply, params, x)

    # Seed sweep: one program for all seeds (vmap over init keys).
    def init_one(key):
        return jinit.lsuv(model, model.init(key, x), x)[0]
    stacked = jax.vmap(init_one)(jax.random.split(key, 8))

    # Models with extra inputs or flags: apply_kwargs (arrays are traced, the rest static).
    variables, report = jinit.lsuv(model, variables, x, apply_kwargs={"train": False})

Algorithm 1 of the paper: (1) orthonormal pre-initialisation (``kernel_init=
jinit.lsuv_ready_orthogonal()``, or ``orthogonal_key=key`` to let the pass do it); (2) for each
layer with a kernel, in FORWARD EXECUTION ORDER, measure the variance of its output on the batch,
pooled over the batch and every non-batch position and unit, divide the kernel by
:math:`\sqrt{\mathrm{Var}/\tau}` and repeat until :math:`|\mathrm{Var}-\tau| < \mathrm{tol}` or
``max_iters`` rescalings (defaults from the paper: :math:`\tau = 1`, tol 0.1, 10 iterations).

How the pass is built (and why it is fast):

* It is one ``jax.jit`` program per (model, settings, input shapes), compiled once and cached;
  the model, the settings and the non-array ``apply_kwargs`` are static, params and data traced.
* ONE forward pass: each layer is solved when the forward pass reaches it, on its actual input
  (the prefix before it is already corrected), then the pass continues with the corrected
  output. Cost is linear in depth: one evaluation of each layer plus cheap statistics. For
  affine layers (Dense, DenseGeneral, Conv, ConvTranspose, ConvLocal, Embed, recurrent input
  projections) the pooled variance at kernel scale ``s`` is a quadratic in ``s`` known from the
  output's per-unit moments, and the paper's fixed-point loop is solved in one step (with a
  zero bias, the usual case at init, that IS the paper's first step, after which its loop
  stops; ``iterations`` is then 0 or 1); other layers (Einsum, plain functions not marked
  ``linear=True``, ``measure="post"``) run the paper's loop as a bounded ``lax.while_loop``
  that re-runs only that layer on its captured input. A naive LSUV re-runs the whole network
  per iteration per layer (see ``benchmarks/lsuv.py``).
* Pure: the returned tree has the structure of ``params``; only kernels change (and biases,
  with ``center=True``); every other leaf, including BatchNorm statistics, is bitwise the input.

What is measured: by default the layer's own output before its activation (``measure="pre"``,
the paper's choice; Flax layers do not contain their activation, so this is the layer's output);
``measure="post", activation=jax.nn.relu`` measures ``activation(output)`` instead. With
``center=True`` the bias is then shifted by the pooled mean of the pre-activation output
(variance step first, then the mean step; the pooled variance is shift-invariant, so it stays).

Layers: ``nn.Dense``, ``nn.DenseGeneral`` (so attention projections), ``nn.Einsum``,
``nn.Conv``/``nn.ConvTranspose``/``nn.ConvLocal`` of any dimension and ``feature_group_count``,
``nn.Embed`` (included by default: it is a linear layer on one-hot inputs, so LSUV gives
unit-variance token vectors; exclude it with ``exclude="Embed"``), ``nn.WeightNorm`` and
``nnx.WeightNorm`` (its scale
``g`` is rescaled, since rescaling the direction would be a no-op), and recurrent cells
(``nn.RNN``/``nn.RNNCellBase``: the input projection of each gate is normalised on the cell's
input pooled over batch and time; recurrent kernels ``h*`` are left orthogonal). The NNX
counterparts are covered likewise. Everything else runs as part of the forward pass: BatchNorm in
whatever mode ``apply_kwargs`` select (train mode normalises with batch statistics, eval mode
with the running statistics; running statistics are never updated by the pass), LayerNorm as is,
Dropout replaced by the identity. ``include``/``exclude`` select layers by regex on their path
(``"/"``-joined, as in the report). A selected layer met only inside a lifted transform
(``nn.scan``/``nn.remat``/``nn.vmap`` bodies) cannot be rescaled from there; it is reported as
skipped with that reason (``nn.RNN`` is handled at the top level, so recurrent models should use
it). A layer called several times is solved at its first call.

Errors. Values computed inside ``jit`` cannot raise, so the program records, per layer, a
status (finite input, finite output, zero variance) and the statistics; the Python wrapper
checks the report when the program returns and raises ``ValueError`` naming the first failing
layer in execution order (chosen over ``checkify``: the pass stays one plain XLA program that
vmaps, and the same report answers the question under an outer transform). Under an outer
``jit``/``vmap`` the values are tracers, nothing can be raised, and failing layers are left
unchanged (their status says why); call ``report.check()`` on the concrete report afterwards.
Shape problems (too few values to estimate a variance) raise while tracing. A non-finite batch
is rejected on the host before the program runs. Params returned are finite whenever the
inputs are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import nnx
from flax.core import FrozenDict

from jinit._src import lsuv_engine as eng
from jinit._src import lsuv_linen, lsuv_nnx, lsuv_plain
from jinit._src.lsuv_report import LSUVReport


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def _split_kwargs(fn: str, kwargs: Mapping[str, Any] | None):
    leaves, treedef = jax.tree_util.tree_flatten(dict(kwargs or {}))
    is_arr = tuple(_is_array(x) for x in leaves)
    static = tuple(None if a else x for x, a in zip(leaves, is_arr, strict=True))
    try:
        hash(static)
    except TypeError:
        raise TypeError(
            f"{fn}: apply_kwargs values must be arrays (traced) or hashable Python values "
            f"(static); got {[type(x).__name__ for x in static if x is not None]}"
        ) from None
    dyn = [x for x, a in zip(leaves, is_arr, strict=True) if a]
    return (treedef, is_arr, static), dyn


def _merge_kwargs(static_kw, dyn) -> dict[str, Any]:
    treedef, is_arr, static = static_kw
    it = iter(dyn)
    leaves = [next(it) if a else s for a, s in zip(is_arr, static, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _has_params_collection(tree: Any) -> bool:
    return isinstance(tree, Mapping) and "params" in tree


def _pass_body(spec, cfg, static_kw, params, batch, dyn, key):
    """The pass (jitted as :data:`_pass`, or run eagerly with ``jit=False``). Returns ONLY the changed leaves (keyed by ``repr`` of their path) and
    the report: passing every unchanged leaf through the program would make XLA copy each one
    (an output may not alias a non-donated input), and copy insertion over hundreds of such
    outputs is the largest part of compiling a deep model's pass."""
    kind, model, method = spec
    kwargs = _merge_kwargs(static_kw, dyn)
    rec = eng.Recorder(cfg, key)
    if kind == "linen":
        variables = params if _has_params_collection(params) else {"params": params}
        lsuv_linen.forward(model, variables, batch, kwargs, method, rec)
    elif kind == "nnx":
        lsuv_nnx.forward(model, params, batch, kwargs, rec)
    else:
        with lsuv_plain.activate(rec, params):
            model(params, batch, **kwargs)
    inputs = {id(x) for x in jax.tree_util.tree_leaves(params)}
    changed = {repr(p): v for p, v in rec.updates.items() if id(v) not in inputs}
    return changed, rec.report()


_pass = jax.jit(_pass_body, static_argnames=("spec", "cfg", "static_kw"))


def _apply_updates(kind: str, params: Any, changed: Mapping[str, Any]) -> Any:
    """``params`` with the leaves the pass changed replaced (every other leaf is the input's).

    ``changed`` is keyed by ``repr`` of each leaf's path (a dict with tuple keys is not a pytree
    jit can return); linen paths start at the variables' collection (``"params"``).
    """
    if kind == "linen" and not _has_params_collection(params):
        new = lsuv_linen.replace_leaves({"params": params}, changed, key=repr)
        return new["params"]
    return lsuv_linen.replace_leaves(params, changed, drop_value=kind == "nnx", key=repr)


def _check_batch(fn: str, batch: Any) -> None:
    """Rejects non-finite values in a concrete batch, naming the leaf and the first index."""
    for kp, leaf in jax.tree_util.tree_leaves_with_path(batch):
        if isinstance(leaf, jax.core.Tracer) or not hasattr(leaf, "dtype"):
            continue
        a = np.asarray(leaf)
        if not np.issubdtype(a.dtype, np.inexact):
            continue
        bad = ~np.isfinite(a)
        if bad.any():
            where = jax.tree_util.keystr(kp) or "the batch"
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{fn}: the batch contains {int(bad.sum())} non-finite value(s) (NaN/inf) in "
                f"{where}; the first is at index {first}."
            )


def _like(ref: Any, tree: Any) -> Any:
    """``tree`` with the dict key order of ``ref`` (jit returns dicts with sorted keys)."""
    if isinstance(ref, dict | FrozenDict) and isinstance(tree, Mapping):
        out = {k: _like(ref[k], tree[k]) for k in ref if k in tree}
        return FrozenDict(out) if isinstance(ref, FrozenDict) else out
    return tree


def run_pass(
    fn: str,
    cfg: eng.Config,
    model: Any,
    params: Any,
    batch: Any,
    method: Any,
    apply_kwargs: Mapping[str, Any] | None,
    orthogonal_key: jax.Array | None,
    jit: bool = True,
) -> tuple[Any, LSUVReport]:
    """Dispatches on the model kind, runs the pass (jitted, or eagerly) and checks the report."""
    if isinstance(model, type) and issubclass(model, nn.Module | nnx.Module):
        raise TypeError(
            f"{fn}: model must be a module instance, got the class {model.__name__} (build it "
            f"first, e.g. {model.__name__}(...))"
        )
    if isinstance(model, nn.Module):
        spec = ("linen", model, method)
    elif isinstance(model, nnx.GraphDef):
        spec = ("nnx", model, None)
    elif isinstance(model, nnx.Module):
        graphdef, state = nnx.split(model)
        spec = ("nnx", graphdef, None)
        params = state if params is None else params
    elif callable(model):
        spec = ("plain", model, None)
    else:
        raise TypeError(
            f"{fn}: model must be a flax.linen Module, an nnx GraphDef or Module, or a callable "
            f"apply(params, batch); got {type(model).__name__}"
        )
    if method is not None and spec[0] != "linen":
        raise ValueError(f"{fn}: method= is only for linen modules, got method={method!r}")
    if params is None:
        raise ValueError(f"{fn}: params is None (only an nnx Module may omit its state)")
    _check_batch(fn, batch)
    if not isinstance(jit, bool):
        raise TypeError(f"{fn}: jit must be True or False, got {jit!r}")
    if orthogonal_key is not None:
        eng.check_key(fn, "orthogonal_key", orthogonal_key)
    static_kw, dyn = _split_kwargs(fn, apply_kwargs)
    run = _pass if jit else _pass_body
    try:
        changed, report = run(spec, cfg, static_kw, params, batch, dyn, orthogonal_key)
    except TypeError as e:
        if "hashable" in str(e) or "unhashable" in str(e):
            raise TypeError(
                f"{fn}: the model and settings must be hashable (they are static under jit): {e}"
            ) from None
        raise
    if not report.paths and (cfg.include or cfg.exclude):
        raise ValueError(
            f"{fn}: include={list(cfg.include)} / exclude={list(cfg.exclude)} selected none of "
            "the model's layers, so nothing would change; check the patterns against the layer "
            "paths (a pass without include/exclude reports them, in execution order)"
        )
    new = _like(params, _apply_updates(spec[0], params, changed))
    if not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(report)):
        report.check()
    return new, report


def lsuv(
    model: nn.Module | nnx.GraphDef | nnx.Module | Callable[..., Any],
    params: Any,
    batch: Any,
    *,
    target: float = 1.0,
    tol: float = 0.1,
    max_iters: int = 10,
    measure: str = "pre",
    activation: Callable[[jax.Array], jax.Array] | None = None,
    center: bool = False,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    on_zero_variance: str = "raise",
    min_values: int = 2,
    orthogonal_key: jax.Array | None = None,
    method: str | Callable[..., Any] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    exact: bool = False,
    jit: bool = True,
) -> tuple[Any, LSUVReport]:
    r"""Layer-sequential unit-variance initialization: one jitted pass, new params + report.

    For each selected layer :math:`l`, in forward execution order, with :math:`y_l` its output on
    ``batch`` given the already-corrected earlier layers and
    :math:`v = \mathrm{Var}(y_l)` pooled over all batch and non-batch positions and units:

    .. math::  W_l \leftarrow W_l \sqrt{\tau / v}, \quad \text{repeated while }
               |v - \tau| \ge \mathrm{tol} \text{ and fewer than max\_iters rescalings.}

    For a layer whose output is linear in the kernel (no bias, or zero bias) one rescaling is
    exact, so ``iterations == 1`` unless the layer already was within tolerance (0).

    Args:
      model: a ``flax.linen.Module``; an ``nnx.GraphDef`` (with its state as ``params``); an
        ``nnx.Module`` (``params`` = its state, or ``None`` for ``nnx.state(model)``); or a
        callable ``apply(params, batch, **apply_kwargs)`` whose layers are marked with
        :func:`jinit.lsuv_layer`. Must be hashable (it is a static argument of ``jit``).
      params: linen: the variables dict (``{"params": ..., "batch_stats": ...}``) or just the
        ``params`` collection; NNX: the ``nnx.State``; plain: the params pytree.
      batch: the model's first positional input, a batch of real data (any pytree).
      target: target variance :math:`\tau` (a variance, not a standard deviation).
      tol: stop when :math:`|v - \tau| <` ``tol``.
      max_iters: the most rescalings per layer (bounded loop; the report says if not converged).
      measure: ``"pre"`` (the layer's output, before its activation; the paper's choice) or
        ``"post"`` (``activation(output)``; needs ``activation``).
      activation: the activation following every selected layer, for ``measure="post"``.
      center: after the variance step, subtract the pooled mean of the layer's output from its
        bias (layers without a bias are left uncentred).
      include: regex(es); only layers whose path matches one (``re.search``) are processed.
      exclude: regex(es); layers whose path matches one are not processed.
      on_zero_variance: ``"raise"`` (a ``ValueError`` naming the layer and its variance) or
        ``"skip"`` (leave the layer unchanged and report it) when the part of a layer's output
        that depends on its kernel is constant on the batch (dead units upstream).
      min_values: fewest output values a layer must have on the batch (at least 2).
      orthogonal_key: if given, every selected kernel is first replaced by
        ``jinit.lsuv_ready_orthogonal()`` drawn with ``fold_in(orthogonal_key, crc32(path))``
        (step 1 of the paper's algorithm done by the pass).
      method: linen only: the method to apply instead of ``__call__`` (as in ``Module.apply``).
      apply_kwargs: extra keyword arguments of the forward pass (e.g. ``{"train": False}``,
        ``{"rngs": {...}}``); array leaves are traced, other leaves static (hashable).
      exact: always re-run affine layers for their corrected output instead of computing it as
        ``c (y - b) + b`` (identical up to float rounding; 16-bit layers always re-run).
      jit: ``True`` (default): the whole pass is one ``jax.jit`` program, compiled once per
        (model, settings, shapes) and cached: the fastest repeated call, and what runs inside
        an outer ``jit``/``vmap`` (seed sweeps) either way. ``False``: the forward pass runs
        eagerly, one layer at a time, and each layer's solve is a small jitted kernel compiled
        once per layer shape and reused by every layer of that shape, so the first call's
        compile time does not grow with depth (the quickest one-off call on a deep model; see
        ``docs/benchmarks/lsuv.md``). Same algorithm and results (up to float rounding of the
        fused forward pass); only the compilation differs.

    Returns:
      ``(new_params, report)``: ``new_params`` has the structure and dtypes of ``params`` (a
      bfloat16 kernel stays bfloat16: the factor is cast, not the kernel upcast);
      ``report`` is a :class:`jinit.LSUVReport` with, per layer in execution order, the path,
      iterations, scale, variance before and after, mean after, converged flag and status.

    Raises:
      ValueError: for bad settings; if the batch has NaN/inf (naming the leaf and index); if a
        layer has fewer than ``min_values`` output values; if non-finite values appear in a
        layer's input or output (naming the first such layer); if a layer's output variance is
        zero and ``on_zero_variance="raise"`` (naming the layer and the variance). Not raised
        under an outer ``jit``/``vmap``: see :meth:`jinit.LSUVReport.check`.
      TypeError: if ``model`` is not a supported kind or is unhashable.

    References:
      Mishkin & Matas, "All you need is a good init", arXiv:1511.06422, 2015 (Algorithm 1).
      Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep
      linear neural networks", arXiv:1312.6120, 2014 (the orthonormal pre-initialisation).
    """
    cfg = eng.make_config(
        "lsuv",
        method="lsuv",
        target=target,
        tol=tol,
        max_iters=max_iters,
        measure=measure,
        activation=activation,
        center=center,
        target_mean=0.0,
        include=include,
        exclude=exclude,
        on_zero_variance=on_zero_variance,
        min_values=min_values,
        exact=exact,
        orthogonal=orthogonal_key is not None,
    )
    return run_pass("lsuv", cfg, model, params, batch, method, apply_kwargs, orthogonal_key, jit)
