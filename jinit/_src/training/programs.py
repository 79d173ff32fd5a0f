"""The compiled programs :func:`jinit.fit` runs, and the rules that pick their loop structure.

Two choices, both by backend and measured (docs/benchmarks/fit_overhead.md, sweep_vmap.md):

* stepping (how the optimizer steps of one model are looped): ``'step'`` (a Python loop over
  one jitted step), ``'scan'`` (chunks of steps in ``lax.scan``) or ``'unroll'`` (the chunk's
  scan fully unrolled);
* strategy (how the models of a sweep are computed): ``'vmap'`` or ``'map'``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jinit._src.checks import check_choice, check_int
from jinit._src.training.step import (
    NONFINITE_MODES,
    LossFn,
    MetricFn,
    _check_callable,
    _check_optimizer,
    make_evaluate,
    make_guarded_chunk,
    make_step_check,
    new_guard,
    params_form,
)

STRATEGIES = ("vmap", "map")
STEPPINGS = ("step", "scan", "unroll")


def default_strategy(backend: str | None = None) -> str:
    """The sweep strategy measured fastest on ``backend`` (default: JAX's default backend).

    ``'vmap'`` batches the models' arithmetic (bigger matmuls: the right choice on GPU/TPU);
    ``'map'`` runs them one after the other inside ONE program (``lax.map``), which on CPU avoids
    XLA's slower batched gathers, scatters and small batched matmuls: for the IMDB RNN on 2
    cores, 1.2-1.3x more model-steps/s than ``vmap`` and as fast as separate runs
    (``docs/benchmarks/sweep_vmap.md``), with bitwise the numbers of separate runs.
    """
    return "map" if (backend or jax.default_backend()) == "cpu" else "vmap"


def default_stepping(
    backend: str | None = None, num_models: int | None = None, convolutions: bool = True
) -> str:
    """The loop structure :func:`jinit.fit` uses by default: ``'step'`` or ``'scan'``.

    The rule, from ``benchmarks/fit_overhead.py`` (docs/benchmarks/fit_overhead.md): on CPU a
    single model whose train step has a convolution runs as a Python loop over one jitted step
    (``'step'``), because XLA's CPU convolutions lose their fast path inside
    ``lax.scan``/``while`` loops (a scan ran the seed CIFAR CNN and a BatchNorm ResNet at 0.05x
    of a plain loop of the jitted step; ``'step'`` at 1.0x or better). Without convolutions
    (``convolutions=False``: :func:`jinit.fit` traces the loss once to find out), and on
    GPU/TPU and for sweeps everywhere, chunks of steps run in ``lax.scan`` (``'scan'``), which
    saves the host round trip per step (an MLP: scan 1.03x of the plain loop, step 0.89x; the
    IMDB RNN: scan 1.18x, step 1.12x).
    """
    if (backend or jax.default_backend()) == "cpu" and num_models is None and convolutions:
        return "step"
    return "scan"


def has_convolution(fn: Callable[..., Any], *args: Any) -> bool:
    """Whether ``fn(*args)`` traces to a convolution (in any nested program); True if it
    cannot be traced, so the choice it feeds stays the one that is safe for convolutions."""
    try:
        jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    except Exception:  # noqa: BLE001 - any tracing failure surfaces later, in the real compile
        return True
    return _has_primitive(jaxpr, "conv_general_dilated")


def _has_primitive(jaxpr: Any, name: str) -> bool:
    # Walks the equations and every sub-program in their params (pjit, scan, remat, custom_vjp).
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == name:
            return True
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns") and _has_primitive(inner, name):
                    return True
    return False


class Programs(dict):
    """``{"train": ..., "evaluate": ...}`` plus the settings they were compiled with.

    ``train(state, guard, data, idx, steps) -> (state, guard, metrics)`` runs ``steps``
    (static) guarded steps from row ``guard.row`` of the epoch's index array ``idx``
    (``(steps_per_epoch, B)``, or ``(M, steps_per_epoch, B)`` per model), ``guard`` from
    :meth:`guard`; ``evaluate(state, data)`` the example-weighted means of ``metric_fn``.
    """

    stepping: str
    on_nonfinite: str
    num_models: int | None

    mesh: Any = None
    # train applies every update and records the first suspect step (guard.first_bad); fit
    # rolls back to a copy, replays and settles the suspect with check(state, data, idx, row).
    rollback: bool = False

    def guard(self, step: int = 0, rng: Any = None):
        """A fresh guard for ``train``, its first row 0 of the index array, at global ``step``.

        ``rng``: ``{stream: key}`` (a leading model axis in sweeps) the model's RNG streams
        start from; copied, as ``train`` donates the guard. With a mesh the guard is sharded
        like the state, so every call sees the same input shardings and ``train`` compiles
        once.
        """
        g = new_guard(step, self.num_models)
        if rng is not None:
            g = g._replace(rng=_copy_keys(rng))
        if self.mesh is None:
            return g
        sharding = NamedSharding(self.mesh, PartitionSpec(self.mesh.axis_names[0]))
        return jax.tree.map(lambda a: jax.device_put(a, sharding), g)


def compile_programs(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    metric_fn: MetricFn | None = None,
    *,
    model: Any = None,
    input_key: str | int | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
    eval_apply_kwargs: Mapping[str, Any] | None = None,
    eval_batch_size: int = 1000,
    num_models: int | None = None,
    strategy: str | None = None,
    stepping: str | None = None,
    on_nonfinite: str = "raise",
    mesh: Any = None,
) -> Programs:
    """The jitted programs :func:`jinit.fit` uses: ``train`` (guarded steps) and ``evaluate``.

    Args:
      loss_fn: as in :func:`jinit.fit` (params form, or outputs form with ``model``).
      optimizer: as in :func:`jinit.fit`.
      metric_fn: as in :func:`jinit.fit` (``None``: no ``evaluate`` program).
      model: as in :func:`jinit.fit` (selects the outputs form of the losses).
      input_key: as in :func:`jinit.fit`.
      apply_kwargs: as in :func:`jinit.fit`.
      eval_apply_kwargs: as in :func:`jinit.fit`.
      eval_batch_size: as in :func:`jinit.fit`.
      num_models: ``None`` for one model; else the programs take a leading model axis on the
        state, and the index array is shared ``(steps, B)`` or per model ``(M, steps, B)``.
      strategy: how the models of a sweep are computed: ``'vmap'`` (batched) or ``'map'``
        (one after the other in one program); default :func:`default_strategy`. Both give each
        model the numbers of its own single run, to float32 rounding.
      stepping: ``'step'``, ``'scan'`` or ``'unroll'``; default :func:`default_stepping`.
      on_nonfinite: ``'raise'``, ``'skip_step'`` or ``'continue'`` (see :func:`jinit.fit`).
      mesh: a 1-D ``Mesh`` over the model axis (:func:`jinit.model_mesh`): each device computes
        its slice of models (``jax.shard_map``); ``None`` lets XLA place the sharded arrays.

    Returns:
      a :class:`Programs` dict; ``train`` is jitted once per distinct number of steps per call
      (one for a whole ``fit``), its state and guard arguments donated.

    Raises:
      ValueError: an unknown ``strategy``, ``stepping`` or ``on_nonfinite``; ``num_models`` or
        ``eval_batch_size`` below 1; ``num_models`` that the mesh's device count does not
        divide.
      TypeError: ``loss_fn``/``metric_fn`` not callable, ``optimizer`` not an optax
        transformation.
    """
    fn = "compile_programs"
    _check_callable(fn, "loss_fn", loss_fn)
    _check_optimizer(fn, optimizer)
    if metric_fn is not None:
        _check_callable(fn, "metric_fn", metric_fn)
    check_int(fn, "eval_batch_size", eval_batch_size, minimum=1)
    if num_models is not None:
        check_int(fn, "num_models", num_models, minimum=1)
    strategy = default_strategy() if strategy is None else strategy
    check_choice(fn, "strategy", strategy, STRATEGIES)
    stepping = default_stepping(num_models=num_models) if stepping is None else stepping
    check_choice(fn, "stepping", stepping, STEPPINGS)
    check_choice(fn, "on_nonfinite", on_nonfinite, NONFINITE_MODES)
    if mesh is not None:
        if num_models is None:
            raise ValueError(f"{fn}: mesh= shards the model axis of a sweep; give num_models too")
        if num_models % mesh.size:
            raise ValueError(
                f"{fn}: num_models={num_models} is not divisible by the mesh's {mesh.size} "
                "devices; pad the model axis first (jinit.padded_size, jinit.pad_models)"
            )
    if model is not None:
        loss_fn, metric_fn = params_form(
            loss_fn,
            metric_fn,
            model,
            input_key=input_key,
            apply_kwargs=apply_kwargs,
            eval_apply_kwargs=eval_apply_kwargs,
        )
    # One model stepped from Python: no per-step select nor gradient norm; fit rolls back
    # to a copy and settles a suspect step exactly instead ('continue' keeps the exact count).
    rollback = stepping == "step" and num_models is None and on_nonfinite != "continue"
    chunk = make_guarded_chunk(
        loss_fn,
        optimizer,
        on_nonfinite=on_nonfinite,
        unroll=stepping == "unroll",
        select=not rollback,
    )
    evaluate = make_evaluate(metric_fn, eval_batch_size) if metric_fn is not None else None
    if num_models is not None:
        one = chunk

        def per_model(state, guard, idx, data, steps):
            return one(state, guard, data, idx, steps)

        def chunk_m(state, guard, data, idx, steps):
            if idx.ndim == 3:  # one order per model
                body = lambda s, g, i, d: per_model(s, g, i, d, steps)  # noqa: E731
                return _over_models(body, strategy, 1)(state, guard, idx, data)
            body = lambda s, g, d, i: one(s, g, d, i, steps)  # noqa: E731
            return _over_models(body, strategy, 2)(state, guard, data, idx)

        evaluate_m = _over_models(evaluate, strategy, 1) if evaluate is not None else None
        if mesh is not None:
            chunk_m = _shard_over_models(chunk_m, mesh)
            evaluate_m = _shard_over_models(evaluate_m, mesh) if evaluate_m else None
        chunk, evaluate = chunk_m, evaluate_m
    progs = Programs(train=jax.jit(chunk, donate_argnums=(0, 1), static_argnums=4))
    if rollback:  # compiled only if a step is suspect
        progs["check"] = jax.jit(make_step_check(loss_fn, optimizer))
    if evaluate is not None:
        progs["evaluate"] = jax.jit(evaluate)
    progs.stepping, progs.on_nonfinite, progs.num_models = stepping, on_nonfinite, num_models
    progs.mesh, progs.rollback = mesh, rollback
    return progs


@jax.jit
def _copy_keys(rng):
    return jax.tree.map(jax.numpy.copy, rng)


def _over_models(fn: Callable, strategy: str, n_shared: int):
    """Maps ``fn(*model_args, *shared_args)`` over a leading model axis of the model args."""

    def mapped(*args):
        model_args, shared = args[: len(args) - n_shared], args[len(args) - n_shared :]
        if strategy == "vmap":
            return jax.vmap(lambda *m: fn(*m, *shared))(*model_args)
        return jax.lax.map(lambda m: fn(*m, *shared), model_args)

    return mapped


def _shard_over_models(fn: Callable, mesh: Any):
    """``fn(state, [guard,] data, [idx,] [steps])`` run per device on its slice of models."""
    from jax.sharding import PartitionSpec as P

    axis = mesh.axis_names[0]

    def sharded(*args):
        static = [a for a in args if isinstance(a, int)]
        arrays = [a for a in args if not isinstance(a, int)]
        # state and guard (train) or state (evaluate) carry the model axis; data is shared;
        # a 3-D index array is per model.
        n_model = 2 if static else 1
        specs = tuple(
            P(axis) if i < n_model or (i > n_model and a.ndim == 3) else P()
            for i, a in enumerate(arrays)
        )

        def body(*xs):
            return fn(*xs, *static)

        return jax.shard_map(body, mesh=mesh, in_specs=specs, out_specs=P(axis), check_vma=False)(
            *arrays
        )

    return sharded
