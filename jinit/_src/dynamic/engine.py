"""What GradInit and MetaInit share: the model as a function of one multiplier per block.

A pass sees the model through ``models.as_apply`` (the one adapter), picks the blocks
that get a multiplier by a regex on ``jinit.path_string`` paths, orders them as the forward pass
first uses them, and runs its iterations either inside one ``lax.scan`` or as a Python loop of
one jitted step (see :func:`choose_loop`). Only rescaling happens: block ``i`` leaves the pass as
``multiplier[i] * input_block``; every other leaf is returned as given.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jinit._src.checks import check_choice, check_patterns
from jinit._src.models import as_apply, model_inputs
from jinit._src.reinit import path_string

LOOPS = ("scan", "python")


def choose_loop(loop: str | None, leaves: list[Any], fn: str) -> str:
    """The loop structure: ``loop`` if given, else the rule measured in benchmarks/dynamic.py.

    On CPU, XLA runs convolutions inside ``lax.scan`` without its fast path (several times
    slower per iteration than the same jitted step called from Python), so a model with a
    kernel of rank >= 3 (a convolution) on the CPU backend gets ``"python"``; everything else
    gets ``"scan"`` (one program, no per-iteration dispatch). Under an outer ``jit``/``vmap``
    the parameters are tracers and the loop is always ``"scan"`` (a Python loop would be
    unrolled into the outer program).
    """
    if loop is not None:
        check_choice(fn, "loop", loop, LOOPS)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return "scan"
    if loop is not None:
        return loop
    has_conv = any(getattr(x, "ndim", 0) >= 3 for x in leaves)
    return "python" if has_conv and jax.default_backend() == "cpu" else "scan"


def is_traced(tree: Any) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def freeze(value: Any) -> Any:
    """A hashable copy of ``apply_kwargs`` (static under jit): dicts/lists become tuples."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw_kwargs(frozen: tuple) -> dict:
    # mutable=["batch_stats"] came in as a list; linen accepts the tuple.
    return dict(frozen)


def normalize_model(model: Any, params: Any) -> tuple[Any, Any, bool]:
    """An NNX module becomes its GraphDef and full state (hashable, static under jit).

    Returns ``(model, params, nnx_module)``; ``nnx_module`` says the caller passed a module
    and gets back an ``nnx.State`` of its ``nnx.Param`` leaves.
    """
    if isinstance(model, nnx.Module):
        graphdef, state = nnx.split(model)
        if params is not None:
            state = nnx.merge_state(state, params)
        return graphdef, state, True
    return model, params, False


def check_batch(fn: str, arg: str, batch: Any, input_key: Any, minimum: int = 1) -> int:
    """The batch's example count (leading axis of the model inputs); ValueError if < minimum."""
    x = model_inputs(batch, input_key, fn=f"{fn}: {arg}")  # also: empty or non-finite
    leaves = jax.tree_util.tree_leaves(x)
    if not leaves:
        raise ValueError(f"{fn}: {arg} holds no arrays (got {type(batch).__name__})")
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            f"{fn}: every array of {arg}'s model inputs needs the same leading example axis, "
            f"got leading sizes {sorted(map(str, sizes))}"
        )
    n = sizes.pop()
    if n < minimum:
        what = "is empty (0 examples)" if n == 0 else f"has {n} example(s)"
        raise ValueError(f"{fn}: {arg} {what}; at least {minimum} needed")
    return n


def check_gradient_at_start(fn: str, grad_norm: Any) -> None:
    """Raises ``ValueError`` when the loss's gradient is exactly zero at the first iteration
    (``grad_norm``: the per-iteration gradient norms of a pass's report)."""
    if float(np.asarray(grad_norm)[0]) == 0.0:
        raise ValueError(
            f"{fn}: the gradient of the loss w.r.t. every parameter is exactly zero at the "
            "start: the loss does not depend on the parameters (check loss_fn uses the model "
            "outputs), or every unit is dead on this batch."
        )


def halves(batch: Any, axis: int = 0) -> tuple[Any, Any]:
    """The batch split along its example axis (``axis``): first half, second half."""
    n = np.shape(jax.tree_util.tree_leaves(batch)[0])[axis]
    h = n // 2
    lo = (slice(None),) * axis + (slice(0, h),)
    hi = (slice(None),) * axis + (slice(h, 2 * h),)
    return jax.tree.map(lambda a: a[lo], batch), jax.tree.map(lambda a: a[hi], batch)


def first_iteration(batches: Any) -> Any:
    """Iteration 0 of per-iteration batches (every leaf's leading axis dropped)."""
    return jax.tree.map(lambda a: a[0], batches)


def check_per_iteration(fn: str, arg: str, batches: Any, count: int, count_name: str) -> Any:
    """Per-iteration batches: every leaf has a leading axis of length ``count`` (the number of
    iterations, named ``count_name``). Returns iteration 0's batch; ValueError otherwise."""
    leaves = jax.tree_util.tree_leaves(batches)
    if not leaves:
        raise ValueError(f"{fn}: {arg} holds no arrays (got {type(batches).__name__})")
    sizes = sorted({str(np.shape(a)[0]) if np.ndim(a) else "scalar" for a in leaves})
    if sizes != [str(count)]:
        raise ValueError(
            f"{fn}: with per_iteration=True every array of {arg} needs a leading iteration axis "
            f"of length {count_name}={count}, got leading sizes {sizes}"
        )
    return first_iteration(batches)


def compile_include(fn: str, include: Any) -> re.Pattern | None:
    if include is None or isinstance(include, re.Pattern):
        return include
    if not isinstance(include, str):
        raise TypeError(
            f"{fn}: include must be a regex string (matched against jinit.path_string paths) "
            f"or None, got {type(include).__name__}"
        )
    return re.compile(check_patterns(fn, "include", include)[0])


class Blocks:
    """The trainable leaves of ``p0``, which of them get a multiplier, and their forward order.

    ``paths`` (in forward order) name the blocks with a multiplier; ``index[i]`` is block
    ``i``'s position in ``jax.tree.leaves(p0)``.
    """

    def __init__(
        self,
        fn: str,
        apply: Callable,
        p0: Any,
        x: Any,
        include: re.Pattern | None,
        default: Callable[[str, Any], bool],
        default_text: str,
    ):
        flat, self.treedef = jax.tree_util.tree_flatten_with_path(p0)
        self.all_paths = [path_string(p) for p, _ in flat]
        leaves = [v for _, v in flat]
        if not leaves:
            raise ValueError(f"{fn}: params holds no arrays")
        for path, leaf in zip(self.all_paths, leaves, strict=True):
            if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
                raise ValueError(
                    f"{fn}: parameter {path!r} has dtype {jnp.result_type(leaf)}; every "
                    "trainable parameter must be floating point"
                )
        chosen = [
            i
            for i, (path, leaf) in enumerate(zip(self.all_paths, leaves, strict=True))
            if (include.search(path) is not None if include is not None else default(path, leaf))
        ]
        if not chosen:
            rule = f"include={include.pattern!r}" if include is not None else default_text
            raise ValueError(
                f"{fn}: no parameter block matches {rule}; the paths are {self.all_paths}"
            )
        first = _first_use(apply, self.treedef, leaves, x)
        self.index = sorted(chosen, key=lambda i: (first[i], i))
        self.paths = tuple(self.all_paths[i] for i in self.index)
        self.shapes = tuple(tuple(np.shape(leaves[i])) for i in self.index)

    def scale(self, leaves: list[Any], alpha: jax.Array) -> list[Any]:
        """``leaves`` with block ``i`` multiplied by ``alpha[i]`` (in the leaf's dtype)."""
        out = list(leaves)
        for j, i in enumerate(self.index):
            out[i] = leaves[i] * alpha[j].astype(leaves[i].dtype)
        return out


def _first_use(apply: Callable, treedef: Any, leaves: list[Any], x: Any) -> list[float]:
    """Per leaf, the index of the first top-level jaxpr equation that reads it (inf: unused).

    The forward order of the blocks; leaves read by the same equation (a scanned stack of
    layers) keep their tree order.
    """

    def f(flat, x):
        return apply(jax.tree_util.tree_unflatten(treedef, flat), x)

    shapes = [jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)) for a in leaves]
    xs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), x)
    closed = jax.make_jaxpr(f)(shapes, xs)
    invars = closed.jaxpr.invars[: len(leaves)]
    where = {v: k for k, v in enumerate(invars)}
    first = [math.inf] * len(leaves)
    for e, eqn in enumerate(closed.jaxpr.eqns):
        for v in eqn.invars:
            k = where.get(v) if hasattr(v, "aval") and not hasattr(v, "val") else None
            if k is not None and first[k] == math.inf:
                first[k] = e
    return first


def adapter(model, params, rngs, apply_kwargs):
    """``as_apply`` with the frozen apply_kwargs thawed (static argument of the programs)."""
    return as_apply(model, params, rngs=rngs, apply_kwargs=thaw_kwargs(apply_kwargs))


@dataclasses.dataclass(frozen=True)
class Spec:
    """The static part of a pass (the jit cache key): model, loss, call settings, blocks, method."""

    model: Any
    loss_fn: Any
    apply_kwargs: tuple
    input_key: Any
    index: tuple[int, ...]
    cfg: Any
    per_iteration: bool = False  # data leaves carry a leading iteration axis


class Env:
    """What a method's iteration sees: the parameter leaves, the blocks, the data, the loss."""

    def __init__(self, leaves, index, data, loss_at):
        self.leaves = leaves
        self.index = index
        self.data = data  # this iteration's data (init/finish: iteration 0's)
        self.loss_at = loss_at  # loss_at(leaves, batch) -> scalar

    def on(self, data) -> Env:
        """The same model and parameters on another iteration's data."""
        return Env(self.leaves, self.index, data, self.loss_at)

    def scale(self, alpha: jax.Array) -> list[Any]:
        out = list(self.leaves)
        for j, i in enumerate(self.index):
            out[i] = self.leaves[i] * alpha[j].astype(self.leaves[i].dtype)
        return out

    @property
    def norms(self) -> jax.Array:
        return jnp.stack(
            [jnp.sqrt(jnp.sum(jnp.square(self.leaves[i].astype(jnp.float32)))) for i in self.index]
        )


def _env(spec, params, data, rngs) -> Env:
    apply, p0, _ = adapter(spec.model, params, rngs, spec.apply_kwargs)
    leaves, treedef = jax.tree_util.tree_flatten(p0)

    def loss_at(ls, batch):
        out = apply(jax.tree_util.tree_unflatten(treedef, ls), model_inputs(batch, spec.input_key))
        return jnp.asarray(spec.loss_fn(out, batch), jnp.float32)

    return Env(leaves, spec.index, data, loss_at)


def _scan_body(spec, params, data, rngs):
    if spec.per_iteration:  # iteration t reads data[t]; init and finish read data[0]
        env = _env(spec, params, first_iteration(data), rngs)
        carry = spec.cfg.init(env)
        carry, recs = jax.lax.scan(lambda c, d: spec.cfg.step(c, env.on(d)), carry, data)
    else:
        env = _env(spec, params, data, rngs)
        carry = spec.cfg.init(env)
        carry, recs = jax.lax.scan(lambda c, _: spec.cfg.step(c, env), carry, None, spec.cfg.iters)
    return carry, recs, spec.cfg.finish(carry, env)


def _init_body(spec, params, data, rngs):
    return spec.cfg.init(_env(spec, params, data, rngs))


def _step_body(spec, params, data, rngs, carry):
    return spec.cfg.step(carry, _env(spec, params, data, rngs))


def _finish_body(spec, params, data, rngs, carry):
    return spec.cfg.finish(carry, _env(spec, params, data, rngs))


_JITTED = {
    f: jax.jit(f, static_argnums=0) for f in (_scan_body, _init_body, _step_body, _finish_body)
}


def run_program(spec, params, data, rngs, loop: str, jit: bool):
    """Runs ``spec.cfg``'s iterations: ``(carry, per-iteration records, final record)``.

    ``"scan"``: one program (one ``jax.jit`` with ``jit=True``); ``"python"``: a jitted init,
    step and finish, the step called ``iters`` times from Python. Both compile once per
    (spec, shapes) and give the same numbers. With ``spec.per_iteration`` every leaf of
    ``data`` has a leading iteration axis: iteration ``t`` reads ``data[t]``, init and finish
    read ``data[0]``.
    """
    get = (lambda f: _JITTED[f]) if jit else (lambda f: f)
    try:
        hash(spec) if jit else None  # eager: nothing is cached, so nothing needs a hash
    except TypeError as e:
        raise TypeError(
            f"{spec.cfg.name}: with jit=True the model, loss_fn and apply_kwargs must be hashable "
            f"(they are static under jit): {str(e).splitlines()[0]}. Pass jit=False, or build the model from tuples "
            "(nn.Sequential((...)) instead of a list)"
        ) from None
    if loop == "scan":
        return get(_scan_body)(spec, params, data, rngs)
    per = spec.per_iteration
    at = (lambda t: jax.tree.map(lambda a: a[t], data)) if per else (lambda t: data)
    carry = get(_init_body)(spec, params, at(0), rngs)
    recs = []
    for t in range(spec.cfg.iters):
        carry, rec = get(_step_body)(spec, params, at(t), rngs, carry)
        recs.append(rec)
    recs = jax.tree.map(lambda *r: jnp.stack(r), *recs)
    return carry, recs, get(_finish_body)(spec, params, at(0), rngs, carry)


def prepare(fn, model, params, batch, loss_fn, input_key, rngs, apply_kwargs):
    """Checks shared by both passes; the model in static form, its apply and the blocks' inputs.

    Returns ``(model, params, nnx_module, frozen_kwargs, apply, p0, merge, x)``.
    """
    if not callable(loss_fn):
        raise TypeError(
            f"{fn}: loss_fn must be callable as loss_fn(outputs, batch) -> scalar, got "
            f"{type(loss_fn).__name__}"
        )
    if apply_kwargs is not None and not isinstance(apply_kwargs, Mapping):
        raise TypeError(f"{fn}: apply_kwargs must be a mapping, got {type(apply_kwargs).__name__}")
    if rngs is not None and not isinstance(rngs, Mapping):
        raise TypeError(
            f"{fn}: rngs must be a mapping like {{'dropout': key}}, got {type(rngs).__name__}"
        )
    model, params, nnx_module = normalize_model(model, params)
    frozen = freeze(dict(apply_kwargs or {}))
    apply, p0, merge = adapter(model, params, rngs, frozen)
    x = model_inputs(batch, input_key)
    return model, params, nnx_module, frozen, apply, p0, merge, x


def check_loss(fn, apply, p0, batch, x, loss_fn, arg="batch"):
    """The loss is a real scalar on ``batch`` (the argument ``arg``; checked on shapes only)."""
    try:
        out = jax.eval_shape(lambda p: loss_fn(apply(p, x), batch), p0)
    except Exception as e:  # a model/loss error, re-raised with what was being done
        # ValueError, not type(e): flax's error classes take other constructor arguments.
        raise ValueError(
            f"{fn}: running the model and loss_fn on {arg} failed: {type(e).__name__}: {e}"
        ) from e
    if not (hasattr(out, "shape") and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
        raise ValueError(
            f"{fn}: loss_fn must return a float scalar, got "
            f"{getattr(out, 'shape', None)} {getattr(out, 'dtype', type(out).__name__)}"
        )


def rebuild(p0, merge, nnx_module, index, alpha):
    """The output parameters: block ``i`` times ``alpha[i]``, every other leaf as given."""
    leaves, treedef = jax.tree_util.tree_flatten(p0)
    for j, i in enumerate(index):
        leaves[i] = leaves[i] * jnp.asarray(alpha[j]).astype(leaves[i].dtype)
    p = jax.tree_util.tree_unflatten(treedef, leaves)
    return p if nnx_module else merge(p)
