"""Flax NNX adapter: the same single forward pass, on a private copy of the model.

Inside the traced pass the model is rebuilt with ``nnx.merge(graphdef, state)``. Each selected
layer object of that private copy gets a per-instance hook (its class is swapped for a cached
subclass whose ``__call__`` routes to the solver); nothing global is patched and the caller's
model is never touched. The hook runs the layer, solves it (see ``lsuv_engine``), stores the
corrected kernel in the private copy (so later layers and later calls see it) and returns the
corrected output. ``nnx.Dropout`` layers of the copy are set deterministic. The returned state is
the input state with only the recorded kernels (and biases) replaced, so BatchNorm statistics
updated by a train-mode forward and RNG counters are returned bitwise unchanged.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from jinit._src import lsuv_engine as eng
from jinit._src import lsuv_plain

_AFFINE = (nnx.Linear, nnx.LinearGeneral, nnx.Conv, nnx.ConvTranspose, nnx.Embed)
_GENERIC = (nnx.Einsum,)
_FUSED_GATES = {
    nnx.OptimizedLSTMCell: ("i", "f", "g", "o"),
    nnx.GRUCell: ("r", "z", "n"),
    nnx.SimpleCell: ("",),
}
_LSTM_GATES = ("ii", "if_", "ig", "io")
_HOOKED: dict[type, type] = {}


def _kind(node: Any) -> str | None:
    if isinstance(node, nnx.WeightNorm):
        return "weight_norm"
    if isinstance(node, nnx.RNN):
        return "rnn"
    if isinstance(node, nnx.RNNCellBase):
        return "cell"
    if isinstance(node, _AFFINE):
        return "affine"
    if isinstance(node, _GENERIC):
        return "generic"
    return None


def _get(v: Any) -> Any:
    return v.get_value() if isinstance(v, nnx.Variable) else v


def _base(cls: type) -> type:
    return cls.__mro__[1] if cls in _HOOKED.values() else cls


def _hooked_class(cls: type) -> type:
    if cls not in _HOOKED:

        def __call__(self, *args, **kwargs):
            return _dispatch(self, cls, args, kwargs)

        _HOOKED[cls] = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": __name__})
    return _HOOKED[cls]


class _Pass:
    def __init__(self, rec: eng.Recorder, paths: dict[int, tuple]):
        self.rec = rec
        self.paths = paths

    def call(self, base, node, args, kwargs):
        self.rec.passthrough += 1
        try:
            return base.__call__(node, *args, **kwargs)
        finally:
            self.rec.passthrough -= 1


def _dispatch(node, base, args, kwargs):
    rec = lsuv_plain.active()
    p = getattr(rec, "nnx_pass", None) if rec is not None else None
    if p is None or rec.passthrough or id(node) not in p.paths:
        # not in a pass, inside a replay, or a copy made by a lifted transform (nnx.scan, ...)
        return base.__call__(node, *args, **kwargs)
    path = p.paths[id(node)]
    name = "/".join(str(q) for q in path)
    kind = _kind(node)
    if kind in ("rnn", "cell"):
        return _recurrent(p, kind, node, base, path, args, kwargs)
    if not rec.cfg.selects(name) or name in rec.done:
        return p.call(base, node, args, kwargs)
    if not rec.at_outer_trace():
        rec.skip_inner(name)
        return p.call(base, node, args, kwargs)
    if kind == "weight_norm":
        return _weight_norm(p, node, base, path, name, args, kwargs)
    kname = "embedding" if isinstance(node, nnx.Embed) else "kernel"
    k = _get(getattr(node, kname))
    bvar = getattr(node, "bias", None)
    b = _get(bvar) if bvar is not None else None
    k0 = rec.initial_kernel(name, k)
    if k0 is not k:
        getattr(node, kname).set_value(k0)
        rec.updates[path + (kname,)] = k0
    y0 = p.call(base, node, args, kwargs)
    unit_ndim = None
    if kind == "affine":
        n = b.ndim if b is not None else 1
        if (
            0 < n <= min(k0.ndim, y0.ndim)
            and tuple(k0.shape[-n:]) == tuple(y0.shape[-n:])
            and (b is None or tuple(b.shape) == tuple(y0.shape[-n:]))
        ):
            unit_ndim = n
    gd, st = nnx.split(node)

    def run(kk, bb):
        copy = nnx.merge(gd, st, copy=True)  # fresh Variables, in this trace (while_loop)
        getattr(copy, kname).set_value(kk)
        if bb is not None:
            copy.bias.set_value(bb)
        return p.call(base, copy, args, kwargs)

    site = eng.Site(
        name=name,
        kernel=k0,
        bias=b,
        inputs=(args, kwargs),
        y0=y0,
        affine=unit_ndim is not None,
        unit_ndim=unit_ndim or 1,
        run=run,
    )
    sol = rec.solve(site)
    if sol is None:
        return y0
    getattr(node, kname).set_value(sol.kernel)
    rec.updates[path + (kname,)] = sol.kernel
    if b is not None and sol.bias is not b:
        bvar.set_value(sol.bias)
        rec.updates[path + ("bias",)] = sol.bias
    y = sol.y if sol.y is not None else p.call(base, node, args, kwargs)
    rec.finish(site, sol, y)
    return y


def _weight_norm(p: _Pass, node, base, path, name, args, kwargs):
    """``nnx.WeightNorm`` over a Linear/Conv: the per-unit scale ``g`` is the parameter set.

    The wrapped kernel ``v`` is normalised (and multiplied by ``g``) inside every call, so
    rescaling it would be a no-op; as with linen's ``nn.WeightNorm`` the pass sets ``g`` (in the
    state at ``scales/('kernel',)``) and the wrapped layer's bias, and leaves ``v`` bitwise
    unchanged (Salimans & Kingma 2016, section 3).
    """
    rec = p.rec
    inner = node.layer_instance
    key = ("kernel",)
    scales = node.scales or {}
    ok_layer = isinstance(inner, _AFFINE) and not isinstance(inner, nnx.Embed)
    if not (ok_layer and node.use_scale and key in scales):
        rec.skip(name, "WeightNorm without a per-unit scale over a Linear/Conv kernel")
        return p.call(base, node, args, kwargs)
    g = scales[key]
    bvar = getattr(inner, "bias", None)
    b = _get(bvar) if bvar is not None else None
    y0 = p.call(base, node, args, kwargs)
    unit_ok = (
        g.ndim == 1
        and y0.ndim >= 1
        and g.shape[0] == y0.shape[-1]
        and (b is None or tuple(b.shape) == g.shape)
    )
    if not unit_ok:
        rec.skip(name, "WeightNorm scale does not line up with the output's last axis")
        return y0
    site = eng.Site(
        name=name, kernel=g, bias=b, inputs=(args, kwargs), y0=y0, affine=True, run=None
    )
    sol = rec.solve(site)
    if sol is None:
        return y0
    node.scales = nnx.data({**scales, key: sol.kernel})
    rec.updates[path + ("scales", key)] = sol.kernel
    if b is not None and sol.bias is not b:
        bvar.set_value(sol.bias)
        rec.updates[path + ("layer_instance", "bias")] = sol.bias
    rec.finish(site, sol, sol.y)  # closed form (run=None): y = c (y0 - b) + b'
    return sol.y


def _gate_sites(cell) -> list[tuple[str, Any, int, int, str]]:
    """(attribute, Linear, first column, n columns, gate label) of each input projection."""
    out = []
    base = _base(type(cell))
    if hasattr(cell, "ii"):
        for a in _LSTM_GATES:
            lin = getattr(cell, a, None)
            if isinstance(lin, nnx.Linear):
                out.append((a, lin, 0, lin.out_features, a))
        return out
    lin = getattr(cell, "dense_i", None)
    if not isinstance(lin, nnx.Linear):
        return out
    labels = _FUSED_GATES.get(base)
    if labels is None:
        return out
    h = lin.out_features // len(labels)
    for j, lab in enumerate(labels):
        out.append(("dense_i", lin, j * h, h, lab))
    return out


def _recurrent(p: _Pass, kind, node, base, path, args, kwargs):
    rec = p.rec
    cell = node.cell if kind == "rnn" else node
    cell_path = path + ("cell",) if kind == "rnn" else path
    if kind == "rnn":
        x = args[0] if args else kwargs["inputs"]
    else:
        x = args[1] if len(args) > 1 else kwargs["inputs"]
    cname = "/".join(str(q) for q in cell_path)
    gates = _gate_sites(cell)
    labelled = []
    for attr, lin, start, width, lab in gates:
        gname = f"{cname}/{attr}" + (f"/{lab}" if lab and lab != attr else "")
        labelled.append((gname, attr, lin, start, width))
    todo = [g for g in labelled if rec.cfg.selects(g[0]) and g[0] not in rec.done]
    if not gates and rec.cfg.selects(cname) and cname not in rec.done:
        rec.skip(cname, f"no input projections recognised in {_base(type(cell)).__name__}")
    if todo and not rec.at_outer_trace():
        for g in todo:
            rec.skip_inner(g[0])
        todo = []
    new_kernels: dict[str, Any] = {}
    new_biases: dict[str, Any] = {}
    for gname, attr, lin, start, width in todo:
        kfull = new_kernels.get(attr, _get(lin.kernel))
        bvar = lin.bias
        bfull = new_biases.get(attr, _get(bvar) if bvar is not None else None)
        k = kfull[:, start : start + width]
        b = bfull[start : start + width] if bfull is not None else None
        dt = lin.dtype or (x.dtype if x.dtype == k.dtype else jnp.float32)
        k0 = rec.initial_kernel(gname, k)

        def run(kk, bb, dt=dt):
            y = jnp.dot(x.astype(dt), kk.astype(dt))
            return y + eng._bcast(bb.astype(dt), y.ndim) if bb is not None else y

        y0 = run(k0, b)
        site = eng.Site(
            name=gname, kernel=k0, bias=b, inputs=x, y0=y0, affine=True, unit_ndim=1, run=run
        )
        sol = rec.solve(site)
        if sol is None:
            continue
        new_kernels[attr] = kfull.at[:, start : start + width].set(sol.kernel)
        if b is not None and sol.bias is not b:
            new_biases[attr] = bfull.at[start : start + width].set(sol.bias)
        y = sol.y if sol.y is not None else run(sol.kernel, sol.bias)
        rec.finish(site, sol, y)
    for attr, kval in new_kernels.items():
        getattr(cell, attr).kernel.set_value(kval)
        rec.updates[cell_path + (attr, "kernel")] = kval
    for attr, bval in new_biases.items():
        getattr(cell, attr).bias.set_value(bval)
        rec.updates[cell_path + (attr, "bias")] = bval
    return p.call(base, node, args, kwargs)


def forward(graphdef, state, batch, kwargs, rec: eng.Recorder) -> None:
    """Runs the hooked forward pass on a private copy; results land in ``rec``."""
    model = nnx.merge(graphdef, state, copy=True)  # private Variables: `state` stays as is
    paths: dict[int, tuple] = {}
    for path, node in list(nnx.iter_graph(model)):
        if isinstance(node, nnx.Dropout):
            node.deterministic = True
        elif _kind(node) is not None and id(node) not in paths:
            paths[id(node)] = tuple(path)
            object.__setattr__(node, "__class__", _hooked_class(type(node)))
    rec.nnx_pass = _Pass(rec, paths)
    with lsuv_plain.activate(rec, {}):
        model(batch, **kwargs)
    # Selected layers never met at the top level of the pass are reported, not dropped.
    nodes = {id(n): n for _, n in nnx.iter_graph(model)}
    # (a WeightNorm's wrapped layer is solved through the WeightNorm, never on its own)
    cells = [q for i, q in paths.items() if _kind(nodes.get(i)) in ("rnn", "cell", "weight_norm")]
    for i, q in paths.items():
        name = "/".join(str(x) for x in q)
        if _kind(nodes.get(i)) not in ("affine", "generic") or name in rec.done:
            continue
        if any(q[: len(c)] == c for c in cells) or not rec.cfg.selects(name):
            continue
        rec.skip(
            name,
            "not called at the top level of the forward pass (unused, or only inside a "
            "lifted transform such as nnx.scan/nnx.remat)",
        )
