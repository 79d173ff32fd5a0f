"""Runs every benchmark in benchmarks/, one subprocess each, and collects the results for the docs.

Each benchmark script (``benchmarks/NAME.py``, every ``*.py`` here except this runner and
``_*.py`` helpers) compares its contenders side by side in one run, separates compile time from
steady state, reports medians over repeats and the ratios between contenders, states the
machine, and writes ``NAME.json`` (with a ``"machine"`` entry) and ``NAME.md`` (a table whose
first line names the machine) into its ``--out`` folder. This runner:

* runs each script as ``python benchmarks/NAME.py [--out DIR] [--quick] [--repeats N]``, passing
  only the options the script declares (read from its source, without importing it), in its
  own process, so one benchmark's compiled programs, memory or device settings (e.g. the
  ``XLA_FLAGS`` that fake several CPU devices) cannot affect another's;
* streams its output, then collects ``NAME.json`` / ``NAME.md`` into the output folder
  (``docs/benchmarks/`` by default, which ``docs/benchmarks.md`` includes);
* writes ``run_all.json`` and ``run_all.md``: the machine (CPU, cores, accelerator, jax
  version), and per benchmark its status, wall time, command and the files it wrote. With
  ``--only`` the entries of the benchmarks not rerun are kept from the previous summary.

Usage::

    python benchmarks/run_all.py --list                 # the benchmarks and their options
    python benchmarks/run_all.py                        # all of them -> docs/benchmarks/
    python benchmarks/run_all.py --only lsuv --only sweep_vmap   (or --only lsuv,sweep_vmap)
    python benchmarks/run_all.py --quick                # smoke run (scripts that have --quick)
    python benchmarks/run_all.py --only sweep_vmap -- --models 3 --steps 50   # script's own args

On a GPU (results in docs/benchmarks/gpu/, shown next to the CPU tables on the docs page)::

    pip install -U "jax[cuda12]"                        # the CUDA wheels matching your driver
    python -c "import jax; print(jax.devices())"        # must list CudaDevice(s)
    python benchmarks/run_all.py --label gpu

The runner itself never initialises jax (it asks a short subprocess for the machine), so the
benchmark processes get the whole accelerator. Exit status: 0 if every selected benchmark
succeeded, 1 otherwise (the others still run).
"""

from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = REPO / "docs" / "benchmarks"
PASSED_OPTIONS = ("--out", "--quick", "--repeats")


@dataclasses.dataclass(frozen=True)
class Script:
    """A benchmark script: its name (file stem), path, one-line title and declared options."""

    name: str
    path: pathlib.Path
    title: str
    options: frozenset[str]


def _declared_options(tree: ast.Module) -> frozenset[str]:
    """The ``--flags`` of every ``add_argument(...)`` call in the script's source."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if arg.value.startswith("--"):
                        found.add(arg.value)
    return frozenset(found)


def discover(folder: pathlib.Path = HERE) -> dict[str, Script]:
    """``{name: Script}`` for every benchmark script in ``folder``, sorted by name."""
    scripts = {}
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_") or path.resolve() == pathlib.Path(__file__).resolve():
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError as e:  # a script being written: listed, and fails when run
            scripts[path.stem] = Script(path.stem, path, f"(syntax error: {e.msg})", frozenset())
            continue
        doc = ast.get_docstring(tree) or ""
        title = doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"
        scripts[path.stem] = Script(path.stem, path, title, _declared_options(tree))
    return scripts


_MACHINE_PROBE = r"""
import json, jax
devs = jax.devices()
print(json.dumps({"jax": jax.__version__, "backend": jax.default_backend(),
                  "devices": [d.device_kind for d in devs], "device_count": len(devs)}))
"""


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """The machine the benchmarks run on: CPU, cores, OS, Python, jax, backend and devices.

    jax is queried in a short subprocess so that this process never holds the accelerator.
    """
    info = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        out = subprocess.run(
            [sys.executable, "-c", _MACHINE_PROBE],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        info.update(json.loads(out.stdout.strip().splitlines()[-1]))
    except (subprocess.SubprocessError, ValueError, IndexError) as e:
        info["jax"] = f"unavailable ({type(e).__name__})"
    return info


def describe(machine: dict) -> str:
    """One line: ``"8 CPU cores (model), Linux-..., jax 0.x (gpu: 1 x NVIDIA H100)"``."""
    devices = collections.Counter(machine.get("devices", []))
    devs = ", ".join(f"{n} x {kind}" for kind, n in devices.items()) or "?"
    return (
        f"{machine.get('cpu_count')} CPU cores ({machine.get('cpu')}), {machine.get('platform')}, "
        f"Python {machine.get('python')}, jax {machine.get('jax')} "
        f"({machine.get('backend', '?')}: {devs})"
    )


def command_for(
    script: Script, out: pathlib.Path, quick: bool, repeats: int | None, extra: list[str] = ()
) -> list[str]:
    cmd = [sys.executable, str(script.path)]
    if "--out" in script.options:
        cmd += ["--out", str(out)]
    if quick and "--quick" in script.options:
        cmd.append("--quick")
    if repeats is not None and "--repeats" in script.options:
        cmd += ["--repeats", str(repeats)]
    return cmd + list(extra)


def run_one(
    script: Script, out: pathlib.Path, quick: bool, repeats: int | None, extra: list[str] = ()
) -> dict:
    """Runs one script, streaming its output; returns its summary entry."""
    cmd = command_for(script, out, quick, repeats, extra)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    print(f"\n=== {script.name}: {' '.join(cmd[1:])}", flush=True)
    start_wall = time.time()
    t0 = time.perf_counter()
    tail: collections.deque[str] = collections.deque(maxlen=40)
    with subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        for line in proc.stdout:
            print(f"  {line}", end="", flush=True)
            tail.append(line.rstrip("\n"))
        rc = proc.wait()
    wall = time.perf_counter() - t0
    outputs = collect(script.name, out, start_wall)
    if rc != 0:
        status = f"failed (exit {rc})"
    elif not outputs:
        status = "ran, wrote no NAME.json/NAME.md"
    else:
        status = "ok"
        json_out = out / f"{script.name}.json"
        if json_out.is_file():
            try:
                has_machine = "machine" in json.loads(json_out.read_text())
            except ValueError:
                has_machine = False
            if not has_machine:
                status = "ok (its JSON does not state the machine)"
    entry = {
        "name": script.name,
        "title": script.title,
        "status": status,
        "wall_s": round(wall, 1),
        "command": " ".join(["python", str(script.path.relative_to(REPO)), *cmd[2:]]),
        "outputs": outputs,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if rc != 0:
        entry["output_tail"] = list(tail)
    print(f"=== {script.name}: {status} in {wall:.1f} s", flush=True)
    return entry


def collect(name: str, out: pathlib.Path, since: float) -> list[str]:
    """The ``NAME.json`` / ``NAME.md`` written during the run, copied into ``out`` if needed.

    A script without ``--out`` writes to its own default (``docs/benchmarks/``); its files are
    copied into ``out`` when that is another folder.
    """
    found = []
    for suffix in (".json", ".md"):
        target = out / f"{name}{suffix}"
        for place in (out, DEFAULT_OUT):
            candidate = place / f"{name}{suffix}"
            if candidate.is_file() and candidate.stat().st_mtime >= since - 1:
                if candidate.resolve() != target.resolve():
                    shutil.copy2(candidate, target)
                found.append(target.name)
                break
    return found


def write_summary(out: pathlib.Path, machine: dict, entries: list[dict]) -> None:
    """Writes ``run_all.json`` and ``run_all.md``, keeping entries of benchmarks not rerun."""
    path = out / "run_all.json"
    previous = {}
    if path.is_file():
        try:
            previous = {e["name"]: e for e in json.loads(path.read_text())["benchmarks"]}
        except (ValueError, KeyError, TypeError):
            previous = {}
    line = describe(machine)
    merged = {**previous, **{e["name"]: {**e, "machine_line": line} for e in entries}}
    summary = {
        "machine": machine,
        "machine_line": line,
        "benchmarks": [merged[k] for k in sorted(merged)],
    }
    path.write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"Machine: {summary['machine_line']}.",
        "",
        "| benchmark | status | wall time (s) | finished | rerun with |",
        "|---|---|---:|---|---|",
    ]
    for e in summary["benchmarks"]:
        status = e["status"]
        if e.get("machine_line", line) != line:
            status += f" (on another machine: {e['machine_line']})"
        lines.append(
            f"| {e['name']} | {status} | {e['wall_s']:.1f} | {e.get('finished', '')} | "
            f"`python benchmarks/run_all.py --only {e['name']}` |"
        )
    (out / "run_all.md").write_text("\n".join(lines) + "\n")


def _select(scripts: dict[str, Script], only: list[str]) -> list[Script]:
    wanted = [n.strip().removesuffix(".py") for o in only for n in o.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in scripts]
    if unknown:
        raise SystemExit(
            f"run_all.py: unknown benchmark(s) {unknown}; choose from {sorted(scripts)}"
        )
    return [scripts[n] for n in wanted] if wanted else list(scripts.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="GPU: python benchmarks/run_all.py --label gpu (see the module docstring).",
    )
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these (repeatable, or comma-separated)",
    )
    p.add_argument("--quick", action="store_true", help="pass --quick to scripts that have it")
    p.add_argument("--repeats", type=int, help="pass --repeats N to scripts that have it")
    p.add_argument(
        "--label",
        help="write into docs/benchmarks/LABEL/ (e.g. gpu), shown beside the default tables",
    )
    p.add_argument("--out", type=pathlib.Path, help="output folder (default docs/benchmarks/)")
    p.add_argument(
        "script_args",
        nargs="*",
        metavar="-- ARGS",
        help="after --: extra arguments for the selected scripts (use with --only)",
    )
    args = p.parse_args(argv)

    scripts = discover()
    if args.list:
        for s in scripts.values():
            opts = ", ".join(o for o in sorted(s.options) if o in PASSED_OPTIONS) or "none"
            print(f"{s.name:<20} {s.title}  [options passed: {opts}]")
        return 0
    selected = _select(scripts, args.only)
    if args.out is not None and args.label is not None:
        p.error("give --out or --label, not both")
    out = args.out or (DEFAULT_OUT / args.label if args.label else DEFAULT_OUT)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    machine = machine_info()
    print(f"Machine: {describe(machine)}", flush=True)
    print(f"Benchmarks: {', '.join(s.name for s in selected)} -> {out}", flush=True)
    entries = []
    for script in selected:
        entries.append(run_one(script, out, args.quick, args.repeats, args.script_args))
        write_summary(out, machine, entries)  # after each, so a crash keeps what ran
    if not selected:
        print("No benchmark scripts found.")
    failed = [e["name"] for e in entries if not e["status"].startswith("ok")]
    print(f"\nDone: {len(entries) - len(failed)} ok, {len(failed)} not ok {failed or ''}")
    print(f"Summary: {out / 'run_all.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
