"""Rows of the bad-input table (tests/test_bad_inputs.py), one module per area of the API.

Each module defines ``ROWS: list[Row]``. A row calls one public function (or CLI) with one bad
argument and states the error it must raise and the words its message must contain: the
argument's name, and where it helps the bad value. None may return a result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Row(NamedTuple):
    id: str  # unique, e.g. "variance_scaling/scale=-1"
    call: Callable[[], Any]  # the bad call, run inside pytest.raises
    error: type[BaseException] | tuple[type[BaseException], ...]
    words: tuple[str, ...]  # substrings the message must contain (case-sensitive)
