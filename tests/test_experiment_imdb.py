"""experiments/imdb_rnn.py --quick end to end: on a tiny archive, on resume, on the real data."""

import functools
import json
import os
import random

import pytest

from experiments import imdb_rnn
from experiments.data import imdb

WORDS_POS = "great wonderful loved superb brilliant fun".split()
WORDS_NEG = "awful boring terrible waste dull bad".split()


@pytest.fixture(autouse=True)
def tiny_counts(request, monkeypatch):
    """The tiny archive is not the published 12,500 per class: accept any balanced count,
    except in the real-data tests."""
    if request.node.get_closest_marker("realdata") is None:
        monkeypatch.setattr(imdb, "load_imdb", functools.partial(imdb.load_imdb, per_class=None))


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("data")
    reviews = {}
    for split, n in (("train", 300), ("test", 120)):
        rows = []
        for i in range(n):
            label = i % 2
            words = rng.choices(WORDS_POS if label else WORDS_NEG, k=rng.randint(5, 40))
            words += rng.choices(WORDS_POS + WORDS_NEG + ["the", "movie"], k=rng.randint(0, 10))
            rows.append((label, i // 2, 9 if label else 2, " ".join(words)))  # ids 0..n/2-1
        reviews[split] = rows
    (root / "imdb").mkdir()
    imdb.write_tiny_archive(root / "imdb" / "aclImdb_v1.tar.gz", reviews)
    return root


def _run(out, data_dir, cache, *extra):
    return imdb_rnn.main(
        [
            "--quick",
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
            "--cache-dir",
            str(cache),
            "--no-progress",
            "--seeds",
            "0,1",
            *extra,
        ]
    )


def test_quick_run_writes_results_and_plot(tiny_data_dir, tmp_path):
    _run(tmp_path / "out", tiny_data_dir, tmp_path / "cache")
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (tmp_path / "out" / "val_accuracy.png").stat().st_size > 1000
    assert set(r["initializers"]) == {"uniform", "glorot_uniform", "he_normal"}
    assert r["num_models"] == 6 and r["data"]["train"] == 240 and r["data"]["val"] == 60
    for v in r["initializers"].values():
        assert len(v["test_accuracy"]) == 2 and len(v["val_accuracy_per_epoch"]) == 2
        assert len(v["val_accuracy_per_epoch"][0]) == 1  # one epoch in --quick
        assert 0.0 <= v["test_accuracy_mean"] <= 1.0
    assert r["environment"]["jax"] and r["wall_time_s"] > 0


def test_stopped_run_resumes_from_last_epoch(tiny_data_dir, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    _run(out, tiny_data_dir, cache, "--epochs", "1", "--inits", "uniform")
    first = json.loads((out / "results.json").read_text())
    # Same config except epochs -> a different configuration: refuse to mix checkpoints.
    with pytest.raises(SystemExit, match="another configuration"):
        _run(out, tiny_data_dir, cache, "--epochs", "2", "--inits", "uniform")
    # Same configuration again: resumes after the finished epoch, trains nothing more.
    _run(out, tiny_data_dir, cache, "--epochs", "1", "--inits", "uniform")
    again = json.loads((out / "results.json").read_text())
    assert again["resumed_from_epoch"] == 1
    assert again["initializers"] == first["initializers"]


def test_resume_continues_training_identically(tiny_data_dir, tmp_path):
    """A run stopped after epoch 1 of 2 resumes there and ends exactly as an uninterrupted run."""
    import shutil

    out, cache = tmp_path / "out", tmp_path / "cache"
    _run(out, tiny_data_dir, cache, "--epochs", "2", "--inits", "he_normal")
    full = json.loads((out / "results.json").read_text())
    # Emulate a stop during epoch 2: its checkpoint and the results never got written.
    shutil.rmtree(out / "checkpoints" / "2")
    (out / "results.json").unlink()
    _run(out, tiny_data_dir, cache, "--epochs", "2", "--inits", "he_normal")
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["initializers"] == full["initializers"]


def test_sweep_in_chunks_equals_one_sweep(tiny_data_dir, tmp_path):
    """--models-per-chunk 4 trains 6 models as chunks of 4 and 2 (padded): same numbers, and a
    stop inside the second chunk resumes there without retraining the first."""
    import shutil

    cache = tmp_path / "cache"
    args = ("--epochs", "2", "--inits", "uniform,glorot_uniform,he_normal")
    _run(tmp_path / "one", tiny_data_dir, cache, *args)
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    out = tmp_path / "chunked"
    _run(out, tiny_data_dir, cache, *args, "--models-per-chunk", "4")
    chunked = json.loads((out / "results.json").read_text())
    assert chunked["chunks"] == 2 and chunked["models_per_chunk"] == 4
    assert chunked["initializers"] == one["initializers"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["models_0-3", "models_4-5"]
    shutil.rmtree(out / "checkpoints" / "models_4-5" / "2")  # stopped during chunk 2, epoch 2
    _run(out, tiny_data_dir, cache, *args, "--models-per-chunk", "4")
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["initializers"] == one["initializers"]


def test_unknown_initializer_is_rejected(tmp_path):
    with pytest.raises(SystemExit):
        imdb_rnn.parse_args(["--inits", "uniform,nope"])


@pytest.mark.realdata
def test_quick_run_on_real_archive(shared_data_dir, tmp_path):
    if imdb.find_local_copy(shared_data_dir) is None:
        pytest.skip(f"no IMDB archive under {shared_data_dir}")
    cache = os.environ.get("JINIT_CACHE_DIR", str(tmp_path / "cache"))
    imdb_rnn.main(
        [
            "--quick",
            "--out",
            str(tmp_path / "out"),
            "--data-dir",
            str(shared_data_dir),
            "--cache-dir",
            cache,
            "--no-progress",
            "--seeds",
            "0",
        ]
    )
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert r["data"]["source"].endswith((".tar.gz", "aclImdb"))
    assert r["data"]["train"] == 400 and r["data"]["test"] == 250
