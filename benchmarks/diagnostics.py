"""layer_statistics compile time on a 2-block pre-LN transformer (NNX and linen), side by side
with the floor: ``jax.grad`` of the same model's mean output (one forward + one backward).

Reported per model: trace (``jit(...).lower``), XLA compile (``.compile()``), the steady-state
call (median of --repeats), and the ratio layer_statistics / floor, all measured in one run.

    python benchmarks/diagnostics.py          # writes docs/benchmarks/diagnostics.{json,md}
    python benchmarks/diagnostics.py --repeats 5 --only nnx
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def models():
    import flax.linen as nn
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, d, rngs):
            self.ln1, self.ln2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
            self.attn = nnx.MultiHeadAttention(2, d, decode=False, rngs=rngs)
            self.fc1, self.fc2 = nnx.Linear(d, 4 * d, rngs=rngs), nnx.Linear(4 * d, d, rngs=rngs)

        def __call__(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.fc2(nnx.gelu(self.fc1(self.ln2(x))))

    class NNXTransformer(nnx.Module):
        def __init__(self, d=32, rngs=None):
            self.blocks = nnx.List([Block(d, rngs) for _ in range(2)])
            self.head = nnx.Linear(d, 10, rngs=rngs)

        def __call__(self, x):
            for b in self.blocks:
                x = b(x)
            return self.head(x)

    class LinenBlock(nn.Module):
        @nn.compact
        def __call__(self, x):
            d = x.shape[-1]
            x = x + nn.MultiHeadDotProductAttention(num_heads=2)(nn.LayerNorm()(x))
            return x + nn.Dense(d)(nn.gelu(nn.Dense(4 * d)(nn.LayerNorm()(x))))

    class LinenTransformer(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = LinenBlock()(LinenBlock()(x))
            return nn.Dense(10)(x)

    return NNXTransformer(rngs=nnx.Rngs(0)), LinenTransformer()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["nnx", "linen"], help="one model (both by default)")
    args = parser.parse_args()
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import jinit

    nnx_model, linen_model = models()
    x = jax.random.normal(jax.random.key(0), (8, 16, 32))
    g, p_nnx, rest = nnx.split(nnx_model, nnx.Param, ...)
    p_linen = linen_model.init(jax.random.key(0), x)
    contenders = {
        ("nnx", "grad (floor)"): (
            lambda p, b: jax.grad(lambda q: jnp.mean(nnx.merge(g, q, rest)(b)))(p),
            p_nnx,
        ),
        ("nnx", "layer_statistics"): (
            lambda p, b: jinit.layer_statistics(nnx_model, p, b),
            p_nnx,
        ),
        ("linen", "grad (floor)"): (
            lambda p, b: jax.grad(lambda q: jnp.mean(linen_model.apply(q, b)))(p),
            p_linen,
        ),
        ("linen", "layer_statistics"): (
            lambda p, b: jinit.layer_statistics(linen_model, p, b),
            p_linen,
        ),
    }
    rows = []
    for (model, what), (fn, params) in contenders.items():
        if args.only not in (None, model):
            continue
        f = jax.jit(fn)
        t0 = time.perf_counter()
        lowered = f.lower(params, x)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        times = []
        for _ in range(1 if args.quick else args.repeats):
            t = time.perf_counter()
            jax.block_until_ready(compiled(params, x))
            times.append(time.perf_counter() - t)
        rows.append(
            {
                "model": model,
                "what": what,
                "trace_s": t1 - t0,
                "compile_s": t2 - t1,
                "call_ms": 1e3 * statistics.median(times),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    floor = {r["model"]: r for r in rows if r["what"] == "grad (floor)"}
    for r in rows:
        f = floor[r["model"]]
        r["trace_compile_vs_floor"] = (r["trace_s"] + r["compile_s"]) / (
            f["trace_s"] + f["compile_s"]
        )
    machine = {
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "platform": platform.platform(),
        "processor": platform.processor(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "date": time.strftime("%Y-%m-%d"),
    }
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "diagnostics.json").write_text(
        json.dumps({"machine": machine, "rows": rows}, indent=2)
    )
    lines = [
        "| model | what | trace (s) | compile (s) | call (ms) | trace+compile vs floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['what']} | {r['trace_s']:.2f} | {r['compile_s']:.2f} | "
            f"{r['call_ms']:.2f} | {r['trace_compile_vs_floor']:.1f}x |"
        )
    md = (
        f"Machine: {machine['cpu_count']} CPU cores (1-min load average "
        f"{machine['load_average_1min']:.1f}), {machine['platform']}, jax {machine['jax']} "
        f"({machine['backend']}), {machine['date']}. 2-block pre-LN transformer, d=32, batch "
        "8 x 16 tokens.\n\n" + "\n".join(lines) + "\n"
    )
    (outdir / "diagnostics.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
