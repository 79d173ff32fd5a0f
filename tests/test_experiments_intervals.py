"""Seed intervals and seed-paired rankings of the published study tables."""

import numpy as np
import pytest

from experiments import common


def test_seed_interval_is_the_student_t_interval():
    # mean 0.8, sample sd 0.01, n = 3: half-width t_{0.975, 2} * 0.01 / sqrt(3), t = 4.302653
    mean, lo, hi = common.seed_interval([0.79, 0.80, 0.81])
    half = 4.302653 * 0.01 / np.sqrt(3)
    np.testing.assert_allclose([mean, lo, hi], [0.8, 0.8 - half, 0.8 + half], rtol=1e-6)


@pytest.mark.parametrize("values", [[0.5], [0.5, float("nan")], []])
def test_seed_interval_needs_two_finite_values(values):
    with pytest.raises(ValueError, match="values: expected >= 2 finite"):
        common.seed_interval(values)


def test_format_interval_clips_to_the_metric_bounds():
    assert common.format_interval([0.1, 0.9]) == "0.5000 [0.0000, 1.0000]"


def test_paired_ranking_separates_only_what_the_seeds_separate():
    # a beats b by 0.05 on every seed (paired: separated although the seeds' spread is wide);
    # c and b swap places from seed to seed (not separated).
    arms = {"b": [0.70, 0.80, 0.75], "a": [0.75, 0.85, 0.80], "c": [0.80, 0.70, 0.76]}
    separated, unresolved = common.paired_ranking(arms)
    assert separated == ["a > b (difference +0.0500 [+0.0500, +0.0500])"]
    assert unresolved == 2  # a vs c and c vs b


@pytest.mark.parametrize(
    "arms,words",
    [
        ({"a": [0.8, 0.82, 0.81], "b": [0.7]}, "one value per seed"),
        ({"a": [0.8, 0.82, 0.81], "b": [0.7, 0.71]}, "'a': 3, 'b': 2"),
        ({"a": [0.8, 0.82], "b": [0.7, float("nan")]}, "arm 'b' has a non-finite value"),
    ],
)
def test_paired_ranking_rejects_unpaired_or_non_finite_arms(arms, words):
    with pytest.raises(ValueError, match=words):
        common.paired_ranking(arms)
