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
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

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


PLAN_LIMIT = 20_000  # the largest pass look planned: past it, the expected rate is too close to the maximum


def plan_samples(*, max_error_rate: float, expected_error_rate: float, alpha: float = 0.05, power: float = 0.9,
                 limit: int = PLAN_LIMIT) -> int | None:
    """The smallest single-look size at which a candidate erring at `expected_error_rate` passes with `power`."""
    if expected_error_rate >= max_error_rate:
        return None
    for n in range(1, limit + 1):
        k = max_errors_to_pass(n, max_error_rate, alpha)
        if k >= 0 and binom_cdf(k, n, expected_error_rate) >= power:
            return n
    return None


def unplannable(*, max_error_rate: float, expected_error_rate: float, alpha: float, power: float,
                expected_is: str = "the expected error rate", max_is: str = "the maximum") -> str:
    """Why `plan_samples` found no look, in the words of whoever asked (`expected_is`, `max_is`)."""
    cannot = f"a candidate erring at {expected_error_rate:g} cannot be shown to be under {max_error_rate:g}"
    if expected_error_rate >= max_error_rate:
        return f"{cannot}: {expected_is} must be below {max_is}"
    return (f"{cannot} in {PLAN_LIMIT:,} requests or fewer (alpha {alpha:g}, power {power:g}): {expected_is} is too "
            f"close to {max_is}; a wider gap between them plans a smaller canary")


def step_targets(look: int, steps: int) -> list[int]:
    """The candidate requests (cumulative) at the end of each of `steps` steps of a canary planned from its error
    rates: the look split evenly, the last the look itself."""
    return [max(i + 1, math.ceil(look * (i + 1) / steps)) for i in range(steps)]


def steps_said(steps: Iterable[float]) -> str:
    """A canary's rollout steps as its progress and its plan say them: `25%, 50%`."""
    return ", ".join(f"{step:g}%" for step in steps)


def requests_in_all(targets: list[int], steps: list[float]) -> int:
    """About how many requests pass through a canary before its look: at each step, the candidate requests it
    needs over the share of traffic the step routes to the candidate (the rest go to control)."""
    needed = [target - before for target, before in zip(targets, [0, *targets[:-1]], strict=True)]
    return math.ceil(sum(n / (pct / 100) for n, pct in zip(needed, steps, strict=True)))


class CanaryPlan(BaseModel):
    """What `overnight plan` prints: the planned look, the errors allowed there, when to abort early, and how the
    look is staged over the rollout steps."""

    max_error_rate: float
    expected_error_rate: float
    alpha: float
    power: float
    min_samples: int
    max_errors_at_look: int
    zero_failure_samples: int
    abort_after_errors: dict[int, int]  # within the first n requests -> errors that abort
    steps: list[float]
    step_targets: list[int]  # candidate requests by the end of each step, cumulative: the last is the look
    requests_in_all: int  # about how many requests, both arms, pass through the canary before its look


def canary_plan(*, max_error_rate: float, expected_error_rate: float, alpha: float = 0.05, power: float = 0.9,
                steps: list[float] | None = None) -> CanaryPlan | None:
    """The plan for a canary on `steps` (default: the runner's, 25% then 50%), or None when a candidate at the
    expected rate cannot pass."""
    look = plan_samples(max_error_rate=max_error_rate, expected_error_rate=expected_error_rate, alpha=alpha,
                        power=power)
    if look is None:
        return None
    steps = list(RUNNER_STEPS) if steps is None else steps
    zero_failure = next(n for n in range(1, look + 1) if max_errors_to_pass(n, max_error_rate, alpha) >= 0)
    thresholds = abort_thresholds(look, max_error_rate, alpha)
    targets = step_targets(look, len(steps))
    return CanaryPlan(max_error_rate=max_error_rate, expected_error_rate=expected_error_rate, alpha=alpha,
                      power=power, min_samples=look, max_errors_at_look=max_errors_to_pass(look, max_error_rate, alpha),
                      zero_failure_samples=zero_failure,
                      abort_after_errors={n: thresholds[n] for n in (10, 25, 50, 100, look) if n <= look},
                      steps=steps, step_targets=targets, requests_in_all=requests_in_all(targets, steps))


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


QUALITY_METHOD = "newcombe_difference_noninferiority@1"
SRM_METHOD = "negative_binomial_exact@1"


def _z(alpha: float) -> float:
    """The one-sided normal quantile for `alpha` (bisection on erfc: no SciPy in the domain)."""
    low, high = 0.0, 10.0
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if 0.5 * math.erfc(mid / math.sqrt(2)) > alpha else (low, mid)
    return high


def wilson_interval(k: int, n: int, z: float) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def quality_gate(*, candidate_labeled: int, candidate_correct: int, control_labeled: int, control_correct: int,
                 margin: float, alpha: float, min_labeled: int) -> Decision:
    """Non-inferiority of labeled accuracy (Newcombe's hybrid score interval on candidate - control): pass when the
    one-sided lower bound is at least -margin, fail when even the upper bound is below -margin (confidently
    worse), otherwise inconclusive. Too few labels on either arm is inconclusive, never a pass."""
    z = _z(alpha)
    p_cand = candidate_correct / candidate_labeled if candidate_labeled else 0.0
    p_ctrl = control_correct / control_labeled if control_labeled else 0.0
    evidence: dict[str, Any] = {"candidate_labeled": candidate_labeled, "candidate_correct": candidate_correct,
                                "control_labeled": control_labeled, "control_correct": control_correct,
                                "margin": margin, "alpha": alpha, "min_labeled": min_labeled, "method": QUALITY_METHOD}
    if min(candidate_labeled, control_labeled) < min_labeled:
        return Decision(verdict="inconclusive", reason_code="not_enough_labels", evidence=evidence, message=(
            f"{candidate_labeled} candidate and {control_labeled} control labeled requests; "
            f"the quality gate needs {min_labeled} on each arm"))
    cand_low, cand_high = wilson_interval(candidate_correct, candidate_labeled, z)
    ctrl_low, ctrl_high = wilson_interval(control_correct, control_labeled, z)
    delta = p_cand - p_ctrl
    lower = delta - math.sqrt((p_cand - cand_low) ** 2 + (ctrl_high - p_ctrl) ** 2)
    upper = delta + math.sqrt((cand_high - p_cand) ** 2 + (p_ctrl - ctrl_low) ** 2)
    evidence.update(estimate=delta, lower_bound=lower, upper_bound=upper)
    said = f"accuracy {p_cand:.3f} vs control {p_ctrl:.3f}: difference {delta:+.3f} [{lower:+.3f}, {upper:+.3f}]"
    if lower >= -margin:
        return Decision(verdict="pass", reason_code="quality_not_worse", evidence=evidence,
                        message=f"{said}, lower bound >= -{margin:g} -> not worse")
    if upper < -margin:
        return Decision(verdict="fail", reason_code="quality_worse_than_control", evidence=evidence,
                        message=f"{said}, upper bound < -{margin:g} -> worse than control")
    return Decision(verdict="inconclusive", reason_code="quality_not_shown", evidence=evidence,
                    message=f"{said}, lower bound < -{margin:g} -> cannot rule out a regression")

# A fair split falls below this at most once per thousand checks (GrowthBook's default; ExP uses 0.0005).
# A plan may set its own, up to SRM_THRESHOLD_MAX (beyond it the alarm would ring on one fair canary in 20).
SRM_THRESHOLD_P, SRM_THRESHOLD_MAX = 0.001, 0.05

# A canary's plan when its request does not say (CanaryPlanRequest), and `overnight plan`'s defaults.
MAX_ERROR_RATE, EXPECTED_ERROR_RATE, ALPHA, POWER = 0.05, 0.01, 0.05, 0.9
RUNNER_STEPS = (25.0, 50.0)  # the rollout `overnight run` stages its canaries on, unless --steps says
# A promotion's paired holdout delta must be at least MIN_DELTA, its lower bound at least -HOLDOUT_MARGIN (DESIGN §7).
MIN_DELTA, HOLDOUT_MARGIN = 0.0, 0.05
MinDelta = Annotated[float, Field(ge=-1, le=1)]  # the bar's ranges, for the promote's body and the runner's options
HoldoutMargin = Annotated[float, Field(ge=0, le=1)]


def holdout_bar_options(min_delta: float, margin: float) -> str:
    """The `--min-delta` / `--holdout-margin` options that ask this bar of `overnight run` and `overnight promote`,
    each only where it is not the default ('' for the default bar)."""
    options = [f"--min-delta {min_delta:g}"] if min_delta != MIN_DELTA else []
    if margin != HOLDOUT_MARGIN:
        options.append(f"--holdout-margin {margin:g}")
    return " ".join(options)


def neg_binom_tails(k: int, r: int, p: float) -> tuple[float, float]:
    """(P(K <= k), P(K >= k)) for K ~ NegativeBinomial(r, p): the failures before the r-th success, each trial a
    success with probability p. At most k failures before the r-th success is at least r successes in k + r
    trials: the binomial's tails."""
    at_least = 1.0 if k == 0 else binom_cdf(r - 1, k + r - 1, p)  # fewer than r successes in the first k + r - 1
    return max(0.0, 1.0 - binom_cdf(r - 1, k + r, p)), at_least


def srm_gate(*, candidate_samples: int, control_samples: int, candidate_share: float,
             threshold_p: float = SRM_THRESHOLD_P, keys: tuple[int, int] | None = None) -> Decision:
    """Sample-ratio mismatch: is the step's split consistent with its rollout? The samples are each arm's requests
    since the rollout went to `candidate_share` (at this step, not the canary's), as the sentence says; `keys`,
    the distinct request keys among them (candidate, control).

    What is assigned is a request key, not a request: a caller that sends its user's id as the key keeps each user
    on one arm, so an arm's requests come in lumps of one user's (a few heavy users on the candidate would read as
    a broken split: 4 fair canaries in 10 with 300 users of uneven traffic). So the split counts keys when they
    repeat. And it is tested when the candidate arm reaches its target, so the control count it meets is not one
    side of a fixed total (a chi-square) but the negative binomial's: those that went to control before the
    candidate's n-th. Its p-value is the smaller tail doubled, exact, so a fair split is called broken at most
    `threshold_p` of the time however small the step (read as a fixed total, a fair 5% step of 20 candidates was
    called broken 2.5 times in a thousand). A step with no candidate yet reads as one about to get its first."""
    evidence: dict[str, Any] = {"candidate_samples": candidate_samples, "control_samples": control_samples,
                                "candidate_share": candidate_share, "threshold_p": threshold_p, "method": SRM_METHOD}
    counted, said = (candidate_samples, control_samples), "requests"
    if keys is not None:
        evidence.update(candidate_keys=keys[0], control_keys=keys[1])
        if keys != counted:
            counted, said = keys, f"request keys ({candidate_samples} vs {control_samples} requests)"
    if sum(counted) == 0 or not 0 < candidate_share < 1:
        return Decision(verdict="inconclusive", reason_code="no_split_to_check", evidence=evidence,
                        message="no traffic yet, or a rollout of 0% or 100%: nothing to compare")
    lower, upper = neg_binom_tails(counted[1], max(counted[0], 1), candidate_share)
    p_value = min(1.0, 2 * min(lower, upper))
    evidence.update(p_value=p_value)
    split = (f"{counted[0]} candidate vs {counted[1]} control {said} at the {candidate_share:.0%} step: "
             f"p = {p_value:.2g}")
    if p_value < threshold_p:
        return Decision(verdict="fail", reason_code="sample_ratio_mismatch", evidence=evidence,
                        message=f"{split} < {threshold_p:g} -> the assignment is broken")
    return Decision(verdict="pass", reason_code="split_as_planned", evidence=evidence,
                    message=f"{split} >= {threshold_p:g} -> as planned")


# The canary's latency histogram: each call counts in the first bucket whose upper edge (ms) it does not exceed;
# the p95 the budget gate reads is a bucket's upper edge, so it never under-reports.
LATENCY_EDGES_MS = (10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000)
OVERFLOW_MS = 2_147_483_647


def budget_gate(*, latency_p95_ms: float | None, cost_per_call_usd: float | None, max_latency_p95_ms: float,
                max_cost_per_call_usd: float) -> Decision:
    """The candidate's latency p95 and cost per call against the signature's budget (unknown cost passes)."""
    evidence: dict[str, Any] = {"latency_p95_ms": latency_p95_ms, "cost_per_call_usd": cost_per_call_usd,
                                "max_latency_p95_ms": max_latency_p95_ms,
                                "max_cost_per_call_usd": max_cost_per_call_usd}
    if latency_p95_ms is None:
        return Decision(verdict="inconclusive", reason_code="no_latency_yet", evidence=evidence,
                        message="no candidate latency measured yet")
    over = [f"latency p95 over {_edge_below(latency_p95_ms):.0f} ms ({_reach(latency_p95_ms)}), budget "
            f"{max_latency_p95_ms:.0f} ms"] if latency_p95_ms > max_latency_p95_ms else []
    if cost_per_call_usd is not None and cost_per_call_usd > max_cost_per_call_usd:
        over.append(f"cost per call ${cost_per_call_usd:.5f} > ${max_cost_per_call_usd:.5f}")
    if over:
        return Decision(verdict="fail", reason_code="over_budget", evidence=evidence, message="; ".join(over))
    return Decision(verdict="pass", reason_code="within_budget", evidence=evidence,
                    message=f"latency p95 {p95_bound(latency_p95_ms)} ms and cost within the signature's budget")


def p95_bound(p95_ms: float) -> str:
    """What the histogram knows of a p95, a bucket's upper edge: `≤ 10000`, or `> 120000` past the last edge."""
    return f"> {LATENCY_EDGES_MS[-1]}" if p95_ms >= OVERFLOW_MS else f"≤ {p95_ms:.0f}"


def _edge_below(p95_ms: float) -> float:
    """The histogram edge under a p95 bucket's upper edge: the p95 is known to be over it."""
    return max((edge for edge in LATENCY_EDGES_MS if edge < p95_ms), default=0)


def _reach(p95_ms: float) -> str:
    if p95_ms >= OVERFLOW_MS:
        return "past the histogram's last edge"
    return f"its histogram bucket reaches {p95_ms:.0f} ms"
