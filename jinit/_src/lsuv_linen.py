"""Flax linen adapter: one forward pass under ``nn.intercept_methods``.

When the forward pass reaches the ``__call__`` of a selected layer, the interceptor

1. reads the layer's parameters from its scope (optionally replacing the kernel by an orthonormal
   one), runs the layer once (``next_fun``) to get its output on its actual input,
2. hands both to the solver (``lsuv_engine``), which iterates on this layer only,
3. writes the corrected kernel (and bias) back into the scope with ``put_variable`` (the pass
   runs ``apply`` with ``mutable=True``), so later layers, and later calls of the same layer,
   see it, and returns the corrected output to the forward pass.

Layers are therefore met in forward EXECUTION order (not definition order), each once. Mutated
collections (``batch_stats`` in train mode, ``intermediates``) are discarded: only the recorded
kernels and biases are written into the returned tree. ``nn.Dropout`` is replaced by the identity
during the pass. Recurrent cells (``nn.RNNCellBase``) and ``nn.RNN`` are handled as a whole: the
input projections of every gate (``ii``, ``if``, ``ig``, ``io``; ``ir``, ``iz``, ``in``; ``i``)
are normalised on the cell's input pooled over batch and time, the recurrent kernels (``h*``) are
left as they are, and the recurrence then runs with the corrected kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
from flax.core import FrozenDict

from jinit._src import lsuv_engine as eng

_AFFINE = (nn.Dense, nn.DenseGeneral, nn.Conv, nn.ConvTranspose, nn.ConvLocal, nn.Embed)
_GENERIC = (nn.Einsum,)
_GATE_ORDER = ("ii", "if", "ig", "io", "ir", "iz", "in", "i")


def _kind(mod: nn.Module) -> str | None:
    if isinstance(mod, nn.RNN):
        return "rnn"
    if isinstance(mod, nn.RNNCellBase):
        return "cell"
    if isinstance(mod, nn.WeightNorm):
        return "weight_norm"
    if isinstance(mod, _AFFINE):
        return "affine"
    if isinstance(mod, _GENERIC):
        return "generic"
    return None


def _name(path: tuple) -> str:
    return "/".join(str(p) for p in path)


def _unit_ndim(kernel, bias, y) -> int | None:
    """Trailing output axes that index units, if they line up with the kernel's trailing axes."""
    n = bias.ndim if bias is not None else 1
    if n == 0 or n > kernel.ndim or n > y.ndim:
        return None
    if tuple(kernel.shape[-n:]) != tuple(y.shape[-n:]):
        return None
    if bias is not None and tuple(bias.shape) != tuple(y.shape[-n:]):
        return None
    return n


class _Pass:
    def __init__(self, rec: eng.Recorder):
        self.rec = rec

    # -- helpers ---------------------------------------------------------------------------
    def _call(self, fn, *args, **kwargs):
        self.rec.passthrough += 1
        try:
            return fn(*args, **kwargs)
        finally:
            self.rec.passthrough -= 1

    def _replay(self, mod: nn.Module, variables: Mapping, args, kwargs):
        """A pure ``(kernel, bias) -> y`` re-running only ``mod`` (usable inside while_loop)."""
        clone = mod.clone(parent=None, _deep_clone=True)
        kname = "embedding" if isinstance(mod, nn.Embed) else "kernel"

        def run(k, b):
            params = dict(variables.get("params", {}))
            params[kname] = k
            if b is not None:
                params["bias"] = b
            vs = {**variables, "params": params}
            return self._call(clone.apply, vs, *args, **kwargs)

        return run

    def _record(self, path: tuple, value) -> None:
        self.rec.updates[("params",) + tuple(path)] = value

    # -- the interceptor -------------------------------------------------------------------
    def __call__(self, next_fun, args, kwargs, ctx):
        mod = ctx.module
        if ctx.method_name != "__call__":
            return next_fun(*args, **kwargs)
        if isinstance(mod, nn.Dropout):  # dropout off during the pass
            return args[0] if args else kwargs["inputs"]
        if self.rec.passthrough:
            return next_fun(*args, **kwargs)
        kind = _kind(mod)
        if kind is None or mod.scope is None:
            return next_fun(*args, **kwargs)
        path = tuple(mod.scope.path)
        name = _name(path) or type(mod).__name__  # the root module itself
        if kind in ("rnn", "cell"):
            return self._recurrent(kind, mod, name, next_fun, args, kwargs)
        if not self.rec.cfg.selects(name) or name in self.rec.done:
            if kind == "weight_norm":  # its inner layer is never solved on its own
                return self._call(next_fun, *args, **kwargs)
            return next_fun(*args, **kwargs)
        if not self.rec.at_outer_trace():
            self.rec.skip_inner(name)
            return self._call(next_fun, *args, **kwargs)
        if kind == "weight_norm":
            return self._weight_norm(mod, path, name, next_fun, args, kwargs)
        return self._layer(kind, mod, path, name, next_fun, args, kwargs)

    def _layer(self, kind, mod, path, name, next_fun, args, kwargs):
        variables = mod.variables
        params = variables.get("params", {})
        kname = "embedding" if isinstance(mod, nn.Embed) else "kernel"
        if kname not in params:
            self.rec.skip(name, f"no {kname!r} parameter")
            return next_fun(*args, **kwargs)
        k = params[kname]
        b = params.get("bias")
        k0 = self.rec.initial_kernel(name, k)
        if k0 is not k:
            mod.put_variable("params", kname, k0)
            self._record(path + (kname,), k0)
        y0 = self._call(next_fun, *args, **kwargs)
        unit_ndim = _unit_ndim(k0, b, y0) if kind == "affine" else None
        variables = {**variables, "params": {**params, kname: k0}}
        site = eng.Site(
            name=name,
            kernel=k0,
            bias=b,
            inputs=(args, kwargs),
            y0=y0,
            affine=unit_ndim is not None,
            unit_ndim=unit_ndim or 1,
            run=self._replay(mod, variables, args, kwargs),
        )
        sol = self.rec.solve(site)
        if sol is None:
            return y0
        mod.put_variable("params", kname, sol.kernel)
        self._record(path + (kname,), sol.kernel)
        if b is not None and sol.bias is not b:
            mod.put_variable("params", "bias", sol.bias)
            self._record(path + ("bias",), sol.bias)
        # (calling next_fun twice in one interception would re-create compact params: replay)
        y = sol.y if sol.y is not None else site.run(sol.kernel, sol.bias)
        self.rec.finish(site, sol, y)
        return y

    def _weight_norm(self, mod: nn.WeightNorm, path, name, next_fun, args, kwargs):
        inner = mod.layer_instance
        gname = f"{inner.name}/kernel/scale"
        params = mod.variables.get("params", {})
        ok_layer = isinstance(inner, _AFFINE) and not isinstance(inner, nn.Embed)
        if not (ok_layer and mod.use_scale and gname in params and inner.scope is not None):
            self.rec.skip(name, "WeightNorm without a per-unit scale over a Dense/Conv kernel")
            return self._call(next_fun, *args, **kwargs)
        g = params[gname]
        inner_path = tuple(inner.scope.path)
        b = inner.variables.get("params", {}).get("bias")
        y0 = self._call(next_fun, *args, **kwargs)
        unit_ndim = _unit_ndim(g, b, y0) if g.ndim else None
        site = eng.Site(
            name=name,
            kernel=g,
            bias=b,
            inputs=(args, kwargs),
            y0=y0,
            affine=unit_ndim is not None,
            unit_ndim=unit_ndim or 1,
            run=None,
        )
        if unit_ndim is None:
            self.rec.skip(name, "WeightNorm scale does not line up with the output's last axes")
            return y0
        sol = self.rec.solve(site)
        if sol is None:
            return y0
        mod.put_variable("params", gname, sol.kernel)
        self._record(path + (gname,), sol.kernel)
        if b is not None and sol.bias is not b:
            inner.put_variable("params", "bias", sol.bias)
            self._record(inner_path + ("bias",), sol.bias)
        self.rec.finish(site, sol, sol.y)  # closed form (run=None): y = c (y0 - b) + b'
        return sol.y

    def _recurrent(self, kind, mod, name, next_fun, args, kwargs):
        cell = mod.cell if kind == "rnn" else mod
        if kind == "rnn":
            x = args[0] if args else kwargs["inputs"]
        else:
            x = args[1] if len(args) > 1 else kwargs["inputs"]
        if cell.scope is None:
            return self._call(next_fun, *args, **kwargs)
        cell_path = tuple(cell.scope.path)
        cell_name = _name(cell_path)
        params = cell.variables.get("params", {})
        gates = [
            g
            for g in sorted(params, key=lambda g: (_GATE_ORDER + (g,)).index(g))
            if str(g).startswith("i")
            and isinstance(params[g], Mapping)
            and "kernel" in params[g]
            and params[g]["kernel"].ndim == 2
            and params[g]["kernel"].shape[0] == x.shape[-1]
        ]
        names = {g: f"{cell_name}/{g}" for g in gates}
        todo = [
            g for g in gates if self.rec.cfg.selects(names[g]) and names[g] not in self.rec.done
        ]
        if not gates and self.rec.cfg.selects(cell_name) and cell_name not in self.rec.done:
            self.rec.skip(cell_name, f"no input projections recognised in {type(cell).__name__}")
        if todo and not self.rec.at_outer_trace():
            for g in todo:
                self.rec.skip_inner(names[g])
            todo = []
        for g in todo:
            self._gate(cell, cell_path, g, names[g], params[g], x)
        return self._call(next_fun, *args, **kwargs)

    def _gate(self, cell, cell_path, g, name, p, x):
        """One input projection of a recurrent cell, as a Dense on the whole input sequence."""
        k = p["kernel"]
        b = p.get("bias")
        dense = nn.Dense(
            features=k.shape[1],
            use_bias=b is not None,
            dtype=getattr(cell, "dtype", None),
            parent=None,
        )
        k0 = self.rec.initial_kernel(name, k)

        def run(kk, bb):
            vs = {"params": {"kernel": kk, **({"bias": bb} if bb is not None else {})}}
            return self._call(dense.apply, vs, x)

        y0 = run(k0, b)
        site = eng.Site(
            name=name, kernel=k0, bias=b, inputs=x, y0=y0, affine=True, unit_ndim=1, run=run
        )
        sol = self.rec.solve(site)
        if sol is None:
            return
        new = {**p, "kernel": sol.kernel}
        self._record(cell_path + (g, "kernel"), sol.kernel)
        if b is not None and sol.bias is not b:
            new["bias"] = sol.bias
            self._record(cell_path + (g, "bias"), sol.bias)
        cell.put_variable("params", g, new)
        y = sol.y if sol.y is not None else run(sol.kernel, sol.bias)
        self.rec.finish(site, sol, y)


def forward(model: nn.Module, variables, batch, kwargs, method, rec: eng.Recorder) -> None:
    """Runs the intercepted forward pass; results land in ``rec``."""
    with nn.intercept_methods(_Pass(rec)):
        model.apply(variables, batch, mutable=True, method=method, **kwargs)


def path_entry(k) -> Any:
    """The plain key of one ``jax.tree_util`` path entry (dict key, attribute name or index)."""
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return k


def replace_leaves(
    tree: Any,
    updates: Mapping[Any, Any],
    drop_value: bool = False,
    key: Callable[[tuple], Any] = lambda p: p,
) -> Any:
    """Returns ``tree`` with the leaves at the given key paths replaced (others untouched);
    ``updates`` is keyed by ``key(path)`` (``path`` a tuple of dict keys / attribute names).

    Plain dicts and FrozenDicts are rebuilt in their own key order (``tree_map`` would sort
    the keys); other containers (e.g. ``nnx.State``) go through ``tree_map_with_path``.
    """
    if not updates:
        return tree

    def rec(node, prefix):
        if isinstance(node, dict | FrozenDict):
            new = {k: rec(v, prefix + (k,)) for k, v in node.items()}
            return FrozenDict(new) if isinstance(node, FrozenDict) else new

        def f(kp, leaf):
            p = prefix + tuple(path_entry(k) for k in kp)
            if drop_value and p and p[-1] == "value":
                p = p[:-1]
            return updates.get(key(p), leaf)

        return jax.tree_util.tree_map_with_path(f, node)

    return rec(tree, ())
