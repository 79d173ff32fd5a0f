"""Seed-to-seed spread of a study's results, and rankings that hold over seeds.

One seed's third decimal ranks nothing: two inits whose accuracies differ by 0.01 on seed 0
can swap on seed 1. The published tables give each arm's mean with a 95% Student-t interval
over seeds, and rank two arms only when the interval of their seed-paired difference excludes
zero (the same seed gives both arms the same data order, so the difference is paired).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

LEVEL = 0.95


def seed_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean over seeds and its Student-t interval at ``level``.

    Raises:
        ValueError: fewer than 2 values, or a non-finite one (no interval exists).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2 or not np.all(np.isfinite(v)):
        raise ValueError(f"values: expected >= 2 finite values (one per seed), got {v.tolist()}")
    from scipy import stats  # here: scipy.stats costs ~0.7 s of every study's start-up

    mean = float(v.mean())
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return mean, mean - half, mean + half


def format_interval(values: Sequence[float], digits: int = 4, bounds=(0.0, 1.0)) -> str:
    """``"0.8012 [0.7890, 0.8134]"``: the mean and its 95% interval over seeds, clipped to
    ``bounds`` (an accuracy's interval stops at 0 and 1)."""
    mean, lo, hi = seed_interval(values)
    lo, hi = np.clip([lo, hi], *bounds)
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def paired_ranking(
    arms: Mapping[str, Sequence[float]], level: float = LEVEL
) -> tuple[list[str], int]:
    """The pairs of arms the seeds separate, and how many pairs they do not.

    ``arms`` maps an arm's name to its metric per seed, all in the same seed order. A pair is
    separated when the interval of the seed-paired difference excludes zero; it is returned as
    ``"a > b (difference +d [lo, hi])"``, the higher arm first.
    """
    lengths = {a: len(v) for a, v in arms.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"arms: every arm needs one value per seed (the same seeds); got {lengths}"
        )
    for a, v in arms.items():
        if not np.all(np.isfinite(np.asarray(v, dtype=np.float64))):
            raise ValueError(f"arms: arm {a!r} has a non-finite value: {list(v)}")
    names = sorted(arms, key=lambda a: -float(np.mean(arms[a])))
    separated, unresolved = [], 0
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            d = np.asarray(arms[a], dtype=np.float64) - np.asarray(arms[b], dtype=np.float64)
            mean, lo, hi = seed_interval(d, level)
            if lo > 0:
                separated.append(f"{a} > {b} (difference {mean:+.4f} [{lo:+.4f}, {hi:+.4f}])")
            else:
                unresolved += 1
    return separated, unresolved
