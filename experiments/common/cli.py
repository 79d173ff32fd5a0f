"""The studies' command lines: argparse types that name the bad flag, and the shared flags."""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Any

import jax
import numpy as np

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
    created here: a study's process 0 creates it; where it cannot, it says so in one line)."""
    if not value.strip():  # pathlib reads "" as ".", the current folder
        raise argparse.ArgumentTypeError("an empty path is not a folder; give one, e.g. runs/x")
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
    p = _out_quick_parser(
        description,
        default_out,
        "output directory (results.json, plots, checkpoints)",
        "tiny smoke run (a few hundred examples, 1 epoch)",
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


def paper_parser(description: str, name: str) -> argparse.ArgumentParser:
    """--out (default ``runs/papers/<name>``) and --quick: the flags of every paper reproduction."""
    return _out_quick_parser(
        description,
        f"runs/papers/{name}",
        "output directory",
        "smoke run (seconds; verdicts not meaningful)",
    )


def _out_quick_parser(description, default_out, out_help, quick_help) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=writable_dir, default=default_out, help=out_help)
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p
