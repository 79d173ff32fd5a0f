"""Per-model cost of the IMDB sweep's train program for each layout of the models on the CPU.

For the seed-sweep ratio of issue 18 (3 seeds per init under 1.8x the 1-seed time): does a
sweep of M models cost less than M times one model in any layout? Every layout runs in its own
process (the XLA CPU device count and threading are fixed when jax starts) and times, after a
compile-and-warm-up call, calls of ``jinit.compile_programs``'s train program (the study's
model, loss, Adam and guard; batch 32, 200 tokens, random tokens: the speed does not depend on
them) exactly as ``run_sweep`` runs it: the model axis padded to the device count and sharded
over the devices. Reported per *real* model-step (padded copies are waste), CPU (user + system,
all threads) and wall, for M = 1, 2, 3, 5, 9:

* ``1dev``: one XLA CPU device (both cores as XLA's intra-op threads), ``map`` and ``vmap``;
* ``1dev-1thread``: one device pinned to one core (``taskset -c 0``): the cost of a core;
* ``2dev``, ``3dev``: 2 or 3 devices (the OS shares the 2 cores between their threads);
  ``2dev-no-eigen-threads``: 2 devices whose matmuls stay on their own thread
  (``--xla_cpu_multi_thread_eigen=false``);
* ``steps_per_call`` 125 instead of 25 (fewer host syncs), ``unroll`` 8 of the recurrence's
  time scan (each a row on the study's device layout).

A ``matmul`` section times the recurrence's matmul alone in a 200-step scan: one model's
``(32,32)@(32,32)``, 9 models batched (``vmap``, ``einsum`` with a model axis) and as one
``(288,32)@(32,32)`` matmul, in microseconds per model and time step.

    python benchmarks/_imdb_layouts.py                 # all layouts (about 10 minutes quiet)
    python benchmarks/_imdb_layouts.py --layouts 1dev,3dev --models 3,9 --calls 2

Prints a table; ``--json PATH`` writes the rows, the table and the load average at start and
end (``benchmarks/imdb_keras.py --only layouts`` puts the table in docs/benchmarks).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 25
# name -> (devices, taskset cores or None, strategies, extra settings: steps_per_call, unroll of
# the recurrence's time scan, xla_flags)
LAYOUTS = {
    "1dev": (1, None, ("map", "vmap"), {}),
    "1dev-1thread": (1, "0", ("map",), {}),
    "2dev": (2, None, ("map", "vmap"), {}),
    "2dev-no-eigen-threads": (
        2,
        None,
        ("map",),
        {"xla_flags": "--xla_cpu_multi_thread_eigen=false"},
    ),
    "3dev": (3, None, ("map", "vmap"), {}),
    "3dev-125steps": (3, None, ("map",), {"steps_per_call": 125}),
    "3dev-unroll8": (3, None, ("map",), {"unroll": 8}),
    "matmul": (1, None, (), {}),
}


def worker(layout: str, models: list[int], calls: int) -> None:
    import functools

    import jax
    import jax.numpy as jnp

    import jinit

    _, _, strategies, extra = LAYOUTS[layout]
    rows = []
    if layout == "matmul":
        rows = _matmul_rows(jax, jnp)
    if extra.get("unroll"):  # the recurrence's scans take no unroll: give them a default
        jax.lax.scan = functools.partial(jax.lax.scan, unroll=extra["unroll"])
    steps = extra.get("steps_per_call", STEPS)
    from _imdb_profile import synthetic_setup  # after XLA_FLAGS: it imports jax

    loss_fn, metric_fn, init_params, opt, data = synthetic_setup()
    n = data["y"].shape[0]
    for m in models if strategies else ():
        keys = jinit.seed_keys(list(range(m)))
        state0 = jax.jit(
            lambda ks: jinit.init_models(
                lambda k: jinit.init_state(init_params("uniform", k), opt), ks
            )
        )(keys)
        padded = jinit.padded_size(m)
        mesh = jinit.model_mesh(padded)
        rows_per_epoch = 625
        idx = jnp.stack(
            [
                jax.random.permutation(jax.random.key(i), n)[: rows_per_epoch * 32].reshape(
                    rows_per_epoch, 32
                )
                for i in range(padded)
            ]
        )
        for strategy in strategies:
            progs = jinit.compile_programs(
                loss_fn, opt, metric_fn, num_models=padded, strategy=strategy, mesh=mesh
            )
            state = jinit.shard_models(jinit.pad_models(state0, padded), mesh)
            st = progs["train"](jax.tree.map(jnp.copy, state), progs.guard(0), data, idx, steps)[0]
            jax.block_until_ready(st)  # compiled and warm
            c, t = time.process_time(), time.perf_counter()
            for _ in range(calls):
                st = progs["train"](st, progs.guard(0), data, idx, steps)[0]
            jax.block_until_ready(st)
            per = calls * steps * m
            row = {
                "layout": layout,
                "devices": jax.device_count(),
                "models": m,
                "padded": padded,
                "strategy": strategy,
                "steps_per_call": steps,
                "cpu_ms_per_model_step": (time.process_time() - c) / per * 1e3,
                "wall_ms_per_model_step": (time.perf_counter() - t) / per * 1e3,
                "load": os.getloadavg()[0],
            }
            print(row, file=sys.stderr, flush=True)
            rows.append(row)
    print(json.dumps(rows))


def _matmul_rows(jax, jnp) -> list[dict]:
    def scan_of(op):
        def f(h, k):
            return jax.lax.scan(lambda h, _: (jnp.tanh(op(h, k)), None), h, None, length=200)[0]

        return jax.jit(f)

    cases = {
        "1 model (32,32)@(32,32)": (lambda h, k: h @ k, (32, 32), (32, 32), 1),
        "9 models, vmap": (jax.vmap(lambda h, k: h @ k), (9, 32, 32), (9, 32, 32), 9),
        "9 models, einsum mbh,mhk": (
            lambda h, k: jnp.einsum("mbh,mhk->mbk", h, k),
            (9, 32, 32),
            (9, 32, 32),
            9,
        ),
        "9x the rows, one matmul (288,32)@(32,32)": (lambda h, k: h @ k, (288, 32), (32, 32), 9),
    }
    rows, key = [], jax.random.key(0)
    for name, (op, hs, ks, m) in cases.items():
        h, k = jax.random.normal(key, hs) * 0.1, jax.random.normal(key, ks) * 0.1
        f = scan_of(op)
        jax.block_until_ready(f(h, k))
        c, t = time.process_time(), time.perf_counter()
        for _ in range(50):
            r = f(h, k)
        jax.block_until_ready(r)
        rows.append(
            {
                "layout": "matmul",
                "case": name,
                "cpu_us_per_model_step": (time.process_time() - c) / 50 / 200 / m * 1e6,
                "wall_us_per_model_step": (time.perf_counter() - t) / 50 / 200 / m * 1e6,
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layouts", default=",".join(LAYOUTS), help=f"from {', '.join(LAYOUTS)}")
    p.add_argument("--models", default="1,2,3,5,9", help="comma-separated model counts")
    p.add_argument("--calls", type=int, default=3, help="timed calls of the train program")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    models = [int(s) for s in args.models.split(",")]
    if args.worker:
        return worker(args.worker, models, args.calls)
    layouts = args.layouts.split(",")
    for layout in layouts:  # all checked before any runs
        if layout not in LAYOUTS:
            p.error(f"argument --layouts: unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    rows, load = [], os.getloadavg()[0]
    for layout in layouts:
        devices, cores, _, _ = LAYOUTS[layout]
        flags = f"--xla_force_host_platform_device_count={devices}"
        flags += " " + LAYOUTS[layout][3].get("xla_flags", "")
        env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        cmd = [sys.executable, __file__, "--worker", layout, "--models", args.models]
        cmd += ["--calls", str(args.calls)]
        if cores is not None:
            cmd = ["taskset", "-c", cores, *cmd]
        out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"error: layout {layout} failed:\n{out.stderr[-3000:]}")
        rows += json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{layout} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    table = render(rows)
    print(table)
    if args.json:
        result = {"rows": rows, "table": table, "load_average": [load, os.getloadavg()[0]]}
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


def render(rows: list[dict]) -> str:
    """Markdown tables of ``rows``: the train program by layout, and the matmul section."""
    lines = []
    train = [r for r in rows if r["layout"] != "matmul"]
    if train:
        ms = sorted({r["models"] for r in train})
        keys = list(dict.fromkeys((r["layout"], r["strategy"]) for r in train))
        get = {(r["layout"], r["strategy"], r["models"]): r for r in train}
        lines += [
            "ms per real model-step, CPU / wall (padded copies count as waste):",
            "",
            "| layout | strategy | " + " | ".join(f"M={m}" for m in ms) + " |",
            "|---|---|" + "---:|" * len(ms),
        ]
        for lay, strat in keys:
            cells = []
            for m in ms:
                r = get.get((lay, strat, m))
                cells.append(
                    ""
                    if r is None
                    else f"{r['cpu_ms_per_model_step']:.2f} / {r['wall_ms_per_model_step']:.2f}"
                )
            lines.append(f"| {lay} | {strat} | " + " | ".join(cells) + " |")
    mm = [r for r in rows if r["layout"] == "matmul"]
    if mm:
        lines += ["", "| recurrence matmul in a 200-step scan | us per model-step, CPU / wall |"]
        lines += ["|---|---:|"]
        for r in mm:
            lines.append(
                f"| {r['case']} | {r['cpu_us_per_model_step']:.2f} / "
                f"{r['wall_us_per_model_step']:.2f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
