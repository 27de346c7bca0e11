"""The canary state machine as tables of (counters, config, step, now) -> outcome, stepped one tick at a time,
plus a seeded simulation of whole multi-step canaries through the same function the server calls."""

from __future__ import annotations

import math
import random

import pytest
from pydantic import ValidationError

from overnight.domain.canary import (
    ArmCounters,
    CanaryConfig,
    CanaryPlanRequest,
    arm_for,
    assess,
    bucket_of,
    latency_bucket,
    resolve_plan,
)
from overnight.domain.gates import SRM_THRESHOLD_P, binom_cdf, max_errors_to_pass
from overnight.domain.signatures import Budget

BUDGET = Budget(max_latency_p95_ms=2500, max_cost_per_call_usd=0.002)
NOW = 1_000_000


def config(**overrides: object) -> CanaryConfig:
    request = CanaryPlanRequest(**{"steps": [25, 50], **overrides})  # type: ignore[arg-type]
    return resolve_plan(request, budget=BUDGET, now=NOW)


def arm(samples: int, errors: int = 0, *, labeled: int | None = None, correct: int | None = None,
        latency_ms: int = 40) -> ArmCounters:
    labeled = samples - errors if labeled is None else labeled
    return ArmCounters(samples=samples, errors=errors, labeled=labeled,
                       correct=round(labeled * 0.8) if correct is None else correct,
                       latency_buckets={latency_bucket(latency_ms): samples} if samples else {})


def test_the_plan_spreads_the_planned_look_over_the_steps() -> None:
    assert config().targets == (77, 153)
    assert resolve_plan(CanaryPlanRequest(), budget=BUDGET, now=NOW).targets == (51, 102, 153)
    assert config(min_samples=[10, 20], max_samples=30).max_samples == 30


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"steps": [50, 25]}, "strictly increasing"), ({"steps": [0, 50]}, "between 0 and 100"),
    ({"steps": [50, 100]}, "between 0 and 100"), ({"min_samples": [10]}, "one cumulative target per step"),
    ({"min_samples": [20, 10]}, "strictly increasing"), ({"expected_error_rate": 0.06}, "below max_error_rate"),
])
def test_bad_plans_are_refused_naming_the_problem(overrides: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        CanaryPlanRequest(**{"steps": [25, 50], **overrides})  # type: ignore[arg-type]


def test_max_samples_below_the_look_is_refused() -> None:
    with pytest.raises(ValueError, match="below the pass look"):
        config(max_samples=100)


BASE = {"control": 0, "candidate": 0}


@pytest.mark.parametrize(("step", "control", "candidate", "now", "outcome", "reason"), [
    (0, arm(0), arm(0), NOW, "continue", "not_enough_evidence"),  # no data never passes
    (0, arm(200), arm(70), NOW, "continue", "not_enough_evidence"),
    (0, arm(230), arm(77), NOW, "advance", "step_complete"),
    (0, arm(600), arm(77), NOW, "fail", "sample_ratio_mismatch"),  # 11% candidate on a 25% step
    (0, arm(230), arm(77, latency_ms=4000), NOW, "fail", "over_budget"),
    (0, arm(30), arm(10, 4), NOW, "fail", "error_rate_exceeded"),  # aborts early, whatever the step
    (1, arm(306), arm(153, 1, correct=140), NOW, "pass", "canary_passed"),  # better: non-inferior at n=153
    (1, arm(306), arm(153, 1), NOW, "continue", "quality_not_shown"),  # equal: 153 can't exclude a 5-point drop
    (1, arm(306), arm(153, 5), NOW, "continue", "not_enough_evidence"),  # the look is missed
    (1, arm(306, labeled=306, correct=265), arm(153, labeled=153, correct=75), NOW, "fail",
     "quality_worse_than_control"),
    (1, arm(306, labeled=306, correct=260), arm(153, labeled=153, correct=122), NOW, "continue",
     "quality_not_shown"),  # 5 points worse, can't rule out more than the margin: the look is missed
    (1, arm(306, labeled=0), arm(153, labeled=0), NOW, "continue", "not_enough_labels"),
    (1, arm(900), arm(400, 14), NOW, "inconclusive", "inconclusive_at_max_samples"),
    (1, arm(300), arm(120), NOW + 3_600_000, "inconclusive", "deadline_passed"),
])
def test_assessment_table(step: int, control: ArmCounters, candidate: ArmCounters, now: int, outcome: str,
                          reason: str) -> None:
    base = BASE if step == 0 else {"control": 230, "candidate": 77}
    result = assess(config(), step=step, step_base=base, control=control, candidate=candidate, now=now)
    assert (result.outcome, result.reason_code) == (outcome, reason), result.message


def test_the_split_threshold_is_part_of_the_plan_and_older_plans_keep_the_default() -> None:
    """77 candidate vs 142 control on a 25% step (p = 0.0005): a mismatch at the default threshold, not at 1e-4."""
    at_default = assess(config(), step=0, step_base=BASE, control=arm(142), candidate=arm(77), now=NOW)
    lenient = config(srm_threshold_p=1e-4)
    at_lenient = assess(lenient, step=0, step_base=BASE, control=arm(142), candidate=arm(77), now=NOW)
    assert (at_default.outcome, at_default.reason_code) == ("fail", "sample_ratio_mismatch")
    mismatch = next(d for d in at_default.decisions if d.reason_code == "sample_ratio_mismatch")
    assert mismatch.evidence["threshold_p"] == SRM_THRESHOLD_P == 0.001
    assert (at_lenient.outcome, at_lenient.reason_code) == ("advance", "step_complete")
    split = next(d for d in at_lenient.decisions if d.reason_code == "split_as_planned")
    assert split.evidence["threshold_p"] == 1e-4
    stored = config().model_dump(mode="json")
    del stored["srm_threshold_p"]  # a canary started before the threshold was a plan field
    assert CanaryConfig.model_validate(stored).srm_threshold_p == SRM_THRESHOLD_P
    for bad in (0, 0.2):
        with pytest.raises(ValidationError, match="srm_threshold_p"):
            CanaryPlanRequest(srm_threshold_p=bad)


def test_a_missed_look_says_so_once_with_every_gate_and_the_next_request_only_keeps_watching() -> None:
    base = {"control": 230, "candidate": 77}
    at_look = assess(config(), step=1, step_base=base, control=arm(306), candidate=arm(153, 1), now=NOW)
    after = assess(config(), step=1, step_base=base, control=arm(308), candidate=arm(154, 1), now=NOW)
    assert (at_look.outcome, at_look.look_missed, at_look.can_still_pass) == ("continue", True, False)
    assert at_look.message.startswith("the pass look at 153 candidate requests was missed (quality_not_shown):")
    assert [d.reason_code for d in at_look.decisions] == [
        "error_rate_within_bound", "quality_not_shown", "within_budget", "split_as_planned"]
    assert (after.outcome, after.look_missed, after.can_still_pass) == ("continue", False, False)


def test_the_quality_gate_can_be_turned_off_for_unlabeled_traffic() -> None:
    result = assess(config(quality_margin=None), step=1, step_base={"control": 230, "candidate": 77},
                    control=arm(306, labeled=0), candidate=arm(153, labeled=0), now=NOW)
    assert result.outcome == "pass"
    assert "quality gate off" in result.message


def test_routing_is_sticky_and_a_larger_step_keeps_every_candidate_key() -> None:
    keys = [f"user-{i}" for i in range(5000)]
    buckets = {k: bucket_of(salt="s1", signature_id="Sig.v1", request_key=k) for k in keys}
    assert buckets == {k: bucket_of(salt="s1", signature_id="Sig.v1", request_key=k) for k in keys}
    for small, large in ((5, 25), (25, 50)):
        assert all(arm_for(buckets[k], large) == "candidate" for k in keys if arm_for(buckets[k], small) == "candidate")
    share = sum(arm_for(b, 25) == "candidate" for b in buckets.values()) / len(keys)
    assert 0.22 < share < 0.28
    other = {k: bucket_of(salt="s2", signature_id="Sig.v1", request_key=k) for k in keys}
    assert other != buckets  # a new canary (new salt) reshuffles who is exposed


def simulate(error_rate: float, *, canaries: int, seed: int) -> tuple[float, float]:
    """Whole canaries on steps 5/25/50%, assessed after every candidate request exactly as the server does."""
    plan, rng = resolve_plan(CanaryPlanRequest(quality_margin=None), budget=BUDGET, now=NOW), random.Random(seed)
    passed = aborted = 0
    for _ in range(canaries):
        step, base, control, candidate = 0, dict(BASE), arm(0), arm(0)
        while True:
            if rng.random() >= plan.steps[step] / 100:
                control = arm(control.samples + 1)
                continue
            candidate = arm(candidate.samples + 1, candidate.errors + (rng.random() < error_rate))
            result = assess(plan, step=step, step_base=base, control=control, candidate=candidate, now=NOW)
            if result.outcome == "advance":
                step, base = step + 1, {"control": control.samples, "candidate": candidate.samples}
            elif result.outcome != "continue":
                passed += result.outcome == "pass"
                aborted += result.reason_code == "error_rate_exceeded"
                break
    return passed / canaries, aborted / canaries


def test_whole_multi_step_canaries_meet_the_targets() -> None:
    good, bad = simulate(0.01, canaries=400, seed=11), simulate(0.20, canaries=400, seed=12)
    boundary = simulate(0.05, canaries=400, seed=13)
    print(f"\nmulti-step canaries (5/25/50%, 400 each): true error 0.01 passes {good[0]:.3f}; "
          f"0.05 passes {boundary[0]:.3f}; 0.20 aborted {bad[1]:.3f}")
    # The steps only add ways to stop, never ways to pass: the boundary's pass rate is the single look's, exactly
    # binom_cdf(3, 153, 0.05) = 0.049 (test_gates measures it on 3,000 canaries); here within Monte Carlo error.
    exact = binom_cdf(max_errors_to_pass(153, 0.05, 0.05), 153, 0.05)
    assert exact <= 0.05
    assert boundary[0] <= exact + 3 * math.sqrt(exact * (1 - exact) / 400)
    assert good[0] >= 0.90
    assert bad[1] >= 0.99
