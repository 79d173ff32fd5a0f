"""Plain-function adapter: ``apply(params, x)`` whose layers are marked with :func:`lsuv_layer`.

Outside a pass :func:`lsuv_layer` is just ``fn(layer_params, *args, **kwargs)``, so a model can
keep the marks permanently. Inside ``jinit.lsuv`` the mark lets the pass see the layer in
execution order, with its input; the layer's parameters are found in the ``params`` tree given to
``jinit.lsuv`` by identity (pass the subtree ``params["layer"]`` itself, not a copy or a cast).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax

from jinit._src import lsuv_engine as eng

_STATE = threading.local()


def active() -> Any:
    """The recorder of the pass being traced in this thread, or ``None``."""
    stack = getattr(_STATE, "stack", None)
    return stack[-1] if stack else None


@contextlib.contextmanager
def activate(rec: eng.Recorder, params: Any):
    """Makes ``rec`` the active pass and indexes the leaves of ``params`` by identity."""
    rec.leaf_paths = {}
    rec.plain_params = {}
    for kp, leaf in jax.tree_util.tree_leaves_with_path(params):
        rec.leaf_paths[id(leaf)] = tuple(
            getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in kp
        )
    stack = getattr(_STATE, "stack", None)
    if stack is None:
        stack = _STATE.stack = []
    stack.append(rec)
    try:
        yield rec
    finally:
        stack.pop()


def lsuv_layer(
    name: str,
    fn: Callable[..., jax.Array],
    layer_params: Mapping[str, Any],
    *args: Any,
    linear: bool = False,
    **kwargs: Any,
) -> jax.Array:
    """Calls ``fn(layer_params, *args, **kwargs)``, marking it as a layer for ``jinit.lsuv``.

    Example::

      def apply(params, x):
        h = jax.nn.relu(jinit.lsuv_layer("l0", dense, params["l0"], x, linear=True))
        return jinit.lsuv_layer("l1", dense, params["l1"], h, linear=True)

      params, report = jinit.lsuv(apply, params, x)

    Args:
      name: the layer's name in the report (and in ``include``/``exclude`` patterns).
      fn: ``fn(layer_params, *args, **kwargs) -> output``.
      layer_params: a mapping with a ``"kernel"`` (rescaled) and optionally a ``"bias"``; it must
        be a subtree of the ``params`` given to ``jinit.lsuv``, passed unchanged.
      *args: the layer's inputs.
      linear: promise that ``fn`` is affine in the kernel with the bias added on the output's
        trailing axes (``fn({kernel: c*W, bias: b}, x) = c*(y - b) + b``), as for a dense or
        convolution layer. Enables the closed-form loop (no re-runs); otherwise each LSUV
        iteration re-runs ``fn`` on the captured input, which is correct for any layer.
      **kwargs: passed to ``fn``.

    Returns:
      The layer's output (inside a pass: computed with the corrected parameters).

    Raises:
      ValueError: inside a pass, if ``layer_params["kernel"]`` is not a leaf of the params tree.
    """
    rec = active()
    if rec is None or rec.passthrough:
        return fn(layer_params, *args, **kwargs)
    if name in rec.plain_params:  # called again: use the corrected parameters
        return fn(rec.plain_params[name], *args, **kwargs)
    if not rec.cfg.selects(name) or name in rec.done:
        return fn(layer_params, *args, **kwargs)
    if "kernel" not in layer_params:
        rec.skip(name, "no 'kernel' entry in layer_params")
        return fn(layer_params, *args, **kwargs)
    if not rec.at_outer_trace():
        rec.skip_inner(name)
        return fn(layer_params, *args, **kwargs)
    k = layer_params["kernel"]
    b = layer_params.get("bias")
    kpath = rec.leaf_paths.get(id(k))
    if kpath is None:
        raise ValueError(
            f"lsuv_layer({name!r}): layer_params['kernel'] is not a leaf of the params given to "
            "jinit.lsuv; pass the params subtree itself (e.g. params['dense0']), not a copy, a "
            "cast or a reshaped kernel."
        )
    bpath = rec.leaf_paths.get(id(b)) if b is not None else None
    k0 = rec.initial_kernel(name, k)

    def with_params(kk, bb):
        p = dict(layer_params)
        p["kernel"] = kk
        if bb is not None:
            p["bias"] = bb
        return p

    def run(kk, bb):
        rec.passthrough += 1
        try:
            return fn(with_params(kk, bb), *args, **kwargs)
        finally:
            rec.passthrough -= 1

    y0 = run(k0, b)
    unit_ndim = b.ndim if b is not None else 1
    affine = bool(linear) and unit_ndim >= 1 and y0.ndim >= unit_ndim
    site = eng.Site(
        name=name,
        kernel=k0,
        bias=b,
        inputs=(args, kwargs),
        y0=y0,
        affine=affine,
        unit_ndim=unit_ndim,
        run=run,
    )
    sol = rec.solve(site)
    if sol is None:
        if k0 is not k:
            rec.updates[kpath] = k0
        rec.plain_params[name] = with_params(k0, b)
        return y0
    rec.updates[kpath] = sol.kernel
    if b is not None and sol.bias is not b:
        if bpath is None:
            raise ValueError(
                f"lsuv_layer({name!r}): layer_params['bias'] is not a leaf of the params given "
                "to jinit.lsuv, so the corrected bias cannot be returned."
            )
        rec.updates[bpath] = sol.bias
    rec.plain_params[name] = with_params(sol.kernel, sol.bias)
    y = sol.y if sol.y is not None else run(sol.kernel, sol.bias)
    rec.finish(site, sol, y)
    return y
