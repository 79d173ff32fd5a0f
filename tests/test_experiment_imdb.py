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
    assert r["wall_time_s"] > 0
    env = r["environment"]  # the one stamp of every results file (experiments.common.records)
    for key in ("cpu", "jax", "jaxlib", "flax", "optax", "numpy", "python", "date", "command"):
        assert isinstance(env[key], str) and env[key], key
    assert env["cores"] >= 1 and env["date"].endswith("+00:00")


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
    # Wall time: the whole study over both runs, and this run's own.
    assert full["wall_time_s_per_run"] == [full["wall_time_s"]] == [full["wall_time_s_this_run"]]
    first, this = resumed["wall_time_s_per_run"]
    assert 0 < first < full["wall_time_s"]  # the first run, up to its epoch-1 checkpoint
    assert this == resumed["wall_time_s_this_run"] > 0
    assert resumed["wall_time_s"] == pytest.approx(first + this, rel=1e-12)


def test_wall_clock_adds_the_runs_a_resume_continues(monkeypatch):
    from experiments.common import sweep

    now = iter([10.0, 15.0, 17.0])
    monkeypatch.setattr(sweep.time, "perf_counter", lambda: next(now))
    clock = sweep.WallClock(started=4.0)
    clock.resume({"wall_time_s_per_run": [3.0, 2.5]}, "ck/2")
    clock.resume({"wall_time_s_per_run": [3.0]}, "ck/1")  # an earlier chunk: less, ignored
    assert clock.per_run() == [3.0, 2.5, 6.0]
    assert clock.stamp() == {
        "wall_time_s": 16.5,
        "wall_time_s_this_run": 11.0,
        "wall_time_s_per_run": [3.0, 2.5, 11.0],
    }
    fresh = sweep.WallClock(started=4.0)
    with pytest.warns(UserWarning, match="checkpoint ck/old does not record the wall time"):
        fresh.resume({"history": []}, "ck/old")
    assert fresh.per_run() == [13.0]


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
    assert len(resumed["wall_time_s_per_run"]) == 2  # chunk 2's checkpoint carried run 1's time
    assert resumed["wall_time_s_per_run"][0] < chunked["wall_time_s"]


def test_unknown_initializer_is_rejected(capsys):
    with pytest.raises(SystemExit):
        imdb_rnn.parse_args(["--inits", "uniform,nope"])
    err = capsys.readouterr().err
    assert "argument --inits: unknown ['nope']" in err and "glorot_uniform, he_normal" in err


def test_interrupted_run_says_where_its_checkpoint_is_and_resumes(
    tiny_data_dir, tmp_path, monkeypatch, capsys
):
    """Ctrl-C during epoch 2: one line naming the last checkpoint; the same command resumes."""
    import jinit

    out, cache = tmp_path / "out", tmp_path / "cache"
    real_fit = jinit.fit

    def fit_then_ctrl_c(*a, **kw):
        save = kw["on_epoch_end"]

        def ctrl_c_at_end_of_epoch_2(result, state):
            if result.epoch >= 1:  # Ctrl-C before epoch 2 is saved; epoch 1 was
                raise KeyboardInterrupt
            save(result, state)

        return real_fit(*a, **{**kw, "on_epoch_end": ctrl_c_at_end_of_epoch_2})

    monkeypatch.setattr(jinit, "fit", fit_then_ctrl_c)
    with pytest.raises(SystemExit) as e:
        _run(out, tiny_data_dir, cache, "--epochs", "2", "--inits", "uniform")
    assert e.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert sum("interrupted" in line for line in err) == 1  # one line, from fit
    assert err[-1] == (
        "fit: interrupted in epoch 2; the last checkpoint is the end of epoch 1 in "
        f"{out / 'checkpoints'}: run the same command again to resume from it"
    )
    monkeypatch.setattr(jinit, "fit", real_fit)
    _run(out, tiny_data_dir, cache, "--epochs", "2", "--inits", "uniform")
    assert json.loads((out / "results.json").read_text())["resumed_from_epoch"] == 1


@pytest.mark.parametrize(
    "error",
    [
        OSError(28, "No space left on device"),
        # tensorstore's form, as orbax raises it on a full disk (seen on a 400 KB tmpfs)
        ValueError(
            'RESOURCE_EXHAUSTED: Error writing local file "x/manifest.ocdbt": Failed to write '
            "170 bytes to file 7: No space left on device [os_error_code='28']"
        ),
    ],
)
def test_disk_full_during_a_checkpoint_is_one_line_and_the_previous_one_stays_valid(
    tmp_path, monkeypatch, error
):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments import common

    state = {"w": jnp.arange(12, dtype=jnp.float32), "step": jnp.int32(3)}
    ckpt = common.EpochCheckpoints(tmp_path / "ck", {"a": 1})
    ckpt.save(0, state, {"history": [1.5]})

    def full(step, *a, **k):
        (tmp_path / "ck" / f"{step}.orbax-checkpoint-tmp").mkdir()  # a partial write
        raise RuntimeError("orbax writer thread failed") from error

    monkeypatch.setattr(ckpt.manager, "save", full)
    with pytest.raises(SystemExit) as e:
        ckpt.save(1, {"w": state["w"] + 1, "step": jnp.int32(4)}, {"history": [1.5, 1.2]})
    msg = str(e.value.code)
    assert "\n" not in msg and "No space left on device" in msg
    assert f"could not write checkpoint 2 to {tmp_path / 'ck'}" in msg
    assert f"last complete checkpoint: {tmp_path / 'ck' / '1'} (epoch 1)" in msg
    monkeypatch.undo()
    ckpt.close()
    again = common.EpochCheckpoints(tmp_path / "ck", {"a": 1})
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    restored, meta = again.restore(abstract)
    assert meta["epochs_done"] == 1 and meta["history"] == [1.5]
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise: the previous checkpoint is untouched
    assert not (tmp_path / "ck" / "2.orbax-checkpoint-tmp").exists()  # cleaned on reopen
    again.close()


def test_other_checkpoint_errors_are_not_disguised(tmp_path, monkeypatch):
    import jax.numpy as jnp

    from experiments import common

    ckpt = common.EpochCheckpoints(tmp_path / "ck", {"a": 1})

    def broken(*a, **k):
        raise TypeError("not a pytree")

    monkeypatch.setattr(ckpt.manager, "save", broken)
    with pytest.raises(TypeError, match="not a pytree"):
        ckpt.save(0, {"w": jnp.zeros(2)}, {})


def test_a_damaged_checkpoint_is_one_line_naming_its_folder_and_the_ways_out(tmp_path):
    import jax
    import jax.numpy as jnp

    from experiments import common

    state = {"w": jnp.arange(4, dtype=jnp.float32)}
    ckpt = common.EpochCheckpoints(tmp_path / "ck", {"a": 1})
    ckpt.save(0, state, {"history": [1.0]})
    ckpt.close()
    for f in (tmp_path / "ck" / "1").rglob("*"):  # damage every file of the checkpoint
        if f.is_file():
            f.write_bytes(b"not a checkpoint")
    again = common.EpochCheckpoints(tmp_path / "ck", {"a": 1})
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    with pytest.raises(SystemExit) as e:
        again.restore(abstract)
    msg = str(e.value.code)
    assert "\n" not in msg and f"checkpoint {tmp_path / 'ck' / '1'} (epoch 1) cannot be read" in msg
    assert "--restart" in msg and "delete that folder" in msg
    again.close()


def test_a_folder_where_checkpoints_cannot_be_created_is_one_line():
    from experiments import common

    with pytest.raises(SystemExit) as e:
        common.EpochCheckpoints("/proc/jinit-out/checkpoints", {"a": 1})
    msg = str(e.value.code)
    assert "\n" not in msg and "cannot create checkpoints in /proc/jinit-out/checkpoints" in msg


def test_explicit_missing_data_dir_fails_at_once_naming_the_flag(tmp_path, capsys):
    import time

    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        imdb_rnn.main(["--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and time.perf_counter() - t0 < 1.0
    err = capsys.readouterr().err
    assert f"argument --data-dir: '{tmp_path / 'nope'}' does not exist" in err


def test_host_devices_is_read_from_argv_before_jax(monkeypatch):
    from experiments import use_host_devices_from_argv

    flag = "--xla_force_host_platform_device_count"
    for argv, expected in [
        (["x", "--host-devices", "3"], f"{flag}=3"),
        (["x", "--host-devices=2"], f"{flag}=2"),
        (["x", "--host-devices", "2", "--host-devices", "5"], f"{flag}=5"),  # last wins
        (["x"], f"{flag}=4"),  # the default
        (["x", "--host-devices", "0"], ""),  # argparse rejects these later, naming the flag
        (["x", "--host-devices", "two"], ""),
        (["x", "--host-devices"], ""),
    ]:
        monkeypatch.setenv("XLA_FLAGS", "")
        use_host_devices_from_argv(argv, default=4)
        assert __import__("os").environ["XLA_FLAGS"] == expected, argv


def test_config_quick_then_explicit_values_win():
    from experiments.imdb import config, train

    assert tuple(train.INITIALIZERS) == config.INIT_NAMES
    d = config.get_config()
    assert (d.epochs, d.train_limit, d.seeds) == (5, None, (0, 1, 2))
    q = config.get_config(("lsuv",), (4,), quick=True, epochs=3, batch_size=8)
    assert (q.inits, q.seeds, q.epochs, q.batch_size) == (("lsuv",), (4,), 3, 8)
    assert (q.train_limit, q.test_limit, q.steps_per_call) == (500, 250, 5)


def test_seeds_and_inits_parse_to_tuples():
    args, cfg = imdb_rnn.parse_args(["--seeds", " 3, 1 ", "--inits", "orthogonal,uniform"])
    assert cfg.seeds == (3, 1) and cfg.inits == ("orthogonal", "uniform")
    args, cfg = imdb_rnn.parse_args(["--batch-size", "64", "--epochs", "2"])
    assert cfg.batch_size == 64 and cfg.epochs == 2 and cfg.seeds == (0, 1, 2)


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


def test_results_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    from experiments import common
    from experiments.common import records

    path = tmp_path / "results.json"
    common.write_json_atomic(path, {"a": 1})

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records.json, "dump", full)
    with pytest.raises(OSError, match=f"could not write {path}: No space left on device"):
        common.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1} and list(tmp_path.iterdir()) == [path]


def test_batch_size_larger_than_the_training_set_names_the_flag(tiny_data_dir, tmp_path):
    with pytest.raises(SystemExit, match="argument --batch-size: 500 exceeds the 240 training"):
        _run(tmp_path / "out", tiny_data_dir, tmp_path / "cache", "--batch-size", "500")


def test_host_devices_leave_no_padded_model_where_the_cores_allow():
    from experiments.common.sweep import host_devices_for

    # 3 models on 2 cores: 3 devices (no copy trained for nothing), not 2 padded to 4
    assert host_devices_for(3, 2) == 3 and host_devices_for(9, 2) == 3
    assert host_devices_for(1, 2) == 1 and host_devices_for(2, 2) == 2
    assert host_devices_for(5, 2) == 2  # 2 and 3 devices both pad to 6: the fewer
    assert host_devices_for(8, 4) == 4 and host_devices_for(9, 4) == 5  # 5 devices pad to 10
    for m in range(1, 20):
        for c in (1, 2, 4):
            d = host_devices_for(m, c)
            assert 1 <= d <= 2 * c and -(-m // d) * d <= -(-m // c) * c, (m, c, d)


def test_default_devices_count_the_models_the_command_line_asks_for(monkeypatch):
    monkeypatch.setattr(imdb_rnn, "default_host_devices", lambda: 2)
    assert imdb_rnn.default_devices(["x", "--seeds", "0"]) == 3  # 3 default inits x 1 seed
    assert imdb_rnn.default_devices(["x", "--seeds=0,1,2"]) == 3
    assert imdb_rnn.default_devices(["x", "--inits", "uniform", "--seeds", "0"]) == 1
    assert imdb_rnn.default_devices(["x", "--inits", "uniform,he_normal", "--seeds", "0"]) == 2


def test_second_run_loads_compiled_programs_and_gives_the_same_numbers(tiny_data_dir, tmp_path):
    """The persistent compilation cache (--cache-dir/xla): filled by a first process, used by
    a second, which ends with bitwise the same results."""
    import subprocess
    import sys

    cache = tmp_path / "cache"
    main = (  # the tiny archive's counts, as the tiny_counts fixture allows them in-process
        "import functools, sys; from experiments.data import imdb; "
        "imdb.load_imdb = functools.partial(imdb.load_imdb, per_class=None); "
        "from experiments import imdb_rnn; imdb_rnn.main(sys.argv[1:])"
    )
    cmd = [sys.executable, "-c", main, "--quick", "--no-progress"]
    cmd += ["--data-dir", str(tiny_data_dir), "--cache-dir", str(cache)]
    cmd += ["--inits", "uniform", "--seeds", "0", "--restart"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        subprocess.run([*cmd, "--out", str(out)], check=True, cwd=root, env=env, timeout=300)
        results.append(json.loads((out / "results.json").read_text()))
        if i == 0:
            entries = set((cache / "xla").iterdir())
            assert entries, "the first run cached no compiled program"
    assert set((cache / "xla").iterdir()) == entries  # the second compiled nothing new
    assert results[1]["initializers"] == results[0]["initializers"]


def test_a_nonfinite_step_stops_the_sweep_and_keeps_the_last_good_checkpoint(tmp_path):
    """A non-finite step in epoch 2 of one model stops the whole sweep (jinit.NonFiniteError
    naming that model and epoch); the checkpoint of epoch 1 is the last one, and is complete."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import jinit
    from experiments import common

    opt = optax.sgd(1.0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 2)), jnp.float32)
    data = {"x": x, "y": x.sum(-1)}

    def init_state_fn(name, key):
        # "bad": c = 1, so s grows by 1 per step (its gradient is -c, SGD lr 1); the loss is
        # NaN once s > 5.5: at global step 6, step index 2 of epoch 2 (4 steps per epoch).
        # "ok": c = 0, s stays 0.
        c = 1.0 if name == "bad" else 0.0
        w = jax.random.normal(key, (2,)) * 0.1
        return jinit.init_state({"w": w, "s": jnp.zeros(()), "c": jnp.asarray(c)}, opt)

    def per_example(p, b):
        return (b["x"] @ p["w"] - b["y"]) ** 2

    def loss_fn(p, b):
        mse = jnp.mean(per_example(p, b)) - jax.lax.stop_gradient(p["c"]) * p["s"]
        return jnp.where(p["s"] > 5.5, jnp.nan, mse), {}

    kw = dict(
        out=tmp_path,
        config={"test": 1},
        inits=("ok", "bad"),
        seeds=(0,),
        init_state_fn=init_state_fn,
        loss_fn=loss_fn,
        metric_fn=lambda p, b: {"loss": per_example(p, b)},
        optimizer=opt,
        train=data,
        val=data,
        test=data,
        epochs=3,
        batch_size=2,
        steps_per_call=2,
        eval_batch_size=4,
        progress=False,
    )
    with pytest.raises(jinit.NonFiniteError, match="epoch 2 .*end of epoch 1") as e:
        common.run_sweep(**kw)
    assert (e.value.epoch, e.value.step, e.value.models) == (1, 2, [1])  # 0-based epoch, step
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]
    assert (tmp_path / "checkpoints" / "1" / "commit_success.txt").exists()
    assert not (tmp_path / "results.json").exists()


def test_programs_compiled_ahead_once_each_and_the_numbers_unchanged(tiny_data_dir, tmp_path):
    """With the model axis sharded over 2 devices the sweep compiles its train and evaluate
    programs in a thread during the init: each of the 3 (train, evaluate on val and on test)
    compiles exactly once, and the results are bitwise those of one device (no thread)."""
    import subprocess
    import sys

    main = (  # the tiny archive's counts, as the tiny_counts fixture allows them in-process
        "import functools, sys; from experiments.data import imdb; "
        "imdb.load_imdb = functools.partial(imdb.load_imdb, per_class=None); "
        "from experiments import imdb_rnn; imdb_rnn.main(sys.argv[1:])"
    )
    cmd = [sys.executable, "-c", main, "--quick", "--no-progress", "--restart"]
    cmd += ["--data-dir", str(tiny_data_dir), "--inits", "uniform,he_normal", "--seeds", "0"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_LOG_COMPILES": "1"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = {}
    for devices in (2, 1):
        out = tmp_path / f"out{devices}"
        flag = f"--xla_force_host_platform_device_count={devices}"  # -c: set before jax
        run = subprocess.run(
            [*cmd, "--out", str(out), "--cache-dir", str(tmp_path / f"cache{devices}")],
            check=True,
            cwd=root,
            env={**env, "XLA_FLAGS": flag},
            timeout=300,
            capture_output=True,
            text=True,
        )
        results[devices] = json.loads((out / "results.json").read_text())
        if devices == 2:
            assert results[2]["sharded_over_devices"] == 2
            assert run.stderr.count("XLA compilation of jit(sharded)") == 3, run.stderr[-3000:]
    assert results[2]["initializers"] == results[1]["initializers"]
