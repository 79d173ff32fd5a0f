"""The one capture layer: run a user's model and observe or replace every layer call.

:func:`capture` runs a linen module, an NNX module (or ``GraphDef`` + state) or a plain
``apply_fn`` and hands each layer call, in forward execution order, to a hook as a
:class:`Call`; :func:`as_apply` and :func:`model_inputs` are the model-as-a-function adapter and
the batch rule of every pass. How it works and what lifted transforms allow: docs/lsuv.md
("How the capture layer works").
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.errors
import flax.linen as nn
import jax
from flax import nnx
from flax.core import FrozenDict
from jax.extend import core as jex_core

from jinit._src.paths import path_string

PRIVATE = "jinit_capture"  # linen collection carrying records out of a remat body
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("jinit_capture", default=None)


class Marked(NamedTuple):
    """The ``module`` of a plain-function layer marked with :func:`lsuv_layer`."""

    name: str
    fn: Callable[..., Any]


@dataclasses.dataclass
class Call:
    """One layer call, as the hook sees it.

    ``path`` is :func:`jinit.path_string` of the module path (the k-th repeated call of a module
    gets ``"@k"``); ``params`` the layer's own params by flat name (``"kernel"``,
    ``"cell/ii/kernel"``); ``lifted`` why the call is inside a lifted transform (``""``: it is
    not); ``addressable`` whether :meth:`update` and :meth:`record` work there; ``enclosing``
    the modules whose calls are in progress.
    """

    index: int
    path: str
    module: Any
    kind: str
    args: tuple
    kwargs: dict
    params: dict[str, Any]
    output: Any
    lifted: str
    addressable: bool
    enclosing: tuple
    _run: Callable[[dict], Any]
    _update: Callable[[dict], None]
    _record: Callable[[dict], None]

    def run(self, params: Mapping[str, Any] | None = None) -> Any:
        """The layer's output on its captured inputs with ``params`` (merged into its own)."""
        return self._run({**self.params, **(params or {})})

    def update(self, params: Mapping[str, Any]) -> None:
        """Replaces some of the layer's params (by their flat name) in the returned tree."""
        self._check("update")
        self._update(dict(params))
        self.params = {**self.params, **params}

    def record(self, **values: Any) -> None:
        """Attaches arrays to this call; they come back in ``Captured.records[path]``."""
        self._check("record")
        self._record(values)

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


def _flat(tree: Any) -> tuple[dict[str, Any], dict[str, tuple]]:
    """``{path string: leaf}`` and ``{path string: key tuple}`` of a nested params dict."""
    flat, keys = {}, {}
    for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = path_string(kp)
        flat[name] = leaf
        keys[name] = tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in kp)
    return flat, keys


def _set(tree: Any, keys: tuple, value: Any) -> Any:
    """A copy of nested dict ``tree`` with the leaf at ``keys`` replaced."""
    if not keys:
        return value
    new = dict(tree)
    new[keys[0]] = _set(tree[keys[0]], keys[1:], value)
    return new


def replace_leaves(tree: Any, updates: Mapping[str, Any]) -> Any:
    """``tree`` with the leaves whose path string is in ``updates`` replaced; dicts keep their
    own key order (``tree_map`` would sort them)."""
    if not updates:
        return tree

    def rec(node, prefix):
        if isinstance(node, dict | FrozenDict):
            new = {k: rec(v, prefix + (k,)) for k, v in node.items()}
            return FrozenDict(new) if isinstance(node, FrozenDict) else new
        return jax.tree_util.tree_map_with_path(
            lambda kp, leaf: updates.get(path_string(prefix + tuple(kp)), leaf), node
        )

    return rec(tree, ())


class _Pass:
    """The state of one capture (Python values only: paths, counters, top-level arrays)."""

    def __init__(self, hook, select, no_dropout, leaves):
        self.hook, self.select, self.no_dropout = hook, select, no_dropout
        self.trace = jex_core.get_opaque_trace_state()
        self.count: dict[str, int] = {}
        self.order: list[str] = []
        self.stack: list[Any] = []
        self.passthrough = 0
        self.updates: dict[str, Any] = {}  # param path -> new value (None: read at the end)
        self.records: dict[str, dict] = {}
        self.overrides: dict[str, dict] = {}  # immutable params: layer -> its new flat params
        self.leaf_paths = {id(v): path_string(kp) for kp, v in leaves}

    def lifted(self) -> bool:
        return jex_core.get_opaque_trace_state() != self.trace

    def passing(self, fn, *args, **kwargs):
        self.passthrough += 1
        try:
            return fn(*args, **kwargs)
        finally:
            self.passthrough -= 1

    def enter(self, module, fn, args, kwargs):
        self.stack.append(module)
        try:
            return fn(*args, **kwargs)
        finally:
            self.stack.pop()

    def record(self, values):
        self.records[self.order[-1]] = {**self.records.get(self.order[-1], {}), **values}

    def report(self, module, base, args, kwargs, params, y, reason, ok, run, update, record):
        k = self.count.get(base, 0)
        self.count[base] = k + 1
        path = base if k == 0 else f"{base}@{k}"
        kind = module.fn.__name__ if isinstance(module, Marked) else type(module).__name__
        call = Call(
            len(self.order),
            path,
            module,
            kind,
            args,
            kwargs,
            params,
            y,
            reason,
            ok,
            tuple(self.stack),
            run,
            update,
            record,
        )
        self.order.append(path)
        out = self.hook(call)
        return y if out is None else out

    def by_identity(self, base: str, new: dict, params: dict) -> None:
        """Immutable params (a plain apply_fn): find each leaf in the user's tree by identity;
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

    # ---- linen -------------------------------------------------------------------------
    def __call__(self, next_fun, args, kwargs, ctx):
        mod = ctx.module
        if ctx.method_name != "__call__" or self.passthrough or mod.scope is None:
            return next_fun(*args, **kwargs)
        if self.no_dropout and isinstance(mod, nn.Dropout):
            return args[0] if args else kwargs["inputs"]
        if not self.select(mod):
            return next_fun(*args, **kwargs)
        y = self.enter(mod, next_fun, args, kwargs)
        scope_path = tuple(mod.scope.path)
        base = path_string(scope_path) or type(mod).__name__
        variables = dict(mod.variables)
        attached = _attached(mod, scope_path)
        own = dict(variables.get("params", {}))
        own.update({a: m.variables.get("params", {}) for a, m in attached.items()})
        params, keys = _flat(own)
        mutable = mod.scope.is_mutable_collection("params")
        lifted = self.lifted()
        ok = not lifted or mod.scope.is_mutable_collection(PRIVATE)
        reason = "" if not lifted else _REMAT if ok else _MAPPED
        clone = mod.clone(parent=None, _deep_clone=True)

        def run(p):
            nested = dict(own)
            for k, v in p.items():
                nested = _set(nested, keys[k], v)
            for a, sub in attached.items():  # the clone adopts them under the field name
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
                owner.put_variable("params", t[0], _set(owner.variables["params"][t[0]], t[1:], v))
                self.updates[path_string(tuple(owner.scope.path) + t)] = None if lifted else v

        def record(values):
            if lifted:  # leaves the remat body through the private collection
                mod.sow(PRIVATE, f"r{len(self.order) - 1}", values)
            else:
                self.record(values)

        if not mutable and base in self.overrides:  # a later call of an updated module
            y = run(self.overrides[base])
        return self.report(mod, base, args, kwargs, params, y, reason, ok, run, update, record)

    # ---- NNX ---------------------------------------------------------------------------
    def nnx_call(self, node, base_cls, paths, args, kwargs):
        call = lambda m, *a, **k: base_cls.__call__(m, *a, **k)  # noqa: E731
        if self.passthrough or id(node) not in paths:  # a replay, or a lifted transform's copy
            return call(node, *args, **kwargs)
        y = self.enter(node, call, (node, *args), kwargs)
        base, lifted = paths[id(node)], self.lifted()

        def run(p):
            copy = nnx.merge(*nnx.split(node), copy=True)
            for k, v in p.items():
                _nnx_set(copy, k, v)
            return self.passing(call, copy, *args, **kwargs)

        def update(new):
            for k, v in new.items():
                _nnx_set(node, k, v)
                self.updates[f"{base}/{k}" if base != type(node).__name__ else k] = v

        reason = "inside a lifted transform (NNX variables cannot be updated from there)"
        return self.report(
            node,
            base,
            args,
            kwargs,
            _nnx_params(node),
            y,
            reason if lifted else "",
            not lifted,
            run,
            update,
            self.record,
        )

    # ---- plain functions ---------------------------------------------------------------
    def mark(self, name, fn, layer_params, args, kwargs):
        params, keys = _flat(layer_params)
        mod = Marked(name, fn)

        def run(p):
            nested = layer_params
            for k, v in p.items():
                nested = _set(nested, keys[k], v)
            return self.passing(fn, nested, *args, **kwargs)

        if not self.select(mod):
            return fn(layer_params, *args, **kwargs)
        y = self.enter(mod, run, (self.overrides.get(name, {}),), {})
        reason = "inside a lifted transform (jax.lax.scan, jax.checkpoint, ...)"
        lifted = self.lifted()
        return self.report(
            mod,
            name,
            args,
            kwargs,
            {**params, **self.overrides.get(name, {})},
            y,
            reason if lifted else "",
            not lifted,
            run,
            lambda new: self.by_identity(name, new, params),
            self.record,
        )


_REMAT = "inside a lifted transform that carries every collection (nn.remat)"
_MAPPED = (
    "inside a lifted transform that maps its variables (nn.scan, nn.vmap, nn.RNN's scan): its "
    "params are stacked or shared across steps, not addressable per call"
)


def _attached(mod: nn.Module, path: tuple) -> dict[str, nn.Module]:
    """Bound submodules held in fields but owned elsewhere (``nn.RNN``'s ``cell``): their
    params are part of this call's params, under the field name."""
    out = {}
    for f in dataclasses.fields(mod):
        sub = getattr(mod, f.name, None) if f.name != "parent" else None
        if isinstance(sub, nn.Module) and sub.scope is not None:
            if tuple(sub.scope.path[: len(path)]) != path:
                out[f.name] = sub
    return out


def _nnx_params(node: Any) -> dict[str, Any]:
    """A NNX module's own trainable arrays: its ``nnx.Param``s and raw arrays (e.g.
    ``nnx.WeightNorm``'s scales), by flat name."""
    st = nnx.state(node)
    out = {}
    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    for kp, v in jax.tree_util.tree_flatten_with_path(st, is_leaf=is_var)[0]:
        if isinstance(v, nnx.Param):
            out[path_string(kp)] = v.get_value()
        elif not isinstance(v, nnx.Variable) and hasattr(v, "dtype"):
            out[path_string(kp)] = v
    return out


def _nnx_set(node: Any, name: str, value: Any) -> None:
    """Sets the param at flat ``name`` of an NNX module (a Variable or a dict entry)."""
    obj, parts = node, name.split("/")
    for p in parts[:-1]:
        obj = obj[_nnx_key(obj, p)] if isinstance(obj, Mapping) else getattr(obj, p)
    last = parts[-1]
    if isinstance(obj, Mapping):
        obj[_nnx_key(obj, last)] = value
    else:
        getattr(obj, last).set_value(value)


def _nnx_key(d: Mapping, name: str) -> Any:
    return next(k for k in d if str(k) == name)


def _hooked(cls: type, p: _Pass, paths: dict) -> type:
    def __call__(self, *args, **kwargs):
        return p.nnx_call(self, cls, paths, args, kwargs)

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})


def check_model(model: Any, fn: str = "") -> None:
    """Raises ``TypeError`` unless ``model`` is a kind :func:`capture` and :func:`as_apply` run."""
    where = f"{fn}: " if fn else ""
    if isinstance(model, type):
        raise TypeError(
            f"{where}model must be a module instance, got the class {model.__name__} (build it "
            f"first, e.g. {model.__name__}(...))"
        )
    if not isinstance(model, nn.Module | nnx.Module | nnx.GraphDef) and not callable(model):
        raise TypeError(
            f"{where}model must be a flax.linen.Module, a flax.nnx.Module, an nnx.GraphDef or "
            f"apply_fn(params, inputs); got {type(model).__name__}"
        )


def lsuv_layer(
    name: str,
    fn: Callable[..., jax.Array],
    layer_params: Mapping[str, Any],
    *args: Any,
    linear: bool = False,
    **kwargs: Any,
) -> jax.Array:
    """Calls ``fn(layer_params, *args, **kwargs)``, marking it as a layer for the capture layer.

    Outside a pass this is just the call (a model can keep its marks); inside ``jinit.lsuv``
    and every pass built on :func:`capture` the pass sees the layer, in execution order::

      def apply(params, x):
        return jinit.lsuv_layer("l1", dense, params["l1"], jinit.lsuv_layer("l0", dense,
                                                                            params["l0"], x))

    Args:
      name: the layer's path in reports and ``include``/``exclude`` patterns.
      fn: ``fn(layer_params, *args, **kwargs) -> output``.
      layer_params: the layer's params subtree itself (``{"kernel": ..., "bias": ...}``; its
        leaves are found in the pass's params by identity).
      *args: the layer's inputs. **kwargs: passed to ``fn``.
      linear: accepted for compatibility and ignored: every solve is verified by re-running
        ``fn``.

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
) -> Captured:
    """Runs ``model`` on ``inputs``, calling ``hook(call) -> None | new_output`` for every layer
    call that ``select(module)`` accepts (a :class:`Marked` for :func:`lsuv_layer` marks).

    ``model``, ``params``, ``rngs``, ``apply_kwargs`` and ``method`` are as for :func:`as_apply`
    (linen ``mutable=[...]``: more collections to carry); ``no_dropout`` runs every ``Dropout``
    as the identity. Returns a :class:`Captured`. Raises ``ValueError`` for a collection
    ``params`` does not hold (a BatchNorm without its batch_stats), ``params=None`` where
    required, or an updated plain-function parameter that is not a leaf of ``params``;
    ``TypeError`` for a model of no supported kind. See docs/lsuv.md ("How the pass works").
    """
    kwargs = dict(apply_kwargs or {})
    check_model(model)
    if isinstance(model, nnx.Module | nnx.GraphDef):
        if isinstance(model, nnx.Module):
            graphdef, state = nnx.split(model)
            state = state if params is None else nnx.merge_state(state, params)
        elif params is None:
            raise ValueError("params is None; an nnx.GraphDef needs its state")
        else:
            graphdef, state = model, params
        p = _Pass(hook, select, no_dropout, ())
        copy = nnx.merge(graphdef, state, copy=True)
        paths, classes = {}, {}
        for path, node in nnx.iter_modules(copy):
            if no_dropout and isinstance(node, nnx.Dropout):
                node.deterministic = True
            if select(node) and id(node) not in paths:
                paths[id(node)] = path_string(path) or type(node).__name__
                cls = type(node)
                classes.setdefault(cls, _hooked(cls, p, paths))
                object.__setattr__(node, "__class__", classes[cls])
        outputs, updates = copy(inputs, **kwargs), p.updates
        params = state if params is None else params
        missed = tuple(q for q in paths.values() if q not in p.count)
    elif params is None:
        raise ValueError(f"params is None; it is required for {type(model).__name__}")
    elif isinstance(model, nn.Module):
        is_vars = isinstance(params, Mapping) and "params" in params
        variables = dict(params) if is_vars else {"params": params}
        mutable = kwargs.pop("mutable", False)
        extra = [mutable] if isinstance(mutable, str) else list(mutable or [])
        cols = sorted({*variables, "params", PRIVATE, *extra})
        p = _Pass(hook, select, no_dropout, ())
        with nn.intercept_methods(p), _missing_collection():
            outputs, new = model.apply(
                variables, inputs, rngs=rngs, method=method, mutable=cols, **kwargs
            )
        newp, _ = _flat(new.get("params", {}))
        updates = {k: newp[k] if v is None else v for k, v in p.updates.items()}
        _collect(new.get(PRIVATE, {}), p)
        if is_vars:
            updates = {f"params/{k}": v for k, v in updates.items()}
        missed = ()
    else:
        p = _Pass(hook, select, no_dropout, jax.tree_util.tree_flatten_with_path(params)[0])
        token = _ACTIVE.set(p)
        try:
            with nn.intercept_methods(p), _missing_collection():
                outputs, updates, missed = model(params, inputs, **kwargs), p.updates, ()
        finally:
            _ACTIVE.reset(token)
    new = replace_leaves(params, updates)
    return Captured(outputs, new, tuple(p.order), p.records, missed, updates)


def _collect(tree: Any, p: _Pass) -> None:
    """Records sown from remat bodies (``r<index>`` entries of the private collection)."""
    for name, v in (tree or {}).items():
        if isinstance(name, str) and name.startswith("r") and isinstance(v, tuple):
            path = p.order[int(name[1:])]
            p.records[path] = {**p.records.get(path, {}), **v[0]}
        elif isinstance(v, Mapping):
            _collect(v, p)


_NOT_FOUND = (flax.errors.ScopeCollectionNotFound, flax.errors.ScopeVariableNotFoundError)


@contextlib.contextmanager
def _missing_collection():
    """Turns flax's "collection/variable not found" into a ValueError that says what to pass."""
    try:
        yield
    except _NOT_FOUND as e:
        raise ValueError(
            f"the model reads or creates a variable that `params` does not hold ({e}). A "
            "BatchNorm needs its batch_stats (in eval mode they are its statistics): pass the "
            "whole variables dict from model.init ({'params': ..., 'batch_stats': ...})"
        ) from None


def model_inputs(batch: Any, input_key: str | int | None = None) -> Any:
    """The model inputs inside ``batch``.

    ``input_key`` picks them (a mapping key or a sequence index); by default a mapping's
    ``"inputs"`` or ``"x"`` entry, a tuple's or list's first element, or the batch itself.

    Raises:
      ValueError: a mapping without ``"inputs"``/``"x"`` and no ``input_key``, or an
        ``input_key`` the batch does not hold.
    """
    if input_key is not None:
        try:
            return batch[input_key]
        except (KeyError, IndexError, TypeError):
            what = (
                f"keys {sorted(map(str, batch))}"
                if isinstance(batch, Mapping)
                else f"a {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, tuple | list) else "")
            )
            raise ValueError(f"input_key={input_key!r} is not in the batch ({what})") from None
    if isinstance(batch, Mapping):
        for key in ("inputs", "x"):
            if key in batch:
                return batch[key]
        raise ValueError(
            f"batch is a mapping with keys {sorted(map(str, batch))}; pass input_key= to say "
            "which holds the model inputs (tried 'inputs' and 'x')"
        )
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def fresh_variables(state):
    """A copy of an NNX state with new Variable objects (same arrays)."""
    # New Variables for every call: merging the caller's own ones would let a model that draws
    # from its stored Rngs (nnx.RNN's initialize_carry) mutate them from inside a jit trace.
    return jax.tree.map(lambda a: a, state)


def as_apply(
    model: Any,
    params: Any,
    *,
    rngs: Mapping[str, Any] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> tuple[Callable[[Any, Any], Any], Any, Callable[[Any], Any]]:
    """``model`` as a pure ``apply(p, inputs) -> outputs`` of its trainable parameters.

    Args:
      model: a ``flax.linen.Module``, a ``flax.nnx.Module``, an ``nnx.GraphDef`` (with its
        full ``nnx.State`` as ``params``), or a plain ``apply_fn(params, inputs)``.
      params: linen: the ``params`` collection or the full variables dict (other collections,
        e.g. ``batch_stats``, are held fixed); NNX module: an ``nnx.State`` of ``nnx.Param``
        or ``None`` for the module's own; GraphDef: its full state; apply_fn: whatever it
        takes.
      rngs: linen: passed to ``apply`` (``{"dropout": key}``).
      apply_kwargs: extra keyword arguments of the model call (``{"train": True}``). For
        linen, ``mutable=[...]`` is accepted: updated collections (BatchNorm's train-mode
        ``batch_stats``) are dropped, the outputs kept.

    Returns:
      ``(apply, p0, merge)``: ``apply(p, inputs)`` runs the model with trainable parameters
      ``p`` (a pytree shaped like ``p0``); ``p0`` the trainable parameters in ``params``;
      ``merge(p)`` puts ``p`` back into the structure of ``params`` (what a pass returns).

    Raises:
      ValueError: ``params`` is ``None`` for a linen module, GraphDef or apply_fn.
      TypeError: ``model`` is none of the above.
    """
    check_model(model)
    kwargs = dict(apply_kwargs or {})
    if isinstance(model, nnx.Module | nnx.GraphDef):
        if isinstance(model, nnx.Module):
            graphdef, own, rest = nnx.split(model, nnx.Param, ...)
            p0, merge = (own if params is None else params), (lambda p: p)
        elif params is None:
            raise ValueError("params is None; it is required for an nnx.GraphDef (its state)")
        else:
            state = params if isinstance(params, nnx.State) else nnx.State(params)
            (p0, rest), graphdef = state.split(nnx.Param, ...), model
            merge = lambda p: nnx.merge_state(params, p)  # noqa: E731

        def apply(p, x):
            return nnx.merge(graphdef, p, fresh_variables(rest))(x, **kwargs)

        return apply, p0, merge
    if params is None:
        raise ValueError(
            f"params is None; it is required for {type(model).__name__} (only an nnx.Module "
            "carries its own parameters)"
        )
    if isinstance(model, nn.Module):
        is_variables = isinstance(params, Mapping) and "params" in params
        others = {k: v for k, v in params.items() if k != "params"} if is_variables else {}
        p0 = params["params"] if is_variables else params
        mutable = kwargs.pop("mutable", False)

        def apply(p, x):
            out = model.apply({"params": p, **others}, x, rngs=rngs, mutable=mutable, **kwargs)
            return out[0] if mutable else out

        def merge(p):
            if not is_variables:
                return p
            return (
                type(params)({**params, "params": p})
                if isinstance(params, dict)
                else (params.copy({"params": p}))
            )

        return apply, p0, merge

    def apply(p, x):
        return model(p, x, **kwargs)

    return apply, params, lambda p: p
