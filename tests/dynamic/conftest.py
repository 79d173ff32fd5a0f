"""The conformance runs, computed once per session (compiling dominates the test time).

Per (pass, family) two programs: the linen model's vmapped seed sweep (init inside the vmap)
and the NNX twin's pass, run separately per seed on the same weights (one program for both).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import pytest
from flax import nnx

import jinit
from tests.dynamic.models import families, nnx_twin, xent

ITERS = 2  # one iteration count for every conformance run: their programs are shared
KEYS = 2  # init seeds of the sweep


def run_pass(method, model, params, batch):
    """``jinit.<method>`` with the conformance settings: jitted, one ``lax.scan`` program."""
    n = {"iters": ITERS} if method == "gradinit" else {"steps": ITERS}
    return getattr(jinit, method)(model, params, batch, xent, loop="scan", **n)


@dataclasses.dataclass
class Runs:
    """One (pass, family): per seed ``i``, the linen params in/out (``params`` dicts, member
    ``i`` of the sweep) and the NNX twin's Param states in/out with its report."""

    family: Any
    variables: Any  # the linen variables of every seed, stacked
    linen_in: list
    linen_out: list
    linen_report: Any  # stacked over seeds
    nnx_in: list
    nnx_out: list
    nnx_reports: list
    nnx_warnings: list


@pytest.fixture(scope="session")
def conformance():
    fams = families()
    cache = {}
    inits = {}  # per family: every seed's linen variables (shared by both passes)

    def get(method, family) -> Runs:
        if (method, family) in cache:
            return cache[method, family]
        fam = fams[family]
        x = fam.batch["x"]
        keys = jax.random.split(jax.random.key(1), KEYS)
        # The sweep: every seed's init (one vmapped program), then one vmapped pass. The init
        # stays outside the pass's program so that "output = multiplier * input" can be checked
        # bitwise against the very input (XLA may round a fused init differently).
        if family not in inits:
            inits[family] = jax.jit(jax.vmap(lambda k: fam.linen.init(k, x)))(keys)
        variables = inits[family]
        sweep = jax.jit(jax.vmap(lambda v: run_pass(method, fam.linen, v, fam.batch)))
        out, stacked = sweep(variables)
        runs = Runs(fam, variables, [], [], stacked, [], [], [], [])
        for i in range(KEYS):
            params = jax.tree.map(lambda a, i=i: a[i], variables["params"])
            runs.linen_in.append(params)
            runs.linen_out.append(jax.tree.map(lambda a, i=i: a[i], out["params"]))
            twin = nnx_twin(fam, params)
            runs.nnx_in.append(nnx.split(twin, nnx.Param, ...)[1])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", jinit.InitWarning)
                state, report = run_pass(method, twin, None, fam.batch)
            runs.nnx_out.append(state)
            runs.nnx_reports.append(report)
            runs.nnx_warnings.append([str(w.message) for w in caught])
        cache[method, family] = runs
        return runs

    return get
