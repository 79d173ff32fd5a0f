"""The one way jinit runs a user's model: linen module, NNX module or plain ``apply``.

Every pass that needs the model as a function of its parameters (LSUV and the other
data-dependent passes, GradInit, MetaInit, diagnostics, coordinate checks) goes through
:func:`as_apply` and :func:`model_inputs`, so a model that works for one works for all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
from flax import nnx


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
            raise ValueError(
                f"input_key={input_key!r} is not in the batch ({_describe(batch)})"
            ) from None
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


def _describe(batch: Any) -> str:
    if isinstance(batch, Mapping):
        return f"keys {sorted(map(str, batch))}"
    if isinstance(batch, (tuple, list)):
        return f"a {type(batch).__name__} of length {len(batch)}"
    return f"a {type(batch).__name__}"


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
    kwargs = dict(apply_kwargs or {})
    if isinstance(model, nnx.Module):
        graphdef, own, rest = nnx.split(model, nnx.Param, ...)
        p0 = own if params is None else params

        def apply(p, x):
            return nnx.merge(graphdef, p, rest)(x, **kwargs)

        return apply, p0, lambda p: p
    if params is None:
        raise ValueError(
            f"params is None; it is required for {type(model).__name__} (only an nnx.Module "
            "carries its own parameters)"
        )
    if isinstance(model, nnx.GraphDef):
        p0, rest = _split_state(params)

        def apply(p, x):
            return nnx.merge(model, p, rest)(x, **kwargs)

        return apply, p0, lambda p: nnx.merge_state(params, p)
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
            return type(params)({**params, "params": p}) if isinstance(params, dict) else (
                params.copy({"params": p})
            )

        return apply, p0, merge
    if not callable(model):
        raise TypeError(
            "model must be a flax.linen.Module, a flax.nnx.Module, an nnx.GraphDef or "
            f"apply_fn(params, inputs); got {type(model).__name__}"
        )

    def apply(p, x):
        return model(p, x, **kwargs)

    return apply, params, lambda p: p


def _split_state(state: Any) -> tuple[Any, Any]:
    state = state if isinstance(state, nnx.State) else nnx.State(state)
    return state.split(nnx.Param, ...)
