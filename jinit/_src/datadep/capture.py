"""The one capture layer: runs a linen module, an NNX module (or ``GraphDef`` + state) or a plain
``apply_fn`` and hands every layer call, in forward execution order, to a hook. Mechanisms and
lifted transforms: docs/lsuv.md ("How the pass works")."""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.errors
import flax.linen as nn
import jax
from flax import nnx
from jax.extend import core as jex_core

from jinit._src.models import check_model
from jinit._src.paths import flat, path_string, replace_leaves, set_leaf

PRIVATE = "jinit_capture"  # linen collection carrying records out of a remat body
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("jinit_capture", default=None)
_REMAT = "inside a lifted transform that carries every collection (nn.remat)"
_MAPPED = (
    "inside a lifted transform that maps its variables (nn.scan, nn.vmap, nn.RNN's scan): its "
    "params are stacked or shared across steps, not addressable per call"
)
_NNX_LIFTED = "inside a lifted transform (NNX variables cannot be updated from there)"
_NOT_HELD = (flax.errors.ScopeCollectionNotFound, flax.errors.ScopeVariableNotFoundError)
_NOT_HELD += (flax.errors.InvalidRngError, flax.errors.ScopeParamShapeError)
_PLAIN_LIFTED = "inside a lifted transform (jax.lax.scan, jax.checkpoint, ...)"


class Marked(NamedTuple):
    """The ``module`` of a plain-function layer marked with :func:`lsuv_layer`."""

    name: str
    fn: Callable[..., Any]


@dataclasses.dataclass
class Call:
    """One layer call, as the hook sees it: ``path`` (a module's k-th call gets ``"@k"``), its
    own ``params`` by flat name (``"cell/ii/kernel"``), ``lifted`` (why it is inside a lifted
    transform, ``""`` if not), the ``enclosing`` calls in progress and its ``start`` rank."""

    path: str
    module: Any
    args: tuple
    kwargs: dict
    params: dict[str, Any]
    output: Any
    lifted: str
    enclosing: tuple
    start: int
    _fns: tuple  # run(flat params), update(flat params), record(values)

    @property
    def kind(self) -> str:
        m = self.module
        return m.fn.__name__ if isinstance(m, Marked) else type(m).__name__

    @property
    def addressable(self) -> bool:
        """Whether :meth:`update` and :meth:`record` work here (top level, or in nn.remat)."""
        return self.lifted in ("", _REMAT)

    def run(self, params: Mapping[str, Any] | None = None) -> Any:
        """The layer's output on its captured inputs with ``params`` (merged into its own)."""
        return self._fns[0]({**self.params, **(params or {})})

    def update(self, params: Mapping[str, Any]) -> None:
        """Replaces some of the layer's params (by their flat name) in the returned tree."""
        self._check("update")
        self._fns[1](dict(params))
        self.params = {**self.params, **params}

    def record(self, **values: Any) -> None:
        """Attaches arrays to this call; they come back in ``Captured.records[path]``."""
        self._check("record")
        self._fns[2](values)

    def _check(self, what: str) -> None:
        if not self.addressable:
            raise RuntimeError(f"capture: cannot {what} layer {self.path!r}: {self.lifted}")


class Captured(NamedTuple):
    """What :func:`capture` returns."""

    outputs: Any  # the model's outputs (with replaced layer outputs)
    params: Any  # ``params`` with the updated leaves replaced (same structure and key order)
    paths: tuple[str, ...]  # every reported call, in forward execution order
    records: dict[str, dict[str, Any]]  # path -> what the hook recorded
    missed: tuple[str, ...]  # NNX: selected modules never called outside a lifted transform
    updates: dict[str, Any]  # path (relative to ``params``) -> new value, of every update


class _Pass:
    """The state of one capture (Python values only: paths, counters, top-level arrays)."""

    def __init__(self, hook, select, no_dropout, leaf_paths):
        self.hook, self.select, self.no_dropout = hook, select, no_dropout
        self.trace = jex_core.get_opaque_trace_state()
        self.count: dict[str, int] = {}
        self.order: list[str] = []
        self.stack: list[Any] = []
        self.passthrough = self.started = 0
        self.updates: dict[str, Any] = {}  # param path -> new value (None: read at the end)
        self.records: dict[str, dict] = {}
        self.overrides: dict[str, dict] = {}  # immutable params: layer -> its new flat params
        self.leaf_paths = leaf_paths  # plain apply_fn: id(leaf) -> its path in params
        self.marks: dict[str, tuple] = {}  # lsuv_layer name -> its params' leaf ids

    def lifted(self, reason: str) -> str:
        return reason if jex_core.get_opaque_trace_state() != self.trace else ""

    def passing(self, fn, *args, **kwargs):
        self.passthrough += 1
        try:
            return fn(*args, **kwargs)
        finally:
            self.passthrough -= 1

    def enter(self, module, fn, args, kwargs):
        self.stack.append(module)
        self.started += 1
        start = self.started
        try:
            return fn(*args, **kwargs), start
        finally:
            self.stack.pop()

    def record(self, values, path=None):
        path = path or self.order[-1]
        self.records[path] = {**self.records.get(path, {}), **values}

    def report(self, module, base, args, kwargs, params, ran, lifted, fns):
        """``ran``: what :meth:`enter` returned (the output, the start rank)."""
        k = self.count.get(base, 0)
        self.count[base] = k + 1
        path = base if k == 0 else f"{base}@{k}"
        self.order.append(path)
        (y, start), enclosing = ran, tuple(self.stack)
        out = self.hook(Call(path, module, args, kwargs, params, y, lifted, enclosing, start, fns))
        return y if out is None else out

    def by_identity(self, base: str, new: dict, params: dict) -> None:
        """Immutable params (a plain apply_fn): finds each leaf in the user's tree by identity;
        later calls of the layer run with the new values."""
        for k, v in new.items():
            where = self.leaf_paths.get(id(params[k]))
            if where is None:
                raise ValueError(
                    f"layer {base!r}: its parameter {k!r} is not a leaf of the params given to "
                    "the pass; pass the params subtree itself (e.g. params['dense0']), not a "
                    "copy, a cast or a reshaped array"
                )
            self.updates[where] = v
        self.overrides[base] = {**self.overrides.get(base, params), **new}

    def __call__(self, next_fun, args, kwargs, ctx):  # linen, through nn.intercept_methods
        mod = ctx.module
        if ctx.method_name != "__call__" or self.passthrough or mod.scope is None:
            return next_fun(*args, **kwargs)
        if self.no_dropout and isinstance(mod, nn.Dropout):
            return args[0] if args else kwargs["inputs"]
        if not self.select(mod) or any(m is mod for m in self.stack):
            return next_fun(*args, **kwargs)  # unselected, or a subclass's super().__call__
        fields = [f.name for f in dataclasses.fields(mod) if f.name in _INITS]
        inits = {f: getattr(mod, f) for f in fields if callable(getattr(mod, f))}
        trace = jex_core.get_opaque_trace_state()
        stand_ins = {f: _shape_check(init, trace) for f, init in inits.items()}
        try:  # the call itself and the re-runs' clone check param shapes cheaply
            for f, init in stand_ins.items():
                object.__setattr__(mod, f, init)
            ran = self.enter(mod, next_fun, args, kwargs)
        finally:
            for f, init in inits.items():
                object.__setattr__(mod, f, init)
        base = path_string(tuple(mod.scope.path)) or type(mod).__name__
        variables = dict(mod.variables)
        attached = _attached(mod)  # the clone below adopts them under their field name
        own = {**variables.get("params", {})}
        own.update({a: m.variables.get("params", {}) for a, m in attached.items()})
        params, keys = flat(own)
        mutable = mod.scope.is_mutable_collection("params")
        lifted = self.lifted(_REMAT if mod.scope.is_mutable_collection(PRIVATE) else _MAPPED)
        clone = mod.clone(parent=None, _deep_clone=True, **stand_ins)

        def run(p):
            nested = dict(replace_leaves(own, p))
            for a, sub in attached.items():  # nn.WeightNorm's "<layer name>/kernel/scale"
                for name in [n for n in nested if n.startswith(f"{sub.name}/")]:
                    nested[a + name[len(sub.name) :]] = nested.pop(name)
            vs = {**variables, "params": nested}
            return self.passing(clone.apply, vs, *args, mutable=True, **kwargs)[0]

        def update(new):
            if not mutable:
                return self.by_identity(base, new, params)
            for k, v in new.items():
                t = keys[k]
                owner, t = (attached[t[0]], t[1:]) if t[0] in attached else (mod, t)
                owner.put_variable(
                    "params", t[0], set_leaf(owner.variables["params"][t[0]], t[1:], v)
                )
                self.updates[path_string(tuple(owner.scope.path) + t)] = None if lifted else v

        def record(values):
            if lifted:  # leaves the remat body through the private collection
                mod.sow(PRIVATE, f"r{len(self.order) - 1}", values)
            else:
                self.record(values)

        if not mutable and base in self.overrides:  # a later call of an updated module
            ran = run(self.overrides[base]), ran[1]
        return self.report(mod, base, args, kwargs, params, ran, lifted, (run, update, record))

    def nnx_call(self, node, base_cls, paths, args, kwargs):
        call = base_cls.__call__
        if self.passthrough or id(node) not in paths:  # a replay, or a lifted transform's copy
            return call(node, *args, **kwargs)
        ran = self.enter(node, call, (node, *args), kwargs)
        base = paths[id(node)]

        def run(p):
            copy = nnx.merge(*nnx.split(node), copy=True)
            nnx.update(copy, replace_leaves(nnx.state(copy), p))
            return self.passing(call, copy, *args, **kwargs)

        def update(new):
            nnx.update(node, replace_leaves(nnx.state(node), new))
            for k, v in new.items():
                self.updates[f"{base}/{k}" if base != type(node).__name__ else k] = v

        # its trainable arrays: nnx.Params and raw arrays (nnx.WeightNorm's scales)
        raw = lambda _, x: not isinstance(x, nnx.Variable)
        params = flat(nnx.state(node, nnx.Any(nnx.Param, raw)))[0]
        fns = (run, update, self.record)
        return self.report(node, base, args, kwargs, params, ran, self.lifted(_NNX_LIFTED), fns)

    def mark(self, name, fn, layer_params, args, kwargs):  # plain functions: lsuv_layer
        mod = Marked(name, fn)
        if not self.select(mod):
            return fn(layer_params, *args, **kwargs)
        own = flat(layer_params)[0]
        if self.marks.setdefault(name, ids := tuple(map(id, own.values()))) != ids:
            raise ValueError(f"lsuv_layer: two layers with other params are both named {name!r}")

        def run(p):
            return self.passing(fn, replace_leaves(layer_params, p), *args, **kwargs)

        ran = self.enter(mod, run, (self.overrides.get(name, {}),), {})
        params = {**own, **self.overrides.get(name, {})}
        fns = (run, lambda new: self.by_identity(name, new, own), self.record)
        return self.report(mod, name, args, kwargs, params, ran, self.lifted(_PLAIN_LIFTED), fns)


_INITS = ("kernel_init", "bias_init", "embedding_init", "scale_init", "recurrent_kernel_init")


def _shape_check(init: Callable, trace: Any) -> Callable:
    """``init`` for a captured call: flax checks an existing param's shape against
    ``jax.eval_shape`` of its initializer on every call (a trace of, e.g., a QR per layer);
    inside that check (a new trace) zeros of the shape, at the call's own level ``init``."""

    def stand_in(key: Any, shape: Any, *args: Any, **kwargs: Any) -> Any:
        if jex_core.get_opaque_trace_state() == trace:  # a real draw (a layer calling it)
            return init(key, shape, *args, **kwargs)
        return jax.numpy.zeros(shape, args[0] if args else kwargs.get("dtype"))

    return stand_in


def _attached(mod: nn.Module) -> dict[str, nn.Module]:
    """Bound submodules held in fields but owned elsewhere (``nn.RNN``'s ``cell``): their
    params are part of this call's params, under the field name."""
    out, path = {}, tuple(mod.scope.path)
    for f in dataclasses.fields(mod):
        sub = getattr(mod, f.name, None) if f.name != "parent" else None
        if isinstance(sub, nn.Module) and sub.scope is not None:
            if tuple(sub.scope.path[: len(path)]) != path:
                out[f.name] = sub
    return out


def _hooked(cls: type, p: _Pass, paths: dict) -> type:
    def __call__(self, *args, **kwargs):
        return p.nnx_call(self, cls, paths, args, kwargs)

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})


def lsuv_layer(
    name: str,
    fn: Callable[..., jax.Array],
    layer_params: Mapping[str, Any],
    *args: Any,
    linear: bool = False,
    **kwargs: Any,
) -> jax.Array:
    """Calls ``fn(layer_params, *args, **kwargs)``, marking it as a layer for the capture layer.

    Outside a pass this is just the call (a model can keep its marks); inside ``jinit.lsuv`` and
    every pass built on :func:`capture` the pass sees the layer, in execution order::

      def apply(params, x):
        h = jinit.lsuv_layer("l0", dense, params["l0"], x)
        return jinit.lsuv_layer("l1", dense, params["l1"], h)

    Args:
      name: the layer's path in reports and ``include``/``exclude`` patterns.
      fn: ``fn(layer_params, *args, **kwargs) -> output`` (arrays of any shape and dtype).
      layer_params: the layer's params subtree itself (its leaves are found in the pass's params
        by identity). The passes rescale its ``"kernel"`` (or ``"embedding"``) leaf and shift its
        ``"bias"``; without a ``"kernel"`` the layer is reported skipped.
        *args, **kwargs: the layer's inputs and options, passed to ``fn``.
      linear: accepted for compatibility and ignored: every solve re-runs ``fn``.

    Returns:
      The layer's output (inside a pass: with the corrected parameters).

    Raises:
      ValueError: inside a pass that updates the layer, a parameter that is not a leaf of the
        pass's params.
    """
    del linear
    p = _ACTIVE.get()
    if p is None or p.passthrough:
        return fn(layer_params, *args, **kwargs)
    return p.mark(name, fn, layer_params, args, kwargs)


def capture(
    model: Any,
    params: Any,
    inputs: Any,
    hook: Callable[[Call], Any],
    *,
    select: Callable[[Any], bool] = lambda module: True,
    rngs: Mapping[str, Any] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    method: Any = None,
    no_dropout: bool = False,
    fn: str = "",
) -> Captured:
    """Runs ``model`` on ``inputs``, calling ``hook(call) -> None | new_output`` for every layer
    call that ``select(module)`` accepts (a :class:`Marked` for :func:`lsuv_layer` marks).

    ``model``, ``params``, ``rngs``, ``apply_kwargs`` and ``method`` are as for :func:`as_apply`
    (linen ``mutable=[...]``: more collections to carry); ``no_dropout`` runs every ``Dropout``
    as the identity; ``fn``, the calling pass, starts error messages. Returns a :class:`Captured`. Raises ``ValueError`` for a collection
    ``params`` does not hold (a BatchNorm without its batch_stats), ``params=None`` where
    required, or an updated plain-function parameter that is not a leaf of ``params``;
    ``TypeError`` for a model of no supported kind.
    """
    kwargs, missed = dict(apply_kwargs or {}), ()
    check_model(model, params, fn)
    if isinstance(model, nnx.Module | nnx.GraphDef):
        graphdef, state = (model, params) if isinstance(model, nnx.GraphDef) else nnx.split(model)
        if isinstance(model, nnx.Module) and params is not None:
            state = nnx.merge_state(state, params)
        p = _Pass(hook, select, no_dropout, {})
        try:
            copy = nnx.merge(graphdef, state, copy=True)
        except ValueError as e:
            raise ValueError(
                f"params does not hold the model's whole state ({e}): an nnx.GraphDef needs all "
                "of it (nnx.split(model) gives both); an nnx.Module also takes a Param-only state"
            ) from None
        paths = {}
        for path, node in nnx.iter_modules(copy):
            if no_dropout and isinstance(node, nnx.Dropout):
                node.deterministic = True
            if select(node) and id(node) not in paths:  # a per-pass subclass, never a patch
                paths[id(node)] = path_string(path) or type(node).__name__
                object.__setattr__(node, "__class__", _hooked(type(node), p, paths))
        outputs, updates = copy(inputs, **kwargs), p.updates
        params = state if params is None else params
        missed = tuple(q for q in paths.values() if q not in p.count)
    else:
        linen = isinstance(model, nn.Module)
        leaf_paths = {} if linen else {id(v): k for k, v in flat(params)[0].items()}
        p = _Pass(hook, select, no_dropout, leaf_paths)
        token = _ACTIVE.set(p)
        try:
            with nn.intercept_methods(p):
                if not linen:
                    outputs, updates = model(params, inputs, **kwargs), p.updates
                else:
                    outputs, updates = _linen(model, params, inputs, p, rngs, method, kwargs)
        except _NOT_HELD as e:
            raise ValueError(
                f"{fn + ': ' if fn else ''}the model does not run on these params and inputs ({e})."
                " Pass the whole variables dict from model.init (BatchNorm: batch_stats), inputs "
                "of the shape it was built for, and rngs={'dropout': key} if it draws randomness"
            ) from None
        finally:
            _ACTIVE.reset(token)
    new = replace_leaves(params, updates)
    return Captured(outputs, new, tuple(p.order), p.records, missed, updates)


def _linen(model, params, inputs, p, rngs, method, kwargs):
    """Applies a linen model with every collection mutable; the updates by path."""
    is_vars = isinstance(params, Mapping) and "params" in params
    variables = dict(params) if is_vars else {"params": params}
    mutable = kwargs.pop("mutable", False)
    extra = [mutable] if isinstance(mutable, str) else list(mutable or [])
    cols = sorted({*variables, "params", PRIVATE, *extra})
    outputs, new = model.apply(variables, inputs, rngs=rngs, method=method, mutable=cols, **kwargs)
    newp = flat(new.get("params", {}))[0]
    updates = {k: newp[k] if v is None else v for k, v in p.updates.items()}
    sown = lambda x: isinstance(x, tuple)
    for kp, v in jax.tree_util.tree_leaves_with_path(new.get(PRIVATE, {}), is_leaf=sown):
        p.record(v[0], p.order[int(kp[-1].key[1:])])  # "r<index>": sown from a remat body
    return outputs, {f"params/{k}" if is_vars else k: v for k, v in updates.items()}
