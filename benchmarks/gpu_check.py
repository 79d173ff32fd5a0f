"""GPU check: seed sweeps (vmap vs sequential), CIFAR CNN images/s vs peak, LSUV at depth 32.

One command, bounded time (under 8 minutes on one GPU), partial results written as each part
finishes. Run it through ``benchmarks/gpu_check.sh`` (sets the environment, global ``timeout``);
each part reuses the code of the CPU benchmark that measures the same thing:

* ``peak``: the best matmul rate (bfloat16, float32 at default and at highest precision), the
  device's measured peak;
* ``sweep_imdb``: the IMDB RNN study's training (``sweep_vmap.worker``): N = 1, 4, 8 seeds as N
  sequential runs of one compiled program against ONE vmapped program (``jinit.fit``'s
  programs, ``jinit.compile_programs(num_models=N)``); compile time and steady model-steps/s;
* ``sweep_cnn``: the same for the CIFAR-10 CNN (``train_throughput.jax_case``), images/s;
* ``throughput``: CIFAR CNN training images/s at the study's batch (32) and a larger one, with
  achieved FLOP/s from XLA's ``cost_analysis`` and its fraction of the measured peak;
* ``lsuv``: ``jinit.lsuv`` wall time at depth 32 (MLP and CNN of ``benchmarks/lsuv.py``), first
  call (trace + compile + run) and steady, the default ``jit=None`` then ``jit=True``, in the
  worker's process (each row's first call still traces and compiles its own program).

Inputs are synthetic arrays of the studies' shapes (throughput does not depend on the values).
All parts run in one worker process; a part that overruns its time budget is killed (its rows
so far are kept, marked ``timeout``) and the remaining parts go on in a fresh worker. Results:
``--out``/gpu_check.json and gpu_check.md (default ``docs/benchmarks/gpu``), rewritten after
every part. ``--quick`` uses tiny sizes (a CPU smoke test); without a GPU the check runs the
quick sizes and says so, unless ``--allow-cpu``.

    bash benchmarks/gpu_check.sh                      # the GPU check, prints the table
    python benchmarks/gpu_check.py --quick --out /tmp/g   # smoke run on CPU
    python benchmarks/gpu_check.py --only peak,lsuv   # some parts
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib.util
import json
import math
import os
import pathlib
import platform
import queue
import signal
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
PARTS = ("peak", "sweep_imdb", "sweep_cnn", "throughput", "lsuv")
TAG = "@@gpu_check "  # prefix of the worker's result lines on stdout

# Sizes: (full = the GPU check, quick = the CPU smoke test) and seconds per part.
SIZES = {
    "full": {
        "matmul_n": 8192,
        "models": [1, 4, 8],
        "imdb_steps": 200,
        "cnn_steps": 100,
        "repeats": 3,
        "batches": [32, 512],
        "lsuv_depth": 32,
        "lsuv_batch": 256,
    },
    "quick": {
        "matmul_n": 128,
        "models": [2],
        "imdb_steps": 2,
        "cnn_steps": 2,
        "repeats": 1,
        "batches": [32],
        "lsuv_depth": 3,
        "lsuv_batch": 8,
    },
}
BUDGET_S = {"peak": 45, "sweep_imdb": 140, "sweep_cnn": 120, "throughput": 60, "lsuv": 90}


def _bench(name: str):
    """``benchmarks/NAME.py`` as a module (a file import: ``lsuv.py`` shares the name of the
    PyPI package, and benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _emit(part: str, **fields) -> None:
    print(TAG + json.dumps({"part": part, **fields}), flush=True)


# ---------------------------------------------------------------- parts (in the worker)


def part_peak(s: dict):
    import jax
    import jax.numpy as jnp

    n = s["matmul_n"]
    for dtype, precision in (("bfloat16", None), ("float32", None), ("float32", "highest")):
        a = jnp.ones((n, n), dtype)
        f = jax.jit(lambda a, p=precision: jnp.matmul(a, a, precision=p))
        f(a).block_until_ready()
        best = math.inf
        for _ in range(max(s["repeats"], 5)):
            t = time.perf_counter()
            f(a).block_until_ready()
            best = min(best, time.perf_counter() - t)
        yield {
            "dtype": dtype,
            "precision": precision or "default",
            "n": n,
            "best_s": best,
            "flops_per_s": 2 * n**3 / best,
        }


def part_sweep_imdb(s: dict):
    for n in s["models"]:
        for strategy in ("sequential", "vmap") if n > 1 else ("sequential",):
            yield _bench("sweep_vmap").worker(n, s["imdb_steps"], strategy)


def _conv_impl() -> str:
    import jax

    return "im2col" if jax.default_backend() == "cpu" else "xla"  # im2col: CPU's fast path


def part_sweep_cnn(s: dict):
    tt = _bench("train_throughput")
    impl = _conv_impl()
    for n in s["models"]:
        for strategy in ("sequential", "vmap") if n > 1 else ("sequential",):
            r = tt.jax_case(
                impl, None if n == 1 else n, s["cnn_steps"], s["repeats"], strategy == "sequential"
            )
            r.pop("times_s", None)
            yield {"strategy": strategy, "num_models": n, "conv_impl": impl, "batch": tt.B, **r}


def part_throughput(s: dict):
    tt = _bench("train_throughput")
    impl = _conv_impl()
    default_batch = tt.B
    try:
        for batch in s["batches"]:
            tt.B = batch  # jax_case reads the module's batch size when called
            r = tt.jax_case(impl, None, s["cnn_steps"], s["repeats"])
            r.pop("times_s", None)
            flops = r.get("flops_per_step")
            r["achieved_flops_per_s"] = flops * r["images_per_s"] / batch if flops else None
            yield {"batch": batch, "conv_impl": impl, "dtype": "float32", **r}
    finally:
        tt.B = default_batch


def part_lsuv(s: dict):
    lv = _bench("lsuv")
    lv.BATCH = s["lsuv_batch"]  # make() reads the module's batch size when called
    d = s["lsuv_depth"]
    for arch in ("mlp", "cnn"):
        for jit in (None, True):  # the default first: its first call compiles nothing cached
            r = lv._bench_jinit_here(arch, d, s["repeats"], jit)
            r.pop("steady_runs_s", None)
            yield {"arch": arch, "depth": d, "batch": lv.BATCH, "jit": jit, **r}


def worker(parts: list[str], mode: str, allow_cpu: bool) -> None:
    import traceback

    import jax

    note = None
    if mode == "full" and jax.default_backend() == "cpu" and not allow_cpu:
        mode = "quick"
        note = "no GPU found (jax backend is cpu): quick sizes; --allow-cpu forces full sizes"
        print(f"[gpu_check] WARNING: {note}", file=sys.stderr, flush=True)
    _emit("_machine", machine=machine(), mode=mode, mode_note=note)
    sizes = SIZES[mode]
    for part in parts:
        try:
            for row in globals()[f"part_{part}"](sizes):
                _emit(part, row=row)
            _emit(part, done=True)
        except Exception as e:  # recorded with its traceback; the other parts still run
            _emit(part, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-3000:])


# ---------------------------------------------------------------- driver


def machine() -> dict:
    import importlib.metadata as md

    import jax

    def version(p):
        try:
            return md.version(p)
        except md.PackageNotFoundError:
            return None

    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    devs = jax.devices()
    return {
        "device_kind": devs[0].device_kind,
        "device_count": len(devs),
        "backend": jax.default_backend(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{p: version(p) for p in ("jax", "jaxlib", "flax", "optax")},
        "cuda_plugin": version("jax-cuda12-plugin") or version("jax-cuda13-plugin"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _run_worker(parts, args, state, write):
    """Runs ``parts`` in one worker process; returns the parts it did not reach."""
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", ",".join(parts)]
    cmd += ["--mode", "quick" if args.quick else "full"] + (
        ["--allow-cpu"] if args.allow_cpu else []
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    err_lines: list[str] = []
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    lines: queue.Queue = queue.Queue()

    def pump_out():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)  # end of output: the worker exited

    def pump_err():
        for line in proc.stderr:
            err_lines.append(line)
            sys.stderr.write(line)

    threading.Thread(target=pump_out, daemon=True).start()
    threading.Thread(target=pump_err, daemon=True).start()
    try:
        return _follow(proc, lines, err_lines, list(parts), state, write)
    finally:  # also on the global timeout's SIGTERM: never leave a worker holding the GPU
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _follow(proc, lines, err_lines, remaining, state, write):
    start = time.perf_counter()
    while remaining:
        part = remaining[0]
        entry = state["parts"].setdefault(part, {"status": "running", "rows": []})
        left = BUDGET_S[part] * state["budget_scale"] - (time.perf_counter() - start)
        try:
            line = lines.get(timeout=max(left, 0.01))
        except queue.Empty:
            proc.kill()
            entry["status"] = (
                f"timeout: over its budget of {BUDGET_S[part] * state['budget_scale']:.0f} s"
            )
            entry["wall_s"] = time.perf_counter() - start
            print(f"[gpu_check] {part}: {entry['status']}", flush=True)
            write()
            return remaining[1:]
        if line is None:  # the worker died (out of memory, a crash in XLA, ...)
            proc.wait()
            tail = "".join(err_lines[-20:])
            entry["status"] = f"error: worker exited with status {proc.returncode}"
            entry["stderr_tail"] = tail[-3000:]
            entry["wall_s"] = time.perf_counter() - start
            print(f"[gpu_check] {part}: {entry['status']}\n{tail}", flush=True)
            write()
            return remaining[1:]
        if not line.startswith(TAG):
            print(line, end="", flush=True)  # the benchmarks' own progress lines
            continue
        msg = json.loads(line[len(TAG) :])
        if msg["part"] == "_machine":
            state["res"].update(
                machine=msg["machine"], mode=msg["mode"], mode_note=msg["mode_note"]
            )
            state["res"]["sizes"] = SIZES[msg["mode"]]
            continue
        if "row" in msg:
            entry["rows"].append(msg["row"])
            print(f"[gpu_check] {part}: {json.dumps(msg['row'])}", flush=True)
            write()
            continue
        entry["wall_s"] = time.perf_counter() - start
        if msg.get("done"):
            entry["status"] = "ok"
        else:
            entry["status"] = f"error: {msg['error']}"
            entry["traceback"] = msg.get("traceback")
            print(f"[gpu_check] {part}: {entry['status']}\n{msg.get('traceback')}", flush=True)
        write()
        remaining.pop(0)
        start = time.perf_counter()
    proc.wait()
    return []


def derive(res: dict) -> None:
    """Ratios and fractions of peak, from rows measured in this run."""
    parts = res["parts"]
    peak_rows = parts.get("peak", {}).get("rows", [])
    peak = max((r["flops_per_s"] for r in peak_rows), default=None)
    res["peak_flops_per_s"] = peak
    for name, rate in (("sweep_imdb", "model_steps_per_s"), ("sweep_cnn", "images_per_s")):
        rows = parts.get(name, {}).get("rows", [])
        seq = {r["num_models"]: r[rate] for r in rows if r["strategy"] == "sequential"}
        for r in rows:
            r["speedup_vs_sequential"] = (
                r[rate] / seq[r["num_models"]] if r["num_models"] in seq else None
            )
    for r in parts.get("throughput", {}).get("rows", []):
        a = r.get("achieved_flops_per_s")
        r["fraction_of_peak"] = a / peak if a and peak else None


def _f(v, nd=2):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f"{v:.{nd}f}" if abs(v) < 1000 else f"{v:,.0f}"


def _ratio(v):
    return _f(v) + "x" if v else "—"


def _scaled(v, divisor, nd):
    return _f(v / divisor, nd) if v else "—"


def _percent(v):
    return f"{100 * v:.2f}%" if v else "—"


def render(res: dict) -> str:
    m = collections.defaultdict(lambda: "?", res["machine"] or {})
    out = [
        f"Device: {m['device_kind']} x{m['device_count']} ({m['backend']}); host {m['cpu']}, "
        f"{m['cpu_count']} cores; jax {m['jax']}, jaxlib {m['jaxlib']}, flax {m['flax']}, "
        f"optax {m['optax']}; {res['date']}; mode `{res['mode']}`"
        + (f" ({res['mode_note']})" if res.get("mode_note") else "")
        + f"; total {res.get('wall_s', 0):.0f} s. Generated by `{res['command']}`. Synthetic "
        "inputs of the studies' shapes (speed does not depend on the values).",
        "",
    ]
    p = res["parts"]

    def section(name, title, columns, intro=()):
        """``### title``, its status and its rows as a table; ``columns``: (header, right-aligned,
        cell(row) -> str)."""
        e = p.get(name)
        if e is None:
            return
        status = e["status"] if e["status"] == "ok" else f"**{e['status']}**"
        out.extend([f"### {title}", "", f"Status: {status}, {_f(e.get('wall_s'), 1)} s.", ""])
        if not e["rows"]:
            return
        out.extend(intro)
        out.append("| " + " | ".join(h for h, _, _ in columns) + " |")
        out.append("|" + "|".join("---:" if right else "---" for _, right, _ in columns) + "|")
        out.extend("| " + " | ".join(c(r) for _, _, c in columns) + " |" for r in e["rows"])
        out.append("")

    col = lambda header, key, nd=2, right=True: (header, right, lambda r: _f(r[key], nd))
    raw = lambda header, key, right=False: (header, right, lambda r: str(r[key]))
    vs_seq = ("vs sequential", True, lambda r: _ratio(r.get("speedup_vs_sequential")))
    section(
        "peak",
        "Peak: best matmul rate",
        [
            raw("dtype", "dtype"),
            raw("precision", "precision"),
            raw("n", "n", right=True),
            ("TFLOP/s", True, lambda r: _f(r["flops_per_s"] / 1e12, 3)),
        ],
    )
    section(
        "sweep_imdb",
        "Seed sweep, IMDB RNN: one vmapped program vs sequential runs",
        [
            raw("models", "num_models", right=True),
            raw("strategy", "strategy"),
            col("compile (s)", "compile_s"),
            col("sweep step (ms)", "sweep_step_ms"),
            col("model-steps/s", "model_steps_per_s", 1),
            vs_seq,
        ],
    )
    section(
        "sweep_cnn",
        "Seed sweep, CIFAR-10 CNN: one vmapped program vs sequential runs",
        [
            raw("models", "num_models", right=True),
            raw("strategy", "strategy"),
            raw("conv", "conv_impl"),
            raw("batch", "batch", right=True),
            col("compile (s)", "compile_s"),
            col("step (ms)", "step_ms", 3),
            col("images/s (all models)", "images_per_s", 0),
            vs_seq,
        ],
    )
    peak = res.get("peak_flops_per_s")
    section(
        "throughput",
        "CIFAR-10 CNN training throughput vs the measured peak",
        [
            raw("batch", "batch", right=True),
            raw("conv", "conv_impl"),
            col("compile (s)", "compile_s"),
            col("step (ms)", "step_ms", 3),
            col("images/s", "images_per_s", 0),
            ("achieved TFLOP/s", True, lambda r: _scaled(r.get("achieved_flops_per_s"), 1e12, 4)),
            ("of peak", True, lambda r: _percent(r.get("fraction_of_peak"))),
        ],
        intro=[
            f"Peak (best matmul above): {_scaled(peak, 1e12, 3)} TFLOP/s. Achieved = "
            "XLA cost_analysis FLOPs of one step x steps/s.",
            "",
        ],
    )
    section(
        "lsuv",
        "LSUV wall time (`jinit.lsuv`)",
        [
            raw("arch", "arch"),
            raw("depth", "depth", right=True),
            raw("batch", "batch", right=True),
            raw("jit", "jit"),
            raw("ran", "execution"),
            col("first (s)", "first_s", 3),
            col("steady (s)", "steady_s", 3),
            raw("converged", "converged"),
        ],
    )
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks" / "gpu"))
    p.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    p.add_argument("--allow-cpu", action="store_true", help="full sizes even without a GPU")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    p.add_argument(
        "--budget-scale", type=float, default=1.0, help="multiplies every part's time budget"
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker.split(","), args.mode, args.allow_cpu)
        return 0
    parts = [x for x in args.only.split(",") if x]
    if not args.budget_scale > 0:
        p.error(f"--budget-scale: expected a positive number, got {args.budget_scale}")
    bad = [x for x in parts if x not in PARTS]
    if bad:
        p.error(f"--only: unknown part(s) {bad}; expected some of {list(PARTS)}")
    # This process never imports jax: the workers get the whole accelerator.
    res = {
        "machine": None,  # filled in by the worker
        "mode": None,
        "mode_note": None,
        "sizes": None,
        "budgets_s": {k: v * args.budget_scale for k, v in BUDGET_S.items()},
        "command": "bash benchmarks/gpu_check.sh "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "parts": {},
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def write():
        res["wall_s"] = time.perf_counter() - t0
        derive(res)
        (out / "gpu_check.json").write_text(json.dumps(res, indent=2))
        (out / "gpu_check.md").write_text(render(res))

    state = {"parts": res["parts"], "budget_scale": args.budget_scale, "res": res}

    def on_term(signum, frame):
        raise SystemExit(f"stopped by signal {signum} (the global timeout?)")

    signal.signal(signal.SIGTERM, on_term)
    remaining = parts
    try:
        while remaining:  # a fresh worker after a part times out or crashes
            remaining = _run_worker(remaining, args, state, write)
    except (SystemExit, KeyboardInterrupt) as e:
        for entry in res["parts"].values():
            if entry["status"] == "running":
                entry["status"] = f"killed: {e or 'interrupted'}"
        write()
        print(f"[gpu_check] {e or 'interrupted'}; partial results in {out}", file=sys.stderr)
        return 124
    write()
    print(render(res))
    print(f"[gpu_check] wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    failed = [k for k, e in res["parts"].items() if e["status"] != "ok"]
    if failed:
        print(f"[gpu_check] FAILED parts: {failed} (see their status above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
