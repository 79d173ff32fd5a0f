"""Zoo cases and their layer statistics, computed once per session (compiling dominates)."""

import warnings

import jax
import pytest

import jinit
from tests.zoo.models import NAMES, UNHEALTHY, cases


@pytest.fixture(scope="session")
def zoo():
    built = cases()
    # the test modules parametrize from NAMES / UNHEALTHY without building the models
    assert tuple(built) == NAMES, (tuple(built), NAMES)
    assert {n for n, c in built.items() if not c.healthy} == UNHEALTHY
    return built


@pytest.fixture(scope="session")
def zoo_stats(zoo):
    """``{name: (stats, [InitWarning messages])}`` for every case layer_statistics accepts."""
    out = {}
    for name, case in zoo.items():
        if name == "plain_jax":
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", jinit.InitWarning)
            fn = jax.jit(
                lambda p, b, c=case: jinit.layer_statistics(
                    c.model, p, b, apply_kwargs=c.apply_kwargs
                )
            )
            stats = jax.device_get(fn(case.variables, case.x))
        out[name] = (stats, [str(w.message) for w in caught if w.category is jinit.InitWarning])
    return out
