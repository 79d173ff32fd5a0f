"""The scaling studies' quick modes end to end (their numbers are not meaningful), on real IMDB
text. yang2022's quick run is in tests/test_papers.py with the other reproductions."""

import json

import numpy as np
import pytest

from experiments import transformer_init
from experiments.data.imdb_bytes import load_imdb_bytes


def test_imdb_bytes_reads_the_real_archive(shared_data_dir, tmp_path):
    d = load_imdb_bytes(shared_data_dir, tmp_path)
    assert d["reviews"] == 25_000 and d["train"].dtype == np.uint8
    assert d["train"].size > 30_000_000 and d["test"].size > 30_000_000
    again = load_imdb_bytes(shared_data_dir, tmp_path)  # from the cache
    np.testing.assert_array_equal(again["test"][:1000], d["test"][:1000])


@pytest.mark.slow  # eight small transformers compiled: ~1-2 min on an idle 2-core CPU
def test_transformer_init_quick_run_and_publish(shared_data_dir, tmp_path):
    r = transformer_init.main(
        ["--quick", "--out", str(tmp_path), "--data-dir", str(shared_data_dir)]
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["quick"] is True and set(saved["results"]) == {
        c[0] for c in transformer_init.CONFIGS
    }
    for name, v in r["results"].items():
        assert v["residual_variance_at_init"].shape == (2, 2), name
        assert np.all(np.isfinite(v["residual_variance_at_init"])), name
    assert (tmp_path / "transformer_init.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="quick"):
        transformer_init.publish(tmp_path, tmp_path / "page.md")
    rows = transformer_init.table(saved)
    assert len(rows) == 2 + len(transformer_init.CONFIGS) + 2
