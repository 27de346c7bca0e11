"""Paired statistics for compile reports: candidate vs incumbent on the same holdout examples.

A paired bootstrap interval for the mean reward difference (seeded, so a report can be re-derived exactly) and
the exact McNemar test on discordant pairs. Must not import I/O modules, the clock or DSPy.
"""

from __future__ import annotations

import math
import random

from pydantic import BaseModel


class PairedDelta(BaseModel):
    n: int
    candidate_mean: float
    incumbent_mean: float
    delta: float
    low: float
    high: float
    confidence: float
    bootstrap_resamples: int
    seed: int
    discordant_wins: int
    discordant_losses: int
    mcnemar_p: float
    method: str = "paired_bootstrap+exact_mcnemar@1"


def mcnemar_exact_p(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of wins among the discordant pairs at p = 1/2."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / float(2**n)
    return min(1.0, 2 * tail)


def paired_delta(candidate: list[float], incumbent: list[float], *, seed: int, resamples: int = 2000,
                 confidence: float = 0.95) -> PairedDelta:
    """candidate - incumbent, paired by position; a percentile bootstrap interval over examples."""
    if len(candidate) != len(incumbent) or not candidate:
        raise ValueError("paired scores need the same, non-zero number of examples")
    n = len(candidate)
    diffs = [c - i for c, i in zip(candidate, incumbent, strict=True)]
    rng = random.Random(seed)  # noqa: S311 - a recorded, reproducible resampling, not a secret
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    low, high = means[int(tail * resamples)], means[min(resamples - 1, int((1 - tail) * resamples))]
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return PairedDelta(n=n, candidate_mean=sum(candidate) / n, incumbent_mean=sum(incumbent) / n,
                       delta=sum(diffs) / n, low=low, high=high, confidence=confidence, bootstrap_resamples=resamples,
                       seed=seed, discordant_wins=wins, discordant_losses=losses,
                       mcnemar_p=mcnemar_exact_p(wins, losses))
