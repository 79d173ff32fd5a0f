"""What every study shares: arguments, resumable checkpoints, results files and plots.

Nothing here is part of the library: the studies are thin scripts over ``jinit``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import platform
import sys
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python experiments/x.py` puts experiments/ first, not the repo
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402


def base_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--out", default=default_out, help="output directory (results.json, plots, checkpoints)"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="dataset folder (default: $JINIT_DATA_DIR, then ~/.cache/jinit/data)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="cache for preprocessed arrays (default: $JINIT_CACHE_DIR, then ~/.cache/jinit)",
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny smoke run (a few hundred examples, 1 epoch)"
    )
    p.add_argument(
        "--restart", action="store_true", help="ignore existing checkpoints in --out and start over"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--models-per-chunk",
        type=positive_int,
        default=None,
        help="train at most N models at a time (for sweeps larger than device memory)",
    )
    return p


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
            options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False),
        )

    def save(self, epoch: int, state: Any, meta: dict[str, Any]) -> None:
        ocp = self._ocp
        meta = {**meta, "config_hash": self.hash, "epochs_done": epoch + 1}
        self.manager.save(
            epoch + 1,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )
        self.manager.wait_until_finished()

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

    if models_per_chunk is not None and models_per_chunk < 1:
        raise ValueError(f"models_per_chunk must be >= 1 or None, got {models_per_chunk}")
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
    n_train = jax.tree.leaves(train)[0].shape[0]
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
        checkpoint=str(ckpt_dir),  # named by fit's NaN error and Ctrl-C line (training, i15c)
    )
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


def parse_names(parser: argparse.ArgumentParser, flag: str, value: str, choices) -> tuple[str, ...]:
    """A non-empty, duplicate-free comma list of known names, else ``parser.error``."""
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = [s for s in names if s not in choices]
    if not names:
        parser.error(f"{flag}: give at least one of {sorted(choices)}")
    if unknown:
        parser.error(f"{flag}: unknown {unknown}; choose from {sorted(choices)}")
    if len(set(names)) != len(names):
        parser.error(f"{flag}: duplicate names in {list(names)}")
    return names


def parse_seeds(parser: argparse.ArgumentParser, value: str) -> tuple[int, ...]:
    """A non-empty, duplicate-free comma list of integer seeds, else ``parser.error``."""
    try:
        seeds = tuple(int(s) for s in value.split(",") if s.strip())
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {value!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error(f"--seeds: expected distinct comma-separated integers, got {value!r}")
    return seeds


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return n


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
