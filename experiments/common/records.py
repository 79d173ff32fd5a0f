"""Results files: strict JSON written atomically, stamped with the machine, versions and command."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import shlex
import sys
import tempfile
from typing import Any

import jax
import numpy as np

_VERSIONS = ("jax", "jaxlib", "flax", "optax", "numpy")


def environment() -> dict[str, Any]:
    """Where and how a result was produced: the one stamp of every results file.

    Returns:
      ``cpu`` (model name from ``/proc/cpuinfo``, else ``platform.processor()``), ``cores``
      (``os.cpu_count()``), ``platform``, ``python`` and the versions of jax, jaxlib, flax,
      optax and numpy; jax's ``backend``, ``devices`` and ``device_kind``; ``xla_flags``;
      ``date`` (UTC, ISO 8601, seconds) and ``command`` (the command line as typed, e.g.
      ``python -m experiments.imdb_rnn --quick``).
    """
    versions = {}
    for name in _VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    argv[0] = pathlib.Path(argv[0]).name
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(argv),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_of(results: dict[str, Any]) -> dict[str, Any]:
    """The environment a results file states, in :func:`environment`'s keys. Files written
    before it was the one stamp kept the CPU, cores and versions under ``machine``, and the
    core count as ``cpu_count``."""
    env = {**results.get("environment", {}), **results.get("machine", {})}
    if "cores" not in env and "cpu_count" in env:
        env["cores"] = env["cpu_count"]
    return env


def describe_machine(env: dict[str, Any]) -> str:
    """The line a published table states its machine with: CPU model and cores, the versions
    of jax, jaxlib, flax and optax, and the date; what a results file did not record is said."""
    cpu = env.get("cpu") or "CPU model not recorded"
    cores = env.get("cores", env.get("cpu_count"))
    cores = f"{cores} cores" if cores else "cores not recorded"
    versions = ", ".join(
        f"{name} {env[name] or 'not recorded'}" if env.get(name) else f"{name} not recorded"
        for name in ("jax", "jaxlib", "flax", "optax")
    )
    return f"{cpu} ({cores}); {versions}; {env.get('date') or 'date not recorded'}"


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def strict_json(obj: Any) -> Any:
    """``obj`` with arrays as lists and NaN/inf as ``None``: strict JSON (diverged runs)."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray | jax.Array):
        return strict_json(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``strict_json(obj)`` through a temporary file and ``os.replace``: never a
    half-written file, never a bare NaN."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(strict_json(obj), f, indent=2, allow_nan=False)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as e:  # e.g. a full disk: say which file, keep the previous one
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, f"could not write {path}: {e.strerror or e}") from e
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


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
