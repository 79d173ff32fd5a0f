"""The main job against the seed's Keras script, side by side in one run, on the full IMDB data.

Every row is its own process, timed end to end (start-up, data, compile, training, evaluation,
checkpoints; the tokenized arrays are cached first, untimed, so no row pays for tokenization):

* ``jinit-1-cold``: ``python -m experiments.imdb_rnn --seeds 0`` (3 inits x 1 seed x 5 epochs)
  with an empty persistent compilation cache (a first run on a machine: every program
  compiled);
* ``jinit-1-warm``: the same command again (its programs loaded from that cache);
* ``jinit-3-cold``, ``jinit-3-warm``: the same with ``--seeds 0,1,2`` (9 models), for the
  seed-sweep ratio of issue 18 (3 seeds under 1.8x the 1-seed time);
* ``keras``: ``benchmarks/_keras_imdb.py`` under ``--keras-python`` (an environment with
  tensorflow; never a jinit dependency) on the same token arrays, 3 inits one after the other;
* ``profile``: ``benchmarks/_imdb_profile.py``, CPU and wall ms per model-step of the sweep's
  train step part by part (forward + backward, Adam, the guard's norm and select), for 3 and 9
  models, ``lax.map`` and ``vmap``, on the study's device count for 9 models;
* ``layouts``: ``benchmarks/_imdb_layouts.py``, CPU and wall ms per real model-step of the
  train program for M = 1, 2, 3, 5, 9 models in every layout (1, 2 or 3 XLA CPU devices, one
  device on one core, ``map`` and ``vmap``, 125 steps per call, an unrolled time scan), and
  the recurrence's matmul for 1 model, 9 batched and 9 as one matmul: whether a sweep of M
  models costs less than M single models in any layout.

With ``--repeats N`` the selected rows run N rounds, interleaved (1 seed, then 3 seeds, in every
round), so a load that comes and goes hits both; the ratios are per round, and their medians
are reported. Each row also records the CPU time of its process (user + system), which a
shared machine distorts less than wall time, and a breakdown from the study's results file:
start-up (process wall minus the study's own clock), data, init, compile (the first epoch's
excess over the median epoch), epochs (training + validation), checkpoints, test evaluation,
and the rest (other: program and checkpoint set-up, waiting for a program compiled ahead).

Prints a table and writes ``imdb_keras.{json,md}`` to ``--out`` (default docs/benchmarks;
``--no-write`` to skip).

    python benchmarks/imdb_keras.py --keras-python /path/to/tf-venv/bin/python
    python benchmarks/imdb_keras.py --only jinit --repeats 2     # the seed-sweep ratio alone
    python benchmarks/imdb_keras.py --only jinit-1-cold,jinit-3-cold,layouts --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from experiments import common, default_host_devices
from experiments.data import imdb

REPO = pathlib.Path(__file__).resolve().parents[1]
INITS = "uniform,glorot_uniform,he_normal"
JINIT_ROWS = {  # name -> (seeds, cold)
    "jinit-1-cold": ("0", True),
    "jinit-1-warm": ("0", False),
    "jinit-3-cold": ("0,1,2", True),
    "jinit-3-warm": ("0,1,2", False),
}
ROWS = (*JINIT_ROWS, "keras", "profile", "layouts")
NOT_STUDY = ("profile", "layouts")  # rows that are not a run of the study


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """``(wall s, CPU s, stdout)`` of ``cmd`` run to completion in the repository root."""
    c, t = _children_cpu(), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    wall, cpu = time.perf_counter() - t, _children_cpu() - c
    if out.returncode:
        raise SystemExit(f"error: {' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall, cpu, out.stdout


def breakdown(res: dict, wall: float) -> dict[str, float]:
    """Where a study run's wall time went, in seconds, from its results file."""
    ep = res["epoch_seconds"]
    compile_s = ep[0] - statistics.median(ep[1:]) if len(ep) > 1 else 0.0
    parts = {
        "startup": wall - res["wall_time_s_this_run"],
        "data": res["data_load_s"],
        "init": res["init_s"],
        "compile": compile_s,
        "epochs": sum(ep) - compile_s,
        "checkpoints": res["checkpoint_s"],
        "test_eval": res["test_eval_s"],
    }
    # the rest of the study's clock: setting up the programs and checkpoints, waiting for a
    # program compiled ahead, the results file (so that the parts add up to the wall time)
    parts["other"] = wall - sum(parts.values())
    return parts


def jinit_run(
    seeds: str, out: pathlib.Path, cache: pathlib.Path, data_dir: str | None, host_devices
) -> dict:
    # -m from the repository root: this checkout's experiments package, whatever is installed
    cmd = [sys.executable, "-m", "experiments.imdb_rnn", "--seeds", seeds, "--inits", INITS]
    cmd += ["--out", str(out), "--restart", "--no-progress", "--cache-dir", str(cache)]
    cmd += ["--data-dir", data_dir] if data_dir else []
    cmd += ["--host-devices", str(host_devices)] if host_devices else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    wall, cpu, _ = timed(cmd, env)
    res = json.loads((out / "results.json").read_text())
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "devices": res["sharded_over_devices"],
        "test_accuracy": {k: v["test_accuracy"] for k, v in res["initializers"].items()},
        "breakdown_s": breakdown(res, wall),
    }


def fresh_cache(tmp: pathlib.Path, tokens: pathlib.Path, name: str) -> pathlib.Path:
    """A cache folder holding the token arrays and an empty compilation cache (``xla/``)."""
    cache = tmp / name
    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir()
    for f in tokens.glob("imdb-*.npz"):
        (cache / f.name).symlink_to(f)
    return cache


def parse_only(value: str) -> tuple[str, ...]:
    names = []
    for n in (s.strip() for s in value.split(",") if s.strip()):
        names += list(JINIT_ROWS) if n == "jinit" else [n]
    unknown = sorted(set(names) - set(ROWS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown rows {unknown} in {value!r}; valid: jinit (all jinit rows), {', '.join(ROWS)}"
        )
    return tuple(r for r in ROWS if r in names)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keras-python", help="a python with tensorflow installed (the keras row)")
    p.add_argument("--data-dir", default=os.environ.get("JINIT_DATA_DIR"))
    p.add_argument(
        "--only",
        type=parse_only,
        default=ROWS,
        help=f"comma-separated rows, from {', '.join(ROWS)}; 'jinit' = every jinit row "
        "(default: all)",
    )
    p.add_argument("--repeats", type=common.positive_int, default=1, help="rounds of the rows")
    p.add_argument(
        "--host-devices",
        type=common.positive_int,
        default=None,
        help="pass --host-devices N to the jinit rows (default: the study's own choice)",
    )
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if "keras" in args.only and not args.keras_python:
        p.error("argument --keras-python: required for the keras row (or --only jinit)")
    load = os.getloadavg()
    runs: dict[str, list[dict]] = {r: [] for r in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        tokens = tmp / "tokens"  # the token arrays are built here once, untimed
        d = imdb.load_imdb(args.data_dir, cache_dir=tokens)
        for k in range(args.repeats):
            for name in args.only:
                if name in ("keras", *NOT_STUDY):
                    continue
                seeds, cold = JINIT_ROWS[name]
                cache = tmp / f"cache-{seeds}"
                if cold or not cache.exists():
                    cache = fresh_cache(tmp, tokens, f"cache-{seeds}")
                if not cold and not (cache / "xla").exists():  # warm: fill the cache, untimed
                    jinit_run(seeds, tmp / "w", cache, args.data_dir, args.host_devices)
                r = jinit_run(seeds, tmp / name, cache, args.data_dir, args.host_devices)
                runs[name].append(r)
                print(
                    f"round {k + 1} {name}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, "
                    f"load {os.getloadavg()[0]:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
            if "keras" in args.only:
                arrays = tmp / "imdb.npz"
                np.savez(
                    arrays, x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test
                )
                cmd = [args.keras_python, "benchmarks/_keras_imdb.py", "--arrays", str(arrays)]
                wall, cpu, stdout = timed([*cmd, "--inits", INITS])
                keras = json.loads(stdout.strip().splitlines()[-1])
                runs["keras"].append(
                    {
                        "wall_s": wall,
                        "cpu_s": cpu,
                        "test_accuracy": {
                            k: [v["test_accuracy"]] for k, v in keras["inits"].items()
                        },
                        "tensorflow": keras["tensorflow"],
                    }
                )
    if "profile" in args.only:
        from experiments.common.sweep import host_devices_for

        devices = args.host_devices or host_devices_for(9, default_host_devices())
        flag = f"--xla_force_host_platform_device_count={devices}"
        env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        _, _, stdout = timed([sys.executable, "benchmarks/_imdb_profile.py"], env)
        runs["profile"] = [json.loads(stdout.strip().splitlines()[-1])]
    if "layouts" in args.only:  # it sets each layout's device count in its own subprocesses
        with tempfile.TemporaryDirectory() as tmp:
            rows = pathlib.Path(tmp) / "layouts.json"
            timed([sys.executable, "benchmarks/_imdb_layouts.py", "--json", str(rows)])
            runs["layouts"] = [json.loads(rows.read_text())]
    result = {
        "environment": common.environment(),
        "load_average_at_start": load[0],
        "load_average_at_end": os.getloadavg()[0],
        "repeats": args.repeats,
        "runs": runs,
        "ratios": ratios(runs),
    }
    table = render(result, " ".join(["python benchmarks/imdb_keras.py", *(argv or sys.argv[1:])]))
    print(table)
    if not args.no_write:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "imdb_keras.json").write_text(json.dumps(result, indent=1) + "\n")
        (out / "imdb_keras.md").write_text(table)


def ratios(runs: dict[str, list[dict]]) -> dict[str, list[float]]:
    """Per round: 3 seeds over 1 seed (cold and warm), Keras over jinit 1 seed."""
    out = {}
    for a, b, name in (
        ("jinit-3-cold", "jinit-1-cold", "3 seeds / 1 seed, cold"),
        ("jinit-3-warm", "jinit-1-warm", "3 seeds / 1 seed, warm"),
        ("keras", "jinit-1-cold", "keras / jinit 1 seed, cold"),
        ("keras", "jinit-1-warm", "keras / jinit 1 seed, warm"),
    ):
        if runs.get(a) and runs.get(b):
            for key in ("wall_s", "cpu_s"):
                out[f"{name} ({key[:-2]})"] = [
                    x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True)
                ]
    return out


def render(result: dict, command: str) -> str:
    runs, inits = result["runs"], INITS.split(",")
    lines = [
        f"Machine: {common.describe_machine(result['environment'])}; load average "
        f"{result['load_average_at_start']:.1f} at start (other jobs), "
        f"{result['load_average_at_end']:.1f} at end (mostly this benchmark's own last row). Generated by `{command}`: 3 inits x 5 epochs on the full IMDB data, each row "
        "one process timed end to end (start-up, data from the token cache, compile, training, "
        "evaluation, checkpoints). Cold = empty persistent compilation cache (a first run); "
        f"warm = its programs loaded from that cache. {result['repeats']} round(s), rows "
        "interleaved; wall and CPU (user + system) seconds are medians over rounds.",
        "",
        "| run | devices | wall (s) | CPU (s) | "
        + " | ".join(f"test acc {n}" for n in inits)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(inits),
    ]
    for name, rs in runs.items():
        if name in NOT_STUDY:
            continue
        accs = [np.mean(rs[-1]["test_accuracy"][n]) for n in inits]
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s")}
        dev = rs[-1].get("devices", "")
        lines.append(
            f"| {name} | {dev} | {med['wall_s']:.1f} | {med['cpu_s']:.1f} | "
            + " | ".join(f"{a:.4f}" for a in accs)
            + " |"
        )
    cores = result["environment"].get("cores") or os.cpu_count() or 1
    # The end figure always holds the benchmark's own rows (each keeps both cores busy), so
    # only the load found at the start tells whether other jobs shared the machine.
    if result["load_average_at_start"] > cores / 2:
        lines += [
            "",
            f"**Measured under load** (load average above half the {cores} cores): other "
            "processes took CPU time from every row, so wall times are inflated and their ratios "
            "are not those of a quiet machine; CPU seconds are less affected. Rerun on a quiet "
            "machine for the published figures.",
        ]
    lines += ["", "| ratio | per round | median |", "|---|---|---:|"]
    for name, vs in result["ratios"].items():
        lines.append(
            f"| {name} | {', '.join(f'{v:.2f}' for v in vs)} | {statistics.median(vs):.2f} |"
        )
    lines += [
        "",
        "Goals (issue 18): Keras / jinit 1 seed >= 8x; 3 seeds / 1 seed < 1.8x. Test accuracies "
        "of the 3-seed rows are means over seeds.",
        "",
        "Where the time went (s, medians over rounds; epochs = training + validation):",
        "",
    ]
    parts = None
    for name, rs in runs.items():
        if name in NOT_STUDY or "breakdown_s" not in rs[0]:
            continue
        parts = parts or list(rs[0]["breakdown_s"])
        if name == next(n for n in runs if n not in NOT_STUDY and "breakdown_s" in runs[n][0]):
            lines += ["| run | " + " | ".join(parts) + " |", "|---|" + "---:|" * len(parts)]
        med = [statistics.median(r["breakdown_s"][k] for r in rs) for k in parts]
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in med) + " |")
    if runs.get("profile"):
        lines += profile_table(runs["profile"][0])
    if runs.get("layouts"):
        lines += [
            "",
            "Per-model cost of the train program by layout (`benchmarks/_imdb_layouts.py`):",
        ]
        lines += ["", runs["layouts"][0]["table"].rstrip()]
    return "\n".join(lines) + "\n"


def profile_table(prof: dict) -> list[str]:
    rows = prof["rows"]
    ms = sorted({r["models"] for r in rows})
    keys = list(dict.fromkeys((r["part"], r["strategy"]) for r in rows))
    get = {(r["models"], r["part"], r["strategy"]): r for r in rows}
    lines = [
        "",
        f"Profile of the sweep's train step on {prof['devices']} XLA CPU device(s), "
        f"{prof['steps_per_call']} steps per call (`benchmarks/_imdb_profile.py`): ms per "
        "model-step, CPU (user + system, all threads) and wall. The parts are cumulative: "
        "grad = forward + backward; +adam = the optimizer; +norm = the gradient's global norm; "
        "+select = the choice of the new or the old state per step (on_nonfinite='raise').",
        "",
        "| part | strategy | " + " | ".join(f"CPU {m} models | wall {m} models" for m in ms) + " |",
        "|---|---|" + "---:|---:|" * len(ms),
    ]
    for part, strategy in keys:
        cells = []
        for m in ms:
            r = get.get((m, part, strategy))
            cells += (
                ["", ""]
                if r is None
                else [
                    f"{r['cpu_ms_per_model_step']:.2f}",
                    f"{r['wall_ms_per_model_step']:.2f}",
                ]
            )
        lines.append(f"| {part} | {strategy} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    main()
