"""benchmarks/gpu_check.sh end to end in its --quick mode (CPU), and its time bound per part."""

import json
import math
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PARTS = ("peak", "sweep_imdb", "sweep_cnn", "throughput", "lsuv")


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    r = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return r, out


@pytest.mark.slow  # one end-to-end run of every part (about 40 s quiet, 2 cores)
def test_quick_run_measures_every_part(quick_run):
    r, out = quick_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "gpu_check.json").read_text())
    assert res["mode"] == "quick"
    assert res["machine"]["device_kind"] and res["machine"]["jax"] and res["date"]
    assert set(res["parts"]) == set(PARTS)
    for name, part in res["parts"].items():
        assert part["status"] == "ok", (name, part)
        assert part["rows"], name
        nums = list(_numbers(part["rows"]))
        assert nums and all(math.isfinite(v) for v in nums), name
    rows = res["parts"]
    # Side by side: the same model count, sequential and vmapped, with a measured ratio.
    for name in ("sweep_imdb", "sweep_cnn"):
        by = {(x["num_models"], x["strategy"]): x for x in rows[name]["rows"]}
        assert (2, "sequential") in by and (2, "vmap") in by, name
        assert by[(2, "sequential")]["speedup_vs_sequential"] == 1.0
        assert by[(2, "vmap")]["speedup_vs_sequential"] > 0
        assert all(x["compile_s"] > 0 for x in by.values())
    peak = max(x["flops_per_s"] for x in rows["peak"]["rows"])
    assert res["peak_flops_per_s"] == peak
    for x in rows["throughput"]["rows"]:
        assert x["images_per_s"] > 0 and x["flops_per_step"] > 0
        assert x["fraction_of_peak"] == pytest.approx(x["achieved_flops_per_s"] / peak)
    lsuv = {(x["arch"], x["jit"]) for x in rows["lsuv"]["rows"]}
    assert lsuv == {("mlp", None), ("mlp", True), ("cnn", None), ("cnn", True)}
    assert all(x["converged"] for x in rows["lsuv"]["rows"])


@pytest.mark.slow
def test_quick_run_renders_the_table(quick_run):
    r, out = quick_run
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("Device: ") and "jaxlib" in md and "Synthetic" in md
    for title in ("Peak", "IMDB RNN", "CIFAR-10 CNN: one vmapped", "throughput", "LSUV"):
        assert "### " in md and title in md, title
    assert md.count("| vmap |") == 2  # one vmapped row per study
    assert "—" not in md.split("### LSUV")[1]  # every LSUV cell measured
    assert md.strip() in r.stdout  # the .sh prints the table


def test_a_part_over_its_budget_is_killed_and_reported(tmp_path):
    r = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--quick", "--only", "peak"]
        + ["--budget-scale", "0.0001", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["parts"]["peak"]["status"].startswith("timeout")
    assert "FAILED parts: ['peak']" in r.stderr


def test_unknown_part_is_a_clear_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--only", "peak,gpu", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "--only" in r.stderr and "'gpu'" in r.stderr and "sweep_imdb" in r.stderr
