"""Runs every paper reproduction, one fresh process each, and publishes the verdicts.

    python experiments/papers/run_all.py                 # all, full runs, into runs/papers/NAME
    python experiments/papers/run_all.py --only he2015   # one (or a comma-separated few)
    python experiments/papers/run_all.py --publish       # then write docs/reproductions.md
    python experiments/papers/run_all.py --publish-only  # publish the runs already in --out

Publishing copies each run's ``results.json`` and figures into ``docs/reproductions/NAME/`` and
writes the table of ``docs/reproductions.md`` (between ``<!-- results:begin -->`` and
``<!-- results:end -->``) from the saved numbers, never by hand. Quick runs are refused.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import time

from experiments import common

REPO = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
PAGE = REPO / "docs" / "reproductions.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

# In the order of the Reproductions page (and of the issue that asked for them).
SCRIPTS = (
    "glorot2010",
    "he2015",
    "mishkin2015",
    "saxe2013",
    "poole2016",
    "klambauer2017",
    "pennington2017",
    "zhang2019",
    "ioffe2015",
    "zhu2021",
    "dauphin2019",
    "yang2022",
)


def available() -> list[str]:
    return [s for s in SCRIPTS if (HERE / f"{s}.py").exists()]


def run(names: list[str], out: pathlib.Path, quick: bool) -> dict[str, float]:
    """Each script in its own process (clean timing, no shared compile cache); wall times."""
    times = {}
    for name in names:
        # As a module from the repository root: the worktree's jinit and experiments are imported.
        cmd = [sys.executable, "-m", f"experiments.papers.{name}", "--out", str(out / name)]
        cmd += ["--quick"] if quick else []
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO)
        times[name] = time.perf_counter() - t0
    return times


def _cell(text: str) -> str:
    # Escape what Markdown would read as table cells or (reference) links: "[a] [b]", "[x][y]".
    text = " ".join(str(text).split())
    for ch in "|[]":
        text = text.replace(ch, "\\" + ch)
    return text


def table(results: dict[str, dict]) -> list[str]:
    lines = [
        "| paper | claim | our setup | criterion (fixed before the run) | measured | verdict | figure |",
        "|---|---|---|---|---|:---:|---|",
    ]
    for name, r in results.items():
        for c in r["claims"]:
            fig = f"[{c['figure']}](reproductions/{name}/{c['figure']})" if c["figure"] else ""
            text = [_cell(c[k]) for k in ("paper", "claim", "setup", "criterion", "measured")]
            lines.append("| " + " | ".join([*text, f"**{c['verdict']}**", fig]) + " |")
    return lines


def details(results: dict[str, dict]) -> list[str]:
    lines = ["", "### Runs", ""]
    lines += ["| script | claims passed | wall time | machine |", "|---|---:|---:|---|"]
    for name, r in results.items():
        n_pass = sum(c["verdict"] == "PASS" for c in r["claims"])
        lines.append(
            f"| `experiments/papers/{name}.py` | {n_pass}/{len(r['claims'])} | "
            f"{r['wall_time_s']:.0f} s | {_cell(common.describe_machine(common.machine_of(r)))} |"
        )
    failed = [c for r in results.values() for c in r["claims"] if c["verdict"] != "PASS"]
    if failed:
        lines += ["", "### Claims that did not hold here", ""]
        for c in failed:
            why = c["details"].get("analysis", "(no analysis recorded)")
            lines.append(f"- **{c['id']}** ({_cell(c['measured'])}): {_cell(why)}")
    lines += ["", "### Figures", ""]
    for name, r in results.items():
        for fig in sorted({c["figure"] for c in r["claims"] if c["figure"]}):
            lines += [f"![{name}: {fig}](reproductions/{name}/{fig})", ""]
    return lines


def publish(out: pathlib.Path, names: list[str]) -> None:
    """Copies the runs of ``names`` into the docs, then rewrites the page from every published run.

    Every run is checked before anything is copied (a missing or quick run changes nothing);
    reproductions not in ``names`` keep their published results.
    """
    docs = REPO / "docs" / "reproductions"
    runs = {}
    for name in names:
        path = out / name / "results.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run the reproduction first")
        r = json.loads(path.read_text())
        if r.get("quick"):
            raise SystemExit(f"{path} is a --quick run; only full runs are published")
        runs[name] = path.parent
    for name, src in runs.items():
        dest = docs / name
        if dest.exists() and dest.resolve() == src.resolve():
            continue  # already the published copy
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        shutil.copy2(src / "results.json", dest / "results.json")
        for png in src.glob("*.png"):
            shutil.copy2(png, dest / png.name)
    results = {
        name: json.loads((docs / name / "results.json").read_text())
        for name in available()
        if (docs / name / "results.json").exists()
    }
    page = PAGE.read_text()
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = "\n".join(table(results) + details(results))
    PAGE.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    print(f"wrote {PAGE.relative_to(REPO)} ({len(results)} reproductions, {len(runs)} updated)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", type=common.writable_dir, default="runs/papers", help="parent folder of the runs"
    )
    p.add_argument(
        "--only",
        type=common.name_list(available()),
        default=None,
        help=f"comma-separated subset of {', '.join(SCRIPTS)}",
    )
    p.add_argument("--quick", action="store_true", help="smoke runs (never published)")
    p.add_argument("--publish", action="store_true", help="publish into the docs after running")
    p.add_argument("--publish-only", action="store_true", help="publish existing runs, run none")
    args = p.parse_args(argv)
    if args.quick and (args.publish or args.publish_only):
        p.error("--quick runs are never published; drop --publish / --publish-only")
    names = available()
    if args.only is not None:
        names = [n for n in names if n in args.only]
    out = pathlib.Path(args.out).resolve()  # the scripts run from the repository root
    if not args.publish_only:
        times = run(names, out, args.quick)
        print("wall times (s):", {k: round(v, 1) for k, v in times.items()})
    if args.publish or args.publish_only:
        publish(out, names)


if __name__ == "__main__":
    main()
