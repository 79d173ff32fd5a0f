"""Wall time of jinit.lsuv against a re-run-everything LSUV in the same JAX and the `lsuv` package.

Architectures (ReLU, batch 256, as in the issue):

* MLP: ``depth`` Dense(256) layers on 256 input features;
* CNN: ``depth`` 3x3 convolutions with 32 channels (SAME padding) on 32x32x3 inputs.

Implementations:

* ``jinit_auto``: ``jinit.lsuv(model, variables, x)`` with the default ``jit=None`` (the
  automatic choice; ``execution`` records what ran: eager on a first call with concrete arrays).
* ``jinit``: ``jit=True`` (one jitted program, what runs inside an outer ``jit``/``vmap``).
* ``jinit_eager``: ``jit=False`` (the forward pass eagerly, layer by layer).

  For each, ``first_s`` is the first call in a fresh process (trace + compile + run), the
  median over ``--first-runs`` processes,
  ``steady_s`` the median of later calls, ``compile_s = first_s - steady_s``.
* ``forward``: the first call of a plain ``jax.jit(model.apply)`` (no LSUV), the floor of any
  jitted pass.
* ``naive``: the same algorithm written the straightforward way in the same JAX: one jitted
  forward pass returning every layer's output variance (compiled once), and a Python loop that,
  for each layer, re-runs the WHOLE network after every rescaling (what hook-based LSUVs do).
  ``compile_s`` is the forward's compilation, ``steady_s`` the loop.
* ``lsuv_pkg``: the reference implementation by the paper's first author, the ``lsuv`` package on
  PyPI (``lsuv_with_singlebatch``), on the same architecture in PyTorch on CPU; only if ``torch``
  and ``lsuv`` import (``pip install torch==2.13.0 lsuv``; never a jinit dependency). Its
  orthonormal pre-init is included (its default), as in the reference numbers of the issue.

Results go to ``--out`` (default ``docs/benchmarks``) as ``lsuv.json`` and ``lsuv.md``. The
machine is shared: the load average before and after is recorded with the numbers.

Usage::

    python benchmarks/lsuv.py [--archs mlp cnn] [--depths 16 32] [--repeats 3] [--only cnn/lsuv_pkg]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jinit

REPO = pathlib.Path(__file__).resolve().parents[1]

BATCH = 256
TARGET, TOL, MAX_ITERS = 1.0, 0.1, 10


class MLP(nn.Module):
    depth: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.depth):
            x = nn.relu(nn.Dense(256, kernel_init=jinit.lsuv_ready_orthogonal())(x))
        return x


class CNN(nn.Module):
    depth: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.depth):
            x = nn.relu(nn.Conv(32, (3, 3), kernel_init=jinit.lsuv_ready_orthogonal())(x))
        return x


def make(arch: str, depth: int):
    key = jax.random.key(0)
    if arch == "mlp":
        model, x = MLP(depth), jax.random.normal(jax.random.key(1), (BATCH, 256))
    else:
        model, x = CNN(depth), jax.random.normal(jax.random.key(1), (BATCH, 32, 32, 3))
    return model, model.init(key, x[:1]), x


def timed(fn):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t, out


def bench_jinit(arch: str, depth: int, repeats: int, jit: bool | None = True) -> dict:
    """In a fresh process (a true first call: nothing compiled by an earlier row is reused)."""
    impl = {None: "jinit_auto", True: "jinit", False: "jinit_eager"}[jit]
    cmd = [sys.executable, __file__, "--child", arch, impl, str(depth), str(repeats)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def median_first(rows: list[dict]) -> dict:
    """One row from several first calls: their median ``first_s`` (all in ``first_runs_s``)."""
    firsts = [r["first_s"] for r in rows]
    med = statistics.median(firsts)
    steady = med if rows[-1]["compile_s"] == 0.0 else rows[-1]["steady_s"]  # the package
    return {
        **rows[-1],
        "first_s": med,
        "first_runs_s": firsts,
        "steady_s": steady,
        "compile_s": med - steady,
    }


def _bench_jinit_here(arch: str, depth: int, repeats: int, jit: bool | None) -> dict:
    model, variables, x = make(arch, depth)
    jax.block_until_ready((variables, x))
    first, (v2, report) = timed(lambda: jinit.lsuv(model, variables, x, jit=jit))
    steady = [timed(lambda: jinit.lsuv(model, variables, x, jit=jit))[0] for _ in range(repeats)]
    med = statistics.median(steady)
    return {
        "first_s": first,
        "steady_s": med,
        "steady_runs_s": steady,
        "compile_s": first - med,
        "execution": report.execution,
        "converged": bool(np.all(np.asarray(report.converged))),
        "iterations": int(np.sum(np.asarray(report.iterations))),
    }


def bench_forward(arch: str, depth: int) -> dict:
    """The floor of any jitted pass: the first call of a plain jitted forward (no LSUV)."""
    model, variables, x = make(arch, depth)
    jax.block_until_ready((variables, x))
    jax.clear_caches()
    fwd = jax.jit(model.apply)
    first, _ = timed(lambda: fwd(variables, x))
    steady, _ = timed(lambda: fwd(variables, x))
    return {"first_s": first, "steady_s": steady, "compile_s": first - steady}


def bench_naive(arch: str, depth: int) -> dict:
    """The same algorithm, re-running the whole network after every rescaling."""
    model, variables, x = make(arch, depth)
    kind = nn.Dense if arch == "mlp" else nn.Conv
    names = [f"{kind.__name__}_{i}" for i in range(depth)]

    @jax.jit
    def all_vars(variables, x):
        _, st = model.apply(
            variables,
            x,
            capture_intermediates=lambda m, _: isinstance(m, kind),
            mutable=["intermediates"],
        )
        return jnp.stack([jnp.var(st["intermediates"][n]["__call__"][0]) for n in names])

    jax.clear_caches()
    compile_s, _ = timed(lambda: all_vars(variables, x))
    params = dict(variables["params"])
    forwards = 0
    t = time.perf_counter()
    for i, name in enumerate(names):
        var = float(all_vars({"params": params}, x)[i])
        forwards += 1
        it = 0
        while abs(var - TARGET) >= TOL and it < MAX_ITERS:
            layer = dict(params[name])
            layer["kernel"] = layer["kernel"] * jnp.float32(np.sqrt(TARGET / var))
            params[name] = layer
            var = float(all_vars({"params": params}, x)[i])
            forwards += 1
            it += 1
    steady = time.perf_counter() - t
    return {
        "first_s": compile_s + steady,
        "steady_s": steady,
        "compile_s": compile_s,
        "full_forward_passes": forwards,
    }


def _import_lsuv_package():
    """The PyPI ``lsuv`` package, loaded from where pip installed it: this script is also
    called lsuv.py, so a plain ``import lsuv`` run from benchmarks/ would import itself."""
    import importlib.machinery
    import importlib.metadata
    import importlib.util

    try:
        import torch  # noqa: F401

        where = importlib.metadata.distribution("lsuv").locate_file("")
    except (ImportError, importlib.metadata.PackageNotFoundError):
        return None
    spec = importlib.machinery.PathFinder.find_spec("lsuv", [str(where)])
    if spec is None or spec.loader is None:
        return None
    cached = sys.modules.get("lsuv")
    if cached is not None and getattr(cached, "__file__", "") == __file__:
        sys.modules.setdefault("lsuv_benchmark", cached)
    module = importlib.util.module_from_spec(spec)
    sys.modules["lsuv"] = module  # the package's own `from lsuv import ...` finds it
    try:
        spec.loader.exec_module(module)
    except ImportError:
        sys.modules.pop("lsuv", None)
        return None
    return module


def bench_lsuv_pkg(arch: str, depth: int) -> dict | None:
    lsuv = _import_lsuv_package()
    if lsuv is None:
        return None
    import torch

    torch.manual_seed(0)
    layers: list = []
    if arch == "mlp":
        for _ in range(depth):
            layers += [torch.nn.Linear(256, 256), torch.nn.ReLU()]
        x = torch.randn(BATCH, 256)
    else:
        for i in range(depth):
            layers += [torch.nn.Conv2d(3 if i == 0 else 32, 32, 3, padding=1), torch.nn.ReLU()]
        x = torch.randn(BATCH, 3, 32, 32)
    model = torch.nn.Sequential(*layers)
    warm = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
    lsuv.lsuv_with_singlebatch(warm, torch.randn(16, 8), verbose=False)  # torch's one-time setup
    # On a loaded machine torch's thread pool can be slower than one thread: time both and keep
    # the package's best (jax uses the same cores either way).
    default_threads = torch.get_num_threads()
    times = {}
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        m = copy.deepcopy(model)
        t = time.perf_counter()
        lsuv.lsuv_with_singlebatch(m, x, verbose=False)
        times[threads] = time.perf_counter() - t
    torch.set_num_threads(default_threads)
    best = min(times.values())
    return {
        "first_s": best,
        "steady_s": best,
        "compile_s": 0.0,
        "torch": torch.__version__,
        "seconds_by_threads": times,
    }


def _torch_version() -> str | None:
    return None if _import_lsuv_package() is None else sys.modules["torch"].__version__


def fmt(v, nd=3):
    return "—" if v is None else f"{v:.{nd}f}" if v < 100 else f"{v:.0f}"


def ratio(a, b):
    return None if (a is None or b is None or b == 0) else a / b


COLUMNS = [  # (impl, field, header)
    ("jinit_auto", "first_s", "default (`jit=None`) first (s)"),
    ("jinit_auto", "execution", "default ran"),
    ("jinit", "first_s", "`jit=True` first (s)"),
    ("jinit", "compile_s", "`jit=True` compile (s)"),
    ("jinit", "steady_s", "`jit=True` steady (s)"),
    ("jinit_eager", "first_s", "`jit=False` first (s)"),
    ("jinit_eager", "steady_s", "`jit=False` steady (s)"),
    ("forward", "first_s", "plain jitted forward, first (s)"),
    ("naive", "first_s", "naive first (s)"),
    ("lsuv_pkg", "first_s", "`lsuv` pkg (s)"),
]
RATIOS = [  # (numerator impl, denominator impl, field, header)
    ("lsuv_pkg", "jinit_auto", "first_s", "pkg / default"),
    ("lsuv_pkg", "jinit", "first_s", "pkg / `jit=True` first"),
    ("lsuv_pkg", "jinit_eager", "first_s", "pkg / `jit=False` first"),
    ("lsuv_pkg", "jinit", "steady_s", "pkg / `jit=True` steady"),
]


def write_markdown(res: dict, path: pathlib.Path) -> None:
    rows = res["results"]
    get = lambda arch, impl, d, k: (rows.get(f"{arch}/{impl}/{d}") or {}).get(k)
    lines = [
        f"Machine: {res['machine']['cpu_count']} CPU cores, {res['machine']['platform']}, "
        f"jax {res['machine']['jax']} ({res['machine']['backend']})"
        + (f", torch {res['machine']['torch']}" if res["machine"].get("torch") else "")
        + f"; load average before/after: {res['load_before']} / {res['load_after']} (the "
        "machine is shared with other jobs, so absolute times are noisy; ratios measured in the "
        "same run are the signal)"
        + (
            f"; rows rerun later with `--merge` (load {res['load_rerun'][0]} / "
            f"{res['load_rerun'][1]}): {', '.join(res.get('rerun', []))}. "
            if res.get("load_rerun")
            else ". "
        )
        + f"Generated by `{res.get('command', 'python benchmarks/lsuv.py')}` on {res.get('date')}.",
        "",
        "ReLU networks, batch 256, target variance 1, tol 0.1, at most 10 iterations. `first` = "
        "first call in a fresh process (trace + compile + run), the median over the row's fresh "
        "processes (`first_runs_s` in lsuv.json; rows without it: one process); `steady` = "
        "median of later calls. `default` is `jinit.lsuv(model, variables, x)` with `jit=None`: "
        "it runs eagerly on a first call with concrete arrays (`default ran` says what ran); "
        "`jit=True` is one compiled program (what runs inside an outer `jit`/`vmap`). `lsuv` "
        "pkg: `lsuv_with_singlebatch` of the PyPI package on the same architecture in PyTorch "
        "on CPU (no compilation), per call the best of torch's default thread count and 1 "
        "thread, the median over the row's calls.",
        "",
    ]
    for arch, title in (
        ("mlp", "MLP, Dense(256) x depth"),
        ("cnn", "CNN, 3x3 conv 32 ch x depth, 32x32x3"),
    ):
        cols = [c for c in COLUMNS if any(k.startswith(f"{arch}/{c[0]}/") for k in rows)]
        rats = [
            r
            for r in RATIOS
            if any(k.startswith(f"{arch}/{r[0]}/") for k in rows)
            and any(k.startswith(f"{arch}/{r[1]}/") for k in rows)
        ]
        if not cols:
            continue
        lines += [
            f"### {title}",
            "",
            "| depth | " + " | ".join([c[2] for c in cols] + [r[3] for r in rats]) + " |",
            "|---:|" + "---:|" * len(cols + rats),
        ]
        for d in res["depths"]:
            if not any(k.startswith(f"{arch}/") and k.endswith(f"/{d}") for k in rows):
                continue
            cells = []
            for impl, field, _ in cols:
                v = get(arch, impl, d, field)
                cells.append(v if isinstance(v, str) else fmt(v))
            for num, den, field, _ in rats:
                r = ratio(get(arch, num, d, "first_s"), get(arch, den, d, field))
                cells.append("—" if r is None else f"{r:.1f}x")
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### Goals (issue 14, item 6)", ""] + [f"- {g}" for g in res["goals"]] + [""]
    path.write_text("\n".join(lines))


def goals(res: dict) -> list[str]:
    rows = res["results"]
    get = lambda arch, impl, d, k: (rows.get(f"{arch}/{impl}/{d}") or {}).get(k)
    out = []
    for arch, d, goal in [("cnn", 32, 10.0)] + [("mlp", d, 1.0) for d in res["depths"] if d >= 16]:
        pf, af = get(arch, "lsuv_pkg", d, "first_s"), get(arch, "jinit_auto", d, "first_s")
        if pf and af:
            ex = get(arch, "jinit_auto", d, "execution")
            out.append(
                f"{arch} depth {d}, including compilation: lsuv pkg / jinit default ({ex}) = "
                f"{pf / af:.2f}x (goal >= {goal:g}x): {'met' if pf / af >= goal else 'NOT met'}"
            )
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", type=int, nargs="+", default=[16, 32])
    p.add_argument("--archs", nargs="+", default=["mlp", "cnn"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--first-runs",
        type=int,
        default=5,
        help="rounds of first calls (jinit rows: each a fresh process; lsuv_pkg: one call), the "
        "implementations interleaved; the median is reported (one varies by about 20%% here)",
    )
    p.add_argument("--naive-cnn-max-depth", type=int, default=32)
    p.add_argument("--pkg-cnn-max-depth", type=int, default=32)
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks"))
    p.add_argument("--quick", action="store_true", help="depths 4 and 8 only, 1 repeat")
    p.add_argument(
        "--impls",
        nargs="+",
        default=["jinit_auto", "jinit", "jinit_eager", "lsuv_pkg", "forward"],
        help="jinit_auto (jit=None, the default), jinit (jit=True), jinit_eager (jit=False), "
        "lsuv_pkg, forward, naive",
    )
    p.add_argument(
        "--only", nargs="+", help="rows to run: arch/impl/depth prefixes, e.g. cnn/lsuv_pkg/32"
    )
    p.add_argument("--merge", action="store_true", help="keep other results in --out/lsuv.json")
    p.add_argument("--render", action="store_true", help="only rewrite lsuv.md from lsuv.json")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        arch, impl, d, reps = args.child
        jit = {"jinit_auto": None, "jinit": True, "jinit_eager": False}[impl]
        print(json.dumps(_bench_jinit_here(arch, int(d), int(reps), jit)))
        return {}
    if args.render:
        res = json.loads((pathlib.Path(args.out) / "lsuv.json").read_text())
        res["goals"] = goals(res)
        write_markdown(res, pathlib.Path(args.out) / "lsuv.md")
        return res
    if args.quick:
        args.depths, args.repeats = [4, 8], 1
    res = {
        "depths": args.depths,
        "batch": BATCH,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "torch": _torch_version(),
        },
        "command": "python benchmarks/lsuv.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": [round(v, 2) for v in os.getloadavg()],
        "results": {},
    }
    for arch in args.archs:
        for d in args.depths:
            impls = [
                impl
                for impl in args.impls
                if not (impl == "naive" and arch == "cnn" and d > args.naive_cnn_max_depth)
                and not (impl == "lsuv_pkg" and arch == "cnn" and d > args.pkg_cnn_max_depth)
                and not (
                    args.only
                    and not any(
                        f"{arch}/{impl}/{d}".startswith(o) or o in (arch, impl) for o in args.only
                    )
                )
            ]
            # First calls in rounds, the implementations interleaved in each: a slow spell of the
            # shared machine then hits every implementation, not one of them.
            rows: dict[str, list[dict]] = {}
            for k in range(args.first_runs):
                for impl in impls:
                    if impl in ("jinit_auto", "jinit", "jinit_eager"):
                        jit = {"jinit_auto": None, "jinit": True, "jinit_eager": False}[impl]
                        r = bench_jinit(arch, d, args.repeats, jit=jit)
                    elif impl == "lsuv_pkg":
                        r = bench_lsuv_pkg(arch, d)
                    elif k > 0:  # in this process: only its first call is a first call
                        continue
                    else:
                        r = bench_naive(arch, d) if impl == "naive" else bench_forward(arch, d)
                    if r is not None:
                        rows.setdefault(impl, []).append(r)
            for impl, rs in rows.items():
                r = median_first(rs) if len(rs) > 1 else rs[0]
                res["results"][f"{arch}/{impl}/{d}"] = r
                print(
                    f"{arch:>3} depth {d:>2} {impl:>8}: first {r['first_s']:8.3f} s  "
                    f"steady {r['steady_s']:8.3f} s",
                    flush=True,
                )
    res["load_after"] = [round(v, 2) for v in os.getloadavg()]
    prev = pathlib.Path(args.out) / "lsuv.json"
    if args.merge and prev.exists():
        old = json.loads(prev.read_text())
        res["results"] = {**old["results"], **res["results"]}
        res["depths"] = sorted(set(old["depths"]) | set(res["depths"]))
        res["load_rerun"] = [res["load_before"], res.pop("load_after")]
        res["rerun"] = sorted(
            {k.rsplit("/", 1)[0] for k in res["results"]}
            & set(f"{a}/{i}" for a in args.archs for i in args.impls)
        )
        res["load_before"], res["load_after"] = old["load_before"], old["load_after"]
    res["goals"] = goals(res)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lsuv.json").write_text(json.dumps(res, indent=2))
    write_markdown(res, out / "lsuv.md")
    for g in res["goals"]:
        print(g)
    return res


if __name__ == "__main__":
    main()
