"""Seed sweeps over initializers: every (initializer, seed) model as one program, resumably."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import sys
import threading
import time
import warnings
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

import jinit
from experiments.common.checkpoints import EpochCheckpoints
from experiments.common.plots import plot_curves
from experiments.common.records import environment, write_json_atomic
from experiments.common.small_nets import DATA_STREAM, INIT_STREAM, stream_keys


class WallClock:
    """Wall time of this run and of the earlier runs that a resumed study continues.

    Every checkpoint stores the seconds of each run so far (``wall_time_s_per_run``); a run
    that resumes from it takes the earlier runs' entries, so a results file states the whole
    study's wall time (``wall_time_s``) and this run's own (``wall_time_s_this_run``), not
    just the last run's. Time a killed run spent after its last checkpoint is redone, and not
    counted.
    """

    def __init__(self, started: float | None = None):
        self.started = time.perf_counter() if started is None else started
        self.earlier: list[float] = []

    def resume(self, meta: dict[str, Any], where: str) -> None:
        """Takes the earlier runs' seconds from a restored checkpoint's ``meta``."""
        if "wall_time_s_per_run" not in meta:
            warnings.warn(
                f"checkpoint {where} does not record the wall time of the runs that wrote it; "
                "wall_time_s counts this run only",
                stacklevel=2,
            )
            return
        runs = [float(t) for t in meta["wall_time_s_per_run"]]
        if sum(runs) > sum(self.earlier):  # chunks resume in order: the latest holds the most
            self.earlier = runs

    def per_run(self) -> list[float]:
        return [*self.earlier, time.perf_counter() - self.started]

    def stamp(self) -> dict[str, Any]:
        runs = self.per_run()
        return {
            "wall_time_s": float(sum(runs)),
            "wall_time_s_this_run": runs[-1],
            "wall_time_s_per_run": runs,
        }


def add_distributed_args(parser) -> None:
    """``--coordinator``, ``--num-processes``, ``--process-id`` and ``--distributed``: one sweep
    over the devices of several processes (``jax.distributed``); see docs/sweeps.md."""
    from experiments.common.cli import nonnegative_int, positive_int

    g = parser.add_argument_group("several processes (jax.distributed; docs/sweeps.md)")
    env = os.environ.get
    g.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        default=env("JAX_COORDINATOR_ADDRESS"),
        help="address of process 0's coordinator (default: $JAX_COORDINATOR_ADDRESS)",
    )
    for flag, var, typ in (
        ("--num-processes", "JAX_NUM_PROCESSES", positive_int),
        ("--process-id", "JAX_PROCESS_ID", nonnegative_int),
    ):
        # argparse converts a string default with ``type``: a bad value names the flag
        g.add_argument(flag, type=typ, default=env(var), help=f"(default: ${var})")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="start jax.distributed with what the flags leave open detected by JAX "
        "(SLURM, a Cloud TPU pod, Open MPI, Kubernetes)",
    )


def init_distributed(args) -> bool:
    """Starts ``jax.distributed`` if ``args`` ask for it; call before any other jax use.

    Returns whether it started. Every process then sees all processes' devices in
    ``jax.devices()``; a sweep's model axis is sharded over all of them. On CPUs the
    collectives go through gloo.
    """
    given = {
        "coordinator_address": args.coordinator,
        "num_processes": args.num_processes,
        "process_id": args.process_id,
    }
    if not args.distributed and all(v is None for v in given.values()):
        return False
    n, i = given["num_processes"], given["process_id"]
    if n is not None and i is not None and not 0 <= i < n:
        raise SystemExit(f"error: argument --process-id: {i} is not in [0, --num-processes={n})")
    # Harmless on GPUs and TPUs: it only picks the CPU client's cross-process collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**given)
    return True


def use_compilation_cache(cache_dir: str | os.PathLike) -> pathlib.Path:
    """Turns on jax's persistent compilation cache in ``<cache_dir>/xla``; call before compiling.

    A later run of the same programs (same shapes, model count, devices and jax version) loads
    the compiled executables instead of compiling them again. Loaded executables are the ones
    a compile would produce, so the numbers are unchanged. Every program is cached, however
    short its compile (jax's default keeps only those over 1 s).
    """
    path = pathlib.Path(cache_dir).expanduser() / "xla"
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def host_devices_for(num_models: int, cores: int) -> int:
    """The CPU device count for a sweep of ``num_models`` models on ``cores`` cores.

    A sweep pads its model axis to a multiple of the device count; every padded copy is
    trained for nothing. Among ``cores`` to ``2 * cores`` devices this picks the count with the
    least padded work (then the fewest devices): 3 models on 2 cores run on 3 devices (3 units
    of work shared by 2 cores) instead of 2 devices padded to 4 models. Fewer models than cores
    get one device each.

    Examples:
      >>> host_devices_for(3, 2), host_devices_for(9, 2), host_devices_for(1, 2)
      (3, 3, 1)
    """
    if num_models <= cores:
        return max(1, num_models)
    return min(range(cores, 2 * cores + 1), key=lambda d: (-(-num_models // d) * d, d))


def sweep_devices(argv, default_inits, default_seeds, cores: int) -> int:
    """:func:`host_devices_for` the sweep that ``argv`` asks for (``--inits`` x ``--seeds``,
    else the study's defaults); read before jax starts, so from ``argv`` itself."""
    from experiments import _flag_value

    counts = []
    for flag, default in (("--inits", len(default_inits)), ("--seeds", len(default_seeds))):
        value = _flag_value(argv, flag)
        counts.append(default if value is None else len([v for v in value.split(",") if v]))
    return host_devices_for(max(1, counts[0] * counts[1]), cores)


def model_keys(inits, seeds):
    """Per model (initializer-major order): its init key and its data-order key.

    The seed alone fixes both, so initializers are compared paired, seed by seed: the same
    weights wherever they share an initializer, the same data order.
    """
    s = [int(x) for _ in inits for x in seeds]
    return stream_keys(s, INIT_STREAM), stream_keys(s, DATA_STREAM)


def run_sweep(
    *,
    out: pathlib.Path,
    config: dict[str, Any],
    inits,
    seeds,
    init_state_fn,
    loss_fn,
    metric_fn,
    optimizer,
    train,
    val,
    test,
    epochs: int,
    batch_size: int,
    steps_per_call: int,
    eval_batch_size: int,
    restart: bool = False,
    progress: bool | None = None,
    strategy: str | None = None,
    models_per_chunk: int | None = None,
    clock: WallClock | None = None,
    eager_inits=(),
) -> dict[str, Any]:
    """Trains every (initializer, seed) model as one program (`jinit.default_strategy`), resumably.

    Args:
      init_state_fn: ``(init_name, key) -> TrainState`` of one model (vmapped over seeds).
      train, val, test: pytrees of arrays (example axis first).
      models_per_chunk: train at most this many models at a time (``None``: all at once). A
        sweep whose states do not fit in device memory runs as consecutive chunks of the model
        axis, through the same compiled programs (the last chunk is padded), each chunk with its
        own checkpoints, so a stopped run resumes inside the chunk it was in. Models are
        independent, so the results do not depend on the chunking.
      clock: the study's :class:`WallClock` (default: one started now); checkpoints carry it
        across resumes.
      eager_inits: initializer names whose ``init_state_fn`` cannot be jitted (it reads values
        on the host, e.g. LSUV's loop); the others are initialized by one jitted program each.

    Returns:
      ``{"initializers": {name: per-seed curves, test metrics, mean, std}, ...timing}``.
    """
    clock = clock or WallClock()
    n_train = jax.tree.leaves(train)[0].shape[0]
    for arg, value, low in (
        ("epochs", epochs, 1),
        ("batch_size", batch_size, 1),
        ("steps_per_call", steps_per_call, 1),
        ("eval_batch_size", eval_batch_size, 1),
        ("models_per_chunk", models_per_chunk, 1),
    ):
        if value is not None or arg != "models_per_chunk":
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"run_sweep: {arg} must be an integer >= {low}, got {value!r}")
    if batch_size > n_train:
        raise ValueError(
            f"run_sweep: batch_size={batch_size} exceeds the {n_train} training examples"
        )
    if not inits or len(set(inits)) != len(inits):
        raise ValueError(f"run_sweep: inits must be distinct names, at least one, got {inits!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"run_sweep: seeds must be distinct integers, at least one, got {seeds!r}")
    init_keys, data_keys = model_keys(inits, seeds)
    s = len(seeds)
    num_models = len(inits) * s
    names = [name for name in inits for _ in seeds]  # model axis: initializer-major
    chunk = min(models_per_chunk or num_models, num_models)
    # Every device trains a slice of a chunk's models; pad the chunk (copies of its last model)
    # so that the device count divides it, and drop the copies from everything saved.
    padded = jinit.padded_size(chunk)
    mesh = jinit.model_mesh(padded)
    strategy = strategy or jinit.default_strategy()
    train, val, test = _replicated((train, val, test), mesh)
    programs = jinit.compile_programs(
        loss_fn,
        optimizer,
        metric_fn,
        eval_batch_size=eval_batch_size,
        num_models=padded,
        strategy=strategy,
        mesh=mesh,
    )
    ahead = _CompileAhead(
        programs,
        mesh,
        train=train,
        val=val,
        test=test,
        batch_size=batch_size,
        steps_per_call=steps_per_call,
    )
    bounds = [(a, min(a + chunk, num_models)) for a in range(0, num_models, chunk)]
    parts, init_s, train_s, ckpt_s, test_s = [], 0.0, 0.0, 0.0, 0.0
    try:
        for a, b in bounds:
            ckpt_dir = out / "checkpoints"
            if len(bounds) > 1:
                ckpt_dir = ckpt_dir / f"models_{a}-{b - 1}"
            part = _train_chunk(
                names[a:b],
                init_keys[a:b],
                data_keys[a:b],
                ckpt_dir=ckpt_dir,
                config=config,
                restart=restart,
                init_state_fn=init_state_fn,
                loss_fn=loss_fn,
                metric_fn=metric_fn,
                optimizer=optimizer,
                programs=programs,
                padded=padded,
                mesh=mesh,
                train=train,
                val=val,
                test=test,
                epochs=epochs,
                batch_size=batch_size,
                steps_per_call=steps_per_call,
                progress=progress,
                clock=clock,
                eager_inits=eager_inits,
                ahead=ahead,
            )
            parts.append(part)
            init_s += part["init_s"]
            train_s += part["train_s"]
            ckpt_s += part["checkpoint_s"]
            test_s += part["test_s"]
    finally:  # also on an error or Ctrl-C: no compile left running at exit
        ahead.join()

    # Merge the chunks along the model axis: per epoch, per-model lists concatenate and the
    # chunks' seconds add up (they ran one after the other).
    history = []
    for e in range(epochs):
        hs = [p["history"][e] for p in parts]
        merged = {"epoch": hs[0]["epoch"], "seconds": float(sum(h["seconds"] for h in hs))}
        for key in hs[0]:
            if key not in ("epoch", "seconds"):
                merged[key] = [v for h in hs for v in h[key]]
        history.append(merged)
    test_m = {
        k: np.concatenate([np.asarray(p["test"][k]) for p in parts]) for k in parts[0]["test"]
    }

    per_init = {}
    metrics = [k[len("val_") :] for k in history[0] if k.startswith("val_")] if history else []
    for i, name in enumerate(inits):
        sl = slice(i * s, (i + 1) * s)
        entry: dict[str, Any] = {"seeds": list(seeds)}
        for split in ("train", "val"):
            for m in metrics:
                key = f"{split}_{m}"
                entry[f"{key}_per_epoch"] = np.array(
                    [np.asarray(h[key])[sl] for h in history]
                ).T.tolist()
        for m, v in test_m.items():
            v = np.asarray(v)[sl]
            entry[f"test_{m}"] = v.tolist()
            entry[f"test_{m}_mean"] = float(v.mean())
            entry[f"test_{m}_std"] = float(v.std())
        per_init[name] = entry
    epoch_s = [h["seconds"] for h in history]
    return {
        "initializers": per_init,
        "epoch_seconds": epoch_s,
        "init_s": init_s,
        "train_s_this_run": train_s,  # includes checkpoint_s (written after every epoch)
        "checkpoint_s": ckpt_s,
        "test_eval_s": test_s,
        "resumed_from_epoch": min(p["start_epoch"] for p in parts),
        "num_models": num_models,
        "models_per_chunk": chunk,
        "chunks": len(bounds),
        "sharded_over_devices": 1 if mesh is None else int(mesh.size),
        "padded_models": padded * len(bounds) - num_models,
        "sweep_strategy": strategy,
        "examples_per_s_per_model": [n_train // batch_size * batch_size / t for t in epoch_s],
        "examples_per_s": [num_models * (n_train // batch_size * batch_size) / t for t in epoch_s],
        "config": config,
        "environment": environment(),
        **clock.stamp(),
    }


def _train_chunk(
    names,
    init_keys,
    data_keys,
    *,
    ckpt_dir,
    config,
    restart,
    init_state_fn,
    loss_fn,
    metric_fn,
    optimizer,
    programs,
    padded,
    mesh,
    train,
    val,
    test,
    epochs,
    batch_size,
    steps_per_call,
    progress,
    clock,
    eager_inits,
    ahead,
) -> dict[str, Any]:
    """One chunk of a sweep's models, from init (or its last checkpoint) to the test metrics."""
    n = len(names)
    n_train = jax.tree.leaves(train)[0].shape[0]
    data_keys = jinit.pad_models(data_keys, padded)

    def shuffle_keys(epoch):
        return jax.vmap(lambda k: jax.random.fold_in(k, epoch))(data_keys)

    t0 = time.perf_counter()
    init, abstract = _init_program(names, init_keys, init_state_fn, eager_inits)
    first_idx = lambda: jinit.epoch_indices(shuffle_keys(0), n_train, batch_size)  # noqa: E731
    ahead.start(abstract, padded, first_idx)
    state = init()
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0

    if restart and jax.process_count() > 1:  # process 0 deletes; the others wait for it
        if jax.process_index() == 0 and pathlib.Path(ckpt_dir).exists():
            shutil.rmtree(ckpt_dir)
        multihost_utils.sync_global_devices(f"restart {ckpt_dir}")
        restart = False
    ckpt = EpochCheckpoints(ckpt_dir, config, restart=restart)
    history: list[dict] = []
    ckpt_s = [0.0]  # seconds spent writing checkpoints
    start_epoch = 0
    restored = ckpt.restore(jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state))
    if restored is not None:
        state, meta = restored
        history, start_epoch = meta["history"], meta["epochs_done"]
        clock.resume(meta, str(ckpt_dir))
        print(f"resuming after epoch {start_epoch} from {ckpt_dir}", file=sys.stderr)
    state = jinit.pad_models(state, padded)
    if mesh is not None and not mesh.is_multi_process:
        # placed from the host: a device array is split by a compiled slicing program per
        # leaf shape (6 compiles, ~0.3 s on a cold start); the state is small
        state = jax.tree.map(np.asarray, state)
    state = jinit.shard_models(state, mesh)

    def real(tree):
        return jax.tree.map(lambda a: a[:n], tree)

    def on_epoch_end(result, state):
        history.append(
            {
                "epoch": result.epoch + 1,
                "seconds": result.seconds,
                **{f"train_{k}": v[:n].tolist() for k, v in result.train.items()},
                **{f"val_{k}": v[:n].tolist() for k, v in result.val.items()},
            }
        )
        t = time.perf_counter()
        ckpt.save(  # every process takes part; process 0 alone writes (the state is gathered)
            result.epoch,
            real(gathered(state)),
            {"history": history, "wall_time_s_per_run": clock.per_run()},
        )
        ckpt_s[0] += time.perf_counter() - t

    ahead.train_ready.wait()  # else the first call would compile the train program again
    t1 = time.perf_counter()
    try:
        state, _ = jinit.fit(
            state,
            loss_fn=loss_fn,
            optimizer=optimizer,
            train_data=train,
            val_data=val,
            metric_fn=metric_fn,
            epochs=epochs,
            batch_size=batch_size,
            shuffle_keys=shuffle_keys,
            num_models=padded,
            start_epoch=start_epoch,
            steps_per_call=steps_per_call,
            progress=progress,
            on_epoch_end=on_epoch_end,
            programs=programs,
            checkpoint=str(ckpt_dir),  # fit's NaN error and Ctrl-C line name it
        )
    except KeyboardInterrupt:  # fit printed where the last checkpoint is; exit as a shell does
        ckpt.close()
        raise SystemExit(130) from None
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    test_m = real(gathered(programs["evaluate"](state, test)))
    test_s = time.perf_counter() - t2
    ckpt.close()
    return {
        "history": history,
        "test": test_m,
        "init_s": init_s,
        "train_s": train_s,
        "checkpoint_s": ckpt_s[0],
        "test_s": test_s,
        "start_epoch": start_epoch,
    }


def _replicated(tree, mesh):
    """``tree`` copied to every device of ``mesh`` once (the programs read it replicated),
    instead of a copy to the other devices at every call (no change to the steady-state step
    time measurable on 2 loaded cores; fewer transfers, and the arguments' shardings are then
    known for :class:`_CompileAhead`)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    if not sharding.is_fully_addressable:  # jax.distributed: the programs place it per call
        return tree
    return jax.device_put(tree, sharding)


def _init_program(names, keys, init_state_fn, eager_inits):
    """``(run, abstract)``: ``run()`` returns the chunk's stacked states in model order, each
    initializer's run of models one vmapped ``init_state_fn``; ``abstract`` is their shapes
    (``None`` when some are computed on the host).

    All runs but those of ``eager_inits`` (host loops such as LSUV's) are ONE jitted program,
    concatenation included: a cold start compiles one program instead of one per initializer
    (on the IMDB study 1.9 s instead of 4.1 s of CPU, the values bitwise the same), and the
    persistent compilation cache keeps it.
    """
    runs, i = [], 0  # (name, first, end) of each run of equal names
    while i < len(names):
        j = i
        while j < len(names) and names[j] == names[i]:
            j += 1
        runs.append((names[i], i, j))
        i = j

    def stack(name, ks):
        return jinit.init_models(lambda k: init_state_fn(name, k), ks)

    def concat(stacks):
        return jax.tree.map(lambda *xs: jax.numpy.concatenate(xs), *stacks)

    traced = [r for r in runs if r[0] not in eager_inits]
    if len(traced) == len(runs):
        lowered = jax.jit(lambda ks: concat([stack(nm, ks[a:b]) for nm, a, b in runs])).lower(keys)
        return lambda: lowered.compile()(keys), lowered.out_info

    def run():
        done = iter(
            jax.jit(lambda ks: [stack(nm, ks[a:b]) for nm, a, b in traced])(keys) if traced else []
        )
        return concat(
            [stack(nm, keys[a:b]) if nm in eager_inits else next(done) for nm, a, b in runs]
        )

    return run, None


class _CompileAhead:
    """Compiles a sweep's train and evaluate programs in a thread while the models are
    initialized: XLA compiles without holding the GIL, so another core does it (a cold
    start's ~2 s of compiles overlap the init's instead of following it).

    Only when the model axis is sharded over this process's devices (the arguments' shardings
    are then known in advance). Nothing computed changes: a program's first call finds the
    executable its own compile would have produced, and a program this did not compile, or
    compiled for other arguments, is compiled by that call as before.
    """

    def __init__(self, programs, mesh, *, train, val, test, batch_size, steps_per_call):
        self.thread, self.train_ready = None, threading.Event()
        self.on = mesh is not None and not mesh.is_multi_process and programs.stepping != "step"
        self.programs, self.mesh, self.data = programs, mesh, (train, val, test)
        steps = jax.tree.leaves(train)[0].shape[0] // batch_size
        # the steps per call jinit.fit runs: the largest divisor of the epoch's steps up to
        # steps_per_call (a call with another count compiles its own program)
        self.per_call = max(d for d in range(1, min(steps, steps_per_call) + 1) if not steps % d)

    def start(self, abstract_state, num_models: int, first_idx) -> None:
        """Starts the thread (once) for states shaped as ``abstract_state`` padded to
        ``num_models``; ``first_idx()`` returns an epoch's index array as ``fit`` makes it."""
        if not self.on or abstract_state is None or self.thread is not None:
            self.train_ready.set()
            return
        sharding = NamedSharding(self.mesh, PartitionSpec(self.mesh.axis_names[0]))
        # as _train_chunk places it: padded, from the host (so never weakly typed)
        state = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((num_models, *a.shape[1:]), a.dtype, sharding=sharding),
            abstract_state,
        )
        self.thread = threading.Thread(target=self._work, args=(state, first_idx), daemon=True)
        self.thread.start()

    def _work(self, state, first_idx):
        train, val, test = self.data
        progs = self.programs
        try:
            progs["train"].lower(state, progs.guard(0), train, first_idx(), self.per_call).compile()
        except Exception:  # noqa: BLE001, S110 - the first call compiles it and reports errors
            pass
        finally:
            self.train_ready.set()
        for data in (val, test):
            try:
                progs["evaluate"].lower(state, data).compile()
            except Exception:  # noqa: BLE001, S110 - as above
                pass

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()


def gathered(tree):
    """``tree`` as numpy on every process: a global array whose model axis is sharded over
    several processes' devices (``jax.distributed``) is gathered from all of them."""

    def get(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(get, tree)


def run_study(
    args,
    cfg,
    *,
    train,
    val,
    test,
    source: str,
    t_start: float,
    t_data: float,
    title: str,
    extra: dict[str, Any] | None = None,
    **sweep_kw,
) -> dict[str, Any]:
    """:func:`run_sweep` with a study's config and arguments, then its results file and plot.

    ``cfg`` needs ``inits, seeds, epochs, batch_size, steps_per_call, eval_batch_size``;
    ``sweep_kw`` carries ``init_state_fn, loss_fn, metric_fn, optimizer``.
    """
    n_train = int(jax.tree.leaves(train)[0].shape[0])
    if cfg.batch_size > n_train:  # known only now that the data is loaded
        raise SystemExit(
            f"error: argument --batch-size: {cfg.batch_size} exceeds the {n_train} training "
            "examples" + (" of a --quick run" if getattr(args, "quick", False) else "")
        )
    out = pathlib.Path(args.out)
    clock = WallClock(t_start)
    results = run_sweep(
        out=out,
        config=dataclasses.asdict(cfg),
        inits=cfg.inits,
        seeds=cfg.seeds,
        train=train,
        val=val,
        test=test,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        steps_per_call=cfg.steps_per_call,
        eval_batch_size=cfg.eval_batch_size,
        restart=args.restart,
        progress=False if args.no_progress else None,
        models_per_chunk=getattr(args, "models_per_chunk", None),
        clock=clock,
        **sweep_kw,
    )
    sizes = {
        k: int(jax.tree.leaves(d)[0].shape[0])
        for k, d in (("train", train), ("val", val), ("test", test))
    }
    results.update(
        {
            **clock.stamp(),
            "data_load_s": t_data,
            "data": {"source": source, **sizes},
            **(extra or {}),
        }
    )
    if jax.process_index() != 0:  # under jax.distributed, process 0 writes the results
        return results
    write_json_atomic(out / "results.json", results)
    curves = {n: np.array(r["val_accuracy_per_epoch"]) for n, r in results["initializers"].items()}
    plot_curves(
        curves,
        out / "val_accuracy.png",
        ylabel="validation accuracy",
        title=f"{title} ({len(cfg.seeds)} seeds, mean ± std)",
    )
    return results


def print_study(results: dict[str, Any], out) -> None:
    if jax.process_index() != 0:  # under jax.distributed, process 0 reports
        return
    for name, r in results["initializers"].items():
        accs = ", ".join(f"{a:.4f}" for a in r["test_accuracy"])
        n = len(r["test_accuracy"])  # one seed has no spread: say so rather than print ± 0
        spread = f" ± {r['test_accuracy_std']:.4f}" if n > 1 else " (1 seed: no spread)"
        print(f"{name:>16}: test accuracy {r['test_accuracy_mean']:.4f}{spread}  (seeds: {accs})")
    runs = len(results.get("wall_time_s_per_run", [])) or 1
    over = (
        f" over {runs} runs (this one {results['wall_time_s_this_run']:.1f} s)" if runs > 1 else ""
    )
    print(f"wall time {results['wall_time_s']:.1f} s{over}; results in {out}")


def keras_split(data, cfg):
    """(train, val, test) dicts of ``{"x", "y"}`` as Keras's ``fit(validation_split=...)``.

    ``data`` has ``x_train, y_train, x_test, y_test``; ``cfg`` has ``validation_split``,
    ``train_limit`` and ``test_limit`` (first N examples, for --quick). Keras holds out the
    LAST ``validation_split`` fraction of the (already shuffled) training set.
    """
    x, y = data.x_train, data.y_train
    if cfg.train_limit:
        x, y = x[: cfg.train_limit], y[: cfg.train_limit]
    n_fit = len(x) - int(len(x) * cfg.validation_split)
    xt, yt = data.x_test, data.y_test
    if cfg.test_limit:
        xt, yt = xt[: cfg.test_limit], yt[: cfg.test_limit]
    return {"x": x[:n_fit], "y": y[:n_fit]}, {"x": x[n_fit:], "y": y[n_fit:]}, {"x": xt, "y": yt}
