"""The conformance runs, computed once per session (compiling dominates the test time)."""

from __future__ import annotations

import warnings

import jax
import pytest
from flax import nnx

import jinit
from tests.dynamic.models import families, nnx_twin, xent

ITERS = 2  # one iteration count for every conformance run: their programs are shared


def run_pass(method, model, params, batch):
    """``jinit.<method>`` with the conformance settings: jitted, one ``lax.scan`` program."""
    n = {"iters": ITERS} if method == "gradinit" else {"steps": ITERS}
    return getattr(jinit, method)(model, params, batch, xent, loop="scan", **n)


@pytest.fixture(scope="session")
def family_cases():
    """Per family: the family, linen variables (init key 0) and the NNX twin's Param state."""
    out = {}
    for name, fam in families().items():
        variables = fam.linen.init(jax.random.key(0), fam.batch["x"])
        out[name] = (fam, variables)
    return out


@pytest.fixture(scope="session")
def conformance(family_cases):
    """``get(method, framework, family) -> (params_in, params_out, report, warnings)``;
    ``params_in``/``params_out``: linen ``params`` dicts or NNX ``nnx.State`` of Params."""
    cache = {}

    def get(method, framework, family):
        key = (method, framework, family)
        if key not in cache:
            fam, variables = family_cases[family]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", jinit.InitWarning)
                if framework == "linen":
                    out, report = run_pass(method, fam.linen, variables, fam.batch)
                    p_in, p_out = variables["params"], out["params"]
                else:
                    model = nnx_twin(fam, variables["params"])
                    p_in = nnx.split(model, nnx.Param, ...)[1]
                    p_out, report = run_pass(method, model, None, fam.batch)
            cache[key] = (p_in, p_out, report, [str(w.message) for w in caught])
        return cache[key]

    return get
