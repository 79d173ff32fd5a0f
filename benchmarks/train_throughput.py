"""Training throughput of the CIFAR-10 CNN: images/s and achieved FLOP/s, side by side.

The seed study's CNN (Conv32-pool-Conv64-pool-Dense64-Dense10), batch 32, Adam, one optimizer
step = forward + backward + update, timed in one process, one after the other:

* ``jax-xla``: ``lax.conv`` convolutions (``CifarCNN(conv_impl='xla')``), 1 model;
* ``jax-im2col``: convolutions as patches x kernel GEMMs (``conv_impl='im2col'``), 1 model;
* ``jax-im2col-vmap4`` / ``jax-xla-vmap4``: 4 seeds as one vmapped program;
* ``jax-im2col-seq4``: 4 seeds, one after the other (the sweep strategy baseline);
* ``torch``: the same model in PyTorch (NCHW), if torch is importable;
* ``keras``: the same model in Keras (TensorFlow CPU), run by ``benchmarks/_keras_cnn.py`` in a
  separate process under ``--keras-python`` (an environment with tensorflow), if there is one.

Achieved FLOP/s uses XLA's own FLOP count of the compiled JAX step (``cost_analysis``); the
machine's peak is measured here as the best float32 matmul rate (2048^3, jitted).

    python benchmarks/train_throughput.py          # writes docs/benchmarks/train_throughput.{json,md}
    python benchmarks/train_throughput.py --keras-python /path/to/tf-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit
from experiments.models import CifarCNN

REPO = pathlib.Path(__file__).resolve().parents[1]

B = 32


def _median_rate(run, steps: int, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return steps / statistics.median(times), times


def peak_matmul_flops(repeats: int) -> float:
    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def jax_case(impl: str, num_models: int | None, steps: int, repeats: int, sequential: bool = False):
    model = CifarCNN(conv_impl=impl)
    opt = optax.adam(1e-3)

    def loss_fn(p, batch):
        logits = model.apply(p, batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), {}

    rng = np.random.default_rng(0)
    data = {
        "x": jnp.asarray(rng.random((steps * B, 32, 32, 3)), jnp.float32),
        "y": jnp.asarray(rng.integers(0, 10, steps * B), jnp.int32),
    }
    idx = jnp.arange(steps * B).reshape(steps, B)
    init = lambda k: jinit.init_state(model.init(k, data["x"][:1]), opt)  # noqa: E731
    m = num_models or 1
    if num_models is None or sequential:
        progs = jinit.compile_programs(loss_fn, opt, stepping="scan")
        states = [init(jax.random.key(i)) for i in range(m)]
    else:
        progs = jinit.compile_programs(loss_fn, opt, num_models=num_models)
        states = [jinit.init_models(init, jinit.seed_keys(range(num_models)))]
    prog = progs["train"]  # all `steps` rows of idx in one call (lax.scan)
    t = time.perf_counter()
    states[0], _, out = prog(states[0], progs.guard(), data, idx, steps)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - t
    flops = None
    if num_models is None:  # XLA's FLOP count of ONE step (a scan's body is counted once)
        step = jax.jit(jinit.make_train_step(loss_fn, opt))
        batch = jax.tree.map(lambda a: a[:B], data)
        ca = step.lower(states[0], batch).compile().cost_analysis()
        ca = ca[0] if isinstance(ca, list) else ca
        flops = float(ca.get("flops", 0.0)) or None

    def run():
        nonlocal out
        for i in range(len(states)):
            states[i], _, out = prog(states[i], progs.guard(), data, idx, steps)
        jax.block_until_ready(out)

    rate, times = _median_rate(run, steps, repeats)
    return {
        "images_per_s": rate * B * m,
        "compile_s": compile_s,
        "flops_per_step": flops,
        "step_ms": 1e3 / rate,
        "times_s": times,
    }


def torch_case(steps: int, repeats: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2304, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.rand(steps, B, 3, 32, 32)
    y = torch.randint(0, 10, (steps, B))
    lossf = nn.CrossEntropyLoss()

    def run():
        for s in range(steps):
            opt.zero_grad()
            lossf(net(x[s]), y[s]).backward()
            opt.step()

    run()  # warm-up
    rate, times = _median_rate(run, steps, repeats)
    return {
        "images_per_s": rate * B,
        "step_ms": 1e3 / rate,
        "times_s": times,
        "threads": torch.get_num_threads(),
        "version": torch.__version__,
    }


def keras_case(steps: int, repeats: int, python: str):
    """``benchmarks/_keras_cnn.py`` under ``python`` (an interpreter with tensorflow)."""
    import subprocess

    cmd = [python, str(REPO / "benchmarks" / "_keras_cnn.py"), "--steps", str(steps)]
    cmd += ["--repeats", str(repeats), "--batch", str(B)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        if "No module named 'tensorflow'" in r.stderr:
            raise ImportError(name=f"tensorflow (for {python}; see --keras-python)")
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return {**json.loads(r.stdout.strip().splitlines()[-1]), "python": python}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    p.add_argument("--quick", action="store_true", help="few steps, one repeat (smoke test)")
    p.add_argument(
        "--keras-python",
        default=sys.executable,
        help="Python interpreter with tensorflow for the Keras row (default: this one)",
    )
    args = p.parse_args()
    if args.quick:
        args.steps, args.repeats = 5, 1
    peak = peak_matmul_flops(max(args.repeats, 3))
    rows = {}
    cases = {
        "jax-xla": lambda: jax_case("xla", None, args.steps, args.repeats),
        "jax-im2col": lambda: jax_case("im2col", None, args.steps, args.repeats),
        "jax-im2col-seq4": lambda: jax_case("im2col", 4, args.steps, args.repeats, sequential=True),
        "jax-im2col-vmap4": lambda: jax_case("im2col", 4, args.steps, args.repeats),
        "jax-xla-vmap4": lambda: jax_case("xla", 4, args.steps, args.repeats),
        "torch": lambda: torch_case(args.steps, args.repeats),
        "keras": lambda: keras_case(args.steps, args.repeats, args.keras_python),
    }
    for name, fn in cases.items():
        try:
            rows[name] = fn()
        except ImportError as e:
            rows[name] = {"skipped": f"not installed: {e.name}"}
        print(name, json.dumps({k: v for k, v in rows[name].items() if k != "times_s"}), flush=True)
    flops = rows.get("jax-im2col", {}).get("flops_per_step")
    for r in rows.values():
        if "images_per_s" in r and flops:
            r["achieved_flops"] = flops * r["images_per_s"] / B
            r["fraction_of_peak"] = r["achieved_flops"] / peak
    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "peak_matmul_flops": peak,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_throughput.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "batch": B,
                "steps": args.steps,
                "repeats": args.repeats,
                "rows": rows,
            },
            indent=2,
        )
    )
    base = rows["jax-xla"].get("images_per_s")
    lines = [
        f"Machine: {machine['cpu_count']} CPU cores, jax {machine['jax']} ({machine['backend']}); "
        f"measured float32 matmul peak {peak / 1e9:.0f} GFLOP/s; batch {B}, median of {args.repeats} "
        f"x {args.steps} steps. FLOPs per step from XLA's cost analysis of the im2col program.",
        "",
        "| case | images/s | step (ms) | vs jax-xla | GFLOP/s | of peak |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        if "images_per_s" not in r:
            lines.append(f"| {name} | {r['skipped']} | | | | |")
            continue
        gf = f"{r['achieved_flops'] / 1e9:.0f}" if r.get("achieved_flops") else "-"
        fr = f"{100 * r['fraction_of_peak']:.0f}%" if r.get("fraction_of_peak") else "-"
        lines.append(
            f"| {name} | {r['images_per_s']:.0f} | {r['step_ms']:.1f} | "
            f"{r['images_per_s'] / base:.2f}x | {gf} | {fr} |"
        )
    md = "\n".join(lines) + "\n"
    (out / "train_throughput.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
