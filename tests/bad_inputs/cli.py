"""Bad command-line flags of every study script, and bad arguments of the shared sweep helper.

Each CLI row runs the script's own parse/main function in-process with one bad flag. argparse
exits (status 2) before any work, with ``argument --flag: ...`` on stderr; the row re-raises
that exit with the captured stderr as its message, so the table can check the flag is named.
"""

from __future__ import annotations

import contextlib
import importlib
import io

import numpy as np

from experiments import (
    batchnorm,
    cifar10_cnn,
    common,
    imdb_rnn,
    isometry,
    lsuv_depth,
    phase_diagram,
    signal_propagation,
    symmetry,
    weight_distributions,
)
from experiments.papers import run_all
from tests.bad_inputs import Row

NOT_A_DIR = "/dev/null/out"  # under a file: never writable, even for root
MISSING = "/nonexistent/jinit-data"


def cli(fn, *argv: str):
    """A call of ``fn(argv)`` whose SystemExit carries the exit status and captured stderr."""

    def call():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                return fn(list(argv))
            except SystemExit as e:
                text = e.code if isinstance(e.code, str) else f"exit status {e.code}"
                raise SystemExit(f"{text}\n{err.getvalue()}") from None

    return call


ARGPARSE = "usage:"  # the message is argparse's, printed before any work


def _sweep_rows(name: str, parse, inits: str) -> list[Row]:
    bad = [
        ("host-devices=0", ("--host-devices", "0"), "'0'"),
        ("host-devices=-2", ("--host-devices", "-2"), "'-2'"),
        ("host-devices=two", ("--host-devices", "two"), "'two'"),
        ("host-devices=1.5", ("--host-devices", "1.5"), "'1.5'"),
        ("seeds=empty", ("--seeds", ""), "expected comma-separated integers"),
        ("seeds=duplicate", ("--seeds", "1,2,1"), "duplicate seeds [1]"),
        ("seeds=negative", ("--seeds", "0,-1"), "'-1'"),
        ("seeds=non-int", ("--seeds", "a,b"), "'a'"),
        ("seeds=empty-entry", ("--seeds", "0,,1"), "empty entry"),
        ("inits=unknown", ("--inits", "nope"), inits),
        ("inits=empty", ("--inits", ""), inits),
        ("inits=duplicate", ("--inits", "he_normal,he_normal"), "duplicate names ['he_normal']"),
        ("epochs=0", ("--epochs", "0"), "'0'"),
        ("batch-size=0", ("--batch-size", "0"), "'0'"),
        ("batch-size=-3", ("--batch-size", "-3"), "'-3'"),
        ("models-per-chunk=0", ("--models-per-chunk", "0"), "'0'"),
        ("data-dir=missing", ("--data-dir", MISSING), "does not exist"),
        ("data-dir=file", ("--data-dir", "/dev/null"), "is not a folder"),
        ("out=unwritable", ("--out", NOT_A_DIR), "'/dev/null' is a file"),
        ("out=empty", ("--out", ""), "an empty path is not a folder"),
    ]
    rows = [
        Row(f"cli/{name}/{rid}", cli(parse, *argv), SystemExit, (argv[0], word, ARGPARSE))
        for rid, argv, word in bad
    ]
    # Valid for argparse, but this process already started jax: it cannot be honoured.
    rows.append(
        Row(
            f"cli/{name}/host-devices=7-after-jax-started",
            cli(parse, "--host-devices", "7"),
            SystemExit,
            ("--host-devices", "already started", "python -m experiments."),
        )
    )
    return rows


ROWS: list[Row] = [
    *_sweep_rows("imdb_rnn", imdb_rnn.parse_args, "glorot_uniform, he_normal, lsuv"),
    *_sweep_rows("cifar10_cnn", cifar10_cnn.parse_args, "random_normal, zeros"),
    Row(
        "cli/imdb_rnn/cache-dir=unwritable",
        cli(imdb_rnn.parse_args, "--cache-dir", NOT_A_DIR),
        SystemExit,
        ("--cache-dir", NOT_A_DIR, ARGPARSE),
    ),
    # Flags a study would silently ignore are not offered.
    Row(
        "cli/cifar10_cnn/cache-dir=ignored",
        cli(cifar10_cnn.parse_args, "--cache-dir", "/tmp"),
        SystemExit,
        ("unrecognized arguments: --cache-dir",),
    ),
    Row(
        "cli/cifar10_cnn/conv-impl=unknown",
        cli(cifar10_cnn.parse_args, "--conv-impl", "fft"),
        SystemExit,
        ("--conv-impl", "'fft'", "im2col"),
    ),
    Row(
        "cli/batchnorm/out=unwritable",
        cli(batchnorm.main, "--out", NOT_A_DIR),
        SystemExit,
        ("--out", NOT_A_DIR),
    ),
    Row(
        "cli/batchnorm/data-dir=missing",
        cli(batchnorm.main, "--data-dir", MISSING),
        SystemExit,
        ("--data-dir", MISSING, "does not exist"),
    ),
    Row(
        "cli/batchnorm/models-per-chunk=ignored",
        cli(batchnorm.main, "--models-per-chunk", "2"),
        SystemExit,
        ("unrecognized arguments: --models-per-chunk",),
    ),
    Row(
        "cli/batchnorm/restart=ignored",
        cli(batchnorm.main, "--restart"),
        SystemExit,
        ("unrecognized arguments: --restart",),
    ),
    Row(
        "cli/symmetry/out=unwritable",
        cli(symmetry.main, "--out", NOT_A_DIR),
        SystemExit,
        ("--out", NOT_A_DIR),
    ),
    Row(
        "cli/symmetry/data-dir=ignored",
        cli(symmetry.main, "--data-dir", "/tmp"),
        SystemExit,
        ("unrecognized arguments: --data-dir",),
    ),
    Row(
        "cli/isometry/seed=-1",
        cli(isometry.main, "--seed", "-1"),
        SystemExit,
        ("--seed", "'-1'", ARGPARSE),
    ),
    Row(
        "cli/isometry/sigma-b=-0.1",
        cli(isometry.main, "--sigma-b", "-0.1"),
        SystemExit,
        ("--sigma-b", "'-0.1'", ">= 0"),
    ),
    Row(
        "cli/isometry/sigma-b=nan",
        cli(isometry.main, "--sigma-b", "nan"),
        SystemExit,
        ("--sigma-b", "finite", "'nan'"),
    ),
    Row(
        "cli/isometry/out=unwritable",
        cli(isometry.main, "--out", NOT_A_DIR),
        SystemExit,
        ("--out", NOT_A_DIR),
    ),
    Row(
        "cli/phase_diagram/steps=0",
        cli(phase_diagram.main, "--steps", "0"),
        SystemExit,
        ("--steps", "'0'", ARGPARSE),
    ),
    Row(
        "cli/phase_diagram/threshold=1.5",
        cli(phase_diagram.main, "--threshold", "1.5"),
        SystemExit,
        ("--threshold", "[0, 1]", "'1.5'"),
    ),
    Row(
        "cli/phase_diagram/sigma-b2=-1",
        cli(phase_diagram.main, "--sigma-b2", "-1"),
        SystemExit,
        ("--sigma-b2", "'-1'"),
    ),
    Row(
        "cli/phase_diagram/seed=x",
        cli(phase_diagram.main, "--seed", "x"),
        SystemExit,
        ("--seed", "'x'"),
    ),
    Row(
        "cli/signal_propagation/depth=0",
        cli(signal_propagation.main, "--depth", "0"),
        SystemExit,
        ("--depth", "'0'"),
    ),
    Row(
        "cli/signal_propagation/seed=-1",
        cli(signal_propagation.main, "--seed", "-1"),
        SystemExit,
        ("--seed", "'-1'"),
    ),
    Row(
        "cli/weight_distributions/steps=0",
        cli(weight_distributions.main, "--steps", "0"),
        SystemExit,
        ("--steps", "'0'"),
    ),
    Row(
        "cli/weight_distributions/seed=-5",
        cli(weight_distributions.main, "--seed", "-5"),
        SystemExit,
        ("--seed", "'-5'"),
    ),
    Row(
        "cli/lsuv_depth/out=unwritable",
        cli(lsuv_depth.main, "--out", NOT_A_DIR),
        SystemExit,
        ("--out", NOT_A_DIR),
    ),
    *[
        Row(
            f"cli/papers.{name}/out=unwritable",
            cli(importlib.import_module(f"experiments.papers.{name}").main, "--out", NOT_A_DIR),
            SystemExit,
            ("--out", NOT_A_DIR, ARGPARSE),
        )
        for name in run_all.available()
    ],
    Row(
        "cli/papers.run_all/only=unknown",
        cli(run_all.main, "--only", "he2015,nope"),
        SystemExit,
        ("--only", "['nope']", "glorot2010"),
    ),
    Row(
        "cli/papers.run_all/only=empty",
        cli(run_all.main, "--only", ""),
        SystemExit,
        ("--only", "expected comma-separated names"),
    ),
    Row(
        "cli/papers.run_all/out=unwritable",
        cli(run_all.main, "--out", NOT_A_DIR),
        SystemExit,
        ("--out", NOT_A_DIR),
    ),
    Row(
        "cli/common.base_parser/flags=unknown",
        lambda: common.base_parser("x", "runs/x", ("data-dir", "seeds")),
        ValueError,
        ("base_parser", "['seeds']", "models-per-chunk"),
    ),
]


def _sweep(**bad):
    """``common.run_sweep`` with one bad argument (it fails before building anything)."""
    kw = dict(
        out=None,
        config={},
        inits=("a",),
        seeds=(0,),
        init_state_fn=None,
        loss_fn=None,
        metric_fn=None,
        optimizer=None,
        train={"x": np.zeros((8, 2))},
        val=None,
        test=None,
        epochs=1,
        batch_size=4,
        steps_per_call=1,
        eval_batch_size=4,
    )
    return lambda: common.run_sweep(**{**kw, **bad})


ROWS += [
    Row(
        "cli/run_sweep/steps_per_call=0",
        _sweep(steps_per_call=0),
        ValueError,
        ("steps_per_call", "0"),
    ),
    Row("cli/run_sweep/epochs=0", _sweep(epochs=0), ValueError, ("epochs", ">= 1", "0")),
    Row("cli/run_sweep/batch_size=0", _sweep(batch_size=0), ValueError, ("batch_size", "0")),
    Row(
        "cli/run_sweep/batch_size>n_train",
        _sweep(batch_size=9),
        ValueError,
        ("batch_size=9", "8 training examples"),
    ),
    Row(
        "cli/run_sweep/eval_batch_size=1.5",
        _sweep(eval_batch_size=1.5),
        ValueError,
        ("eval_batch_size", "1.5"),
    ),
    Row(
        "cli/run_sweep/models_per_chunk=0",
        _sweep(models_per_chunk=0),
        ValueError,
        ("models_per_chunk", "0"),
    ),
    Row("cli/run_sweep/seeds=duplicate", _sweep(seeds=(1, 1)), ValueError, ("seeds", "(1, 1)")),
    Row("cli/run_sweep/inits=empty", _sweep(inits=()), ValueError, ("inits", "()")),
]
