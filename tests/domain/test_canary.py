"""The canary state machine as tables of (counters, config, step, now) -> outcome, stepped one tick at a time,
plus a seeded simulation of whole multi-step canaries through the same function the server calls."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from overnight.domain.canary import (
    ArmCounters,
    CanaryConfig,
    CanaryPlanRequest,
    CanaryRecord,
    arm_for,
    assess,
    bucket_of,
    latency_bucket,
    rederive,
    resolve_plan,
)
from overnight.domain.gates import SRM_THRESHOLD_P, binom_cdf, max_errors_to_pass
from overnight.domain.hashing import canonical_json
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
    """77 candidate vs 139 control on a 25% step (p = 0.0006): a mismatch at the default threshold, not at 1e-4."""
    at_default = assess(config(), step=0, step_base=BASE, control=arm(139), candidate=arm(77), now=NOW)
    lenient = config(srm_threshold_p=1e-4)
    at_lenient = assess(lenient, step=0, step_base=BASE, control=arm(139), candidate=arm(77), now=NOW)
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


def recorded(plan: CanaryConfig, *, step: int, base: dict[str, int], control: ArmCounters, candidate: ArmCounters,
             now: int) -> tuple[str, str, dict[str, Any]] | None:
    """A canary's history row for this assessment, as the store writes it and reads it back (through JSON)."""
    canary = CanaryRecord(canary_id="can-1", signature_id="Sig.v1", control_id="a" * 64, candidate_id="b" * 64,
                          config=plan, step=step, step_base=base, status="active", end_reason=None, run_id=None,
                          report_id=None, actor=None, started_at=NOW, ended_at=None,
                          arms={"control": control, "candidate": candidate})
    row = canary.decision_record(canary.assess(now), now)
    return None if row is None else (row[0], row[1], json.loads(canonical_json(row[2])))


DECIDING = [  # (step, control, candidate, now): one of each kind of decision the history records
    (0, arm(230), arm(77), NOW),  # advance
    (0, arm(600), arm(77), NOW),  # split mismatch
    (0, arm(230), arm(77, latency_ms=4000), NOW),  # over budget
    (0, arm(30), arm(10, 4), NOW),  # abort
    (1, arm(306), arm(153, 1, correct=140), NOW),  # pass
    (1, arm(306), arm(153, 5), NOW),  # look missed
    (1, arm(306, labeled=306, correct=265), arm(153, labeled=153, correct=75), NOW),  # worse
    (1, arm(900), arm(400, 14), NOW),  # max samples
    (1, arm(300), arm(120), NOW + 3_600_000),  # deadline
]


@pytest.mark.parametrize(("step", "control", "candidate", "now"), DECIDING)
def test_every_recorded_decision_derives_again_from_its_inputs(step: int, control: ArmCounters,
                                                               candidate: ArmCounters, now: int) -> None:
    base = BASE if step == 0 else {"control": 230, "candidate": 77}
    row = recorded(config(), step=step, base=base, control=control, candidate=candidate, now=now)
    assert row is not None
    kind, verdict, evidence = row
    assert rederive(config(), kind=kind, verdict=verdict, evidence=evidence).status == "agrees"  # type: ignore[union-attr]


def test_a_record_that_does_not_follow_from_its_inputs_is_named() -> None:
    """Tamper with any part of a decision — its verdict, a gate's sentence, a count in its inputs, a figure — and
    re-deriving it says where the record and its inputs part."""
    kind, verdict, evidence = recorded(config(), step=1, base={"control": 230, "candidate": 77}, control=arm(306),
                                       candidate=arm(153, 1, correct=140), now=NOW) or ("", "", {})
    assert (kind, verdict) == ("gate_evaluated", "pass")

    def again(**changes: Any) -> tuple[str, str | None]:
        edited = json.loads(json.dumps(evidence))
        for path, value in changes.get("at", {}).items():
            *parents, leaf = path.split("/")
            node = edited
            for key in parents:
                node = node[int(key)] if isinstance(node, list) else node[key]
            node[int(leaf) if isinstance(node, list) else leaf] = value
        found = rederive(config(), kind=changes.get("kind", kind), verdict=changes.get("verdict", verdict),
                         evidence=edited)
        assert found is not None
        return found.status, found.detail

    assert again(verdict="fail") == ("differs", "recorded gate_evaluated fail; its inputs give gate_evaluated pass")
    assert again(at={"inputs/arms/candidate/errors": 9}) == (  # 9 errors in 153: the look is missed
        "differs", "recorded gate_evaluated pass; its inputs give look_missed inconclusive")
    assert again(at={"inputs/arms/candidate/errors": 2}) == (  # still a pass, on other counts
        "differs", "arms.candidate.error_rate: recorded 0.006535947712418301, its inputs give 0.013071895424836602")
    status, detail = again(at={"gates/1/message": "accuracy looks fine"})
    assert (status, detail) == ("differs", 'gates[1].message: recorded "accuracy looks fine", its inputs give '
                                           + json.dumps(evidence["gates"][1]["message"], ensure_ascii=False))
    assert again(at={"gates/0/evidence/upper_bound": 0.01}) == (
        "differs", f"gates[0].evidence.upper_bound: recorded 0.01, its inputs give "
                   f"{evidence['gates'][0]['evidence']['upper_bound']}")
    upper = evidence["gates"][0]["evidence"]["upper_bound"]
    assert again(at={"gates/0/evidence/upper_bound": upper * (1 + 1e-12)}) == ("agrees", None)  # another libm's ulp
    assert again(at={"inputs/arms/candidate/samples": "many"})[0] == "differs"
    assert again(at={"gates/0/evidence/abort_method": "beta_mixture_eprocess@0"}) == (
        "method_changed", "recorded under beta_mixture_eprocess@0; this overnight gates with beta_mixture_eprocess@1")
    del evidence["inputs"]
    assert again() == ("no_inputs", "recorded before gate decisions kept their inputs")
    assert rederive(config(), kind="opened", verdict=None, evidence={"config": {}}) is None  # not a gate decision


@settings(max_examples=300, deadline=None)
@given(step=st.integers(0, 1), control=st.tuples(st.integers(0, 900), st.integers(0, 60), st.integers(0, 900)),
       candidate=st.tuples(st.integers(0, 450), st.integers(0, 60), st.integers(0, 450), st.sampled_from([40, 4000])),
       late=st.booleans(), margin=st.sampled_from([0.05, None]))
def test_whatever_a_canary_decides_derives_again_from_what_is_recorded(
        step: int, control: tuple[int, int, int], candidate: tuple[int, int, int, int], late: bool,
        margin: float | None) -> None:
    plan = config(quality_margin=margin)
    arms = []
    for samples, failed, correct, *latency in (control, candidate):
        errors = min(failed, samples)
        labeled = samples - errors
        arms.append(arm(samples, errors, labeled=labeled, correct=min(correct, labeled),
                        latency_ms=latency[0] if latency else 40))
    base = BASE if step == 0 else {"control": min(230, arms[0].samples), "candidate": min(77, arms[1].samples)}
    row = recorded(plan, step=step, base=base, control=arms[0], candidate=arms[1], now=NOW + 3_600_000 * late)
    if row is not None:
        found = rederive(plan, kind=row[0], verdict=row[1], evidence=row[2])
        assert found is not None
        assert (found.status, found.detail) == ("agrees", None)
