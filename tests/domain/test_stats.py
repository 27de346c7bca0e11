"""The paired holdout statistics of a compile report, and their adjustment for the best being picked."""

from __future__ import annotations

import random

import pytest

from overnight.domain.stats import mcnemar_exact_p, paired_delta


def scores(seed: int, n: int, rate: float) -> list[float]:
    rng = random.Random(seed)
    return [1.0 if rng.random() < rate else 0.0 for _ in range(n)]


def test_one_candidate_gets_the_plain_percentile_interval() -> None:
    candidate, incumbent = scores(1, 30, 0.7), scores(2, 30, 0.5)
    delta = paired_delta(candidate, incumbent, seed=0, resamples=2000)
    diffs = [c - i for c, i in zip(candidate, incumbent, strict=True)]
    rng = random.Random(0)
    means = sorted(sum(diffs[rng.randrange(30)] for _ in range(30)) / 30 for _ in range(2000))
    assert (delta.low, delta.high, delta.compared) == (means[50], means[1950], 1)
    assert delta.mcnemar_p == mcnemar_exact_p(delta.discordant_wins, delta.discordant_losses)


@pytest.mark.parametrize("compared", [2, 3, 5])
def test_the_best_of_several_gets_a_wider_interval_and_a_larger_p(compared: int) -> None:
    """Picked as the best of `compared` on the same rows, a candidate's delta ran high by luck as often as not:
    each side of its interval is cut at (1 - confidence) / 2 / compared (Bonferroni), and its McNemar p scaled."""
    candidate, incumbent = scores(3, 30, 0.75), scores(4, 30, 0.55)
    one = paired_delta(candidate, incumbent, seed=7)
    picked = paired_delta(candidate, incumbent, seed=7, compared=compared)
    assert picked.delta == one.delta
    assert picked.low < one.low
    assert picked.high > one.high
    assert (picked.confidence, picked.compared) == (0.95, compared)
    assert picked.mcnemar_p == min(1.0, one.mcnemar_p * compared)
    assert picked.method == "paired_bootstrap+exact_mcnemar+bonferroni@2"


def test_compared_must_count_at_least_the_one_picked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        paired_delta([1.0], [0.0], seed=0, compared=0)
