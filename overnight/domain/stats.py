"""Paired statistics for compile reports: candidate vs incumbent on the same holdout examples.

A paired bootstrap interval for the mean reward difference (seeded, so a report can be re-derived exactly) and
the exact McNemar test on discordant pairs. Must not import I/O modules, the clock or DSPy.
"""

from __future__ import annotations

import math
import random

from pydantic import BaseModel, Field


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
    compared: int = Field(default=1, description=(
        "how many candidates the best was chosen among on these same examples: the interval and the McNemar p are "
        "Bonferroni-adjusted for them, so `confidence` holds for the one chosen"))
    method: str = "paired_bootstrap+exact_mcnemar+bonferroni@2"  # @1: no adjustment for the choice (compared 1)


def mcnemar_exact_p(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of wins among the discordant pairs at p = 1/2."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / float(2**n)
    return min(1.0, 2 * tail)


def paired_delta(candidate: list[float], incumbent: list[float], *, seed: int, resamples: int = 2000,
                 confidence: float = 0.95, compared: int = 1) -> PairedDelta:
    """candidate - incumbent, paired by position; a percentile bootstrap interval over examples. When the candidate
    is the best of `compared` scored on these same examples, picking it favours the one whose noise ran high (the
    winner's curse): the interval is then widened, and the McNemar p raised, by Bonferroni, so that `confidence`
    holds for the one picked, however the others did."""
    if len(candidate) != len(incumbent) or not candidate:
        raise ValueError("paired scores need the same, non-zero number of examples")
    if compared < 1:
        raise ValueError("compared counts the candidates the best was chosen among: at least 1")
    n = len(candidate)
    diffs = [c - i for c, i in zip(candidate, incumbent, strict=True)]
    rng = random.Random(seed)  # noqa: S311 - a recorded, reproducible resampling, not a secret
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2 / compared
    low, high = means[int(tail * resamples)], means[min(resamples - 1, int((1 - tail) * resamples))]
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return PairedDelta(n=n, candidate_mean=sum(candidate) / n, incumbent_mean=sum(incumbent) / n,
                       delta=sum(diffs) / n, low=low, high=high, confidence=confidence, bootstrap_resamples=resamples,
                       seed=seed, discordant_wins=wins, discordant_losses=losses,
                       mcnemar_p=min(1.0, mcnemar_exact_p(wins, losses) * compared), compared=compared)
