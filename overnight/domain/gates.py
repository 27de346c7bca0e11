"""Canary gate statistics, pure and versioned (`method@version`). Each evaluation is a `Decision` — verdict,
reason code, one human sentence and the evidence (counts, estimate, bound or e-value, threshold) — never an
exception. See ../shared/notes/canary-gates.md for why these methods.

- abort: a one-sided Beta-mixture e-process (uniform prior on (p0, 1)) for "candidate error rate > p0". It is a
  test supermartingale for every p <= p0, so by Ville's inequality it falsely aborts with probability <= alpha
  however often it is checked.
- pass: a single pre-planned look at `min_samples`: the exact (Clopper-Pearson) one-sided upper bound on the
  error rate below p0 — exact, so a candidate at the threshold passes at most alpha of the time.
- otherwise inconclusive; `plan_samples` gives the look size that passes a candidate at the expected rate with
  the requested power. No data never passes.
Must not import I/O modules, the clock or DSPy.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel

Verdict = Literal["pass", "fail", "inconclusive"]
ABORT_METHOD = "beta_mixture_eprocess@1"
LOOK_METHOD = "clopper_pearson_single_look@1"


class Decision(BaseModel):
    verdict: Verdict
    reason_code: str
    message: str
    evidence: dict[str, Any]


def _log_binom_pmf(j: int, n: int, p: float) -> float:
    return (math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
            + j * math.log(p) + (n - j) * math.log1p(-p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    logs = [_log_binom_pmf(j, n, p) for j in range(k + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """The exact one-sided (1 - alpha) upper bound on a proportion after k events in n trials."""
    if n == 0:
        return 1.0
    if k >= n:
        return 1.0
    low, high = k / n, 1.0
    for _ in range(60):  # bisection on the binomial CDF, which falls as p grows
        mid = (low + high) / 2
        low, high = (mid, high) if binom_cdf(k, n, mid) > alpha else (low, mid)
    return high


def max_errors_to_pass(n: int, max_error_rate: float, alpha: float) -> int:
    """The largest error count whose Clopper-Pearson upper bound is below `max_error_rate` (-1: none)."""
    k = -1
    while k + 1 <= n and binom_cdf(k + 1, n, max_error_rate) < alpha:  # UB(k) < p0  <=>  CDF(k; n, p0) < alpha
        k += 1
    return k


def log_e_value(k: int, n: int, p0: float) -> float:
    """log of the Beta-mixture e-value for H0: p <= p0 after k errors in n samples (prior uniform on (p0, 1)):
    E = int_{p0}^1 p^k (1-p)^(n-k) dp / ((1 - p0) p0^k (1-p0)^(n-k))."""
    log_beta = math.lgamma(k + 1) + math.lgamma(n - k + 1) - math.lgamma(n + 2)
    upper_tail = binom_cdf(k, n + 1, p0)  # = 1 - I_{p0}(k+1, n-k+1)
    if upper_tail <= 0.0:
        return -math.inf
    log_l0 = k * math.log(p0) + (n - k) * math.log1p(-p0)
    return log_beta + math.log(upper_tail) - math.log1p(-p0) - log_l0


def abort_thresholds(max_n: int, p0: float, alpha: float) -> list[int]:
    """For each n (0..max_n), the fewest errors at which the e-process reaches 1/alpha (n + 1: never)."""
    target, thresholds, k = math.log(1 / alpha), [], 0
    for n in range(max_n + 1):
        while k <= n and log_e_value(k, n, p0) < target:
            k += 1
        thresholds.append(k)
        k = max(0, k - 1)  # the threshold never falls by more than one as n grows
    return thresholds


def plan_samples(*, max_error_rate: float, expected_error_rate: float, alpha: float = 0.05, power: float = 0.9,
                 limit: int = 20_000) -> int | None:
    """The smallest single-look size at which a candidate erring at `expected_error_rate` passes with `power`."""
    if expected_error_rate >= max_error_rate:
        return None
    for n in range(1, limit + 1):
        k = max_errors_to_pass(n, max_error_rate, alpha)
        if k >= 0 and binom_cdf(k, n, expected_error_rate) >= power:
            return n
    return None


def error_gate(*, samples: int, errors: int, max_error_rate: float, alpha: float, min_samples: int,
               max_samples: int) -> Decision:
    """Abort (fail), pass at the planned look, or keep going (inconclusive); fail when max_samples is spent."""
    e_log = log_e_value(errors, samples, max_error_rate) if samples else 0.0
    evidence: dict[str, Any] = {
        "samples": samples, "errors": errors, "estimate": errors / samples if samples else None,
        "max_error_rate": max_error_rate, "alpha": alpha, "min_samples": min_samples, "max_samples": max_samples,
        "e_value": math.exp(min(e_log, 700.0)), "e_threshold": 1 / alpha, "abort_method": ABORT_METHOD,
        "pass_method": LOOK_METHOD,
    }
    if samples and e_log >= math.log(1 / alpha):
        return Decision(verdict="fail", reason_code="error_rate_exceeded", evidence=evidence, message=(
            f"candidate error rate is above {max_error_rate:g}: e-value {evidence['e_value']:.3g} >= {1 / alpha:g} "
            f"after {errors} errors in {samples} requests ({ABORT_METHOD}) -> abort"))
    if samples == min_samples:
        upper = clopper_pearson_upper(errors, samples, alpha)
        evidence["upper_bound"] = upper
        if upper < max_error_rate:
            return Decision(verdict="pass", reason_code="error_rate_within_bound", evidence=evidence, message=(
                f"canary error upper bound {upper:.3f} < {max_error_rate:g} after {samples} requests "
                f"({errors} errors, {LOOK_METHOD}) -> pass"))
    if samples >= max_samples:
        return Decision(verdict="fail", reason_code="inconclusive_at_max_samples", evidence=evidence, message=(
            f"no decision after {samples} requests ({errors} errors): the planned look did not pass and the error "
            f"rate was not shown to exceed {max_error_rate:g} -> roll back"))
    return Decision(verdict="inconclusive", reason_code="not_enough_evidence", evidence=evidence, message=(
        f"{errors} errors in {samples} requests: keep driving (pass look at {min_samples}, stop at {max_samples})"))
