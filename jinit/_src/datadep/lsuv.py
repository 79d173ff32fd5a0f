"""LSUV (Mishkin & Matas 2015) and the pass the per-unit methods share: each selected layer is
solved (:mod:`solve`) when the forward pass reaches it, on its real input (docs/lsuv.md)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jinit._src.checks import check_choice, check_int, check_key, check_number, check_patterns
from jinit._src.datadep import report as rep
from jinit._src.datadep import solve
from jinit._src.datadep.capture import Marked, capture
from jinit._src.models import check_model, model_inputs
from jinit._src.paths import flat, is_float, path_key, path_string, replace_leaves

_RECURRENT = (nn.RNN, nnx.RNN, nn.RNNCellBase, nnx.RNNCellBase)
_SPECTRAL = (nn.SpectralNorm, nnx.SpectralNorm)  # divide the kernel by its norm on every call
_WHOLE = (*_RECURRENT, nn.WeightNorm, nnx.WeightNorm, *_SPECTRAL)  # solved (or skipped) whole
_GATE_LABELS = {3: "rzn", 4: "ifgo"}
_GATE_ORDER = ("ii", "if", "ig", "io", "ir", "iz", "in", "i")


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings of one pass (hashable: part of the jit cache key)."""

    method: str = "lsuv"
    target: float = 1.0
    tol: float = 0.1
    max_iters: int = 10
    measure: str = "pre"
    activation: Callable[[jax.Array], jax.Array] | None = None
    center: bool = False
    target_mean: float = 0.0
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    on_zero_variance: str = "raise"
    min_values: int = 2
    orthogonal: bool = False

    @property
    def per_unit(self) -> bool:
        return self.method != "lsuv"

    def selects(self, path: str) -> bool:
        if self.include and not any(re.search(p, path) for p in self.include):
            return False
        return not any(re.search(p, path) for p in self.exclude)


def make_config(fn: str, **kw: Any) -> Config:
    """Validates the static settings of a pass, naming the argument, the value and the choices."""
    kw = {f.name: f.default for f in dataclasses.fields(Config)} | kw
    for name, choices in (("measure", ("pre", "post")), ("on_zero_variance", ("raise", "skip"))):
        check_choice(fn, name, kw[name], choices)
    if kw["measure"] == "post" and not callable(kw["activation"]):
        need = "the activation that follows each layer, e.g. activation=jax.nn.relu"
        raise ValueError(f"{fn}: measure='post' needs {need}; got activation={kw['activation']!r}")
    if kw["activation"] is not None and kw["measure"] != "post":
        raise ValueError(f"{fn}: activation={kw['activation']!r} is only used with measure='post'")
    for name in ("target", "tol", "target_mean"):
        kw[name] = float(check_number(fn, name, kw[name], nonnegative=name == "tol"))
    if kw["target"] <= 0:
        raise ValueError(f"{fn}: target (the target variance) must be > 0, got {kw['target']!r}")
    for name, low in (("max_iters", 0), ("min_values", 2)):
        kw[name] = check_int(fn, name, kw[name], minimum=low)
    for name in ("include", "exclude"):
        kw[name] = check_patterns(fn, name, kw[name])
    return Config(**kw)


def _scaled(p: jax.Array, c: jax.Array) -> jax.Array:
    """``p`` times ``c`` (a scalar, or per unit on ``p``'s trailing axes) in ``p``'s dtype; concrete
    float32/float64 on the host (exactly rounded either way; nothing for the eager pass to compile)."""
    xp = jnp if solve.traced(p, c) or p.dtype not in (np.float32, np.float64) else np
    c = xp.asarray(c, p.dtype)
    return jax.device_put(xp.asarray(p) * c.reshape((1,) * (p.ndim - c.ndim) + c.shape))


class _Pass:
    """The hook of one pass: solves each selected layer when the forward pass reaches it."""

    def __init__(self, fn: str, cfg: Config, key: jax.Array | None):
        self.fn, self.cfg, self.key = fn, cfg, key
        self.rows: list[tuple[str, str, dict | None]] = []
        self.done: set[str] = set()

    def skip(self, path: str, note: str) -> None:
        self.done.add(path)
        self.rows.append((path, note, None))

    def hook(self, call) -> Any:
        path = call.path.split("@")[0]
        if path in self.done or any(isinstance(m, _WHOLE) for m in call.enclosing):
            return None  # a later call (it already uses the new params) or part of a whole
        recurrent = isinstance(call.module, _RECURRENT)
        if not recurrent and not self.cfg.selects(path):
            return None
        if not call.addressable:
            return self.skip(path, f"called {call.lifted}; left unchanged")
        if recurrent:
            return self.recurrent(call, path)
        names = _param_names(call)
        if isinstance(names, str):
            return self.skip(path, names)
        (kname, bname), k, y0 = names, call.params[names[0]], call.output
        if self.cfg.orthogonal and k.ndim >= 2:
            k = _orthogonal(self.key, path, k)
            call.update({kname: k})
            y0 = call.run()

        def new(kk, bb):
            return {kname: kk} | ({} if bb is None else {bname: bb})

        run = lambda kk, bb: call.run(new(kk, bb))
        k2, b2, y = self.solve(call, "", path, k, call.params.get(bname), run, y0, call.args)
        if k2 is not None:
            call.update(new(k2, b2))
        return y

    def solve(self, call, tag, path, k, b, run, y0, args):
        """One layer: returns the new kernel (``None``: unchanged), bias and output."""
        self.done.add(path)
        n = (b.ndim if b is not None else 1) if self.cfg.per_unit else 0
        units = y0.shape[y0.ndim - n :] if isinstance(y0, jax.Array) else None
        note = ""
        if units is None or not jnp.issubdtype(y0.dtype, jnp.floating):
            note = "the output is not one floating array"
        elif self.cfg.per_unit and not (0 < n <= min(k.ndim, y0.ndim) and k.shape[-n:] == units):
            note = f"{self.cfg.method} needs output units on the last axes of the kernel and the "
            note += "output (Dense/Conv-like)"
        if note:
            self.skip(path, note)
            return None, None, y0
        per = y0.size // max(1, int(np.prod(units)))
        if per < self.cfg.min_values:
            what = "per output unit " if n else ""
            raise ValueError(
                f"{self.fn}: layer {path!r} has only {per} output value(s) {what}on this batch "
                f"(output shape {y0.shape}); estimating a variance needs at least "
                f"{self.cfg.min_values}. Use a larger (non-empty) batch."
            )
        in_ok = solve.finite_inputs(args)
        c, b2, y, rec = solve.layer(self.cfg, lambda c, bb: run(_scaled(k, c), bb), y0, in_ok, n, b)
        b2 = None if b2 is None else jnp.asarray(b2, b.dtype)
        call.record(**{tag + f: v for f, v in rec.items()})
        no_bias = "no bias: its unit means are left as they are" if n and b is None else ""
        self.rows.append((path, no_bias, (call.path, tag)))
        return _scaled(k, c), b2, y

    def recurrent(self, call, path):
        """Input projections of a recurrent cell, each gate solved as a Dense on the whole
        sequence (pooled over batch and time); recurrent kernels are left as they are."""
        self.done.add(path)
        m, rnn = call.module, isinstance(call.module, nn.RNN | nnx.RNN)
        x, pre = (call.args[0], "cell/") if rnn else (call.args[1], "")
        cell = path_string(m.cell.scope.path) if isinstance(m, nn.RNN) else path + "/cell" * rnn
        p = {n[len(pre) :]: v for n, v in call.params.items() if n.startswith(pre)}
        hid = [v.shape[0] for n, v in p.items() if re.match(r"(dense_)?h.*kernel$", n)]
        new = {}
        for name in sorted(p, key=_gate_rank):
            k, g = p[name], name.rsplit("/", 1)[0]
            projection = name.startswith(("i", "dense_i")) and name.endswith("/kernel")
            if not projection or k.ndim != 2 or k.shape[0] != x.shape[-1]:
                continue
            h = hid[0] if hid and k.shape[1] % hid[0] == 0 else k.shape[1]
            blocks, b = k.shape[1] // h, p.get(g + "/bias")
            labels = _GATE_LABELS.get(blocks, "0123456789")[:blocks] if blocks > 1 else [""]
            for j, lab in enumerate(labels):
                gate = f"{cell}/{g}" + (f"/{lab}" if lab else "")
                if not self.cfg.selects(gate) or gate in self.done:
                    continue
                cols = slice(j * h, (j + 1) * h)
                kj, bj = k[:, cols], None if b is None else b[cols]
                if self.cfg.orthogonal:
                    kj = _orthogonal(self.key, gate, kj)

                def run(kk, bb, bj=bj):
                    bb, y = bj if bb is None else bb, jnp.dot(x.astype(kk.dtype), kk)
                    return y if bb is None else y + jnp.broadcast_to(bb.astype(y.dtype), y.shape)

                k2, b2, _ = self.solve(call, gate + ":", gate, kj, bj, run, run(kj, None), x)
                k = k.at[:, cols].set(kj if k2 is None else k2)
                b = b if b2 is None else b.at[cols].set(b2)
            new[pre + name] = k
            new.update({} if b is None else {pre + g + "/bias": b})
        if not new:
            return self.skip(cell, f"no input projections recognised in {call.kind}")
        call.update(new)
        return call.run()


def _gate_rank(name: str) -> tuple:
    """Gates in the order their cell runs them when the dict order was lost (sorted keys)."""
    g = name.split("/")[0]
    return (_GATE_ORDER.index(g) if g in _GATE_ORDER else len(_GATE_ORDER), name)


def _param_names(call) -> tuple[str, str] | str:
    """The parameter a pass rescales and the bias, or why the layer is skipped."""
    p = call.params
    if isinstance(call.module, _SPECTRAL):
        return "SpectralNorm divides the kernel by its spectral norm: no scale reaches the output"
    if isinstance(call.module, nn.WeightNorm | nnx.WeightNorm):
        g = [n for n in p if n.endswith("kernel/scale") or n.startswith("scales/")]
        if len(g) != 1:
            return "WeightNorm without one per-unit scale over a Dense/Conv kernel"
        bias = [n for n in p if n.endswith("/bias")]
        return g[0], bias[0] if len(bias) == 1 else ""
    for k in ("kernel", "embedding"):
        if k in p:
            return k, "bias" if "bias" in p and k == "kernel" else ""
    return "no 'kernel' parameter"


def _orthogonal(key: jax.Array, path: str, k: jax.Array) -> jax.Array:
    """LSUV step 1: an orthonormal kernel drawn with the layer's path key."""
    from jinit._src.initializers import lsuv_ready_orthogonal

    return lsuv_ready_orthogonal()(path_key(key, path), k.shape, k.dtype)


def _selects(m: Any) -> bool:
    """Calls reported to the LSUV hook: layers with a kernel or embedding, whole layers."""
    if isinstance(m, (Marked, *_WHOLE)):
        return True
    if isinstance(m, nnx.Module):
        return isinstance(getattr(m, "kernel", getattr(m, "embedding", None)), nnx.Param)
    try:
        p = m.variables.get("params", {})
    except Exception:  # an unbound module
        return False
    return "kernel" in p or "embedding" in p


# A layer skipped before solving: its report values (no ``converged``); types give dtypes.
_SKIPPED = (0, 1.0, np.nan, np.nan, np.nan, rep.SKIPPED, 0, True)
_DTYPES = {int: np.int32, float: np.float32, bool: bool}


def _report(cfg: Config, rows: list, records: dict, execution: str) -> rep.LSUVReport:
    xp, arrays = jnp if solve.traced(records) else np, {}
    for f, d in zip(solve.FIELDS, _SKIPPED, strict=True):
        col = [d if r[2] is None else xp.asarray(records[r[2][0]][r[2][1] + f]) for r in rows]
        arrays[f] = xp.asarray(col, _DTYPES[type(d)]).reshape(len(rows))
    arrays["converged"] = arrays["status"] == rep.CONVERGED
    settings = (cfg.method, cfg.measure, cfg.target, cfg.tol, cfg.on_zero_variance, execution)
    paths, notes = tuple(r[0] for r in rows), tuple(r[1] for r in rows)
    return rep.LSUVReport(*settings, paths, notes, **arrays)


_MISSED = "not called at the top level (unused, or inside a lifted transform); left unchanged"


def _custom(model, params, done) -> dict[str, list[str]]:
    """Owner -> names of float weights (ndim >= 2) of a linen/NNX model not named kernel or
    embedding (``self.param("W")``) in modules no reported layer covers."""
    if not isinstance(model, nn.Module | nnx.GraphDef):
        return {}  # a plain function's layers are the ones it marks
    if isinstance(model, nnx.GraphDef):
        params = nnx.filter_state(params, nnx.Param)
    elif isinstance(params, Mapping):
        params = params.get("params", params)
    found: dict[str, list[str]] = {}
    for path, leaf in flat(params)[0].items():
        owner, _, name = path.rpartition("/")
        if is_float(leaf) and leaf.ndim >= 2 and name not in ("kernel", "embedding"):
            if not any(owner == d or owner.startswith(d + "/") for d in done):
                found.setdefault(owner or path, []).append(name)
    return found


def _body(fn, cfg, spec, static_kw, execution, params, inputs, dyn, key, rngs):
    (model, method), (treedef, static), it = spec, static_kw, iter(dyn)
    kwargs = jax.tree_util.tree_unflatten(treedef, [next(it) if a else s for a, s in static])
    p, opts = _Pass(fn, cfg, key), dict(select=_selects, rngs=rngs, method=method, fn=fn)
    out = capture(model, params, inputs, p.hook, apply_kwargs=kwargs, no_dropout=True, **opts)
    for path in out.missed:
        if cfg.selects(path) and not any(path.startswith(d + "/") for d in p.done):
            p.skip(path, _MISSED)
    for owner, names in _custom(model, params, p.done).items():
        if cfg.selects(owner):
            why = f"weight {names} is not named 'kernel' (rename it to include the layer)"
            p.skip(owner, why + "; left unchanged")
    return out.updates, _report(cfg, p.rows, out.records, execution)


_jitted = jax.jit(_body, static_argnums=(0, 1, 2, 3, 4))
_COMPILED: set = set()  # signatures the jitted pass was compiled for (jit=None reuses them)


def run_pass(
    fn, name, model, params, batch, *, method, apply_kwargs, jit, input_key, rngs, **settings
):
    """Pass ``name`` of public function ``fn``: checks the arguments (``settings``: the fields of
    :class:`Config` and ``orthogonal_key``), runs the pass (eager or jitted), checks and warns."""
    key = settings.pop("orthogonal_key", None)
    cfg = make_config(fn, method=name, orthogonal=key is not None, **settings)
    check_model(model, params, fn)
    full = params
    if isinstance(model, nnx.Module):  # a Param-only state: the rest is the module's own
        model, state = nnx.split(model)
        params = state if params is None else params
        full = params if params is state else nnx.merge_state(state, params)
    for arg, value in (("method", method), ("rngs", rngs)):
        if value is not None and not isinstance(model, nn.Module):
            raise ValueError(f"{fn}: {arg}= is only for linen modules, got {arg}={value!r}")
    if jit is not None and not isinstance(jit, bool):
        raise TypeError(f"{fn}: jit must be True, False or None (automatic), got {jit!r}")
    if key is not None:
        check_key(fn, "orthogonal_key", key)
    inputs = model_inputs(batch, input_key, fn)
    leaves, treedef = jax.tree_util.tree_flatten(dict(apply_kwargs or {}))
    arr = [(isinstance(x, jax.Array | np.ndarray | np.generic), x) for x in leaves]
    static_kw = (treedef, tuple((a, None if a else x) for a, x in arr))
    args = (full, inputs, [x for a, x in arr if a], key, rngs)
    shapes = tuple((x.shape, str(x.dtype)) for x in jax.tree_util.tree_leaves(args))
    sig = (fn, cfg, model, method, static_kw, jax.tree_util.tree_structure(args), shapes)
    try:  # a model holding a list (nn.Sequential([...])) cannot key a compiled program
        compiled = sig in _COMPILED
    except TypeError:
        if jit:
            raise TypeError(
                f"{fn}: jit=True needs a hashable model and settings (apply_kwargs values: arrays "
                f"or hashable Python values), and this {type(model).__name__} is not (a list "
                "attribute?); pass jit=None or False to run the pass eagerly, or build the "
                "model from tuples"
            ) from None
        jit = compiled = False
    use_jit = jit if jit is not None else solve.traced(args) or compiled
    run, execution = (_jitted, "jit") if use_jit else (_body, "eager")
    updates, report = run(fn, cfg, (model, method), static_kw, execution, *args)
    _COMPILED.update([sig] if use_jit else [])
    if not report.paths and (cfg.include or cfg.exclude):
        raise ValueError(
            f"{fn}: include={list(cfg.include)} / exclude={list(cfg.exclude)} selected none of "
            "the model's layers, so nothing would change; check the patterns against the layer "
            "paths (a pass without include/exclude reports them, in execution order)"
        )
    if not report.paths:
        raise ValueError(
            f"{fn}: the model has no layer with a kernel that the pass could reach (a plain "
            "apply_fn: call its layers through flax modules or mark them with jinit.lsuv_layer)"
        )
    if not solve.traced(report):
        report.check()
        report.warn(stacklevel=4)  # warn, run_pass, the public pass, its caller
    return replace_leaves(params, updates), report


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
    jit: bool | None = None,
    input_key: str | int | None = None,
    rngs: Mapping[str, jax.Array] | None = None,
) -> tuple[Any, rep.LSUVReport]:
    r"""Layer-sequential unit-variance initialization: new params and a measured report.

    For each selected layer, in forward execution order: :math:`W \leftarrow W \sqrt{\tau / v}`
    (:math:`v`: the variance of its output on ``batch``, pooled) until :math:`|v - \tau| <`
    ``tol``, each step re-run and measured. The layers handled, the statuses and the one
    :class:`jinit.InitWarning` naming every layer not converged: docs/lsuv.md.

    Args:
      model: a ``flax.linen.Module``; an ``nnx.GraphDef`` (state as ``params``); an
        ``nnx.Module`` (``params``: its state or ``None``); or ``apply(params, inputs,
        **apply_kwargs)``.
      params: linen: the variables dict or the ``params`` collection; NNX: the state; plain:
        the params pytree.
      batch: real data: the model inputs (any pytree of non-empty, finite arrays), a tuple or
        list starting with them, or a mapping holding them under ``"inputs"``/``"x"``.
      target: target variance :math:`\tau` (a variance, not a standard deviation).
      tol: stop when :math:`|v - \tau| <` ``tol``.
      max_iters: the most rescalings per layer.
      measure: ``"pre"`` (the layer's output, the paper's choice) or ``"post"``
        (``activation(output)``, with ``activation`` the function after every layer).
      center: afterwards subtract the pooled mean of the layer's output from its bias.
      include: regex(es); only layers whose path matches one are processed.
      exclude: regex(es); layers whose path matches one are not processed.
      on_zero_variance: ``"raise"``, or ``"skip"`` (leave the layer unchanged, report it).
      min_values: fewest output values a layer must have on the batch (at least 2).
      orthogonal_key: if given, every selected kernel is first replaced by
        ``jinit.lsuv_ready_orthogonal()`` drawn with ``jinit.path_key(orthogonal_key, path)``.
      method: linen only: the method to apply instead of ``__call__``.
      rngs: linen only: PRNG keys passed to ``apply`` (``{"noise": key}``; dropout is off).
      apply_kwargs: extra keyword arguments of the forward pass; array leaves are traced,
        other leaves static (hashable).
      jit: ``True``: one cached ``jax.jit`` program; ``False``: eager; ``None``: jitted if the
        call is traced or that program is compiled, else eager (``report.execution``).
      input_key: key or index of the model inputs in ``batch`` (as for ``jinit.fit``).

    Returns:
      ``(new_params, report)``: ``new_params`` with the structure, key order and dtypes of
      ``params`` (only kernels, and biases with ``center``, change); a
      :class:`jinit.LSUVReport` (per-layer ``float32``/``int32``/``bool`` arrays ``[L]``).

    Raises:
      ValueError: bad settings; a batch without the model inputs (see ``input_key``); an empty
        batch or NaN/inf in the inputs; a layer with fewer than ``min_values`` output values;
        non-finite values in a layer; zero variance with ``on_zero_variance="raise"``; a
        BatchNorm without its batch_stats; include/exclude selecting nothing. Under an outer
        ``jit``/``vmap``: call ``report.check()``.
      TypeError: ``model`` is not a supported kind (or unhashable with ``jit=True``);
        ``max_iters``/``min_values`` not an int; a setting that is not a number.

    References:
      Mishkin & Matas, "All you need is a good init", arXiv:1511.06422, 2015 (Algorithm 1).
      Saxe, McClelland & Ganguli, arXiv:1312.6120, 2014 (orthonormal pre-initialisation).
    """
    return run_pass("lsuv", "lsuv", **locals())  # every argument, by name
