"""Seed sweeps: N seeds as ONE vmapped program versus N sequential runs of the same training.

The IMDB study's model (Embedding(10000, 32) -> SimpleRNN(32) -> Dense(1), batch 32, 200 tokens,
Adam) is trained for a fixed number of steps per model, in one process per strategy so that each
can choose its XLA device count:

* ``sequential``: N separate single-model runs, one after the other (one compiled program);
* ``vmap``: one program, the N models on a leading axis (``jinit.fit(num_models=N)``);
* ``map``: one program, the N models computed one after the other inside it (``lax.map``);
* ``vmap-2dev`` / ``map-2dev`` (CPU): the same programs with the model axis (padded to a multiple
  of 2) sharded over 2 XLA host devices (``--xla_force_host_platform_device_count=2``), so each
  core trains half of the models.

Reported: compile time (first call) and steady-state time per optimizer step, model-steps/s,
and the speed-up of each strategy over ``sequential``, all measured in the same run.

    python benchmarks/sweep_vmap.py                 # N = 1, 3, 9; writes docs/benchmarks/sweep_vmap.{json,md}
    python benchmarks/sweep_vmap.py --models 3,9 --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def worker(num_models: int, steps: int, strategy: str) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import jinit
    from experiments.imdb.config import Config
    from experiments.imdb.train import make_functions

    cfg = Config()
    loss_fn, _, init_params = make_functions(cfg)
    opt = optax.adam(cfg.learning_rate, eps=cfg.adam_eps)
    rng = np.random.default_rng(0)
    n = steps * cfg.batch_size
    data = {
        "x": jnp.asarray(rng.integers(0, cfg.num_words, (n, cfg.maxlen)), jnp.int32),
        "y": jnp.asarray(rng.integers(0, 2, n), jnp.int32),
    }
    idx = jnp.arange(n).reshape(steps, cfg.batch_size)
    keys = jinit.seed_keys(range(num_models))

    def init(k):
        return jinit.init_state(init_params("glorot_uniform", k), opt)

    calls = max(1, steps // 25)
    per_call = steps // calls
    if strategy == "sequential":
        progs = jinit.compile_programs(loss_fn, opt, stepping="scan")
        states = [init(keys[m]) for m in range(num_models)]
    else:
        padded = jinit.padded_size(num_models)  # copies of the last model keep devices busy
        mesh = jinit.model_mesh(padded)
        progs = jinit.compile_programs(
            loss_fn, opt, num_models=padded, strategy=strategy.split("-")[0], mesh=mesh
        )
        states = [jinit.shard_models(jinit.pad_models(jinit.init_models(init, keys), padded), mesh)]
    prog = progs["train"]  # (state, guard, data, idx, steps): steps from row guard.row of idx
    t0 = time.perf_counter()
    s, _, m = prog(states[0], progs.guard(), data, idx, per_call)
    jax.block_until_ready(m)
    states[0] = s
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(len(states)):
        guard = progs.guard()
        for _ in range(calls):
            states[i], guard, m = prog(states[i], guard, data, idx, per_call)
    jax.block_until_ready((states, m))
    run_s = time.perf_counter() - t0
    step_s = run_s / (calls * per_call)  # wall time per optimizer step of the whole sweep
    return {
        "strategy": strategy,
        "num_models": num_models,
        "devices": len(jax.devices()),
        "compile_s": compile_s,
        "sweep_step_ms": step_s * 1e3,
        "model_steps_per_s": num_models / step_s,
        "steps": calls * per_call,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="1,3,9")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--strategies", default="sequential,vmap,map,vmap-2dev,map-2dev")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    p.add_argument("--worker", nargs=3, metavar=("N", "STEPS", "STRATEGY"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), int(args.worker[1]), args.worker[2])))
        return
    rows = []
    for n in [int(x) for x in args.models.split(",")]:
        for strategy in args.strategies.split(","):
            if strategy != "sequential" and n == 1:
                continue
            env = dict(os.environ)
            if strategy.endswith("-2dev"):
                env["XLA_FLAGS"] = (
                    env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
                ).strip()
            out = subprocess.run(
                [sys.executable, __file__, "--worker", str(n), str(args.steps), strategy],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = {r["num_models"]: r["model_steps_per_s"] for r in rows if r["strategy"] == "sequential"}
    for r in rows:
        r["speedup_vs_sequential"] = (
            r["model_steps_per_s"] / base[r["num_models"]] if r["num_models"] in base else None
        )
    import jax

    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "processor": platform.processor(),
    }
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "sweep_vmap.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=2)
    )
    lines = [
        "| models | strategy | devices | compile (s) | sweep step (ms) | model-steps/s | vs sequential |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sp = f"{r['speedup_vs_sequential']:.2f}x" if r["speedup_vs_sequential"] else "-"
        lines.append(
            f"| {r['num_models']} | {r['strategy']} | {r['devices']} | {r['compile_s']:.1f} | "
            f"{r['sweep_step_ms']:.1f} | {r['model_steps_per_s']:.0f} | {sp} |"
        )
    md = (
        f"Machine: {machine['cpu_count']} CPU cores, {machine['platform']}, jax {machine['jax']} ({machine['backend']}).\n\n"
        + "\n".join(lines)
        + "\n"
    )
    (outdir / "sweep_vmap.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
