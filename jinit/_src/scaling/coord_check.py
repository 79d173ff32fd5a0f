"""Coordinate check (TP-V, Sec. 7 / Fig. 5): how activations and their change from init scale
with width after a few training steps, per layer, vmapped over seeds."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jinit._src.checks import InitWarning, check_int, check_key
from jinit._src.models import as_apply, fresh_variables, model_inputs
from jinit._src.reinit import path_string

__all__ = ["CoordCheck", "coord_check"]


class CoordCheck(NamedTuple):
    """Result of :func:`coord_check`.

    Attributes:
      widths: int ``(W,)``.
      layers: the layer names, in sorted order.
      size: ``(W, L, S, T+1)`` mean absolute coordinate ``mean|h_t|`` of each layer's output,
        per width, layer, seed and step (``t = 0`` is init).
      change: ``(W, L, S, T+1)`` ``mean|h_t - h_0|``.
      loss: ``(W, S, T+1)`` training loss before each step and after the last.
      slope_size, slope_change: ``(L,)`` least-squares slope of ``log(mean over seeds)``
        against ``log(width)`` at the last step (0: flat; 0.5: grows as sqrt(width)).
    """

    widths: np.ndarray
    layers: tuple[str, ...]
    size: np.ndarray
    change: np.ndarray
    loss: np.ndarray
    slope_size: np.ndarray
    slope_change: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """A flat dict keyed ``stat/layer`` (nanodo style)."""
        out = {"widths": self.widths, "loss": self.loss}
        for i, name in enumerate(self.layers):
            out[f"size/{name}"] = self.size[:, i]
            out[f"change/{name}"] = self.change[:, i]
            out[f"slope_size/{name}"] = self.slope_size[i]
            out[f"slope_change/{name}"] = self.slope_change[i]
        return out


def _layer_name(path: str, drop: tuple[str, ...] = ()) -> str:
    parts = [p for p in path.split("/") if p not in ("intermediates", *drop) and not p.isdigit()]
    parts = [p for p in parts if p != "__call__"] or ["output"]
    return "/".join(parts)


def _activation_fn(model: Any, params: Any, apply_kwargs: Mapping[str, Any]) -> Callable:
    """``acts(p, x) -> {layer: array}``: linen ``capture_intermediates`` or NNX ``sow``."""
    kwargs = dict(apply_kwargs)
    if isinstance(model, nn.Module):
        is_variables = isinstance(params, Mapping) and "params" in params
        others = {k: v for k, v in params.items() if k != "params"} if is_variables else {}

        def acts(p, x):
            _, st = model.apply(
                {"params": p, **others},
                x,
                capture_intermediates=True,
                mutable=["intermediates"],
                **kwargs,
            )
            return _flatten(st["intermediates"])

        return acts
    if isinstance(model, nnx.Module):
        graphdef, _, rest = nnx.split(model, nnx.Param, ...)

        def acts(p, x):
            m = nnx.merge(graphdef, p, fresh_variables(rest))
            y = m(x, **kwargs)
            # NNX stores a sown tuple in the Variable's ``value``: not part of the name
            out = _flatten(nnx.state(m, nnx.Intermediate), drop=("value",))
            out["output"] = y
            return out

        return acts
    raise TypeError(
        "coord_check: model must be a flax.linen.Module (its submodules are captured with "
        "capture_intermediates) or a flax.nnx.Module (layers sown with self.sow("
        f"nnx.Intermediate, ...)); got {type(model).__name__}"
    )


def _flatten(tree: Any, drop: tuple[str, ...] = ()) -> dict[str, jax.Array]:
    out: dict[str, jax.Array] = {}
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if hasattr(x, "shape") and jnp.issubdtype(x.dtype, jnp.floating):
            name = _layer_name(path_string(path), drop)
            if name not in out:  # first output of a layer called more than once
                out[name] = x
    return out


def _slope(widths: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of log(y) on log(width) along axis 0 of ``y`` ``(W, ...)``."""
    lx = np.log(widths.astype(np.float64))
    with np.errstate(invalid="ignore"):  # diverged runs: NaN slopes, reported by the caller
        ly = np.log(np.maximum(y, 1e-30))
        ly = ly - ly.mean(0)
    lx = lx - lx.mean()
    shape = (-1,) + (1,) * (ly.ndim - 1)
    return (ly * lx.reshape(shape)).sum(0) / (lx**2).sum()


def _check_models(models: Any) -> None:
    if not isinstance(models, Mapping):
        raise TypeError(
            "coord_check: models must be a mapping {width: (model, params)}, got "
            f"{type(models).__name__}"
        )
    for w, v in models.items():
        if isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 1:
            raise TypeError(
                f"coord_check: models must be keyed by the width (an int >= 1), got key {w!r}"
            )
        if not (isinstance(v, tuple | list) and len(v) == 2):
            raise TypeError(
                f"coord_check: models[{w}] must be a (model, params) pair, got {type(v).__name__}"
            )
    if len(models) < 2:
        raise ValueError(f"coord_check: models needs at least two widths, got {sorted(models)}")


def _warn_non_finite(widths, layers, size, change, loss) -> None:
    """InitWarning naming the widths and layers whose coordinates (or loss) are not finite:
    training diverged there, and their slopes are NaN."""
    bad_layer = ~(np.isfinite(size) & np.isfinite(change)).all(axis=(2, 3))  # (W, L)
    bad_loss = ~np.isfinite(loss).all(axis=(1, 2))  # (W,)
    if not (bad_layer.any() or bad_loss.any()):
        return
    bad_w = [int(w) for w, b in zip(widths, bad_layer.any(1) | bad_loss, strict=True) if b]
    bad_l = [n for n, b in zip(layers, bad_layer.any(0), strict=True) if b]
    warnings.warn(
        f"coord_check: training diverged (non-finite coordinates or loss) at widths {bad_w}, "
        f"layers {bad_l or '(loss only)'}; their slopes are NaN and not a measurement. Lower "
        "the learning rate or the number of steps",
        InitWarning,
        stacklevel=3,
    )


def coord_check(
    models: Mapping[int, tuple[Any, Any]],
    batch: Any,
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation,
    parametrize: Callable[[Any], Any],
    *,
    key: jax.Array,
    seeds: int = 3,
    steps: int = 4,
    input_key: str | int | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> CoordCheck:
    r"""Trains the model at several widths for a few steps and records per-layer coordinates.

    For every width ``w`` (``models[w] = (model, params)``), the parametrization
    ``parametrize(p0)`` (e.g. ``lambda p: jinit.mup(base, p)``) re-draws the params for each
    of ``seeds`` keys and wraps ``optimizer``; the model then takes ``steps`` optimizer steps
    on ``batch`` (the same batch every step, as ``mup``'s coord check), all seeds in one
    vmapped, jitted program. Recorded per layer, step and seed: :math:`\overline{|h_t|}` and
    :math:`\overline{|h_t - h_0|}`. Under muP both are flat in width for every layer; under
    SP with Adam the change of the hidden and output layers grows with width.

    Layers: linen submodule outputs (``capture_intermediates``), or NNX values sown with
    ``self.sow(nnx.Intermediate, name, x)`` plus the model output.

    Args:
      models: ``{width: (model, params)}``: a linen module with its params/variables, or an
        NNX module (params None or its ``nnx.State``).
      batch: one training batch; the inputs are ``model_inputs(batch, input_key)``.
      loss_fn: ``loss_fn(outputs, batch) -> scalar``.
      optimizer: an optax transformation (wrapped by the parametrization).
      parametrize: ``params -> Parametrization`` (``jinit.mup`` or
        ``jinit.standard_parametrization`` with the base params bound).
      key: PRNG key; seed ``i`` uses ``jax.random.split(key, seeds)[i]`` at every width.
      seeds: number of seeds (inits) per width.
      steps: number of optimizer steps.
      input_key: where the inputs are in ``batch``.
      apply_kwargs: extra keyword arguments of the model call.

    Returns:
      A :class:`CoordCheck`.

    Raises:
      ValueError: fewer than two widths, a bad key/count, an empty or non-finite batch, or
        layers that differ by width.
      TypeError: ``models`` not a ``{width: (model, params)}`` mapping, a model that is
        neither a linen nor an NNX module, or ``parametrize`` not returning a Parametrization.

    Warns:
      InitWarning: training diverged (non-finite coordinates or loss: those widths' and
        layers' slopes are NaN), or no hidden layer was recorded (only the output checked).

    References:
      G. Yang, E. J. Hu et al., "Tensor Programs V", arXiv:2203.03466, 2022 (Sec. 7, Fig. 5,
      Appendix D.1 "coordinate check"); microsoft/mup ``coord_check.py``.
    """
    check_key("coord_check", "key", key)
    check_int("coord_check", "seeds", seeds)
    check_int("coord_check", "steps", steps)
    _check_models(models)
    if not callable(parametrize):
        raise TypeError(
            "coord_check: parametrize must be a callable params -> Parametrization (e.g. "
            f"lambda p: jinit.mup(base, p)), got {type(parametrize).__name__}"
        )
    x = model_inputs(batch, input_key, fn="coord_check")
    keys = jax.random.split(key, seeds)
    kwargs = dict(apply_kwargs or {})
    widths = np.asarray(sorted(models), dtype=np.int64)
    layers: tuple[str, ...] | None = None
    sizes, changes, losses = [], [], []
    for w in widths:
        model, params = models[int(w)]
        apply, p0, _ = as_apply(model, params, apply_kwargs=kwargs)
        acts = _activation_fn(model, params if params is not None else p0, kwargs)
        par = parametrize(p0)
        if not (callable(getattr(par, "init", None)) and callable(getattr(par, "optimizer", None))):
            raise TypeError(
                f"coord_check: parametrize(params) must return a Parametrization (jinit.mup or "
                f"jinit.standard_parametrization), got {type(par).__name__} at width {int(w)}; "
                "pass e.g. parametrize=lambda p: jinit.mup(base_params, p)"
            )
        tx = par.optimizer(optimizer)

        def loss_of(p, apply=apply):
            return loss_fn(apply(p, x), batch)

        def one_seed(k, par=par, tx=tx, acts=acts, loss_of=loss_of, p0=p0):
            p = par.init(k, p0)
            h0 = acts(p, x)
            names = sorted(h0)

            def record(p):
                h = acts(p, x)
                size = jnp.stack([jnp.mean(jnp.abs(h[n])) for n in names])
                change = jnp.stack([jnp.mean(jnp.abs(h[n] - h0[n])) for n in names])
                return size, change

            def step(carry, _):
                p, s = carry
                loss, g = jax.value_and_grad(loss_of)(p)
                u, s = tx.update(g, s, p)
                p = optax.apply_updates(p, u)
                return (p, s), (loss, *record(p))

            (p_end, _), (loss, size, change) = jax.lax.scan(step, (p, tx.init(p)), None, steps)
            s0, c0 = record(p)
            size = jnp.concatenate([s0[None], size])  # (T+1, L)
            change = jnp.concatenate([c0[None], change])
            loss = jnp.concatenate([loss, loss_of(p_end)[None]])
            return size.T, change.T, loss

        names_w = tuple(sorted(jax.eval_shape(acts, p0, x)))
        if layers is None:
            layers = names_w
            if layers == ("output",):
                how = (
                    "call self.sow(nnx.Intermediate, name, x) on each hidden layer's output"
                    if isinstance(model, nnx.Module)
                    else "write the layers as submodules (their outputs are captured)"
                )
                warnings.warn(
                    "coord_check: no hidden layer was recorded, so only the model output was "
                    f"checked; to check the hidden layers, {how}",
                    InitWarning,
                    stacklevel=2,
                )
        elif names_w != layers:
            raise ValueError(
                f"coord_check: width {int(w)} has layers {names_w}, width {int(widths[0])} has "
                f"{layers}; every width must be the same model"
            )
        s, c, lo = jax.jit(jax.vmap(one_seed))(keys)
        sizes.append(np.asarray(s))  # (S, L, T+1)
        changes.append(np.asarray(c))
        losses.append(np.asarray(lo))
    size = np.stack(sizes).transpose(0, 2, 1, 3)  # (W, L, S, T+1)
    change = np.stack(changes).transpose(0, 2, 1, 3)
    _warn_non_finite(widths, layers, size, change, np.stack(losses))
    return CoordCheck(
        widths=widths,
        layers=layers,
        size=size,
        change=change,
        loss=np.stack(losses),
        slope_size=_slope(widths, size[..., -1].mean(-1)),
        slope_change=_slope(widths, change[..., -1].mean(-1)),
    )
