"""experiments/papers: every reproduction's --quick run end to end, and the published page.

The quick runs only check that every code path works (results file, claims with criteria and
verdicts, figures); their verdicts are not meaningful. The published results are full runs
(checked here), and the Reproductions page is exactly what `run_all.py --publish` writes from them.
"""

import importlib
import json
import pathlib
import re

import pytest

from experiments import common
from experiments.papers import run_all

REPO = pathlib.Path(__file__).resolve().parents[1]
NAMES = run_all.available()


# The longest quick runs (20-45 s on an idle 2-core CPU) are marked slow: under xdist they are
# handed out first (tests/conftest.py), not last.
SLOW = {"yang2022", "zhu2021"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NAMES]
)
def test_quick_run_writes_claims_verdicts_and_figures(name, tmp_path):
    module = importlib.import_module(f"experiments.papers.{name}")
    r = module.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["reproduction"] == name and saved["quick"] is True
    assert saved["claims"] and saved["verdict"] in ("PASS", "FAIL")
    assert [c["id"] for c in saved["claims"]] == [c["id"] for c in r["claims"]]
    for c in saved["claims"]:
        assert re.fullmatch(r"[a-z]+\d{4}\.\w+", c["id"]), c["id"]  # paper.claim
        for field in ("paper", "claim", "setup", "criterion", "measured"):
            assert c[field].strip(), (c["id"], field)
        assert c["verdict"] in ("PASS", "FAIL") and c["per_seed"], c["id"]
        assert c["verdict"] == ("PASS" if all(c["per_seed"]) else "FAIL")
        assert c["figure"] and (tmp_path / c["figure"]).stat().st_size > 1000, c["id"]


def test_claim_passes_only_if_every_seed_passes():
    c = common.Claim("x.y", "P", "claim", "setup", "criterion")
    assert c.verdict == "NOT RUN"
    assert c.judge([True, True, False], "2/3").verdict == "FAIL"
    assert c.judge([True, True], "2/2").verdict == "PASS"
    assert c.judge([], "nothing measured").verdict == "FAIL"


def test_published_runs_are_full_runs_and_the_page_matches_them(tmp_path, monkeypatch):
    docs = REPO / "docs" / "reproductions"
    published = sorted(p.name for p in docs.iterdir() if (p / "results.json").exists())
    assert published == sorted(NAMES), "every reproduction has a published full run"
    for name in published:
        r = json.loads((docs / name / "results.json").read_text())
        assert r["quick"] is False, name
        for c in r["claims"]:
            assert (docs / name / c["figure"]).exists(), (name, c["figure"])
    # Re-publishing the published runs reproduces the page byte for byte.
    page = (REPO / "docs" / "reproductions.md").read_text()
    copy = tmp_path / "reproductions.md"
    copy.write_text(page)
    monkeypatch.setattr(run_all, "PAGE", copy)
    monkeypatch.setattr(run_all, "REPO", tmp_path)
    run_all.publish(docs, NAMES)  # in the page's order
    assert copy.read_text() == page


def test_run_all_refuses_bad_requests_before_running_anything():
    with pytest.raises(SystemExit):
        run_all.main(["--quick", "--publish"])  # quick runs are never published
    with pytest.raises(SystemExit):
        run_all.main(["--only", "nope"])
    with pytest.raises(SystemExit):
        run_all.main(["--only", ""])


def test_publishing_one_reproduction_keeps_the_others(tmp_path, monkeypatch):
    """--only X --publish updates X and rebuilds the page from every published run."""
    import shutil

    docs = tmp_path / "docs" / "reproductions"
    shutil.copytree(REPO / "docs" / "reproductions", docs)
    page = tmp_path / "docs" / "reproductions.md"
    page.write_text((REPO / "docs" / "reproductions.md").read_text())
    monkeypatch.setattr(run_all, "PAGE", page)
    monkeypatch.setattr(run_all, "REPO", tmp_path)
    before = page.read_text()
    run_all.publish(docs, ["he2015"])  # from the published copy itself: nothing is deleted
    assert (docs / "he2015" / "results.json").exists()
    assert page.read_text() == before
    with pytest.raises(SystemExit, match="missing"):
        run_all.publish(tmp_path / "nowhere", ["he2015"])
    assert (docs / "he2015" / "results.json").exists()
