"""The bad-input table: every public function and CLI rejects what it cannot honour.

Rows live in ``tests/bad_inputs/<area>.py`` (``ROWS``); each must raise its error with a
message that names the argument. A row that returns a result fails.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import tests.bad_inputs as bad_inputs


def _rows():
    rows = []
    for info in sorted(pkgutil.iter_modules(bad_inputs.__path__), key=lambda m: m.name):
        rows += importlib.import_module(f"tests.bad_inputs.{info.name}").ROWS
    return rows


ROWS = _rows()


def test_ids_are_unique():
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_raises_named_error(row):
    with pytest.raises(row.error) as info:
        result = row.call()
        pytest.fail(f"returned {type(result).__name__} instead of raising")
    message = str(info.value)
    for word in row.words:
        assert word in message, f"{word!r} not in error message: {message!r}"
