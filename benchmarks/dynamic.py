"""GradInit / MetaInit iterations: one ``lax.scan`` program versus a Python loop of a jitted step.

On CPU, XLA's convolutions inside ``lax.scan`` lose their fast path; this measures by how much,
for a deep plain CNN (convolutions) and a deep MLP (matmuls only), so that the passes'
``loop=None`` rule (``"python"`` for conv models on CPU, else ``"scan"``) is backed by numbers.
Reports steady-state ms per iteration (second call, compilation excluded) and the compile time.

    python -m benchmarks.dynamic            # writes docs/benchmarks/dynamic.{json,md}
    python -m benchmarks.dynamic --only mlp # one row group (cnn or mlp), printed, not written
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import jinit
from experiments.lsuv_depth import DeepMLP
from experiments.plain_cnn import PlainCNN, softmax_xent

REPO = pathlib.Path(__file__).resolve().parents[1]


def case(name, model, x, iters):
    y = jnp.arange(x.shape[0]) % 10
    params = model.init(jax.random.key(0), x)
    batch = {"x": x, "y": y}
    out = {}
    for method in ("gradinit", "metainit"):
        fn = getattr(jinit, method)
        n_kw = {"iters": iters} if method == "gradinit" else {"steps": iters}
        for loop in ("scan", "python"):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(model, params, batch, softmax_xent, loop=loop, **n_kw)[1])
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            jax.block_until_ready(fn(model, params, batch, softmax_xent, loop=loop, **n_kw)[1])
            steady = time.perf_counter() - t0
            out[f"{method}/{loop}"] = {
                "ms_per_iter": 1e3 * steady / iters,
                "compile_s": first - steady,
            }
            print(name, method, loop, out[f"{method}/{loop}"], flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    p.add_argument(
        "--only", choices=("cnn", "mlp"), help="run one model's rows and print them (no files)"
    )
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    cases = {
        "plain CNN (10 conv, width 16, 16x16 images, batch 64)": (
            PlainCNN(10, 16),
            jnp.asarray(rng.normal(size=(64, 16, 16, 3)), jnp.float32),
        ),
        "MLP (20 Dense, width 32, batch 64)": (
            DeepMLP(20, 32, "relu"),
            jnp.asarray(rng.normal(size=(64, 64)), jnp.float32),
        ),
    }
    if args.only:
        word = {"cnn": "CNN", "mlp": "MLP"}[args.only]
        cases = {k: v for k, v in cases.items() if word in k}
    results = {name: case(name, m, x, args.iters) for name, (m, x) in cases.items()}
    if args.only:
        return results
    env = {
        "machine": f"{platform.processor() or platform.machine()}, {jax.local_device_count()} "
        f"device(s), {__import__('os').cpu_count()} CPU cores",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "date": time.strftime("%Y-%m-%d"),
        "iters": args.iters,
    }
    out = pathlib.Path(args.out)
    (out / "dynamic.json").write_text(
        json.dumps({"environment": env, "results": results}, indent=1)
    )
    lines = [
        "# GradInit / MetaInit: scan vs Python loop",
        "",
        f"Machine: {env['machine']}, jax {env['jax']} ({env['backend']}), {env['date']}; "
        f"{args.iters} iterations, steady state (second call).",
        "",
        "| model | pass | scan ms/iter | python ms/iter | scan / python | compile scan (s) | "
        "compile python (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        for method in ("gradinit", "metainit"):
            s, py = r[f"{method}/scan"], r[f"{method}/python"]
            lines.append(
                f"| {name} | {method} | {s['ms_per_iter']:.1f} | {py['ms_per_iter']:.1f} | "
                f"{s['ms_per_iter'] / py['ms_per_iter']:.2f}x | {s['compile_s']:.1f} | "
                f"{py['compile_s']:.1f} |"
            )
    (out / "dynamic.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
