"""What every study shares: arguments, resumable checkpoints, results files and plots.

Nothing here is part of the library: the studies are thin scripts over ``jinit``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import platform
import re
import sys
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python experiments/x.py` puts experiments/ first, not the repo
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402

# ------------------------------------------------------------------ command-line arguments
# argparse `type=` functions: each raises ArgumentTypeError, so argparse's message reads
# "argument --flag: <what was wrong>" and the study exits with status 2 before any work.


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    return _int(value, 1)


def nonnegative_int(value: str) -> int:
    """argparse type: an integer >= 0 (e.g. a seed)."""
    return _int(value, 0)


def _int(value: str, minimum: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected an integer >= {minimum}, got {value!r}"
        ) from None
    if n < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}")
    return n


def _float(value: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not np.isfinite(x):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return x


def nonnegative_float(value: str) -> float:
    """argparse type: a finite number >= 0 (e.g. a standard deviation or a variance)."""
    x = _float(value)
    if x < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return x


def fraction(value: str) -> float:
    """argparse type: a number in [0, 1]."""
    x = _float(value)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value!r}")
    return x


def seed_list(value: str) -> tuple[int, ...]:
    """argparse type: a non-empty comma list of distinct integers >= 0."""
    parts = [s.strip() for s in value.split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers >= 0 (e.g. 0,1,2), got {value!r}"
        )
    if not all(parts):
        raise argparse.ArgumentTypeError(f"empty entry in {value!r}; expected e.g. 0,1,2")
    seeds = tuple(nonnegative_int(s) for s in parts)
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise argparse.ArgumentTypeError(f"duplicate seeds {dup} in {value!r}; seeds must differ")
    return seeds


def name_list(choices) -> Any:
    """argparse type factory: a non-empty comma list of distinct names from ``choices``."""
    valid = ", ".join(sorted(choices))

    def parse(value: str) -> tuple[str, ...]:
        names = tuple(s.strip() for s in value.split(","))
        if not any(names) or not all(names):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated names from {valid}, got {value!r}"
            )
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown} in {value!r}; valid: {valid}")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise argparse.ArgumentTypeError(f"duplicate names {dup} in {value!r}")
        return names

    parse.__name__ = "name list"
    return parse


def existing_dir(value: str) -> str:
    """argparse type: a folder that exists (checked at once, before any download or work)."""
    path = pathlib.Path(value).expanduser()
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{str(path)!r} {what}")
    return str(path)


def writable_dir(value: str) -> str:
    """argparse type: a folder that exists and is writable, or can be created (nothing is
    created here)."""
    path = pathlib.Path(value).expanduser()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise argparse.ArgumentTypeError(
            f"{str(path)!r} cannot be a folder: {str(probe)!r} is a file"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"{str(path)!r} is not writable ({str(probe)!r} is read-only)"
        )
    return str(path)


STUDY_FLAGS = ("data-dir", "cache-dir", "restart", "models-per-chunk")


def base_parser(
    description: str, default_out: str, flags: tuple[str, ...] = ()
) -> argparse.ArgumentParser:
    """--out, --quick and --no-progress, plus those of ``STUDY_FLAGS`` the study honours.

    A study offers only the flags it uses: a flag it would ignore is an error, not a no-op.
    """
    unknown = sorted(set(flags) - set(STUDY_FLAGS))
    if unknown:
        raise ValueError(f"base_parser: unknown flags {unknown}; valid: {STUDY_FLAGS}")
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--out",
        type=writable_dir,
        default=default_out,
        help="output directory (results.json, plots, checkpoints)",
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny smoke run (a few hundred examples, 1 epoch)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    if "data-dir" in flags:
        p.add_argument(
            "--data-dir",
            type=existing_dir,
            default=None,
            help="dataset folder (default: $JINIT_DATA_DIR, then ~/.cache/jinit/data, then a "
            "tensorflow-datasets download); a folder given here must exist",
        )
    if "cache-dir" in flags:
        p.add_argument(
            "--cache-dir",
            type=writable_dir,
            default=None,
            help="cache for preprocessed arrays (default: $JINIT_CACHE_DIR, then ~/.cache/jinit)",
        )
    if "restart" in flags:
        p.add_argument(
            "--restart",
            action="store_true",
            help="ignore existing checkpoints in --out and start over",
        )
    if "models-per-chunk" in flags:
        p.add_argument(
            "--models-per-chunk",
            type=positive_int,
            default=None,
            help="train at most N models at a time (for sweeps larger than device memory)",
        )
    return p


def add_sweep_args(
    p: argparse.ArgumentParser, inits, default_inits, default_seeds, *, epochs: int, batch_size: int
) -> None:
    """The flags of a seed sweep over initializers: --inits, --seeds, --epochs, --batch-size,
    --host-devices (each checked by its argparse type)."""
    p.add_argument(
        "--inits",
        type=name_list(inits),
        default=tuple(default_inits),
        help=f"comma-separated, from {', '.join(sorted(inits))} (default {','.join(default_inits)})",
    )
    p.add_argument(
        "--seeds",
        type=seed_list,
        default=tuple(default_seeds),
        help=f"comma-separated distinct integer seeds >= 0 (default {','.join(map(str, default_seeds))})",
    )
    p.add_argument(
        "--epochs", type=positive_int, default=None, help=f"default {epochs} (1 with --quick)"
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help=f"default {batch_size}")
    p.add_argument(
        "--host-devices",
        type=positive_int,
        default=None,
        help="CPU only: split the sweep over N XLA host devices (default: one per core, at most "
        "4); read when the script starts, before jax",
    )


def check_host_devices(args) -> None:
    """Exits naming --host-devices when jax already runs with another number of CPU devices
    (the flag only takes effect in a fresh process: ``python -m experiments.<study>``)."""
    n = getattr(args, "host_devices", None)
    if n is None or jax.default_backend() != "cpu":
        return
    if jax.local_device_count() != n:
        raise SystemExit(
            f"error: argument --host-devices: {n} requested but jax already started with "
            f"{jax.local_device_count()} CPU device(s); run the study as its own process "
            "(python -m experiments.<study> --host-devices N)"
        )


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Writes JSON through a temporary file and ``os.replace``: never a half-written file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as e:  # e.g. a full disk: say which file, keep the previous one
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, f"could not write {path}: {e.strerror or e}") from e
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o):
    if isinstance(o, np.ndarray | np.generic | jax.Array):
        return np.asarray(o).tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def environment() -> dict[str, Any]:
    """jax version, backend, devices and the machine, for results files."""
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def write_error(e: BaseException) -> str | None:
    """Why a write failed (e.g. "No space left on device") if ``e`` or its causes is an OS
    write error, else ``None``. tensorstore, under orbax, reports it as a ValueError whose
    message carries ``[os_error_code='28']``."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno is not None:
            return e.strerror or os.strerror(e.errno)
        code = re.search(r"os_error_code='?(\d+)", str(e))
        if code:
            return os.strerror(int(code[1]))
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


class _Quiet(logging.Filter):
    """Holds back absl's error logs (orbax logs each failing thread's whole traceback)."""

    def __init__(self):
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record):
        self.held.append(record)
        return False


class EpochCheckpoints:
    """Orbax checkpoints of a study's train state + history after every finished epoch.

    Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
    run stopped at any moment resumes from its last finished epoch. A checkpoint written under
    another configuration (its hash is stored with it) is never resumed from.
    """

    def __init__(self, directory: str | os.PathLike, config: dict[str, Any], restart: bool = False):
        import orbax.checkpoint as ocp  # experiments extra

        self._ocp = ocp
        self.directory = pathlib.Path(directory).resolve()
        self.hash = config_hash(config)
        if restart and self.directory.exists():
            import shutil

            shutil.rmtree(self.directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=2,
                enable_async_checkpointing=False,
                cleanup_tmp_directories=True,  # what a killed or failed save left behind
            ),
        )

    def save(self, epoch: int, state: Any, meta: dict[str, Any]) -> None:
        ocp = self._ocp
        meta = {**meta, "config_hash": self.hash, "epochs_done": epoch + 1}
        quiet = _Quiet()
        absl = logging.getLogger("absl")
        absl.addFilter(quiet)
        try:
            self.manager.save(
                epoch + 1,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
            )
            self.manager.wait_until_finished()
        except Exception as e:
            why = write_error(e)
            if why is None:
                raise
            # Orbax renames a checkpoint into place only when it is complete: the previous
            # one is intact. One line instead of orbax's tracebacks of every writer thread.
            raise SystemExit(
                f"error: could not write checkpoint {epoch + 1} to {self.directory}: {why}; "
                f"last complete checkpoint: {self.last_path()}. Free space and rerun the same "
                "command to resume from it."
            ) from None
        finally:
            absl.removeFilter(quiet)
        for record in quiet.held:  # a successful save: pass on whatever was logged
            absl.handle(record)

    def last_path(self) -> str:
        step = self.manager.latest_step()
        return f"{self.directory / str(step)} (epoch {step})" if step else "none yet"

    def restore(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
        """``(state, meta)`` of the latest checkpoint of this configuration, else ``None``."""
        ocp = self._ocp
        step = self.manager.latest_step()
        if step is None:
            return None
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]
        if meta.get("config_hash") != self.hash:
            raise SystemExit(
                f"{self.directory} holds checkpoints of another configuration "
                f"(hash {meta.get('config_hash')} != {self.hash}); use another --out or --restart"
            )
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        )
        return restored["state"], meta

    def close(self) -> None:
        self.manager.close()


def plot_curves(
    curves: dict[str, np.ndarray],
    path: str | os.PathLike,
    *,
    ylabel: str,
    title: str,
    xlabel: str = "epoch",
) -> None:
    """One line per name: the mean over seeds (axis 0) with a band of +-1 std and min/max dots.

    Args:
      curves: name -> array ``(seeds, epochs)``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, v in curves.items():
        v = np.asarray(v, np.float64)
        x = np.arange(1, v.shape[1] + 1)
        mean, std = v.mean(0), v.std(0)
        (line,) = ax.plot(x, mean, marker="o", label=f"{name} (n={v.shape[0]})")
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.plot(x, v.min(0), ":", color=line.get_color(), lw=0.8)
        ax.plot(x, v.max(0), ":", color=line.get_color(), lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def model_keys(inits, seeds):
    """Per model (initializer-major order): its init key and its data-order key.

    The seed alone fixes both, so initializers are compared paired, seed by seed: the same
    weights wherever they share an initializer, the same data order.
    """
    s = [int(x) for _ in inits for x in seeds]
    init_keys = jax.numpy.stack([jax.random.fold_in(jax.random.key(x), 0) for x in s])
    data_keys = jax.numpy.stack([jax.random.fold_in(jax.random.key(x), 1) for x in s])
    return init_keys, data_keys


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

    Returns:
      ``{"initializers": {name: per-seed curves, test metrics, mean, std}, ...timing}``.
    """
    import jinit

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
    programs = jinit.compile_programs(
        loss_fn,
        optimizer,
        metric_fn,
        eval_batch_size=eval_batch_size,
        num_models=padded,
        strategy=strategy,
        mesh=mesh,
    )
    bounds = [(a, min(a + chunk, num_models)) for a in range(0, num_models, chunk)]
    parts, init_s, train_s = [], 0.0, 0.0
    for a, b in bounds:
        ckpt_dir = out / "checkpoints"
        if len(bounds) > 1:
            ckpt_dir = ckpt_dir / f"models_{a}-{b - 1}"
        part = _train_chunk(
            jinit,
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
        )
        parts.append(part)
        init_s += part["init_s"]
        train_s += part["train_s"]

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
        "train_s_this_run": train_s,
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
    }


def _train_chunk(
    jinit,
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
) -> dict[str, Any]:
    """One chunk of a sweep's models, from init (or its last checkpoint) to the test metrics."""
    n = len(names)
    t0 = time.perf_counter()
    # Initialize each initializer's run of models with one vmapped call, in model order.
    stacks, i = [], 0
    while i < n:
        j = i
        while j < n and names[j] == names[i]:
            j += 1
        stacks.append(
            jinit.init_models(lambda k, nm=names[i]: init_state_fn(nm, k), init_keys[i:j])
        )
        i = j
    state = jax.tree.map(lambda *xs: jax.numpy.concatenate(xs), *stacks)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0

    ckpt = EpochCheckpoints(ckpt_dir, config, restart=restart)
    history: list[dict] = []
    start_epoch = 0
    restored = ckpt.restore(jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state))
    if restored is not None:
        state, meta = restored
        history, start_epoch = meta["history"], meta["epochs_done"]
        print(f"resuming after epoch {start_epoch} from {ckpt_dir}", file=sys.stderr)
    state = jinit.shard_models(jinit.pad_models(state, padded), mesh)
    data_keys = jinit.pad_models(data_keys, padded)

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
        ckpt.save(result.epoch, real(state), {"history": history})

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
            shuffle_keys=lambda e: jax.vmap(lambda k: jax.random.fold_in(k, e))(data_keys),
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
    test_m = real(jax.tree.map(np.asarray, programs["evaluate"](state, test)))
    ckpt.close()
    return {
        "history": history,
        "test": test_m,
        "init_s": init_s,
        "train_s": train_s,
        "start_epoch": start_epoch,
    }


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
        **sweep_kw,
    )
    sizes = {
        k: int(jax.tree.leaves(d)[0].shape[0])
        for k, d in (("train", train), ("val", val), ("test", test))
    }
    results.update(
        {
            "wall_time_s": time.perf_counter() - t_start,
            "data_load_s": t_data,
            "data": {"source": source, **sizes},
            **(extra or {}),
        }
    )
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
    for name, r in results["initializers"].items():
        accs = ", ".join(f"{a:.4f}" for a in r["test_accuracy"])
        print(
            f"{name:>16}: test accuracy {r['test_accuracy_mean']:.4f} ± "
            f"{r['test_accuracy_std']:.4f}  (seeds: {accs})"
        )
    print(f"wall time {results['wall_time_s']:.1f} s; results in {out}")


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
