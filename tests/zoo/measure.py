"""Measurements independent of jinit's capture: Flax's own ``capture_intermediates`` (linen)
and ``nnx.capture(method_outputs=...)`` (NNX), and plain ``jax.grad``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tests.zoo.models import Case


def with_params(case: Case, params):
    """The case's model and variables with ``params`` put in (as jinit passes return them)."""
    if isinstance(case.model, nnx.Module):
        model = nnx.clone(case.model)
        nnx.update(model, params)
        return model, params
    return case.model, params


def layer_outputs(case: Case, variables=None) -> dict[str, np.ndarray]:
    """``{module path: output}`` of every module call that returns one array (first call)."""
    variables = case.variables if variables is None else variables
    kwargs = dict(case.apply_kwargs)
    if isinstance(case.model, nnx.Module):
        model, _ = with_params(case, variables)
        _, inter = nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)(
            case.x, **kwargs
        )
        leaves = jax.tree_util.tree_flatten_with_path(
            nnx.to_pure_dict(inter), is_leaf=lambda v: isinstance(v, tuple)
        )[0]
    else:
        mutable = [*kwargs.pop("mutable", []), "intermediates"]
        _, state = case.model.apply(
            variables, case.x, capture_intermediates=True, mutable=mutable, **kwargs
        )
        leaves = jax.tree_util.tree_flatten_with_path(
            state["intermediates"], is_leaf=lambda v: isinstance(v, tuple)
        )[0]
    out = {}
    for path, value in leaves:
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        if keys[-1] == "__call__" and len(keys) > 1 and isinstance(value[0], jax.Array):
            out["/".join(keys[:-1])] = np.asarray(value[0])
    return out


def mean_loss_grads(case: Case) -> dict[str, np.ndarray]:
    """``d mean(outputs) / d params`` by plain ``jax.grad``, keyed ``a/b/kernel``."""
    kwargs = dict(case.apply_kwargs)
    if isinstance(case.model, nnx.Module):
        graphdef, _, rest = nnx.split(case.model, nnx.Param, ...)
        grads = jax.grad(lambda p: jnp.mean(nnx.merge(graphdef, p, rest)(case.x)))(case.variables)
        grads = nnx.to_pure_dict(grads)
    else:
        mutable = kwargs.pop("mutable", False)
        others = {k: v for k, v in case.variables.items() if k != "params"}

        def loss(p):
            out = case.model.apply({"params": p, **others}, case.x, mutable=mutable, **kwargs)
            return jnp.mean(out[0] if mutable else out)

        grads = jax.grad(loss)(case.variables["params"])
    leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
    return {
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p): np.asarray(g)
        for p, g in leaves
    }
