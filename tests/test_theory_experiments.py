"""The diagnostics/theory studies run end to end in --quick mode and write their outputs."""

import importlib
import json

import jax.numpy as jnp
import pytest

pytestmark = pytest.mark.slow

STUDIES = {
    "weight_distributions": ("init_histograms.png", "trained_weights.png"),
    "signal_propagation": ("signal_propagation.png",),
    "phase_diagram": ("phase_diagram.png",),
    "isometry": ("isometry.png",),
}


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_quick_run_writes_results_and_figures(name, tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    module = importlib.import_module(f"experiments.{name}")
    module.main(["--quick", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["quick"] is True
    for png in STUDIES[name]:
        assert (tmp_path / png).stat().st_size > 10_000
    assert jnp.ones(1).dtype == jnp.float32  # no study leaves float64 switched on
