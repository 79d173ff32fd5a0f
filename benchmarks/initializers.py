"""Sampling time of jinit's initializers against jax.nn.initializers (and torch.nn.init).

For every initializer both libraries provide, on dense shapes up to 4096x4096 and conv shapes up
to (3, 3, 512, 512), in float32:

* ``eager first``: the first eager call ``init(key, shape, dtype)`` after ``jax.clear_caches()``
  (trace + compile + run: what a Flax ``init`` outside ``jit`` pays once per shape);
* ``eager steady``: median of later eager calls (compiled programs cached);
* ``jit compile``: ``jax.jit(lambda k: init(k, shape, dtype)).lower(key).compile()`` time;
* ``jit steady``: median run time of that compiled program (what a jitted model init pays).

Ratios are jinit / JAX (< 1 means jinit is faster). ``torch.nn.init`` (on an empty tensor, in
the framework's own layout) is timed only when ``torch`` imports; it is never a jinit
dependency. jinit-only initializers (conv_orthogonal, sparse, dirac, zero_hadamard) get their
own times. Results go to ``--out`` (default ``docs/benchmarks``) as ``initializers.json`` and
``initializers.md``; the load average before and after is recorded, since the machine may be
shared.

Usage::

    python benchmarks/initializers.py [--repeats 5] [--quick] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import time

# OpenBLAS's thread pool makes every LAPACK call (the QR of orthogonal) take ~1 s on a shared
# 2-core machine whatever the matrix size (measured: 256x256 QR 960 ms threaded vs 3 ms with one
# thread). Both libraries call the same LAPACK, so the ratio is unaffected, but absolute times
# would be meaningless: use one BLAS thread unless the caller says otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax
import jax.numpy as jnp

import jinit

REPO = pathlib.Path(__file__).resolve().parents[1]

J = jax.nn.initializers
DENSE = [(256, 256), (1024, 1024), (4096, 4096)]
CONV = [(3, 3, 64, 64), (3, 3, 512, 512)]
QUICK_DENSE, QUICK_CONV = [(256, 256)], [(3, 3, 64, 64)]

# name -> (jinit factory, jax factory, shapes filter). Orthogonal of a square 4096x4096 is a
# 4096^3 QR in both libraries; it is left out of the default run to keep it to minutes.
PAIRS = {
    "normal": (lambda: jinit.normal(0.02), lambda: J.normal(0.02)),
    "uniform": (lambda: jinit.uniform(0.05), lambda: J.uniform(0.05)),
    "truncated_normal": (lambda: jinit.truncated_normal(0.02), lambda: J.truncated_normal(0.02)),
    "glorot_uniform": (jinit.glorot_uniform, J.glorot_uniform),
    "glorot_normal": (jinit.glorot_normal, J.glorot_normal),
    "lecun_normal": (jinit.lecun_normal, J.lecun_normal),
    "he_normal": (jinit.he_normal, J.he_normal),
    "he_uniform": (jinit.he_uniform, J.he_uniform),
    "variance_scaling(normal)": (
        lambda: jinit.variance_scaling(2.0, "fan_avg", "normal"),
        lambda: J.variance_scaling(2.0, "fan_avg", "normal"),
    ),
    "orthogonal": (jinit.orthogonal, J.orthogonal),
    "delta_orthogonal": (jinit.delta_orthogonal, J.delta_orthogonal),
}
ONLY_JINIT = {
    "orthogonal(method='cholesky_qr2')": lambda: jinit.orthogonal(method="cholesky_qr2"),
    "conv_orthogonal": jinit.conv_orthogonal,
    "sparse(0.9)": lambda: jinit.sparse(0.9),
    "dirac": jinit.dirac,
    "zero_hadamard": jinit.zero_hadamard,
}
TORCH = {  # torch.nn.init counterparts (weights in torch's own (out, in, ...) layout)
    "normal": lambda nn, w: nn.init.normal_(w, 0.0, 0.02),
    "uniform": lambda nn, w: nn.init.uniform_(w, 0.0, 0.05),
    "truncated_normal": lambda nn, w: nn.init.trunc_normal_(w, 0.0, 0.02, -0.04, 0.04),
    "glorot_uniform": lambda nn, w: nn.init.xavier_uniform_(w),
    "glorot_normal": lambda nn, w: nn.init.xavier_normal_(w),
    "he_normal": lambda nn, w: nn.init.kaiming_normal_(w),
    "he_uniform": lambda nn, w: nn.init.kaiming_uniform_(w),
    "orthogonal": lambda nn, w: nn.init.orthogonal_(w),
    "dirac": lambda nn, w: nn.init.dirac_(w),
}


def applies(name: str, shape: tuple[int, ...]) -> bool:
    conv = len(shape) == 4
    if name in ("delta_orthogonal", "conv_orthogonal", "dirac"):
        return conv
    if name in ("sparse(0.9)", "zero_hadamard"):
        return not conv
    if "cholesky" in name:
        return conv  # tall flattened matrices only
    if name.startswith("orthogonal"):
        return math.prod(shape) <= 1024 * 1024 or conv
    return True


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_jax_like(factory, shape, repeats: int) -> dict:
    """eager first/steady and jit compile/steady of ``factory()(key, shape, float32)``."""
    init = factory()
    key = jax.random.key(0)
    jax.clear_caches()
    t0 = time.perf_counter()
    jax.block_until_ready(init(key, shape, jnp.float32))
    eager_first = time.perf_counter() - t0
    eager_steady = _median_time(lambda: init(key, shape, jnp.float32), repeats)
    jax.clear_caches()
    t0 = time.perf_counter()
    compiled = jax.jit(lambda k: init(k, shape, jnp.float32)).lower(key).compile()
    jit_compile = time.perf_counter() - t0
    jit_steady = _median_time(lambda: compiled(key), repeats)
    return {
        "eager_first_s": eager_first,
        "eager_steady_s": eager_steady,
        "jit_compile_s": jit_compile,
        "jit_steady_s": jit_steady,
    }


def time_torch(torch, fn, shape, repeats: int) -> dict:
    tshape = (shape[-1], shape[-2], *shape[:-2])  # (out, in, *window)
    w = torch.empty(tshape)
    t0 = time.perf_counter()
    fn(torch.nn, w)
    first = time.perf_counter() - t0
    steady = _median_time(lambda: fn(torch.nn, w), repeats)
    return {"eager_first_s": first, "eager_steady_s": steady}


def machine() -> dict:
    dev = jax.devices()[0]
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(dev.device_kind),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def run(args) -> dict:
    shapes = (QUICK_DENSE + QUICK_CONV) if args.quick else (DENSE + CONV)
    repeats = 1 if args.quick else args.repeats
    try:
        import torch  # noqa: PLC0415

        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None
    res = {
        "machine": machine(),
        "load_before": [round(v, 2) for v in os.getloadavg()],
        "repeats": repeats,
        "torch": None if torch is None else torch.__version__,
        "pairs": [],
        "jinit_only": [],
    }
    only = set(args.only or [])
    for name, (ours, theirs) in PAIRS.items():
        if only and name not in only:
            continue
        for shape in shapes:
            if not applies(name, shape):
                continue
            row = {"name": name, "shape": list(shape)}
            row["jinit"] = time_jax_like(ours, shape, repeats)
            row["jax"] = time_jax_like(theirs, shape, repeats)
            if torch is not None and name in TORCH:
                row["torch"] = time_torch(torch, TORCH[name], shape, repeats)
            row["ratio"] = {k: row["jinit"][k] / row["jax"][k] for k in row["jinit"]}
            res["pairs"].append(row)
            print(
                f"{name:26s} {str(shape):18s} eager steady jinit/jax "
                f"{row['ratio']['eager_steady_s']:.2f}  jit steady "
                f"{row['ratio']['jit_steady_s']:.2f}  eager first "
                f"{row['ratio']['eager_first_s']:.2f}",
                flush=True,
            )
    for name, factory in ONLY_JINIT.items():
        if only and name not in only:
            continue
        for shape in shapes:
            if applies(name, shape):
                times = time_jax_like(factory, shape, repeats)
                row = {"name": name, "shape": list(shape), "jinit": times}
                res["jinit_only"].append(row)
                print(f"{name:26s} {str(shape):18s} {row['jinit']}", flush=True)
    # The goal: orthogonal on (3, 3, 512, 512) in under a second, compilation included.
    jax.clear_caches()
    t0 = time.perf_counter()
    jax.block_until_ready(jinit.orthogonal()(jax.random.key(1), (3, 3, 512, 512)))
    res["orthogonal_3x3x512x512_cold_s"] = time.perf_counter() - t0
    res["load_after"] = [round(v, 2) for v in os.getloadavg()]
    return res


def summary(res: dict) -> dict:
    ratios = {k: [r["ratio"][k] for r in res["pairs"]] for k in res["pairs"][0]["ratio"]}

    def gmean(xs):
        return math.exp(sum(math.log(x) for x in xs) / len(xs))

    return {k: {"geomean": gmean(v), "max": max(v), "min": min(v)} for k, v in ratios.items()}


def fmt(x: float) -> str:
    return f"{x * 1e3:.1f}" if x < 10 else f"{x * 1e3:.0f}"


def markdown(res: dict) -> str:
    m = res["machine"]
    s = res["summary"]
    lines = [
        f"Machine: {m['cpu_count']} CPU cores, {m['platform']}, jax {m['jax']} ({m['backend']}), "
        f"OPENBLAS_NUM_THREADS={m['OPENBLAS_NUM_THREADS']}; "
        f"load average before/after: {res['load_before']} / {res['load_after']} (the machine is "
        "shared with other jobs, so absolute times are noisy; ratios measured in the same run "
        "are the signal). Generated by `python benchmarks/initializers.py`: jinit vs "
        "`jax.nn.initializers`"
        + (
            f" vs `torch.nn.init` (torch {res['torch']})"
            if res["torch"]
            else " (`torch` not installed here, so no `torch.nn.init` column)"
        )  # fmt: skip
        + ".",
        "",
        f"float32, times in milliseconds, median of {res['repeats']} repeats. `eager first` = "
        "first eager call after `jax.clear_caches()` (trace + compile + run); `eager steady` = "
        "later eager calls; `jit compile` / `jit steady` = compiling / running "
        "`jax.jit(lambda k: init(k, shape))`. Ratio = jinit / JAX (< 1: jinit faster).",
        "",
        "## Summary (jinit / JAX over all rows)",
        "",
        "| measure | geometric mean | min | max |",
        "|---|---:|---:|---:|",
    ]
    for k, v in s.items():
        lines.append(f"| {k[:-2].replace('_', ' ')} | {v['geomean']:.2f} | {v['min']:.2f} | "
                     f"{v['max']:.2f} |")  # fmt: skip
    lines += [
        "",
        f"`orthogonal()` on (3, 3, 512, 512), cold (compilation included): "
        f"{res['orthogonal_3x3x512x512_cold_s']:.2f} s (goal: < 1 s).",
        "",
        "## Per initializer and shape",
        "",
        "| initializer | shape | jinit eager first | JAX eager first | jinit eager steady | "
        "JAX eager steady | steady ratio | jinit jit compile | JAX jit compile | "
        "jinit jit steady | JAX jit steady | jit steady ratio |"
        + (" torch steady |" if res["torch"] else ""),
        "|---|---|" + "---:|" * (10 + (1 if res["torch"] else 0)),
    ]
    for r in res["pairs"]:
        a, b = r["jinit"], r["jax"]
        cells = [
            r["name"], "x".join(map(str, r["shape"])), fmt(a["eager_first_s"]),
            fmt(b["eager_first_s"]), fmt(a["eager_steady_s"]), fmt(b["eager_steady_s"]),
            f"{r['ratio']['eager_steady_s']:.2f}", fmt(a["jit_compile_s"]),
            fmt(b["jit_compile_s"]), fmt(a["jit_steady_s"]), fmt(b["jit_steady_s"]),
            f"{r['ratio']['jit_steady_s']:.2f}",
        ]  # fmt: skip
        if res["torch"]:
            cells.append(fmt(r["torch"]["eager_steady_s"]) if "torch" in r else "—")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## jinit-only initializers",
        "",
        "| initializer | shape | eager first | eager steady | jit compile | jit steady |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in res["jinit_only"]:
        a = r["jinit"]
        lines.append(
            f"| {r['name']} | {'x'.join(map(str, r['shape']))} | {fmt(a['eager_first_s'])} | "
            f"{fmt(a['eager_steady_s'])} | {fmt(a['jit_compile_s'])} | {fmt(a['jit_steady_s'])} |"
        )
    return "\n".join(lines) + "\n"


def _order(part: str, row: dict) -> tuple:
    names = list(PAIRS if part == "pairs" else ONLY_JINIT)
    shapes = DENSE + CONV + QUICK_DENSE + QUICK_CONV
    return names.index(row["name"]), shapes.index(tuple(row["shape"]))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="one dense and one conv shape, 1 repeat")
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    p.add_argument("--only", action="append", help="initializer names to (re)run; repeatable")
    p.add_argument(
        "--merge", action="store_true", help="keep the other rows of --out/initializers.json"
    )
    args = p.parse_args(argv)
    res = run(args)
    out = pathlib.Path(args.out)
    if args.merge and (out / "initializers.json").exists():
        old = json.loads((out / "initializers.json").read_text())
        for part in ("pairs", "jinit_only"):
            fresh = {(r["name"], tuple(r["shape"])) for r in res[part]}
            known = set(PAIRS if part == "pairs" else ONLY_JINIT)
            kept = [
                r
                for r in old[part]
                if (r["name"], tuple(r["shape"])) not in fresh and r["name"] in known
            ]
            res[part] = sorted(kept + res[part], key=lambda r: _order(part, r))
        res["merged_from"] = {k: old[k] for k in ("load_before", "load_after") if k in old}
    res["summary"] = summary(res)
    out.mkdir(parents=True, exist_ok=True)
    (out / "initializers.json").write_text(json.dumps(res, indent=1))
    (out / "initializers.md").write_text(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
