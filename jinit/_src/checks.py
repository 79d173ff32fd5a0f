"""Argument checks shared by the whole library, and the warning every pass emits.

Every public function validates its arguments at the boundary with these helpers, so each
error names the function, the argument, the bad value and what was expected.
"""

from __future__ import annotations

import functools
import math
import operator
import os
import re
from collections.abc import Iterable, Sequence
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


def is_concrete_array(x: Any) -> bool:
    """True for a JAX/NumPy array whose values are known now (not a tracer)."""
    return isinstance(x, (jax.Array, np.ndarray)) and not isinstance(x, jax.core.Tracer)


def check_number(
    fn: str, arg: str, value: Any, *, positive: bool = False, nonnegative: bool = False
) -> Any:
    """Validates a numeric argument: finite, and > 0 (``positive``) or >= 0 (``nonnegative``).

    Python/NumPy scalars and concrete arrays (e.g. ``jnp.array(-1.)``, every element) are
    checked now. A *traced* array (a scale passed through ``jit``/``grad``) cannot be inspected
    and is passed through unchecked: its validity is the caller's responsibility.

    Raises:
      TypeError: for bools, strings and other non-numbers.
      ValueError: for NaN/inf or a value of the wrong sign; the message names ``fn``, ``arg``
        and the value.
    """
    if isinstance(value, (bool, str)) or value is None:
        raise TypeError(f"{fn}: {arg} must be a number, got {value!r}")
    if is_static_scalar(value):
        vals = np.asarray([float(value)])
        shown = repr(value)
    elif is_concrete_array(value):
        if not (
            jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating)
        ):
            raise TypeError(
                f"{fn}: {arg} must be a real number, got an array of dtype {value.dtype}"
            )
        vals = np.asarray(value, dtype=np.float64).ravel()
        shown = f"array {np.asarray(value).tolist()!r}" if vals.size <= 8 else "an array"
    elif isinstance(value, jax.core.Tracer):
        return value
    else:
        raise TypeError(f"{fn}: {arg} must be a number, got {type(value).__name__} {value!r}")
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"{fn}: {arg} must be finite, got {shown}")
    if positive and not np.all(vals > 0):
        raise ValueError(f"{fn}: {arg} must be > 0, got {shown}")
    if nonnegative and not np.all(vals >= 0):
        raise ValueError(f"{fn}: {arg} must be >= 0, got {shown}")
    return value


def check_probability(fn: str, arg: str, value: Any, *, open_low: bool = True) -> float:
    """Validates a static probability in ``(0, 1]`` (``[0, 1]`` when ``open_low=False``)."""
    check_number(fn, arg, value)
    if not is_static_scalar(value):
        raise TypeError(f"{fn}: {arg} must be a Python number, got {value!r}")
    v = float(value)
    ok = (0 < v if open_low else 0 <= v) and v <= 1
    if not ok:
        rng = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{fn}: {arg} must be a probability in {rng}, got {value!r}")
    return v


#: Fraction of the device's memory one initializer call may ask for (documented in
#: docs/initializers.md). Larger requests are refused before JAX tries (and aborts).
MAX_INIT_MEMORY_FRACTION = 1.0


@functools.cache
def device_memory_bytes() -> int:
    """Memory of JAX's default device: ``bytes_limit`` of an accelerator, else host RAM."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001  (backends without memory_stats)
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return np.iinfo(np.int64).max


def check_shape(fn: str, arg: str, shape: Any, itemsize: int | None = None) -> tuple[int, ...]:
    """A tuple of static non-negative ints that fits in memory.

    ``itemsize`` (bytes per element, of the dtype the array is *computed* in) enables the size
    check: the element count must fit in int64 and the byte size in
    ``MAX_INIT_MEMORY_FRACTION`` of :func:`device_memory_bytes`; otherwise ``ValueError``
    (JAX would abort the process instead).
    """
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        if isinstance(shape, (str, bytes)) or any(isinstance(d, bool) for d in shape):
            raise TypeError
        out = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(
            f"{fn}: {arg} must be a tuple of static Python ints, got {shape!r} (shapes cannot be "
            "traced; mark them static under jit)"
        ) from None
    if any(d < 0 for d in out):
        raise ValueError(f"{fn}: {arg} must have non-negative dimensions, got {out}")
    if itemsize is not None:
        n = math.prod(out)
        if n > np.iinfo(np.int64).max:
            raise ValueError(f"{fn}: {arg}={out} has {n} elements, more than int64 can index")
        # Sharded outputs may spread over every device.
        limit = int(device_memory_bytes() * MAX_INIT_MEMORY_FRACTION) * jax.device_count()
        if n * itemsize > limit:
            raise ValueError(
                f"{fn}: {arg}={out} needs {n * itemsize / 2**30:.1f} GiB ({n} elements of "
                f"{itemsize} bytes), more than the {limit / 2**30:.1f} GiB of memory of the "
                f"{jax.device_count()} {jax.devices()[0].platform} device(s)"
            )
    return out


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


def check_patterns(fn: str, arg: str, value: Any) -> tuple[str, ...]:
    """Validates regexes matched against path strings: ``None``, one string or a sequence of
    them; returns them as a tuple. Raises ``TypeError`` (not strings), ``ValueError`` (not a
    valid regex), naming ``fn``, ``arg`` and the value."""
    value = () if value is None else value
    out = (value,) if isinstance(value, str) or not isinstance(value, Iterable) else tuple(value)
    for p in out:
        if not isinstance(p, str):
            raise TypeError(f"{fn}: {arg} must be a regex string or a sequence of them, got {p!r}")
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"{fn}: {arg} pattern {p!r} is not a valid regex: {e}") from None
    return out
