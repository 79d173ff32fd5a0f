"""Paper reproductions: claims with criteria fixed before the run, and their results file.

Every reproduction states its claims and their pass/fail criteria in code *before* it runs
(a ``Claim`` is built from the criterion's text and a predicate), and writes ``results.json``
with one entry per claim: the measured value, the value per seed, and the verdict. A claim
passes only if it holds for every seed.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.common.records import environment, write_json_atomic


@dataclasses.dataclass
class Claim:
    """One claim of a paper and the criterion fixed before the run.

    ``criterion`` is the rule in words; the script computes ``per_seed`` (one bool per seed, or
    one value for seed-free measurements) and ``measured`` (a short human-readable value).
    """

    id: str
    paper: str
    claim: str
    setup: str
    criterion: str
    figure: str = ""
    measured: str = ""
    per_seed: list = dataclasses.field(default_factory=list)
    details: dict = dataclasses.field(default_factory=dict)
    passed: bool | None = None

    def judge(self, per_seed_pass: Sequence[bool], measured: str, **details) -> Claim:
        """Records the verdict: PASS only if the criterion held for every seed."""
        self.per_seed = [bool(x) for x in np.atleast_1d(per_seed_pass)]
        self.passed = bool(len(self.per_seed) > 0 and all(self.per_seed))
        self.measured = measured
        self.details.update(details)
        return self

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "NOT RUN"}[self.passed]

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "verdict": self.verdict}


def finish(
    out: str | pathlib.Path,
    name: str,
    claims: Sequence[Claim],
    config: Any,
    started: float,
    quick: bool,
    **extra: Any,
) -> dict[str, Any]:
    """Writes ``results.json`` (atomically) and prints one line per claim; returns the results."""
    out = pathlib.Path(out)
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    results = {
        "reproduction": name,
        "quick": bool(quick),
        "config": cfg,
        "claims": [c.as_dict() for c in claims],
        "verdict": "PASS" if all(c.passed for c in claims) else "FAIL",
        "wall_time_s": time.perf_counter() - started,
        "environment": environment(),
        **extra,
    }
    write_json_atomic(out / "results.json", results)
    for c in claims:
        print(f"[{c.verdict}] {c.id}: {c.measured}")
    print(f"{name}: {results['verdict']} in {results['wall_time_s']:.1f} s; results in {out}")
    if quick:
        print("(a --quick smoke run: too small for the criteria, so its verdicts mean nothing)")
    return results
