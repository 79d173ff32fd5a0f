"""The pure optax train step, its non-finite guard, chunks of steps, and evaluation.

Two forms of loss, named apart (docs/training.md):

* params form (the optax contract): ``loss_fn(params, batch) -> (loss, metrics)``; with
  non-trained model state ``loss_fn(params, batch, model_state) -> (loss, (metrics,
  new_model_state))``; ``metric_fn(params, batch[, model_state]) -> {name: (B,) values}``.
* outputs form (what :func:`jinit.layer_statistics` and the data-dependent passes take), used
  when a ``model`` is given: ``loss_fn(outputs, batch) -> loss`` or ``(loss, metrics)``;
  ``metric_fn(outputs, batch) -> {name: (B,) values}``. :func:`params_form` turns it into
  the params form through the one model adapter (``datadep/capture.py``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jinit._src.checks import check_int
from jinit._src.models import as_apply, model_inputs

PyTree = Any
LossFn = Callable[..., Any]
MetricFn = Callable[..., Mapping[str, jax.Array]]
NONFINITE_MODES = ("raise", "skip_step", "continue")


class TrainState(NamedTuple):
    """Parameters, optimizer state and (optional) non-trained model state such as BatchNorm
    running statistics; with a sweep each leaf has a leading model axis."""

    params: PyTree
    opt_state: PyTree
    model_state: PyTree = None


class Guard(NamedTuple):
    """On-device bookkeeping of the non-finite guard, carried next to the state (int32 each;
    a leading model axis in sweeps). Read on the host once per chunk of steps or epoch."""

    row: jax.Array  # next row of the epoch's index array
    step: jax.Array  # global optimizer step of that row
    first_bad: jax.Array  # global step of the first non-finite step, -1 if none
    nonfinite: jax.Array  # non-finite steps so far (this epoch)
    # {stream: key} the model's RNG streams start from (None: none); step t draws from
    # fold_in(key, t), so a resumed run replays the same keys
    rng: Any = None


def new_guard(step: int, num_models: int | None = None) -> Guard:
    return _new_guard(np.int32(step), num_models)


@functools.partial(jax.jit, static_argnums=1)
def _new_guard(step, num_models):
    # One dispatch, and device arrays like the ones the train program returns (so its cache
    # sees the same kind of argument on every call and it compiles once).
    shape = () if num_models is None else (num_models,)
    full = lambda v: jnp.full(shape, v, jnp.int32)  # noqa: E731
    return Guard(full(0), jnp.full(shape, step, jnp.int32), full(-1), full(0))


def _check_optimizer(fn: str, optimizer: Any) -> None:
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"{fn}: optimizer must be an optax.GradientTransformation (with init and update), "
            f"got {type(optimizer).__name__}"
        )


def _check_callable(fn: str, arg: str, value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{fn}: {arg} must be callable, got {type(value).__name__}")


def init_state(
    params: PyTree, optimizer: optax.GradientTransformation, model_state: PyTree = None
) -> TrainState:
    """``TrainState(params, optimizer.init(params), model_state)``; vmap it over stacked params.

    For a linen model with BatchNorm, ``params`` is ``variables["params"]`` and
    ``model_state`` the other collections, ``{"batch_stats": variables["batch_stats"]}``.
    The state holds copies, so the caller's arrays survive :func:`fit` donating the state.

    Raises:
      TypeError: ``optimizer`` is not an optax transformation.
    """
    _check_optimizer("init_state", optimizer)
    # fit donates the state's buffers; copies keep the caller's params (and a live NNX
    # module's arrays) usable after training.
    params, model_state = jax.tree.map(jnp.copy, (params, model_state))
    return TrainState(params, optimizer.init(params), model_state)


def params_form(
    loss_fn: LossFn,
    metric_fn: MetricFn | None,
    model: Any,
    *,
    input_key: str | int | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    eval_apply_kwargs: Mapping[str, Any] | None = None,
) -> tuple[LossFn, MetricFn | None]:
    """Outputs-form ``loss_fn(outputs, batch)`` / ``metric_fn(outputs, batch)`` of ``model`` as
    params-form functions (``model_state`` aware), for :func:`make_train_step` and friends.

    ``model`` is anything :func:`jinit._src.models.as_apply` takes. With a
    ``model_state`` (a dict of linen collections, e.g. ``{"batch_stats": ...}``) the training
    call is ``model.apply({"params": p, **model_state}, x, mutable=[...], **apply_kwargs)`` and
    the updated collections become the new model state; evaluation uses
    ``eval_apply_kwargs`` without ``mutable`` (e.g. ``{"train": False}``).

    The returned loss takes ``rng=`` (``{stream: key}``, this step's keys): linen
    ``apply(rngs=...)``, NNX ``nnx.reseed`` of the module's streams. Evaluation runs an NNX
    module as ``nnx.view(model, deterministic=True)`` (dropout off) and a linen one without
    keys.
    """
    _check_callable("fit", "loss_fn", loss_fn)
    train_kw = dict(apply_kwargs or {})
    eval_kw = dict(eval_apply_kwargs or {})
    eval_model = _eval_view(model)

    def outputs(params, batch, model_state, kw, train, rng=None):
        try:
            return _outputs(params, batch, model_state, kw, train, rng)
        except flax.errors.InvalidRngError as e:
            raise _missing_stream(e, train) from e

    def _outputs(params, batch, model_state, kw, train, rng):
        x = model_inputs(batch, input_key)
        m = model if train else eval_model
        if model_state is None:
            apply, p0, _ = as_apply(m, params, rngs=rng, apply_kwargs=kw)
            return apply(p0, x), None
        if not isinstance(model, nn.Module):
            raise TypeError(
                "fit: a model_state (BatchNorm statistics) needs a flax.linen Module as model, "
                f"got {type(model).__name__}; for other models use the params form of loss_fn"
            )
        variables = {"params": params, **model_state}
        if not train:
            return model.apply(variables, x, **kw), model_state
        out, updates = model.apply(variables, x, rngs=rng, mutable=list(model_state), **kw)
        return out, {**model_state, **updates}

    def loss(params, batch, model_state=None, *, rng=None):
        out, new_model_state = outputs(params, batch, model_state, train_kw, True, rng)
        value = loss_fn(out, batch)
        value, metrics = value if isinstance(value, tuple) else (value, {})
        if model_state is None:
            return value, metrics
        return value, (metrics, new_model_state)

    metric = None
    if metric_fn is not None:

        def metric(params, batch, model_state=None):
            return metric_fn(outputs(params, batch, model_state, eval_kw, False)[0], batch)

    return loss, metric


def _eval_view(model: Any) -> Any:
    """An NNX module in evaluation mode for its random layers (``deterministic=True``: dropout
    off); anything else as given (linen takes ``eval_apply_kwargs``)."""
    if not isinstance(model, nnx.Module):
        return model
    modules = (m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Module))
    if not any(hasattr(m, "deterministic") for m in modules):
        return model  # nnx.view rejects an attribute no submodule has
    return nnx.view(model, deterministic=True)


def _missing_stream(e: Exception, train: bool) -> ValueError:
    """flax's InvalidRngError as the fit argument that supplies the stream."""
    found = re.search(r'PRNG for "([^"]+)"', str(e))
    stream = found.group(1) if found else "?"
    if train:
        return ValueError(
            f'fit: the model draws from the PRNG stream "{stream}" in training, but fit was '
            f"given no key for it; pass rngs={{{stream!r}: jax.random.key(0)}} (a fresh key "
            f"per step is derived from it). flax said: {e}"
        )
    return ValueError(
        f'fit: the model draws from the PRNG stream "{stream}" in evaluation; pass '
        "eval_apply_kwargs that make it deterministic (e.g. {'train': False}). "
        f"flax said: {e}"
    )


def step_rngs(guard: Guard) -> Any:
    """This step's ``{stream: key}``: ``fold_in(key, global step)`` of the guard's keys."""
    if guard.rng is None:
        return None
    return {k: jax.random.fold_in(v, guard.step) for k, v in guard.rng.items()}


def _scalar_loss(loss_fn: LossFn) -> LossFn:
    def checked(*args, **kwargs):
        out = loss_fn(*args, **kwargs)
        value = out[0] if isinstance(out, tuple) else out
        if jnp.shape(value) != ():
            raise ValueError(
                f"fit: loss_fn must return a float scalar (the loss, or (loss, metrics)), got "
                f"shape {jnp.shape(value)} {getattr(value, 'dtype', type(value).__name__)}; "
                "reduce it, e.g. with jnp.mean"
            )
        return out

    return checked


def _step_parts(loss_fn: LossFn, optimizer: optax.GradientTransformation):
    """``(state, batch) -> (new_state, metrics, grads)``."""

    def parts(state: TrainState, batch: PyTree, rng: Any = None):
        grad_fn = jax.value_and_grad(_scalar_loss(loss_fn), has_aux=True)
        kw = {} if rng is None else {"rng": rng}
        if state.model_state is None:
            (loss, metrics), grads = grad_fn(state.params, batch, **kw)
            model_state = None
        else:
            (loss, (metrics, model_state)), grads = grad_fn(
                state.params, batch, state.model_state, **kw
            )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, **metrics}
        return TrainState(params, opt_state, model_state), metrics, grads

    return parts


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation):
    """Returns the pure step ``(state, batch) -> (state, metrics)`` (``metrics`` has ``loss``).

    ``loss_fn`` is the params form (module docstring). No non-finite guard: :func:`jinit.fit`
    adds one.

    Raises:
      TypeError: ``loss_fn`` is not callable or ``optimizer`` is not an optax transformation.
    """
    _check_callable("make_train_step", "loss_fn", loss_fn)
    _check_optimizer("make_train_step", optimizer)
    parts = _step_parts(loss_fn, optimizer)

    def step(state: TrainState, batch: PyTree):
        new_state, metrics, _ = parts(state, batch)
        return new_state, metrics

    return step


def make_train_chunk(loss_fn: LossFn, optimizer: optax.GradientTransformation):
    """Returns ``chunk(state, data, idx) -> (state, metrics)`` running ``idx.shape[0]`` steps.

    Args of the returned function:
      state: a ``TrainState``.
      data: pytree of arrays with the example axis first (the whole training set).
      idx: int array ``(steps, batch_size)`` of example indices, one row per step.

    Returns ``metrics`` stacked over steps: each leaf has shape ``(steps,)``. The steps run in
    ``lax.scan``: on CPU, convolutions there are several times slower than the same step
    called from Python (docs/benchmarks/fit_overhead.md); :func:`jinit.fit` picks per backend.
    """
    step = make_train_step(loss_fn, optimizer)

    def chunk(state, data, idx):
        def body(state, idx_t):
            return step(state, _gather(data, idx_t))

        return jax.lax.scan(body, state, idx)

    return chunk


def _gather(data: PyTree, idx: jax.Array) -> PyTree:
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)


def make_guarded_chunk(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    on_nonfinite: str = "raise",
    unroll: bool = False,
    select: bool = True,
):
    """``chunk(state, guard, data, idx, steps) -> (state, guard, metrics)``: ``steps`` (static)
    optimizer steps from row ``guard.row`` of the epoch's ``idx`` ``(steps_per_epoch, B)``.

    A step is non-finite when its loss or its gradient's global norm is not finite. Its
    update is dropped for ``on_nonfinite='skip_step'``; for ``'raise'`` it and every later
    step of the call are dropped (the state stays the last good one, and :func:`jinit.fit`
    raises); ``'continue'`` applies it. ``steps == 1`` is one plain step (no loop), for a
    Python loop over the jitted program; otherwise ``lax.scan`` (``unroll``: fully unrolled).

    ``select=False`` applies every update and records only the first *suspect* step, for
    :func:`jinit.fit`'s Python loop, which rolls back to a copy taken every few steps, replays
    up to that step and settles it exactly with :func:`make_step_check`. Selecting between
    the new and the old state costs a pass over params and optimizer state per step, and the
    gradient norm a pass over the gradient that XLA's CPU backend does not fuse with the
    optimizer's (7-12% of an MLP step's CPU time; docs/training.md): a suspect is instead a non-finite
    loss or a gradient whose sum of magnitudes is not below a bound (:func:`_suspect`), one
    cheaper pass that flags every step whose gradient norm is not finite.
    """
    parts = _step_parts(loss_fn, optimizer)

    def one(carry, _):
        state, guard, data, idx = carry
        batch = _gather(data, jax.lax.dynamic_index_in_dim(idx, guard.row, keepdims=False))
        new_state, metrics, grads = parts(state, batch, step_rngs(guard))
        if select:
            finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(optax.tree.norm(grads))
        else:
            finite = ~_suspect(metrics["loss"], grads)
        if on_nonfinite == "continue" or not select:
            state = new_state
        else:
            keep = finite if on_nonfinite == "skip_step" else finite & (guard.first_bad < 0)
            state = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_state, state)
        first_bad = jnp.where(~finite & (guard.first_bad < 0), guard.step, guard.first_bad)
        guard = guard._replace(
            row=guard.row + 1,
            step=guard.step + 1,
            first_bad=first_bad,
            nonfinite=guard.nonfinite + ~finite,
        )
        return (state, guard, data, idx), metrics

    def chunk(state, guard, data, idx, steps):
        if steps == 1:
            (state, guard, _, _), metrics = one((state, guard, data, idx), None)
            return state, guard, jax.tree.map(lambda m: m[None], metrics)
        (state, guard, _, _), metrics = jax.lax.scan(
            one, (state, guard, data, idx), None, length=steps, unroll=steps if unroll else 1
        )
        return state, guard, metrics

    return chunk


def _suspect(loss: jax.Array, grads: PyTree) -> jax.Array:
    """True where the step may be non-finite: a superset of the exact rule, in one cheap pass.

    ``S = sum |g|`` (in float32 or wider) is NaN or inf when any gradient entry is, and
    ``||g||^2 <= S^2``, so a finite ``S`` below ``sqrt(m) / 4``, ``m`` the largest finite value
    of the narrowest gradient dtype, means no sum of squares in ``optax.tree.norm`` overflows
    (the factor 16 covers its rounding). ``NaN <= t`` is false, so NaN is suspect too.
    """
    leaves = jax.tree.leaves(grads)
    if not leaves:
        return ~jnp.isfinite(loss)
    real = [jnp.finfo(x.dtype).dtype for x in leaves]  # complex -> its real part's dtype
    acc = jnp.result_type(jnp.float32, *real)
    bound = math.sqrt(min(float(jnp.finfo(d).max) for d in real)) / 4
    total = sum(jnp.sum(jnp.abs(x), dtype=acc) for x in leaves)
    return ~jnp.isfinite(loss) | ~(total <= bound)


def make_step_check(loss_fn: LossFn, optimizer: optax.GradientTransformation):
    """``check(state, data, idx, row, guard=None) -> bool``: whether the step on row ``row`` of
    ``idx`` from ``state`` is finite (its loss and its gradient's global norm), the exact rule
    that settles a suspect of ``make_guarded_chunk(..., select=False)``; ``guard`` (at that
    step) gives the step's RNG keys."""
    parts = _step_parts(loss_fn, optimizer)

    def check(state, data, idx, row, guard=None):
        rng = None if guard is None else step_rngs(guard)
        _, metrics, grads = parts(state, _gather(data, idx[row]), rng)
        return jnp.isfinite(metrics["loss"]) & jnp.isfinite(optax.tree.norm(grads))

    return check


def make_evaluate(metric_fn: MetricFn, batch_size: int):
    """Returns ``evaluate(state, data) -> dict`` of example-weighted means over ``data``.

    ``state`` is a :class:`TrainState` (its params and model_state are used) or bare params.

    The data are split into ``ceil(n / batch_size)`` batches scanned inside one program; the
    last batch is padded and the padding masked out, so every example counts exactly once.

    Raises:
      ValueError: ``batch_size < 1``.
      TypeError: ``metric_fn`` is not callable.
    """
    _check_callable("make_evaluate", "metric_fn", metric_fn)
    check_int("make_evaluate", "batch_size", batch_size, minimum=1)

    def evaluate(state, data):
        if isinstance(state, TrainState):
            args = (
                (state.params,) if state.model_state is None else (state.params, state.model_state)
            )
        else:
            args = (state,)

        def metrics_of(batch):
            out = metric_fn(args[0], batch, *args[1:])
            for name, v in out.items():
                if jnp.shape(v) != (batch_size,):
                    # a (B, 1) column would broadcast against the (B,) mask into (B, B)
                    raise ValueError(
                        f"fit: metric_fn must return per-example values of shape (B,), B = the "
                        f"eval batch size ({batch_size},); metric {name!r} has shape "
                        f"{jnp.shape(v)}"
                    )
            return out

        n = jax.tree.leaves(data)[0].shape[0]
        nb = math.ceil(n / batch_size)
        pad = nb * batch_size - n
        padded = jax.tree.map(
            lambda a: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(
                (nb, batch_size) + a.shape[1:]
            ),
            data,
        )
        mask = (jnp.arange(nb * batch_size) < n).reshape(nb, batch_size).astype(jnp.float32)

        def body(total, xs):
            batch, m = xs
            per_example = metrics_of(batch)
            return jax.tree.map(
                lambda t, v: t + jnp.sum(v.astype(jnp.float32) * m), total, per_example
            ), None

        zero = jax.tree.map(
            lambda s: jnp.zeros((), jnp.float32),
            jax.eval_shape(metrics_of, jax.tree.map(lambda a: a[0], padded)),
        )
        total, _ = jax.lax.scan(body, zero, (padded, mask))
        return jax.tree.map(lambda t: t / n, total)

    return evaluate


def check_keys(fn: str, arg: str, key: Any, num_models: int | None) -> None:
    """Raises ValueError unless ``key`` is one PRNG key, or ``(num_models,)`` keys."""
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    ok = (typed and shape in ((), (num_models,))) or (
        dtype == jnp.uint32 and shape in ((2,), (num_models, 2))
    )
    if not ok:
        want = "one key (jax.random.key(seed))"
        if num_models is not None:
            want += f" or ({num_models},) keys, one per model"
        raise ValueError(
            f"{fn}: {arg} must be {want}; got {type(key).__name__} with dtype {dtype} and "
            f"shape {shape}"
        )


def epoch_indices(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """A shuffled epoch as ``(num_examples // batch_size, batch_size)`` indices.

    Keras's ``fit(shuffle=True)`` permutes the training set every epoch; the remainder that
    does not fill a batch is dropped here (none for IMDB's 20,000 / 32). ``key`` may carry a
    leading model axis (one permutation per model): then the result is ``(M, steps, B)``.

    Raises:
      ValueError: ``key`` is not a PRNG key (or a 1-D array of them), ``batch_size < 1`` or
        ``num_examples < batch_size``.
    """
    check_int("epoch_indices", "num_examples", num_examples, minimum=1)
    check_int("epoch_indices", "batch_size", batch_size, minimum=1)
    if num_examples < batch_size:
        raise ValueError(
            f"epoch_indices: need at least batch_size={batch_size} examples, got num_examples="
            f"{num_examples}"
        )
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", ())
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    many = len(shape) == (1 if typed else 2)
    check_keys("epoch_indices", "key", key, key.shape[0] if many else None)
    return _permutations(key, num_examples, batch_size, many)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _permutations(key, num_examples, batch_size, many):
    # One compiled program per (n, B): an epoch's order costs one dispatch, not a dozen.
    steps = num_examples // batch_size

    def one(k):
        return jax.random.permutation(k, num_examples)[: steps * batch_size].reshape(
            steps, batch_size
        )

    return jax.vmap(one)(key) if many else one(key)
