"""Publishes a finished study run into the docs: its results.json, figures and a results page.

    python experiments/publish.py imdb_rnn runs/imdb_rnn

copies ``results.json`` and every PNG of the run into ``docs/experiments/NAME/`` and writes the
tables of ``docs/experiments/NAME.md`` from the saved numbers (never by hand), between the
markers ``<!-- results:begin -->`` and ``<!-- results:end -->`` of that page; the prose around
them is kept.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil

import numpy as np

from experiments import common

REPO = pathlib.Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _sweep_table(r: dict) -> list[str]:
    lines = [
        "| initializer | test accuracy: mean [95% interval over seeds] | std | per seed "
        "| final val accuracy | test loss |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, v in r["initializers"].items():
        val = np.array(v["val_accuracy_per_epoch"])[:, -1]
        seeds = ", ".join(f"{a:.4f}" for a in v["test_accuracy"])
        lines.append(
            f"| {name} | {_interval(v['test_accuracy'])} | {_std(v)} | "
            f"{seeds} | {val.mean():.4f} | {np.mean(v['test_loss']):.4f} |"
        )
    return lines + _ranking({k: v["test_accuracy"] for k, v in r["initializers"].items()})


def _std(v: dict) -> str:
    return f"{v['test_accuracy_std']:.4f}" if len(v["test_accuracy"]) > 1 else "-"


def _interval(values) -> str:
    return common.format_interval(values) if len(values) > 1 else f"{values[0]:.4f} (1 seed)"


def _ranking(arms: dict, title: str = "Ranking") -> list[str]:
    """Rankings only where the seeds separate the arms (a paired 95% interval excludes 0)."""
    n = min(len(v) for v in arms.values())
    if n < 2:
        return ["", f"{title}: one seed per arm, so no ranking is claimed."]
    separated, unresolved = common.paired_ranking(arms)
    return [
        "",
        f"{title} over {n} seeds: an arm is ranked above another only where the 95% "
        "interval of their seed-paired difference excludes 0. "
        f"{unresolved} of {unresolved + len(separated)} pairs are not separated by the seeds.",
    ] + ([""] + [f"- {line}" for line in separated] if separated else [])


def _run_facts(r: dict) -> list[str]:
    env = common.machine_of(r)
    models = f" for {r['num_models']} models" if "num_models" in r else ""
    load = f" (data loading {r['data_load_s']:.1f} s)" if "data_load_s" in r else ""
    runs = len(r.get("wall_time_s_per_run", [])) or 1
    resumed = f", over {runs} runs (resumed from checkpoints)" if runs > 1 else ""
    facts = [f"- wall time on this machine: **{r['wall_time_s']:.0f} s**{models}{load}{resumed}"]
    if "epoch_seconds" in r:
        facts.append(
            "- seconds per epoch (all models together): "
            + ", ".join(f"{s:.1f}" for s in r["epoch_seconds"])
        )
    if "examples_per_s" in r:
        facts.append(
            "- training examples/s per epoch (all models): "
            + ", ".join(f"{s:.0f}" for s in r["examples_per_s"])
        )
    if "data" in r:
        d = r["data"]
        facts.append(
            f"- data: {d['train']} train / {d['val']} validation / {d['test']} test examples "
            f"from `{pathlib.Path(d['source']).name}`"
        )
    facts.append(
        f"- machine: {common.describe_machine(env)}; backend {env.get('backend')}, "
        f"devices {len(env.get('devices', []))}, XLA_FLAGS `{env.get('xla_flags') or 'none'}`"
    )
    return facts


def _batchnorm_table(r: dict) -> list[str]:
    lines = [
        "| kernel init | with BatchNorm: test accuracy, mean [95% interval over seeds] "
        "| without BatchNorm |",
        "|---|---:|---:|",
    ]
    for arm in (k for k in r["batchnorm"] if not k.startswith("_")):
        cells = []
        for bn in ("batchnorm", "plain"):
            a = np.array(r[bn][arm]["test_accuracy"])
            cells.append(_interval(a.tolist()))
        lines.append(f"| {arm} | {cells[0]} | {cells[1]} |")
    arms = [k for k in r["batchnorm"] if not k.startswith("_")]
    for bn, title in (("batchnorm", "With BatchNorm"), ("plain", "Without BatchNorm")):
        lines += _ranking({a: r[bn][a]["test_accuracy"] for a in arms}, title)
    return lines


def _symmetry_table(r: dict) -> list[str]:
    lines = [
        "| task | init | symmetry gap at init | gap after training | zero throughout | final test |",
        "|---|---|---:|---:|---|---|",
    ]
    for task in ("regression", "classification"):
        for name, v in r[task].items():
            g = np.array(v["symmetry_gap_per_epoch"])
            final = ", ".join(f"{k} {np.mean(x):.4f}" for k, x in v["final_test"].items())
            lines.append(
                f"| {task} | {name} | {g[:, 0].mean():.3g} | {g[:, -1].mean():.3g} | "
                f"{v['zero_gap_throughout']} | {final} |"
            )
    return lines


def render(name: str, r: dict) -> str:
    lines = []
    if "initializers" in r:
        lines += _sweep_table(r)
    elif "batchnorm" in r:
        lines += _batchnorm_table(r)
    elif "regression" in r:
        lines += _symmetry_table(r)
    lines += [""] + _run_facts(r) if "wall_time_s" in r else []
    figs = sorted((REPO / "docs" / "experiments" / name).glob("*.png"))
    lines += [""] + [f"![{f.stem}]({name}/{f.name})" for f in figs]
    return "\n".join(lines)


def publish(name: str, run_dir: str | pathlib.Path, extra_tables: str = "") -> pathlib.Path:
    run_dir = pathlib.Path(run_dir)
    dest = REPO / "docs" / "experiments" / name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run_dir / "results.json", dest / "results.json")
    for png in run_dir.glob("*.png"):
        shutil.copy2(png, dest / png.name)
    r = json.loads((dest / "results.json").read_text())
    page = REPO / "docs" / "experiments" / f"{name}.md"
    text = page.read_text() if page.exists() else f"# {name}\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = render(name, r) + ("\n\n" + extra_tables if extra_tables else "")
    page.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    return page


def main(argv=None) -> pathlib.Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="the study, e.g. imdb_rnn (its page is docs/experiments/NAME.md)")
    p.add_argument("run_dir", type=common.existing_dir, help="the finished run, e.g. runs/imdb_rnn")
    args = p.parse_args(argv)
    if not (pathlib.Path(args.run_dir) / "results.json").is_file():
        p.error(f"argument run_dir: {args.run_dir!r} holds no results.json")
    return publish(args.name, args.run_dir)


if __name__ == "__main__":
    print(main())
