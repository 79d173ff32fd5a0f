"""How jinit calls a user's model: :func:`as_apply` turns a linen or NNX module, an
``nnx.GraphDef`` with its state or a plain ``apply_fn`` into a pure ``apply(p, inputs)`` of its
trainable params (every pass, training loop and probe uses it), and :func:`model_inputs` is the
one batch rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import nnx


def check_model(model: Any, params: Any, fn: str = "") -> None:
    """Raises ``TypeError`` unless ``model`` is a kind the capture layer and :func:`as_apply` run,
    ``ValueError`` for ``params=None`` with a model that does not carry its own."""
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
    if params is None and not isinstance(model, nnx.Module):
        raise ValueError(
            f"{where}params is None; it is required for {type(model).__name__} (only an "
            "nnx.Module carries its own parameters)"
        )


def model_inputs(batch: Any, input_key: str | int | None = None, fn: str = "") -> Any:
    """The model inputs inside ``batch``.

    ``input_key`` picks them (a mapping key or a sequence index); by default a mapping's
    ``"inputs"`` or ``"x"`` entry, a tuple's or list's first element, or the batch itself. With
    ``fn`` (the calling pass) errors start with ``fn`` and the inputs must be non-empty, and
    finite where concrete.

    Raises:
      ValueError: a mapping without ``"inputs"``/``"x"`` and no ``input_key``, an
        ``input_key`` the batch does not hold; with ``fn``, an empty or non-finite input.
    """
    where = f"{fn}: " if fn else ""
    keys = f"keys {sorted(map(str, batch))}" if isinstance(batch, Mapping) else ""
    if input_key is not None:
        try:
            inputs = batch[input_key]
        except (KeyError, IndexError, TypeError):
            what = keys or f"a {type(batch).__name__}"
            what += f" of length {len(batch)}" if isinstance(batch, tuple | list) else ""
            raise ValueError(
                f"{where}input_key={input_key!r} is not in the batch ({what})"
            ) from None
    elif keys:
        if not ("inputs" in batch or "x" in batch):
            raise ValueError(
                f"{where}batch is a mapping with {keys}; pass input_key= to say which holds the "
                "model inputs (tried 'inputs' and 'x')"
            )
        inputs = batch["inputs" if "inputs" in batch else "x"]
    else:
        inputs = batch[0] if isinstance(batch, tuple | list) else batch
    if fn and not jax.tree_util.tree_leaves(inputs):
        raise ValueError(f"{fn}: the batch holds no model inputs (got {type(batch).__name__})")
    for kp, leaf in jax.tree_util.tree_leaves_with_path(inputs) if fn else ():
        at = jax.tree_util.keystr(kp) or "the batch"
        if isinstance(leaf, str | bytes):
            raise ValueError(
                f"{fn}: the model inputs must be arrays; {at} is a {type(leaf).__name__}"
            )
        if getattr(leaf, "size", 1) == 0:
            raise ValueError(f"{fn}: the batch is empty ({at} has shape {leaf.shape})")
        concrete = isinstance(leaf, jax.Array | np.ndarray) and not isinstance(
            leaf, jax.core.Tracer
        )
        if not concrete or not jax.numpy.issubdtype(leaf.dtype, np.inexact):
            continue
        bad = ~np.isfinite(np.asarray(leaf))
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{fn}: the batch contains {int(bad.sum())} non-finite value(s) (NaN/inf) in "
                f"{at}; the first is at index {first}."
            )
    return inputs


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
    fn: str = "",
) -> tuple[Callable[[Any, Any], Any], Any, Callable[[Any], Any]]:
    """``model`` as a pure ``apply(p, inputs) -> outputs`` of its trainable parameters ``p``.

    ``model``: a linen or NNX module, an ``nnx.GraphDef`` (``params``: its full state) or a
    plain ``apply_fn(params, inputs)``. ``params``: linen: the ``params`` collection or the
    variables dict (other collections held fixed); NNX module: an ``nnx.State`` of
    ``nnx.Param`` or ``None`` (its own). ``rngs`` (``{stream: key}``) and ``apply_kwargs`` go
    to the call: linen ``apply(rngs=...)`` (``mutable=[...]``: the updated collections are
    dropped); NNX: ``nnx.reseed`` of those streams of a fresh copy before each call. Returns
    ``(apply, p0, merge)``: ``p0`` the trainable params, ``merge(p)`` puts ``p`` back into
    ``params``'s structure. Raises ``ValueError`` (``params=None`` where required), ``TypeError``
    (:func:`check_model`; ``fn``, the calling function, starts their messages).
    """
    check_model(model, params, fn)
    kwargs = dict(apply_kwargs or {})
    if isinstance(model, nnx.Module):
        graphdef, own, rest = nnx.split(model, nnx.Param, ...)
        p0, merge = (own if params is None else params), (lambda p: p)
    elif isinstance(model, nnx.GraphDef):
        state = params if isinstance(params, nnx.State) else nnx.State(params)
        (p0, rest), graphdef = nnx.split_state(state, nnx.Param, ...), model
        merge = lambda p: nnx.merge_state(params, p)
    elif isinstance(model, nn.Module):
        is_variables = isinstance(params, Mapping) and "params" in params
        others = {k: v for k, v in params.items() if k != "params"} if is_variables else {}
        p0 = params["params"] if is_variables else params
        mutable = kwargs.pop("mutable", False)

        def apply(p, x):
            out = model.apply({"params": p, **others}, x, rngs=rngs, mutable=mutable, **kwargs)
            return out[0] if mutable else out

        return apply, p0, lambda p: type(params)({**params, "params": p}) if is_variables else p
    else:
        return (lambda p, x: model(p, x, **kwargs)), params, (lambda p: p)

    def apply_nnx(p, x):
        module = nnx.merge(graphdef, p, fresh_variables(rest))
        if rngs:  # the copy's streams, not the caller's: its RngStreams of a tag get distinct keys
            nnx.reseed(module, policy="match_shape", **rngs)
        return module(x, **kwargs)

    return apply_nnx, p0, merge
