"""Shared pytest fixtures: explicit PRNG keys and the real-data location."""

import os
import pathlib

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("JINIT_DATA_DIR", REPO.parent / "shared" / "data"))


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
