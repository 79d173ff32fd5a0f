"""Pure optax training: a jitted step, whole chunks of steps under ``lax.scan``, and an epoch loop.

The contract, written once (optax-style):

* ``loss_fn(params, batch) -> (loss, metrics)``: a scalar loss and a dict of scalar metrics
  for one batch; pure.
* ``metric_fn(params, batch) -> dict[str, Array(B)]``: per-example metrics for evaluation.
* Models with non-trained state (BatchNorm running statistics) keep it in
  ``TrainState.model_state``; then ``loss_fn(params, batch, model_state) -> (loss, (metrics,
  new_model_state))`` and ``metric_fn(params, batch, model_state)``.
* A *batch* is any pytree of arrays whose leading axis is the example axis; the training data
  lives on the device and batches are gathered by index inside the compiled program, so one
  call runs ``steps_per_call`` optimizer steps with no host round trip.

The same functions train one model or a stack of models (a seed sweep): with
``num_models=M`` every leaf of the state carries a leading model axis and the compiled program
is ``jax.vmap`` of the single-model one (see :mod:`jinit._src.sweep`). Nothing here depends on
the backend: the programs run unchanged on CPU, GPU or TPU through XLA.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
LossFn = Callable[[PyTree, PyTree], tuple[jax.Array, Mapping[str, jax.Array]]]
MetricFn = Callable[[PyTree, PyTree], Mapping[str, jax.Array]]


class TrainState(NamedTuple):
    """Parameters, optimizer state and (optional) non-trained model state such as BatchNorm
    running statistics; with a sweep each leaf has a leading model axis."""

    params: PyTree
    opt_state: PyTree
    model_state: PyTree = None


def init_state(
    params: PyTree, optimizer: optax.GradientTransformation, model_state: PyTree = None
) -> TrainState:
    """``TrainState(params, optimizer.init(params), model_state)``; vmap it over stacked params."""
    return TrainState(params, optimizer.init(params), model_state)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation):
    """Returns the pure step ``(state, batch) -> (state, metrics)`` (``metrics`` has ``loss``)."""

    def step(state: TrainState, batch: PyTree):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        if state.model_state is None:
            (loss, metrics), grads = grad_fn(state.params, batch)
            model_state = None
        else:
            (loss, (metrics, model_state)), grads = grad_fn(state.params, batch, state.model_state)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, model_state), {"loss": loss, **metrics}

    return step


def make_train_chunk(loss_fn: LossFn, optimizer: optax.GradientTransformation):
    """Returns ``chunk(state, data, idx) -> (state, metrics)`` running ``idx.shape[0]`` steps.

    Args of the returned function:
      state: a ``TrainState``.
      data: pytree of arrays with the example axis first (the whole training set).
      idx: int array ``(steps, batch_size)`` of example indices, one row per step.

    Returns ``metrics`` stacked over steps: each leaf has shape ``(steps,)``.
    """
    step = make_train_step(loss_fn, optimizer)

    def chunk(state, data, idx):
        def body(state, idx_t):
            batch = jax.tree.map(lambda a: jnp.take(a, idx_t, axis=0), data)
            return step(state, batch)

        return jax.lax.scan(body, state, idx)

    return chunk


def make_evaluate(metric_fn: MetricFn, batch_size: int):
    """Returns ``evaluate(state, data) -> dict`` of example-weighted means over ``data``.

    ``state`` is a :class:`TrainState` (its params and model_state are used) or bare params.

    The data are split into ``ceil(n / batch_size)`` batches scanned inside one program; the
    last batch is padded and the padding masked out, so every example counts exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def evaluate(state, data):
        if isinstance(state, TrainState):
            args = (
                (state.params,) if state.model_state is None else (state.params, state.model_state)
            )
        else:
            args = (state,)

        def metrics_of(batch):
            return metric_fn(args[0], batch, *args[1:])

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


def epoch_indices(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """A shuffled epoch as ``(num_examples // batch_size, batch_size)`` indices.

    Keras's ``fit(shuffle=True)`` permutes the training set every epoch; the remainder that
    does not fill a batch is dropped here (none for IMDB's 20,000 / 32). ``key`` may carry a
    leading model axis (one permutation per model): then the result is ``(M, steps, B)``.
    """
    if num_examples < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} examples, got {num_examples}")
    steps = num_examples // batch_size

    def one(k):
        return jax.random.permutation(k, num_examples)[: steps * batch_size].reshape(
            steps, batch_size
        )

    if jnp.ndim(key) == 0:
        return one(key)
    return jax.vmap(one)(key)


def _divisor_at_most(n: int, k: int) -> int:
    return max(d for d in range(1, min(n, max(k, 1)) + 1) if n % d == 0)


@dataclasses.dataclass
class EpochResult:
    """Per-epoch metrics (arrays with a leading model axis for sweeps) and timing."""

    epoch: int
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray] | None
    seconds: float
    stats: list[tuple[int, dict[str, np.ndarray]]] = dataclasses.field(default_factory=list)


def fit(
    state: TrainState,
    *,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    train_data: PyTree,
    epochs: int,
    batch_size: int,
    shuffle_keys: Callable[[int], jax.Array],
    val_data: PyTree | None = None,
    metric_fn: MetricFn | None = None,
    eval_batch_size: int = 1000,
    num_models: int | None = None,
    start_epoch: int = 0,
    steps_per_call: int = 25,
    progress: bool | None = None,
    on_epoch_end: Callable[[EpochResult, TrainState], None] | None = None,
    programs: Mapping[str, Callable] | None = None,
    stats_fn: Callable[[PyTree], Mapping[str, jax.Array]] | None = None,
    stats_every: int = 100,
    strategy: str | None = None,
    mesh: Any = None,
) -> tuple[TrainState, list[EpochResult]]:
    """Trains for ``epochs - start_epoch`` epochs; the same code for one model or a sweep.

    Args:
      state: initial ``TrainState`` (leading model axis on every leaf when ``num_models``).
      loss_fn: ``(params, batch) -> (loss, metrics)`` for one model.
      optimizer: the optax transformation ``state.opt_state`` belongs to.
      train_data: pytree of arrays, example axis first, already on the device.
      epochs: total number of epochs; training resumes at ``start_epoch``.
      batch_size: examples per optimizer step.
      shuffle_keys: ``epoch -> key`` (one key) or ``(M,)`` keys (one permutation per model).
      val_data: optional held-out data evaluated with ``metric_fn`` after every epoch.
      metric_fn: ``(params, batch) -> {name: (B,) per-example values}``.
      eval_batch_size: batch size of the evaluation program (forward only).
      num_models: ``None`` for one model, else the size of the leading model axis (vmapped).
      start_epoch: first epoch to run (for resuming from a checkpoint).
      steps_per_call: optimizer steps per compiled call (a divisor of the epoch's steps is
        used, so every call has the same shape and the program compiles once).
      progress: tqdm bar (epoch, step, loss, accuracy); ``None`` = only on a terminal.
      on_epoch_end: called with each finished epoch and the state (e.g. to checkpoint).
      programs: compiled programs from :func:`compile_programs` to reuse.
      stats_fn: optional ``params -> {name: value}`` recorded during training, e.g.
        ``lambda p: jinit.layer_statistics(model, p, probe_batch, loss)`` (per-layer activation
        and gradient statistics). It is jitted (vmapped for sweeps) and evaluated at the first
        chunk boundary at or after every ``stats_every`` optimizer steps; the values land in
        ``EpochResult.stats`` as ``(global_step, {name: array})``.
      stats_every: recording period in optimizer steps.
      strategy: ``'vmap'`` or ``'map'`` for sweeps (see :func:`compile_programs`).
      mesh: the model-axis mesh the state is sharded over (see :func:`compile_programs`).

    Returns:
      ``(state, history)``, ``history`` a list of :class:`EpochResult`. The input ``state`` is
      donated to the compiled program (its buffers are reused, so it cannot be read after the
      call): pass a copy (``jax.tree.map(jnp.copy, state)``) to keep it.

    Raises:
      ValueError: for ``epochs < start_epoch``, ``batch_size < 1`` or larger than the training
        set, data arrays whose leading (example) axes differ, a state whose params lack a
        leading axis of size ``num_models``, or a missing ``metric_fn`` with ``val_data``.
    """
    if epochs < start_epoch:
        raise ValueError(f"epochs={epochs} is smaller than start_epoch={start_epoch}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if val_data is not None and metric_fn is None:
        raise ValueError("val_data was given without a metric_fn to evaluate it")
    n = _num_examples("train_data", train_data)
    if val_data is not None:
        _num_examples("val_data", val_data)
    if n < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than train_data ({n} examples)")
    _check_model_axis(state, num_models)
    progs = (
        dict(programs)
        if programs
        else compile_programs(
            loss_fn,
            optimizer,
            metric_fn,
            eval_batch_size=eval_batch_size,
            num_models=num_models,
            strategy=strategy,
            mesh=mesh,
        )
    )
    if stats_every < 1:
        raise ValueError(f"stats_every must be >= 1, got {stats_every}")
    steps = n // batch_size
    per_call = _divisor_at_most(steps, steps_per_call)
    stats_prog = None
    if stats_fn is not None:
        stats_prog = jax.jit(jax.vmap(stats_fn) if num_models is not None else stats_fn)
    history: list[EpochResult] = []
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        idx = epoch_indices(shuffle_keys(epoch), n, batch_size)
        bar = _progress_bar(progress, steps, f"epoch {epoch + 1}/{epochs}")
        parts, stats = [], []
        for s in range(0, steps, per_call):
            global_step = epoch * steps + s
            if stats_prog is not None and (global_step % stats_every) < per_call:
                stats.append((global_step, jax.tree.map(np.asarray, stats_prog(state.params))))
            idx_s = idx[..., s : s + per_call, :]
            state, m = progs["train"](state, train_data, idx_s)
            parts.append(m)
            if bar is not None:
                bar.update(per_call)
                bar.set_postfix({k: f"{float(jnp.mean(v[..., -1])):.4f}" for k, v in m.items()})
        train_m = {
            k: np.asarray(jnp.concatenate([p[k] for p in parts], axis=-1).mean(-1))
            for k in parts[0]
        }
        val_m = None
        if val_data is not None:
            val_m = jax.tree.map(np.asarray, progs["evaluate"](state, val_data))
        if bar is not None:
            if val_m:
                bar.set_postfix({f"val_{k}": f"{float(np.mean(v)):.4f}" for k, v in val_m.items()})
            bar.close()
        jax.block_until_ready(state)
        result = EpochResult(epoch, train_m, val_m, time.perf_counter() - t0, stats)
        history.append(result)
        if on_epoch_end is not None:
            on_epoch_end(result, state)
    return state, history


STRATEGIES = ("vmap", "map")


def default_strategy(backend: str | None = None) -> str:
    """The sweep strategy measured fastest on ``backend`` (default: JAX's default backend).

    ``'vmap'`` batches the models' arithmetic (bigger matmuls: the right choice on GPU/TPU);
    ``'map'`` runs them one after the other inside ONE program (``lax.map``), which on CPU avoids
    XLA's slower batched gathers, scatters and small batched matmuls: for the IMDB RNN on 2
    cores, 1.2-1.3x more model-steps/s than ``vmap`` and as fast as separate runs
    (``docs/benchmarks/sweep_vmap.md``), with bitwise the numbers of separate runs.
    """
    return "map" if (backend or jax.default_backend()) == "cpu" else "vmap"


def _over_models(fn, strategy: str, n_shared: int):
    """Maps ``fn(*model_args, *shared_args)`` over a leading model axis of the model args."""

    def mapped(*args):
        model_args, shared = args[: len(args) - n_shared], args[len(args) - n_shared :]
        if strategy == "vmap":
            return jax.vmap(lambda *m: fn(*m, *shared))(*model_args)
        return jax.lax.map(lambda m: fn(*m, *shared), model_args)

    return mapped


def _num_examples(name: str, data: PyTree) -> int:
    """The common leading (example) axis of every leaf of ``data``; ValueError if they differ."""
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        raise ValueError(f"{name} holds no arrays")
    sizes = {jax.tree_util.keystr(p): (a.shape[0] if a.ndim else None) for p, a in leaves}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"{name}: every array needs the same leading example axis, got {sizes}")
    return next(iter(sizes.values()))


def _check_model_axis(state: TrainState, num_models: int | None) -> None:
    if num_models is None:
        return
    if num_models < 1:
        raise ValueError(f"num_models must be >= 1 or None, got {num_models}")
    bad = {
        jax.tree_util.keystr(p): a.shape
        for p, a in jax.tree_util.tree_leaves_with_path(state.params)
        if a.ndim == 0 or a.shape[0] != num_models
    }
    if bad:
        raise ValueError(
            f"num_models={num_models}, but these params lack a leading model axis of that size "
            f"(stack models with jinit.init_models): {dict(list(bad.items())[:3])}"
        )


def compile_programs(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    metric_fn: MetricFn | None = None,
    *,
    eval_batch_size: int = 1000,
    num_models: int | None = None,
    strategy: str | None = None,
    mesh: Any = None,
) -> dict[str, Callable]:
    """The jitted programs ``fit`` uses: ``train`` (a chunk of steps) and ``evaluate``.

    Args:
      loss_fn: as in :func:`fit`.
      optimizer: as in :func:`fit`.
      metric_fn: as in :func:`fit` (``None``: no ``evaluate`` program).
      eval_batch_size: as in :func:`fit`.
      num_models: ``None`` for one model; else the programs take a leading model axis on the
        state, and the index array is shared ``(steps, B)`` or per model ``(M, steps, B)``.
      strategy: how the models of a sweep are computed: ``'vmap'`` (batched) or ``'map'``
        (one after the other in one program); default :func:`default_strategy`. Both give each
        model the numbers of its own single run, to float32 rounding.
      mesh: a 1-D ``Mesh`` over the model axis (:func:`jinit.model_mesh`): each device computes
        its slice of models (``jax.shard_map``); ``None`` lets XLA place the sharded arrays.

    Raises:
      ValueError: for an unknown ``strategy``.
    """
    strategy = default_strategy() if strategy is None else strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    chunk = make_train_chunk(loss_fn, optimizer)
    evaluate = make_evaluate(metric_fn, eval_batch_size) if metric_fn is not None else None
    if num_models is not None:
        one = chunk  # the single-model program, mapped over the model axis below
        per_model_idx = _over_models(lambda st, idx, data: one(st, data, idx), strategy, 1)
        shared_idx = _over_models(lambda st, data, idx: one(st, data, idx), strategy, 2)
        evaluate_m = _over_models(evaluate, strategy, 1) if evaluate is not None else None

        def chunk_m(state, data, idx):
            if idx.ndim == 3:
                return per_model_idx(state, idx, data)
            return shared_idx(state, data, idx)

        if mesh is not None:
            chunk_m = _shard_over_models(chunk_m, mesh)
            evaluate_m = _shard_over_models(evaluate_m, mesh) if evaluate_m else None
        chunk, evaluate = chunk_m, evaluate_m
    progs = {"train": jax.jit(chunk, donate_argnums=0)}
    if evaluate is not None:
        progs["evaluate"] = jax.jit(evaluate)
    return progs


def _shard_over_models(fn, mesh):
    """``fn(state, data, idx?)`` run per device on its slice of the model axis."""
    from jax.sharding import PartitionSpec as P

    axis = mesh.axis_names[0]

    def sharded(state, data, *rest):
        specs = (P(axis), P()) + tuple(P(axis) if r.ndim == 3 else P() for r in rest)
        return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(axis), check_vma=False)(
            state, data, *rest
        )

    return sharded


def _progress_bar(progress: bool | None, total: int, desc: str):
    if progress is False:
        return None
    if progress is None and not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm  # optional: the experiments extra installs it
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=True, file=sys.stderr)
