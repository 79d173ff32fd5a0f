"""One IMDB seed sweep over 2 processes (``jax.distributed``, gloo on CPU) equals one process.

Two processes with one CPU device each form a 2-device mesh; each puts its share of the model
axis, results are gathered with ``process_allgather``. Same seeds, same programs on each device
slice: the numbers must be bitwise equal (``==`` on the JSON floats, no tolerance) to a
single-process run, since every model's arithmetic is the same XLA program on one CPU device
either way. Only process 0 writes; a pair killed (SIGKILL) right after epoch 1's checkpoint
resumes to the same numbers.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.test_experiment_imdb import tiny_data_dir  # noqa: F401  (fixture)

# The child: accepts the tiny archive's counts, records every Python-level write under --out
# (audit hook), and with KILL_AFTER_EPOCH_1 SIGKILLs itself once epoch 1's checkpoint is saved.
CHILD = textwrap.dedent(
    """
    import functools, json, os, signal, sys
    out = os.path.abspath(sys.argv[sys.argv.index("--out") + 1])
    log = os.environ["AUDIT_LOG"]
    writes = []

    def audit(event, args):
        if event in ("open", "os.rename", "os.replace", "os.mkdir", "os.remove", "shutil.rmtree"):
            path = os.path.abspath(os.fsdecode(args[0])) if isinstance(args[0], (str, bytes, os.PathLike)) else ""
            if event == "open":
                mode, flags = args[1], args[2]
                if not ((mode and set(str(mode)) & set("wax+")) or (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                    return
            if event == "os.rename":  # os.replace raises this event too; keep the target
                path += " -> " + os.path.abspath(os.fsdecode(args[1]))
            if path.startswith(out):
                writes.append(f"{event} {path}")

    sys.addaudithook(audit)
    from experiments.data import imdb
    imdb.load_imdb = functools.partial(imdb.load_imdb, per_class=None)
    import jinit
    if os.environ.get("KILL_AFTER_EPOCH_1"):
        fit = jinit.fit

        def killed_fit(*a, on_epoch_end, **kw):
            def hook(result, state):
                on_epoch_end(result, state)  # the checkpoint is complete when this returns
                if result.epoch == 0:
                    with open(log, "w") as f:
                        json.dump(writes, f)
                    # Both processes have finished the save before either dies.
                    from jax.experimental import multihost_utils
                    multihost_utils.sync_global_devices("killed_after_epoch_1")
                    os.kill(os.getpid(), signal.SIGKILL)
            return fit(*a, on_epoch_end=hook, **kw)

        jinit.fit = killed_fit
    from experiments import imdb_rnn
    imdb_rnn.main(sys.argv[1:])
    with open(log, "w") as f:
        json.dump(writes, f)
    """
)
ARGS = ("--quick", "--no-progress", "--seeds", "0,1", "--epochs", "2", "--inits", "uniform")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(tmp, data_dir, out, n, kill=False, timeout=90):
    """Runs the study as ``n`` processes (no jax.distributed for n=1); returns their logs."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env.pop("KILL_AFTER_EPOCH_1", None)
    if kill:
        env["KILL_AFTER_EPOCH_1"] = "1"
    port = _free_port()
    procs = []
    for i in range(n):
        argv = [*ARGS, "--out", str(out), "--data-dir", str(data_dir)]
        argv += ["--cache-dir", str(tmp / f"cache{i}")]
        if n > 1:
            argv += ["--coordinator", f"localhost:{port}", "--num-processes", str(n)]
            argv += ["--process-id", str(i)]
        penv = {**env, "AUDIT_LOG": str(tmp / f"audit{i}.json")}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, *argv],
                env=penv,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = [p.returncode for p in procs]
    if kill:
        # The first to die takes the other down: JAX's coordination agent aborts (SIGABRT)
        # a process whose peer is gone, if that comes before its own SIGKILL.
        ok = -9 in codes and set(codes) <= {-9, -6}
    else:
        ok = codes == [0] * n
    assert ok, f"exit codes {codes}\n" + "\n".join(logs)[-4000:]
    return [json.loads((tmp / f"audit{i}.json").read_text()) for i in range(n)]


# Five study processes (~25 s quiet, 2 cores): handed out first under xdist (tests/conftest.py),
# not left as a worker's last test.
@pytest.mark.slow
def test_two_process_sweep_equals_one_process_and_resumes_after_a_kill(
    tiny_data_dir,  # noqa: F811
    tmp_path,
):
    one = tmp_path / "one"
    (tmp_path / "1").mkdir()
    _launch(tmp_path / "1", tiny_data_dir, one, 1)
    ref = json.loads((one / "results.json").read_text())
    assert ref["sharded_over_devices"] == 1

    two, t2 = tmp_path / "two", tmp_path / "2"
    t2.mkdir()
    # Killed right after epoch 1's checkpoint: it is there, complete; nothing else is.
    audit = _launch(t2, tiny_data_dir, two, 2, kill=True)
    assert (two / "checkpoints" / "1" / "commit_success.txt").exists()
    assert not (two / "checkpoints" / "2").exists() and not (two / "results.json").exists()
    assert audit[1] == [] and audit[0], audit  # process 1 wrote nothing under --out
    # Rerun: resumes after epoch 1, ends with the single-process numbers, bit for bit.
    audit = _launch(t2, tiny_data_dir, two, 2)
    got = json.loads((two / "results.json").read_text())
    assert got["resumed_from_epoch"] == 1 and got["sharded_over_devices"] == 2
    assert got["initializers"] == ref["initializers"]
    assert audit[1] == [], audit[1]
    assert any(w.endswith("results.json") for w in audit[0])
    assert (two / "val_accuracy.png").exists()
    # Orbax's array data, written by C++ (unseen by the audit hook): process 0's files only.
    written = {p.name for p in (two / "checkpoints").rglob("ocdbt.process_*")}
    assert written == {"ocdbt.process_0"}, written


if __name__ == "__main__":
    pytest.main([__file__, "-q"])


def test_distributed_flags_default_to_jax_environment_variables(monkeypatch):
    import argparse

    from experiments import common

    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "head:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    p = argparse.ArgumentParser()
    common.add_distributed_args(p)
    args = p.parse_args([])
    assert (args.coordinator, int(args.num_processes), int(args.process_id)) == ("head:1234", 4, 3)
    args = p.parse_args(["--process-id", "1"])
    assert args.process_id == 1


def test_process_id_outside_the_process_count_names_the_flag(monkeypatch):
    import argparse

    from experiments import common

    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    p = argparse.ArgumentParser()
    common.add_distributed_args(p)
    args = p.parse_args(
        ["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"]
    )
    with pytest.raises(SystemExit, match=r"--process-id: 2 is not in \[0, --num-processes=2\)"):
        common.init_distributed(args)  # fails before jax.distributed starts
    assert common.init_distributed(p.parse_args([])) is False  # no flags: one process
