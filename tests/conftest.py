"""Shared pytest fixtures: explicit PRNG keys and the real-data location; XLA's light
optimization level for the test session."""

import os
import pathlib

# Most of the suite's time is XLA compiling small programs, not running them: XLA's light
# optimization level (no expensive LLVM passes) halves that (measured: tests/scaling/
# test_coord_check.py, 83 s -> 40 s CPU). Set before jax is imported, so subprocesses (studies,
# doc snippets, multi-process sweeps) inherit it; JAX_DISABLE_MOST_OPTIMIZATIONS=0 tests fully
# optimized code. A test marked ``xla_optimized`` runs its own programs fully optimized: on
# this CPU the BatchNorm CNN's gradients came out non-finite at the light level (finite at
# the full one), see test_batchnorm_quick.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

# A plugin may have imported jax before this file: the flag is then read from the config.
jax.config.update(
    "jax_disable_most_optimizations", os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] != "0"
)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("JINIT_DATA_DIR", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "xla_optimized: compile this test's programs with XLA's full optimization"
    )


@pytest.fixture(autouse=True)
def _xla_optimization(request):
    """Full XLA optimization for the duration of a test marked ``xla_optimized``."""
    if request.node.get_closest_marker("xla_optimized") is None:
        yield
        return
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def shared_data_dir():
    """The real datasets (../shared/data); tests using it skip with a reason when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data not found at {SHARED_DATA} (set JINIT_DATA_DIR or provide ../shared/data)"
        )
    return SHARED_DATA


# tryfirst: xdist's worker appends the group to each test's id in its own hook of this name;
# the markers must be there before it runs.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n 2 --dist loadgroup``), keeps the tests sharing an expensive
    module- or session-scoped fixture of ours on one worker, so it is built once, not once per
    worker: their group is the fixture's module (or its conftest's folder for a session one).
    Autouse helpers (named ``_...``) and pytest's own fixtures do not group. Tests marked
    ``slow`` are collected first."""
    # On an xdist worker ``dist`` reads "no"; ``loadgroup`` is what --dist loadgroup sets there.
    if not config.pluginmanager.hasplugin("xdist") or not (
        config.getoption("loadgroup", False) or config.getoption("dist", "no") == "loadgroup"
    ):
        return
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None or item.get_closest_marker("xdist_group"):
            continue
        groups = sorted(
            d.baseid if d.scope in ("session", "package") else item.nodeid.split("::")[0]
            for name, defs in info.name2fixturedefs.items()
            for d in defs[-1:]
            if d.has_location and d.scope != "function" and not name.startswith("_")
        )
        if groups:
            item.add_marker(pytest.mark.xdist_group(groups[0]))
    # xdist hands out the groups of several tests first, then single tests in collection order:
    # the ``slow`` ones (20-50 s each) go first among those, so that a worker's last tests are
    # short ones and both workers finish together (stable sort: the rest keep their order).
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
