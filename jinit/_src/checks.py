"""Argument checks shared by the whole library, and the warning every pass emits.

Every public function validates its arguments at the boundary with these helpers, so each
error names the function, the argument, the bad value and what was expected.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class InitWarning(UserWarning):
    """A pass skipped, approximated or did not converge somewhere; the message names where.

    Filter it with ``warnings.filterwarnings("ignore", category=jinit.InitWarning)``.
    """


def check_key(fn: str, arg: str, key: Any) -> None:
    """Raises ``ValueError`` unless ``key`` is one JAX PRNG key (typed, or a legacy
    ``uint32[2]``), naming the function and the argument."""
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and key.shape == ()
    legacy = dtype == jnp.uint32 and getattr(key, "shape", None) == (2,)
    if not (typed or legacy):
        raise ValueError(
            f"{fn}: {arg} must be a single JAX PRNG key (jax.random.key(seed)), got "
            f"{type(key).__name__} with dtype {dtype} and shape {getattr(key, 'shape', None)}."
        )


def check_choice(fn: str, arg: str, value: Any, choices: Sequence[str]) -> str:
    """Raises ValueError naming ``arg``, the bad value and the valid choices."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{fn}: invalid {arg}={value!r}; valid choices are {', '.join(map(repr, choices))}"
        )
    return value


def is_static_scalar(x: Any) -> bool:
    """True for Python/NumPy real scalars (values we can check at build time)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def check_number(
    fn: str, arg: str, value: Any, *, positive: bool = False, nonnegative: bool = False
) -> Any:
    """Validates a static numeric argument when it is a Python/NumPy scalar.

    Arrays (e.g. a traced learning-rate-like scale) are passed through unchecked.
    """
    if isinstance(value, bool) or isinstance(value, str):
        raise TypeError(f"{fn}: {arg} must be a number, got {value!r}")
    if is_static_scalar(value):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{fn}: {arg} must be finite, got {value!r}")
        if positive and not v > 0:
            raise ValueError(f"{fn}: {arg} must be > 0, got {value!r}")
        if nonnegative and not v >= 0:
            raise ValueError(f"{fn}: {arg} must be >= 0, got {value!r}")
    return value


def check_int(fn: str, arg: str, value: Any, *, minimum: int = 1) -> int:
    """Validates a static integer argument (>= ``minimum``)."""
    if isinstance(value, bool):
        raise TypeError(f"{fn}: {arg} must be an int, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{fn}: {arg} must be an int, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"{fn}: {arg} must be >= {minimum}, got {value!r}")
    return v
