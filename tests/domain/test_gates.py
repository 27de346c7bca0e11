"""The gate statistics as tables, and measured as a gate: seeded simulations of thousands of canaries per case,
asserting the false-pass and false-abort rates against the targets (issue 6, must-show 1, error gates)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from statistics import median

import pytest

from overnight.domain.gates import (
    OVERFLOW_MS,
    SRM_THRESHOLD_P,
    abort_thresholds,
    budget_gate,
    clopper_pearson_upper,
    error_gate,
    log_e_value,
    max_errors_to_pass,
    plan_samples,
    quality_gate,
    srm_gate,
)

P0, ALPHA, MAX_SAMPLES = 0.05, 0.05, 400


@pytest.mark.parametrize(("n", "k", "upper"), [  # canary-gates.md, section 7 (Clopper-Pearson column)
    (20, 0, 0.139), (20, 1, 0.216), (50, 0, 0.058), (50, 2, 0.121), (100, 0, 0.030), (100, 5, 0.102),
    (300, 6, 0.039), (500, 10, 0.034),
])
def test_clopper_pearson_upper_bounds_match_the_reference_table(n: int, k: int, upper: float) -> None:
    assert clopper_pearson_upper(k, n, 0.05) == pytest.approx(upper, abs=0.0015)


def test_zero_failure_sizes_match_the_reference() -> None:
    for target, size in ((0.10, 29), (0.05, 59), (0.02, 149), (0.01, 299)):
        assert max_errors_to_pass(size, target, 0.05) == 0
        assert max_errors_to_pass(size - 1, target, 0.05) == -1


@pytest.mark.parametrize(("samples", "errors", "min_samples", "verdict", "reason"), [
    (0, 0, 153, "inconclusive", "not_enough_evidence"),  # no data never passes
    (153, 0, 153, "pass", "error_rate_within_bound"),
    (153, 3, 153, "pass", "error_rate_within_bound"),
    (153, 4, 153, "inconclusive", "not_enough_evidence"),  # missed the planned look
    (152, 0, 153, "inconclusive", "not_enough_evidence"),  # before the look, even a clean record waits
    (20, 6, 153, "fail", "error_rate_exceeded"),  # 30% errors: aborted early
    (400, 12, 153, "fail", "inconclusive_at_max_samples"),
])
def test_error_gate_table(samples: int, errors: int, min_samples: int, verdict: str, reason: str) -> None:
    decision = error_gate(samples=samples, errors=errors, max_error_rate=P0, alpha=ALPHA, min_samples=min_samples,
                          max_samples=MAX_SAMPLES)
    assert (decision.verdict, decision.reason_code) == (verdict, reason)
    assert decision.evidence["samples"] == samples
    assert decision.message


def test_the_gate_function_agrees_with_the_thresholds_the_simulation_uses() -> None:
    thresholds = abort_thresholds(200, P0, ALPHA)
    for n in range(1, 201):
        for k in range(n + 1):
            aborted = error_gate(samples=n, errors=k, max_error_rate=P0, alpha=ALPHA, min_samples=10_000,
                                 max_samples=10_000).verdict == "fail"
            assert aborted == (k >= thresholds[n]), (n, k)
    assert all(log_e_value(k, 60, P0) < log_e_value(k + 1, 60, P0) for k in range(60))


def simulate(error_rate: float, *, canaries: int, seed: int) -> dict[str, object]:
    """Canaries checked after every request: abort by the e-process, pass at the planned single look."""
    min_samples = plan_samples(max_error_rate=P0, expected_error_rate=0.01, alpha=ALPHA, power=0.9)
    assert min_samples is not None
    thresholds, pass_at_most = abort_thresholds(MAX_SAMPLES, P0, ALPHA), max_errors_to_pass(min_samples, P0, ALPHA)
    rng = random.Random(seed)
    passed, aborted, abort_at = 0, 0, []
    for _ in range(canaries):
        errors = 0
        for n in range(1, MAX_SAMPLES + 1):
            errors += rng.random() < error_rate
            if errors >= thresholds[n]:
                aborted += 1
                abort_at.append(n)
                break
            if n == min_samples and errors <= pass_at_most:
                passed += 1
                break
    return {"pass": passed / canaries, "abort": aborted / canaries,
            "median_abort_n": median(abort_at) if abort_at else None, "min_samples": min_samples}


def test_gate_rates_meet_the_targets() -> None:
    good, boundary = simulate(0.01, canaries=3000, seed=1), simulate(0.05, canaries=3000, seed=2)
    bad, slightly = simulate(0.20, canaries=3000, seed=3), simulate(0.02, canaries=3000, seed=4)
    print(f"\nplanned look at {good['min_samples']} samples; 3,000 canaries per case, checked after every request:"
          f"\n  true error 0.01: pass {good['pass']:.3f} (target >= 0.90)"
          f"\n  true error 0.05: pass {boundary['pass']:.3f} (target <= 0.05)"
          f"\n  true error 0.20: abort {bad['abort']:.3f} (target >= 0.99), median at {bad['median_abort_n']} "
          f"requests (target <= 40)"
          f"\n  true error 0.02: false abort {slightly['abort']:.3f} (target <= 0.02)")
    assert good["pass"] >= 0.90
    assert boundary["pass"] <= 0.05
    assert bad["abort"] >= 0.99
    assert bad["median_abort_n"] is not None
    assert bad["median_abort_n"] <= 40
    assert slightly["abort"] <= 0.02


def test_zero_traffic_never_passes() -> None:
    for min_samples in (0, 1, 153):
        decision = error_gate(samples=0, errors=0, max_error_rate=P0, alpha=ALPHA, min_samples=min_samples,
                              max_samples=MAX_SAMPLES)
        assert decision.verdict != "pass"


@pytest.mark.parametrize(("cand", "ctrl", "verdict"), [
    ((0, 0), (100, 80), "inconclusive"),  # no labels: never a pass
    ((500, 400), (500, 400), "pass"),  # equal accuracy, large samples
    ((500, 350), (500, 400), "fail"),  # 10 points worse
    ((60, 48), (60, 48), "inconclusive"),  # equal, but too few labels to rule out a 10-point regression
    ((500, 250), (500, 400), "fail"),  # 30 points worse: confidently below the margin
])
def test_quality_gate_table(cand: tuple[int, int], ctrl: tuple[int, int], verdict: str) -> None:
    decision = quality_gate(candidate_labeled=cand[0], candidate_correct=cand[1], control_labeled=ctrl[0],
                            control_correct=ctrl[1], margin=0.10 if cand[0] == 60 else 0.05, alpha=0.05,
                            min_labeled=30)
    assert decision.verdict == verdict, decision.message


def test_a_candidate_10_points_less_accurate_is_refused_at_the_planned_size() -> None:
    rng, n, refused = random.Random(9), 153, 0
    for _ in range(3000):
        cand = sum(rng.random() < 0.75 for _ in range(n))
        ctrl = sum(rng.random() < 0.85 for _ in range(n))
        refused += quality_gate(candidate_labeled=n, candidate_correct=cand, control_labeled=n, control_correct=ctrl,
                                margin=0.05, alpha=0.05, min_labeled=30).verdict != "pass"
    print(f"\nquality: a candidate 10 points worse is refused in {refused / 3000:.3f} of 3,000 canaries at n={n}")
    assert refused / 3000 >= 0.95


@pytest.mark.parametrize(("cand", "ctrl", "share", "verdict"), [
    (50, 950, 0.05, "pass"), (100, 900, 0.05, "fail"), (0, 0, 0.25, "inconclusive"), (260, 740, 0.25, "pass"),
    (330, 670, 0.25, "fail"),
])
def test_sample_ratio_mismatch(cand: int, ctrl: int, share: float, verdict: str) -> None:
    assert srm_gate(candidate_samples=cand, control_samples=ctrl, candidate_share=share).verdict == verdict


def _controls_met(candidates: int, share: float) -> Iterator[tuple[int, float]]:
    """(control count, its probability) when a step ends at its `candidates`-th candidate request and each request
    went to the candidate with probability `share`: the negative binomial, over every count but a far tail."""
    mean, spread = candidates * (1 - share) / share, math.sqrt(candidates * (1 - share)) / share
    for k in range(int(mean + 30 * spread)):
        yield k, math.exp(math.lgamma(k + candidates) - math.lgamma(candidates) - math.lgamma(k + 1)
                          + candidates * math.log(share) + k * math.log1p(-share))


def _broken(candidates: int, controls: int, share: float) -> bool:
    return srm_gate(candidate_samples=candidates, control_samples=controls, candidate_share=share).verdict == "fail"


@pytest.mark.parametrize(("share", "candidates"), [
    (0.05, 10), (0.05, 20), (0.05, 31), (0.10, 20), (0.25, 77), (0.50, 76), (0.50, 10)])
def test_a_fair_split_is_called_broken_at_most_once_in_a_thousand_steps(share: float, candidates: int) -> None:
    """A step's split is tested when its candidate arm reaches its target, so the control count it meets is
    negative binomial, not one side of a fixed total: read as a fixed total (chi-square), a fair 5% step of 20
    candidates was called broken 2.5 times in a thousand, 4 at 10 candidates. Summed exactly over every count."""
    alarms = sum(chance for k, chance in _controls_met(candidates, share) if _broken(candidates, k, share))
    print(f"\nsplit: a fair {share:.0%} step of {candidates} candidates is called broken with probability "
          f"{alarms:.5f}")
    assert alarms <= SRM_THRESHOLD_P


@pytest.mark.parametrize(("planned", "actual", "candidates"), [
    (0.25, 0.50, 77), (0.50, 0.25, 76), (0.25, 0.125, 77), (0.05, 0.25, 20)])
def test_a_split_the_assignment_broke_is_caught_at_nearly_every_step(
        planned: float, actual: float, candidates: int) -> None:
    """The candidate arm getting twice (or half) its planned share: called broken at the step's end."""
    caught = sum(chance for k, chance in _controls_met(candidates, actual) if _broken(candidates, k, planned))
    assert caught >= 0.99


def test_sticky_callers_of_uneven_traffic_are_split_by_key_not_by_request() -> None:
    """An app that sends its user's id as the request key: 300 users, the k-th busiest asking 1/k as often as the
    busiest, each kept on one arm. Counted by request, a fair 25% step of 77 candidate requests was called broken
    in 4 canaries of 10 (the busiest few users' arm decides the requests' split); counted by key, as planned."""
    rng, users, trials = random.Random(3), 300, 2000
    busy = list(itertools.accumulate(1 / (k + 1) for k in range(users)))
    by_request = by_key = 0
    for _ in range(trials):
        on_candidate = [rng.random() < 0.25 for _ in range(users)]
        requests, keys = [0, 0], [set[int](), set[int]()]
        while requests[0] < 77:
            user = rng.choices(range(users), cum_weights=busy)[0]
            arm = 0 if on_candidate[user] else 1
            requests[arm] += 1
            keys[arm].add(user)
        split = srm_gate(candidate_samples=requests[0], control_samples=requests[1], candidate_share=0.25,
                         keys=(len(keys[0]), len(keys[1])))
        by_key += split.verdict == "fail"
        by_request += _broken(requests[0], requests[1], 0.25)
    print(f"\nsplit: sticky users, fair 25% steps called broken: {by_request / trials:.3f} by request, "
          f"{by_key / trials:.4f} by key")
    assert by_request / trials > 0.3  # what counting requests did
    assert by_key / trials <= 0.003


def test_the_split_sentence_says_which_arm_is_which_and_the_threshold_it_met() -> None:
    """A reviewer reads a passed split the way a failed one reads: the arms named, counted at the step (since the
    rollout went to it; not the arms' totals in the canary's table), the p-value against the bar."""
    passed = srm_gate(candidate_samples=76, control_samples=80, candidate_share=0.5)
    assert passed.message == (
        "76 candidate vs 80 control requests at the 50% step: p = 0.75 >= 0.001 -> as planned")
    failed = srm_gate(candidate_samples=330, control_samples=670, candidate_share=0.25, threshold_p=0.01)
    assert failed.message.startswith("330 candidate vs 670 control requests at the 25% step: p = ")
    assert failed.message.endswith(" < 0.01 -> the assignment is broken")


@pytest.mark.parametrize(("latency", "cost", "verdict"), [
    (None, None, "inconclusive"), (900.0, 0.001, "pass"), (3000.0, 0.001, "fail"), (900.0, 0.01, "fail"),
    (900.0, None, "pass"),
])
def test_budget_gate(latency: float | None, cost: float | None, verdict: str) -> None:
    decision = budget_gate(latency_p95_ms=latency, cost_per_call_usd=cost, max_latency_p95_ms=2500,
                           max_cost_per_call_usd=0.002)
    assert decision.verdict == verdict


@pytest.mark.parametrize(("p95", "budget", "message"), [
    (10_000.0, 10_000, "latency p95 ≤ 10000 ms and cost within the signature's budget"),
    (30_000.0, 10_000, "latency p95 over 10000 ms (its histogram bucket reaches 30000 ms), budget 10000 ms"),
    (10_000.0, 7_000, "latency p95 over 5000 ms (its histogram bucket reaches 10000 ms), budget 7000 ms"),
    (float(OVERFLOW_MS), 10_000, "latency p95 over 120000 ms (past the histogram's last edge), budget 10000 ms"),
])
def test_the_budget_gate_says_what_the_histogram_knows_of_the_p95(p95: float, budget: int, message: str) -> None:
    """The p95 is a bucket's upper edge: a pass can say "at most", a failure "over the edge below" — never a
    figure the counters do not hold (a demo's 2.5 s calls read "latency p95 10000 ms")."""
    decision = budget_gate(latency_p95_ms=p95, cost_per_call_usd=None, max_latency_p95_ms=budget,
                           max_cost_per_call_usd=0.002)
    assert decision.message == message
