"""``fit``: the epoch loop over the compiled programs, with a non-finite guard and progress.

The same call trains one model or a stack of models (a seed sweep, ``num_models=M``). The
training data live on the device and batches are gathered by index inside the compiled step.
The guide is docs/training.md.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jinit._src.checks import InitWarning, check_choice, check_int
from jinit._src.training.programs import (
    Programs,
    compile_programs,
    default_stepping,
    has_convolution,
)
from jinit._src.training.step import (
    NONFINITE_MODES,
    LossFn,
    MetricFn,
    TrainState,
    _check_callable,
    _check_optimizer,
    check_keys,
    epoch_indices,
    params_form,
)

PyTree = Any
PROGRESS = (None, True, False, "bar", "lines")


@dataclasses.dataclass
class EpochResult:
    """Per-epoch metrics (arrays with a leading model axis for sweeps) and timing.

    ``train`` holds the means over the epoch's finite steps; ``nonfinite_steps`` counts the
    steps whose loss or gradient norm was not finite (skipped with ``on_nonfinite='skip_step'``,
    applied with ``'continue'``).
    """

    epoch: int
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray] | None
    seconds: float
    stats: list[tuple[int, dict[str, np.ndarray]]] = dataclasses.field(default_factory=list)
    nonfinite_steps: np.ndarray | int = 0


class NonFiniteError(FloatingPointError):
    """A non-finite loss or gradient norm stopped :func:`jinit.fit` (``on_nonfinite='raise'``).

    Attributes:
      epoch: the epoch (0-based, as ``EpochResult.epoch``) of the first bad step.
      step: its step within that epoch (0-based); ``global_step`` counts from the first epoch.
      models: for sweeps, the indices of the models that went non-finite (else ``None``).
      state: the last good state: every update from the bad step on was dropped.
      history: the finished epochs' :class:`EpochResult` s.
    """

    def __init__(self, message, *, epoch, step, global_step, models, state, history):
        super().__init__(message)
        self.epoch, self.step, self.global_step, self.models = epoch, step, global_step, models
        self.state, self.history = state, history


def _rng_base(model: Any, rngs: Any, num_models: int | None) -> dict[str, jax.Array] | None:
    """``{stream: key}`` the model's RNG streams start from (a leading model axis in sweeps):
    an NNX module's own stream keys (the first stream of each name) with ``rngs`` replacing
    them by name; a linen model's ``rngs``."""
    fn = "fit"
    own = {}
    for _, node in nnx.iter_graph(model) if isinstance(model, nnx.Module) else ():
        if isinstance(node, nnx.RngStream):  # a vmapped layer's keys: the first one
            own.setdefault(node.tag, node.key[...].reshape(-1)[0])
    if rngs is not None:
        if not isinstance(model, nn.Module | nnx.Module | nnx.GraphDef) or not isinstance(
            rngs, Mapping
        ):
            raise ValueError(
                f"{fn}: rngs must be a mapping {{stream: key}} (e.g. {{'dropout': "
                f"jax.random.key(0)}}) used with a linen or NNX model=; got "
                f"{type(rngs).__name__} with model={type(model).__name__}"
            )
        for name, key in rngs.items():
            check_keys(fn, f"rngs[{name!r}]", key, num_models)
        unknown = sorted(set(rngs) - set(own)) if isinstance(model, nnx.Module) else []
        if unknown:  # nnx.reseed ignores them: the mask would silently never change
            raise ValueError(
                f"{fn}: rngs names stream(s) {unknown} the NNX module does not have; its streams "
                f"are {sorted(own)} (a layer without its own stream draws from 'default')"
            )
        base = {**own, **{name: _typed(key) for name, key in rngs.items()}}
    else:
        base = own
    if not base:
        return None
    if num_models is not None:  # one key for all models: model m folds in m
        m = jnp.arange(num_models)
        base = {
            k: v if v.shape == (num_models,) else jax.vmap(jax.random.fold_in, (None, 0))(v, m)
            for k, v in base.items()
        }
    return base


def _typed(key: jax.Array) -> jax.Array:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def _seed_keys_fn(seed: int) -> Callable[[int], jax.Array]:
    base = jax.random.key(seed)
    return lambda epoch: jax.random.fold_in(base, epoch)


def fit(
    state: TrainState,
    *,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    train_data: PyTree,
    epochs: int,
    batch_size: int,
    model: Any = None,
    input_key: str | int | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    eval_apply_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    rngs: Mapping[str, jax.Array] | None = None,
    shuffle_keys: Callable[[int], jax.Array] | None = None,
    val_data: PyTree | None = None,
    metric_fn: MetricFn | None = None,
    eval_batch_size: int = 1000,
    num_models: int | None = None,
    start_epoch: int = 0,
    steps_per_call: int = 25,
    stepping: str | None = None,
    on_nonfinite: str = "raise",
    progress: bool | str | None = None,
    checkpoint: str | None = None,
    on_epoch_end: Callable[[EpochResult, TrainState], None] | None = None,
    programs: Mapping[str, Callable] | None = None,
    stats_fn: Callable[[PyTree], Mapping[str, jax.Array]] | None = None,
    stats_every: int = 100,
    strategy: str | None = None,
    mesh: Any = None,
) -> tuple[TrainState, list[EpochResult]]:
    """Trains for ``epochs - start_epoch`` epochs; the same code for one model or a sweep.

    Two forms of ``loss_fn`` (docs/training.md):

    * with ``model``: ``loss_fn(outputs, batch) -> loss`` or ``(loss, metrics)``, the form
      :func:`jinit.layer_statistics` and the data-dependent passes take; ``outputs`` is the
      model applied to ``batch``'s inputs (``input_key``, default ``"inputs"``/``"x"``);
      ``metric_fn(outputs, batch) -> {name: (B,) values}``. A linen model with BatchNorm keeps
      its other collections in ``state.model_state`` (``{"batch_stats": ...}``): training
      calls it with ``mutable`` and ``apply_kwargs`` (e.g. ``{"train": True}``) and stores the
      updated statistics; evaluation uses ``eval_apply_kwargs`` (e.g. ``{"train": False}``).
    * without: ``loss_fn(params, batch) -> (loss, metrics)`` (with a model state:
      ``loss_fn(params, batch, model_state) -> (loss, (metrics, new_model_state))``) and
      ``metric_fn(params, batch[, model_state])``.

    Args:
      state: initial ``TrainState`` (leading model axis on every leaf when ``num_models``).
        Its buffers are donated to the compiled programs: after the call use the returned
        state, not this one (pass a copy, ``jax.tree.map(jnp.copy, state)``, to keep it).
      loss_fn: see above.
      optimizer: the optax transformation ``state.opt_state`` belongs to.
      train_data: pytree of arrays, example axis first, already on the device.
      epochs: total number of epochs (>= 1); training resumes at ``start_epoch``.
      batch_size: examples per optimizer step (1 .. number of training examples).
      model: a linen/NNX module, GraphDef or ``apply_fn(params, inputs)``: selects the
        outputs form of ``loss_fn``/``metric_fn``.
      input_key: which entry of a batch holds the model inputs (outputs form).
      apply_kwargs: keyword arguments of the model call in training (outputs form).
      eval_apply_kwargs: keyword arguments of the model call in evaluation (outputs form).
      seed: data order when ``shuffle_keys`` is not given: epoch ``e`` is shuffled with
        ``jax.random.fold_in(jax.random.key(seed), e)`` (the models of a sweep share it).
      rngs: the PRNG streams a linen model draws from in training and their keys, e.g.
        ``{"dropout": jax.random.key(1)}`` (as in :func:`jinit.lsuv`); one key per stream,
        or ``(M,)`` keys (one per model) for a sweep. Global step ``t`` (counted from the
        first epoch, so a resumed run replays the same keys) uses ``fold_in(key, t)``; a
        single key in a sweep is first folded with the model index. An NNX module draws
        from its own ``nnx.Rngs`` streams the same way (their stored keys are the base;
        ``rngs`` replaces them by stream name). Evaluation gets no keys: an NNX module runs
        as ``nnx.view(model, deterministic=True)``, a linen one with ``eval_apply_kwargs``.
      shuffle_keys: ``epoch -> key`` (one key) or ``(M,)`` keys (one permutation per model).
      val_data: optional held-out data evaluated with ``metric_fn`` after every epoch.
      metric_fn: per-example metrics (see above); required with ``val_data``.
      eval_batch_size: batch size of the evaluation program (forward only).
      num_models: ``None`` for one model, else the size of the leading model axis.
      start_epoch: first epoch to run (for resuming from a checkpoint).
      steps_per_call: optimizer steps per compiled call for ``stepping='scan'``/``'unroll'``
        (a divisor of the epoch's steps is used, so every call has the same shape and the
        program compiles once); with ``'step'``, how often the host keeps a copy of the
        state and reads the non-finite guard and the progress bar (>= 1).
      stepping: ``'step'`` (a Python loop over one jitted step), ``'scan'`` or ``'unroll'``;
        default :func:`jinit.fit_stepping` (``'step'`` for one model on CPU whose loss has a
        convolution, else ``'scan'``).
      on_nonfinite: what a step whose loss or gradient global norm is NaN/inf does:
        ``'raise'`` (default) stops with :class:`NonFiniteError` naming the epoch, the step
        and the last checkpoint, the bad update and any later one dropped;
        ``'skip_step'`` drops that step's update, counts it in
        ``EpochResult.nonfinite_steps`` and warns (:class:`jinit.InitWarning`);
        ``'continue'`` applies it (counted and warned the same way). The check runs on the
        device; the host reads it once per call (``'scan'``), or every ``steps_per_call``
        steps (``'step'``, one model: there every update is applied and the step marks
        suspects in one cheap pass; a block's marks are read a block late, and on a suspect
        fit returns to the state kept at the start of its block, replays the steps before
        it and settles it with the exact test; docs/training.md).
      progress: ``None``/``True``: a tqdm bar on a terminal, else one line per epoch (loss,
        metrics, examples/s, elapsed) on stderr; ``'bar'`` or ``'lines'`` to force one;
        ``False``: silent.
      checkpoint: where ``on_epoch_end`` saves (a path, only quoted in messages).
      on_epoch_end: called with each finished epoch and the state (e.g. to checkpoint). Not
        called for an epoch stopped by a non-finite step, so the last checkpoint stays good.
      programs: compiled programs from :func:`jinit.compile_programs` to reuse (their
        ``stepping``/``on_nonfinite`` must agree with this call's).
      stats_fn: optional ``params -> {name: value}`` recorded during training, e.g.
        ``lambda p: jinit.layer_statistics(model, p, probe_batch, loss)``; evaluated at the
        first call boundary at or after every ``stats_every`` optimizer steps; the values land
        in ``EpochResult.stats`` as ``(global_step, {name: array})``.
      stats_every: recording period in optimizer steps (>= 1).
      strategy: ``'vmap'`` or ``'map'`` for sweeps (see :func:`jinit.compile_programs`).
      mesh: the model-axis mesh the state is sharded over (see :func:`jinit.compile_programs`).

    Returns:
      ``(state, history)``, ``history`` a list of :class:`EpochResult`. The input ``state`` is
      donated to the compiled program (its buffers are reused, so it cannot be read after the
      call): pass a copy (``jax.tree.map(jnp.copy, state)``) to keep it.

    Raises:
      ValueError: ``state`` holds arrays already donated to an earlier ``fit`` call.
      NonFiniteError: a non-finite step with ``on_nonfinite='raise'`` (a ``FloatingPointError``
        carrying the last good ``state``).
      KeyboardInterrupt: re-raised after one line on stderr saying where the last checkpoint
        is and that the same command resumes from it.
      ValueError: a bad argument (the message names it, its value and what was expected), e.g.
        ``epochs < 1``, ``start_epoch`` outside ``[0, epochs]``, ``batch_size`` below 1 or
        above the training set, ``steps_per_call < 1``, an empty training set, data arrays
        whose example axes differ, params without a leading axis of ``num_models``, a mesh
        whose device count does not divide ``num_models``, shuffle keys of the wrong kind.
      ValueError: a linen model that draws from a PRNG stream ``rngs`` does not name (the
        message names the stream), a ``loss_fn`` whose loss is not a scalar, a ``metric_fn``
        whose values are not ``(B,)`` (``B`` = ``eval_batch_size``), ``rngs`` without a
        model, or keys of the wrong kind.
      TypeError: a non-callable ``loss_fn``/``metric_fn``/``shuffle_keys``, an ``optimizer``
        that is not an optax transformation, a ``state`` that is not a ``TrainState``.
    """
    fn = "fit"
    if not isinstance(state, TrainState):
        raise TypeError(
            f"{fn}: state must be a jinit.TrainState (jinit.init_state(params, optimizer)), "
            f"got {type(state).__name__}"
        )
    _check_callable(fn, "loss_fn", loss_fn)
    _check_optimizer(fn, optimizer)
    check_int(fn, "epochs", epochs, minimum=1)
    check_int(fn, "start_epoch", start_epoch, minimum=0)
    if start_epoch > epochs:
        raise ValueError(f"{fn}: start_epoch={start_epoch} is larger than epochs={epochs}")
    check_int(fn, "batch_size", batch_size, minimum=1)
    check_int(fn, "steps_per_call", steps_per_call, minimum=1)
    check_int(fn, "stats_every", stats_every, minimum=1)
    check_int(fn, "eval_batch_size", eval_batch_size, minimum=1)
    check_int(fn, "seed", seed, minimum=0)
    check_choice(fn, "on_nonfinite", on_nonfinite, NONFINITE_MODES)
    if progress not in PROGRESS:
        raise ValueError(f"{fn}: progress must be one of {PROGRESS}, got {progress!r}")
    if metric_fn is not None:
        _check_callable(fn, "metric_fn", metric_fn)
    if val_data is not None and metric_fn is None:
        raise ValueError(f"{fn}: val_data was given without a metric_fn to evaluate it")
    if shuffle_keys is not None:
        _check_callable(fn, "shuffle_keys", shuffle_keys)
    n = _num_examples("train_data", train_data)
    if val_data is not None:
        _num_examples("val_data", val_data)
    if n < batch_size:
        raise ValueError(f"{fn}: batch_size={batch_size} is larger than train_data ({n} examples)")
    _check_model_axis(state, num_models)
    _check_not_donated(state)
    rng_base = _rng_base(model, rngs, num_models)
    if programs:
        progs = programs
        for attr, want in (("on_nonfinite", on_nonfinite), ("num_models", num_models)):
            have = getattr(progs, attr, want)
            if have != want:
                raise ValueError(
                    f"{fn}: programs were compiled with {attr}={have!r}, but fit got "
                    f"{attr}={want!r}"
                )
        if stepping is not None and getattr(progs, "stepping", stepping) != stepping:
            raise ValueError(
                f"{fn}: programs were compiled with stepping={progs.stepping!r}, but fit got "
                f"stepping={stepping!r}"
            )
    else:
        if stepping is None:
            stepping = fit_stepping(
                state,
                loss_fn,
                train_data,
                batch_size,
                model=model,
                input_key=input_key,
                apply_kwargs=apply_kwargs,
                num_models=num_models,
                rngs=rng_base,
            )
        progs = compile_programs(
            loss_fn,
            optimizer,
            metric_fn,
            model=model,
            input_key=input_key,
            apply_kwargs=apply_kwargs,
            eval_apply_kwargs=eval_apply_kwargs,
            eval_batch_size=eval_batch_size,
            num_models=num_models,
            strategy=strategy,
            stepping=stepping,
            on_nonfinite=on_nonfinite,
            mesh=mesh,
        )
    if not isinstance(progs, Programs):
        raise TypeError(f"{fn}: programs must come from jinit.compile_programs")
    if shuffle_keys is None:
        shuffle_keys = _seed_keys_fn(seed)
    steps = n // batch_size
    per_call = 1 if progs.stepping == "step" else _divisor_at_most(steps, steps_per_call)
    read_every = per_call if progs.stepping != "step" else steps_per_call
    stats_prog = None
    if stats_fn is not None:
        _check_callable(fn, "stats_fn", stats_fn)
        stats_prog = jax.jit(jax.vmap(stats_fn) if num_models is not None else stats_fn)
    mode = _progress_mode(progress)
    history: list[EpochResult] = []
    t_start = time.perf_counter()
    # saved: the last epoch whose checkpoint exists (resuming at start_epoch implies one for
    # start_epoch - 1), i.e. the last on_epoch_end that returned.
    epoch, saved = start_epoch, (start_epoch - 1 if start_epoch > 0 else None)
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            keys = shuffle_keys(epoch)
            check_keys(fn, f"shuffle_keys({epoch})", keys, num_models)
            idx = epoch_indices(keys, n, batch_size)
            guard = progs.guard(epoch * steps, rng_base)
            bar = _bar(steps, f"epoch {epoch + 1}/{epochs}") if mode == "bar" else None
            parts, stats = [], []
            rollback = progs.rollback and on_nonfinite != "continue"
            # Python loop of one model: the state is kept at every block start (every
            # steps_per_call steps) to roll back to, training going on on a copy. A block's
            # flag is read a block late, from the guard kept at the next block start, so the
            # host never waits for the step it just queued (that wait empties the queue and
            # leaves the device idle).
            s, snaps, fresh_snap = 0, [], True
            while True:
                if rollback and (s == steps or fresh_snap or s % read_every == 0):
                    # the guard kept at the last block start: its steps are done or nearly
                    probe = guard if s == steps else snaps[-1][3] if snaps else None
                    bad = -1 if probe is None else int(probe.first_bad) - epoch * steps
                    if bad >= 0:  # back to the last copy before the suspect, replay, settle
                        s, n_parts, state, guard = [x for x in snaps if x[0] <= bad][-1]
                        snaps, fresh_snap = [], True
                        del parts[n_parts:]
                        state, guard, stop = _settle(
                            progs, state, guard, train_data, idx, s, bad, parts, on_nonfinite
                        )
                        if stop is not None:
                            _raise_if_bad(
                                stop, state, epoch, steps, None, checkpoint, history, saved
                            )
                        s = bad + 1
                        continue
                    if s < steps:  # steps before the last copy are good: older copies go
                        # the last block's metrics as one array: one transfer at epoch end
                        start = snaps[-1][1] if snaps else len(parts)
                        if len(parts) - start > 1:
                            parts[start:] = [_stack(parts[start:])]
                        # Keep these buffers and train on a copy: donating a buffer that a
                        # pending copy still reads would make the host wait for the queue.
                        snaps = snaps[-1:] + [(s, len(parts), state, guard)]
                        state, guard = _copy((state, guard))
                    fresh_snap = False
                if s >= steps:
                    break
                global_step = epoch * steps + s
                if stats_prog is not None and (global_step % stats_every) < per_call:
                    stats.append((global_step, _host(stats_prog(state.params))))
                state, guard, m = progs["train"](state, guard, train_data, idx, per_call)
                parts.append(m)
                s += per_call
                if not rollback and on_nonfinite == "raise" and progs.stepping != "step":
                    _raise_if_bad(
                        guard, state, epoch, steps, num_models, checkpoint, history, saved
                    )
                if bar is not None and (s % read_every == 0 or s == steps):
                    bar.update(s - bar.n)
                    # the metrics of a call a block back: done by now, no wait
                    shown = parts[max(0, len(parts) - 1 - read_every // per_call)]
                    bar.set_postfix(
                        {k: f"{float(jnp.mean(v[..., -1])):.4f}" for k, v in shown.items()}
                    )
            if on_nonfinite == "raise":
                _raise_if_bad(guard, state, epoch, steps, num_models, checkpoint, history, saved)
            train_m = _epoch_means(parts)
            bad = _host(guard.nonfinite)
            if bad.any():
                warnings.warn(
                    f"fit: {int(bad.sum())} non-finite step(s) in epoch {epoch} "
                    f"(on_nonfinite={on_nonfinite!r}: "
                    f"{'dropped' if on_nonfinite == 'skip_step' else 'applied'})"
                    + (f", per model {bad.tolist()}" if num_models is not None else ""),
                    InitWarning,
                    stacklevel=2,
                )
            val_m = None
            if val_data is not None:
                val_m = _host(progs["evaluate"](state, val_data))
            jax.block_until_ready(state)
            seconds = time.perf_counter() - t0
            result = EpochResult(
                epoch, train_m, val_m, seconds, stats, bad if num_models is not None else int(bad)
            )
            history.append(result)
            if bar is not None:
                bar.update(steps - bar.n)
                if val_m:
                    bar.set_postfix({f"val_{k}": f"{np.mean(v):.4f}" for k, v in val_m.items()})
                bar.close()
            elif mode == "lines":
                _emit(
                    _epoch_line(result, epochs, steps * batch_size, time.perf_counter() - t_start)
                )
            if on_epoch_end is not None:
                on_epoch_end(result, state)
                saved = result.epoch
    except KeyboardInterrupt:
        _emit(_interrupted_line(epoch, saved, on_epoch_end is not None, checkpoint))
        raise
    return state, history


@jax.jit
def _copy(tree):
    # One dispatch for the whole state (an eager copy per leaf costs a dispatch each).
    return jax.tree.map(jnp.copy, tree)


def _host(tree):
    """``tree`` as numpy on the host; under ``jax.distributed`` a global array (model axis
    sharded over several processes' devices) is gathered from all processes first."""
    from jax.experimental import multihost_utils

    def get(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(get, tree)


@jax.jit
def _stack(parts):
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=-1), *parts)


def _epoch_means(parts: list) -> dict[str, np.ndarray]:
    """Means over the epoch's finite steps of the train program's per-call metrics.

    The parts are fetched to the host in one batch and joined with numpy: ``jnp.concatenate``
    of one small array per step converts every operand on the host, step by step.
    """
    host = _host(parts)
    return {k: _finite_mean(np.concatenate([p[k] for p in host], -1)) for k in host[0]}


def _skip(guard):
    one = jnp.ones_like(guard.row)
    return guard._replace(
        row=guard.row + one,
        step=guard.step + one,
        first_bad=-one,
        nonfinite=guard.nonfinite + one,
    )


def _settle(progs, state, guard, data, idx, s, bad, parts, on_nonfinite):
    """From the copy at row ``s``: replays rows ``s..bad-1``, then settles the suspect row
    ``bad`` exactly (``progs["check"]``): a finite step is taken; a non-finite one is skipped
    and counted, or for ``'raise'`` returned as the third value, a guard naming it (the
    state the last good one); that value is ``None`` otherwise."""
    m = None
    for _ in range(s, bad):
        state, guard, m = progs["train"](state, guard, data, idx, 1)
        parts.append(m)
    if bool(progs["check"](state, data, idx, bad, guard)):
        # a false alarm (a huge but finite gradient): take the step, unflagged
        state, guard, m = progs["train"](state, guard, data, idx, 1)
        parts.append(m)
        return state, _unflag(guard), None
    if on_nonfinite == "raise":
        return state, guard, guard._replace(first_bad=np.int32(guard.step))
    if m is None:  # nothing replayed: the shape of a step's metrics from an earlier part
        m = parts[-1] if parts else jax.eval_shape(progs["train"], state, guard, data, idx, 1)[2]
    parts.append(jax.tree.map(lambda a: jnp.full(a.shape[:-1] + (1,), jnp.nan, a.dtype), m))
    return state, _skip(guard), None  # 'skip_step': step past it, counted


def _unflag(guard):
    # The step was counted and recorded as suspect; it was finite.
    return guard._replace(first_bad=-jnp.ones_like(guard.row), nonfinite=guard.nonfinite - 1)


def _finite_mean(v: jax.Array) -> np.ndarray:
    """Mean over the last (step) axis of the finite entries (NaN where none is finite)."""
    v = np.asarray(v, np.float64)
    ok = np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(ok, v, 0.0).sum(-1) / ok.sum(-1)).astype(np.float32)


def _last_checkpoint(saved: int | None, checkpoint: str | None, saving: bool) -> str:
    if not saving:
        return "no checkpoint (fit was given no on_epoch_end to save one)"
    if saved is None:
        return "no checkpoint from this run (no epoch finished)" + (
            f"; an earlier one may be in {checkpoint}" if checkpoint else ""
        )
    where = f" in {checkpoint}" if checkpoint else ""
    return f"the last checkpoint is the end of epoch {saved + 1}{where}"  # counted from 1


def _raise_if_bad(guard, state, epoch, steps, num_models, checkpoint, history, saved):
    first_bad = _host(guard.first_bad)
    if not (first_bad >= 0).any():
        return
    g = int(first_bad[first_bad >= 0].min())
    models = np.flatnonzero(first_bad >= 0).tolist() if num_models is not None else None
    which = f" (models {models} of the sweep)" if models is not None else ""
    where = _last_checkpoint(saved, checkpoint, True)
    raise NonFiniteError(
        f"fit: non-finite loss or gradient norm in epoch {epoch + 1} (counted from 1, as the "
        f"progress lines), step index {g - epoch * steps} (global step index {g}){which}; "
        f"that update and later ones were dropped and training stopped; {where}. Lower the learning rate, check the data for NaN/inf, or pass "
        "on_nonfinite='skip_step'. The last good state is on this error's .state",
        epoch=epoch,
        step=g - epoch * steps,
        global_step=g,
        models=models,
        state=state,
        history=history,
    )


def _interrupted_line(epoch, saved, saving, checkpoint) -> str:
    line = f"fit: interrupted in epoch {epoch + 1}; {_last_checkpoint(saved, checkpoint, saving)}"
    if saving and (saved is not None or checkpoint):
        line += ": run the same command again to resume from it"
    return line


def _epoch_line(r: EpochResult, epochs: int, examples: int, elapsed: float) -> str:
    def fmt(d, prefix=""):
        return " ".join(f"{prefix}{k} {float(np.mean(v)):.4f}" for k, v in d.items())

    line = f"epoch {r.epoch + 1}/{epochs}: {fmt(r.train)}"
    if r.val:
        line += f" | {fmt(r.val, 'val_')}"
    return (
        line
        + f" | {examples / r.seconds:.0f} examples/s | {r.seconds:.1f} s (total {elapsed:.1f} s)"
    )


def _emit(line: str) -> None:
    # Progress is the one thing fit writes; stderr, like tqdm.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _progress_mode(progress) -> str | None:
    if progress is False:
        return None
    if progress == "lines":
        return "lines"
    if progress == "bar" or sys.stderr.isatty():
        try:
            import tqdm.auto  # noqa: F401  (optional: the experiments extra installs it)
        except ImportError:
            return "lines"
        return "bar"
    return "lines"


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=True, file=sys.stderr)


def _divisor_at_most(n: int, k: int) -> int:
    return max(d for d in range(1, min(n, max(k, 1)) + 1) if n % d == 0)


def _num_examples(name: str, data: PyTree) -> int:
    """The common leading (example) axis of every leaf of ``data``; ValueError if they differ."""
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        raise ValueError(f"fit: {name} holds no arrays (an empty dataset)")
    sizes = {
        jax.tree_util.keystr(p): (a.shape[0] if getattr(a, "ndim", 0) else None) for p, a in leaves
    }
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(
            f"fit: {name}: every array needs the same leading example axis, got {sizes}"
        )
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError(f"fit: {name} is empty (0 examples)")
    return n


def _check_not_donated(state: TrainState) -> None:
    # A state passed to an earlier fit had its buffers donated; JAX would only say "Array has
    # been deleted" from deep inside the program.
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if isinstance(leaf, jax.Array) and leaf.is_deleted():
            raise ValueError(
                f"fit: state{jax.tree_util.keystr(path)} was donated to an earlier fit call and "
                "is deleted; continue from the state that call returned, or pass a copy "
                "(jax.tree.map(jnp.copy, state)) to keep the original"
            )


def _check_model_axis(state: TrainState, num_models: int | None) -> None:
    if num_models is None:
        return
    check_int("fit", "num_models", num_models, minimum=1)
    bad = {
        jax.tree_util.keystr(p): a.shape
        for p, a in jax.tree_util.tree_leaves_with_path(state.params)
        if a.ndim == 0 or a.shape[0] != num_models
    }
    if bad:
        raise ValueError(
            f"fit: num_models={num_models}, but these params lack a leading model axis of that "
            f"size (stack models with jinit.init_models): {dict(list(bad.items())[:3])}"
        )


def fit_stepping(
    state: TrainState,
    loss_fn: LossFn,
    train_data: PyTree,
    batch_size: int,
    *,
    model: Any = None,
    input_key: str | int | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    num_models: int | None = None,
    rngs: Mapping[str, jax.Array] | None = None,
) -> str:
    """The stepping :func:`jinit.fit` picks when given none (same arguments as ``fit``).

    :func:`jinit.default_stepping` with ``convolutions`` found by tracing the loss of one
    model on the first ``batch_size`` examples once (on CPU, one model only: elsewhere the
    answer does not depend on it). The rule and its measurements: docs/training.md and
    ``benchmarks/fit_overhead.py``.

    Args:
      state: the :class:`TrainState` ``fit`` would get (``params`` and ``model_state`` are
        traced, not run).
      loss_fn: as in :func:`jinit.fit` (outputs form with ``model``, else params form).
      train_data: as in :func:`jinit.fit`: a pytree of arrays with a leading example axis.
      batch_size: examples per step (the traced batch is ``train_data[:batch_size]``).
      model: as in :func:`jinit.fit`.
      input_key: as in :func:`jinit.fit`.
      apply_kwargs: as in :func:`jinit.fit`.
      num_models: as in :func:`jinit.fit`.
      rngs: as in :func:`jinit.fit` (the keys the traced loss gets).

    Returns:
      ``'step'`` or ``'scan'``. It raises nothing: a loss that cannot be traced here counts as
      having a convolution (``'step'``), and its error surfaces in ``fit`` itself.
    """
    if num_models is not None or jax.default_backend() != "cpu":
        return default_stepping(num_models=num_models)
    if model is not None:
        loss_fn, _ = params_form(
            loss_fn, None, model, input_key=input_key, apply_kwargs=apply_kwargs
        )
        if rngs is not None:
            loss_fn = functools.partial(loss_fn, rng=dict(rngs))
    batch = jax.tree.map(lambda a: a[:batch_size], train_data)
    extra = () if state.model_state is None else (state.model_state,)
    return default_stepping(convolutions=has_convolution(loss_fn, state.params, batch, *extra))
