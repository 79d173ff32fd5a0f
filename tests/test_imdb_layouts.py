"""benchmarks/_imdb_layouts.py (the IMDB sweep's per-model cost by layout): its runner, its
table and its bad input; the timings themselves are for the benchmark, not asserted here."""

import importlib.util
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "_imdb_layouts.py"


def _module():
    spec = importlib.util.spec_from_file_location("_imdb_layouts", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_matmul_layout_runs_in_its_own_process_and_writes_rows(tmp_path):
    out = tmp_path / "rows.json"
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--layouts", "matmul", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    cases = [row["case"] for row in result["rows"]]
    assert cases == [
        "1 model (32,32)@(32,32)",
        "9 models, vmap",
        "9 models, einsum mbh,mhk",
        "9x the rows, one matmul (288,32)@(32,32)",
    ]
    for row in result["rows"]:
        assert row["cpu_us_per_model_step"] > 0 and row["wall_us_per_model_step"] > 0
    assert len(result["load_average"]) == 2
    assert result["table"] in r.stdout
    assert "| 9 models, vmap |" in result["table"]


def test_table_puts_each_layout_and_model_count_in_its_cell():
    mod = _module()
    rows = [
        {
            "layout": "3dev",
            "strategy": "map",
            "models": m,
            "cpu_ms_per_model_step": c,
            "wall_ms_per_model_step": w,
        }
        for m, c, w in ((3, 2.5, 1.5), (9, 2.75, 1.625))
    ]
    rows.append({**rows[0], "strategy": "vmap", "models": 9})
    lines = mod.render(rows).splitlines()
    assert lines[2] == "| layout | strategy | M=3 | M=9 |"
    assert lines[4] == "| 3dev | map | 2.50 / 1.50 | 2.75 / 1.62 |"
    assert lines[5] == "| 3dev | vmap |  | 2.50 / 1.50 |"


def test_unknown_layout_is_named():
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--layouts", "4dev"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "--layouts: unknown layout '4dev'" in r.stderr and "1dev" in r.stderr
