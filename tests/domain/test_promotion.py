"""Where a rollback goes (a stack, never a toggle) and the gates a promotion needs, as tables."""

from __future__ import annotations

import pytest

from overnight.domain.canary import ArmCounters, CanaryPlanRequest, CanaryRecord, resolve_plan
from overnight.domain.compiling import CandidateReport, CompileReport
from overnight.domain.promotion import AliasMove, champion_stack, promotion_gates, rollback_target, taken_back
from overnight.domain.signatures import Budget
from overnight.domain.stats import paired_delta

A, B, C, D = "a" * 64, "b" * 64, "c" * 64, "d" * 64


def moves(*steps: tuple[str, str | None]) -> list[AliasMove]:
    return [AliasMove.model_validate({"id": i, "signature_id": "S.v1", "alias": "champion", "from_id": None,
                                      "to_id": to, "action": action, "actor": "x", "reason": "r", "run_id": None,
                                      "evidence": {}, "created_at": i}) for i, (action, to) in enumerate(steps)]


@pytest.mark.parametrize(("history", "stack", "target"), [
    ([], [None], None),
    ([("promote", A)], [None, A], None),
    ([("promote", A), ("promote", B)], [None, A, B], A),
    ([("promote", A), ("promote", B), ("rollback", A)], [None, A], None),
    ([("promote", A), ("promote", B), ("rollback", A), ("rollback", None)], [None], None),
    ([("promote", A), ("promote", B), ("promote", C), ("rollback", A)], [None, A], None),  # --to an ancestor
    ([("promote", A), ("rollback", D)], [None, D], None),  # --to an id that never served: it goes on top
    ([("promote", A), ("promote", B), ("rollback", A), ("promote", C)], [None, A, C], A),
])
def test_rollback_walks_back_through_the_history(history: list[tuple[str, str | None]], stack: list[str | None],
                                                 target: str | None) -> None:
    assert champion_stack(moves(*history)) == stack
    if len(stack) < 2:
        with pytest.raises(ValueError, match="no earlier champion"):
            rollback_target(moves(*history))
    else:
        assert rollback_target(moves(*history)) == target


def report(*, best: str = B, incumbent: str = A,
           scores: tuple[list[float], list[float]] | None = None) -> CompileReport:
    cand, inc = scores or ([1.0] * 18 + [0.0] * 2, [1.0] * 12 + [0.0] * 8)
    ids = [f"h{i}" for i in range(len(cand))]
    return CompileReport(
        report_id="cr-1", signature_id="S.v1", job_hash="j", dataset_hash="d", job_spec={"seed": 0},
        status="completed", best_compiled_id=best, incumbent_compiled_id=incumbent, improved=True,
        candidates=[CandidateReport(compiled_id=best, params={}, is_default=False, is_incumbent=False,
                                    holdout_results=dict(zip(ids, cand, strict=True))),
                    CandidateReport(compiled_id=incumbent, params={}, is_default=True, is_incumbent=True,
                                    holdout_results=dict(zip(ids, inc, strict=True)))],
        rungs=[], paired_delta=paired_delta(cand, inc, seed=0), lm_calls=0, evaluations=0, tokens=0,
        full_grid_lm_calls=0, budget={})


def canary(status: str = "passed", control: str = A) -> CanaryRecord:
    config = resolve_plan(CanaryPlanRequest(), budget=Budget(max_latency_p95_ms=1, max_cost_per_call_usd=0), now=0)
    return CanaryRecord(canary_id="can-1", signature_id="S.v1", control_id=control, candidate_id=B, config=config,
                        step=2, step_base={}, status=status, end_reason="gates passed", run_id=None,  # type: ignore[arg-type]
                        report_id="cr-1", actor="x", started_at=0, ended_at=1,
                        arms={"control": ArmCounters(), "candidate": ArmCounters()})


@pytest.mark.parametrize(("kwargs", "failing"), [
    ({"report": report(), "canary": canary()}, []),
    ({"report": report(), "canary": None}, ["no_passed_canary"]),
    ({"report": report(), "canary": canary("failed")}, ["no_passed_canary"]),
    ({"report": report(), "canary": canary(control=C)}, ["canary_control_is_not_champion"]),
    ({"report": None, "canary": canary()}, ["no_compile_report", "no_paired_holdout_delta"]),
    ({"report": report(incumbent=C), "canary": canary()}, ["report_incumbent_is_not_champion"]),
    ({"report": report(scores=([0.0] * 20, [1.0] * 20)), "canary": canary()}, ["holdout_delta_not_met"]),
])
def test_promotion_gates(kwargs: dict[str, object], failing: list[str]) -> None:
    gates = promotion_gates(candidate_id=B, champion_id=A, min_delta=0.0, margin=0.05, **kwargs)  # type: ignore[arg-type]
    assert [g.reason_code for g in gates if g.verdict != "pass"] == failing


def test_no_report_says_why_each_report_on_the_dataset_did_not_count() -> None:
    """A promote from a shell whose OVERNIGHT_LM is not the server's finds the night's report made with another LM:
    the refusal says so, not only that no report names the candidate."""
    refused = ["cr-1: was compiled with sim:seed=1, not the serving LM local:smollm2"]
    gate = promotion_gates(candidate_id=B, champion_id=A, report=None, canary=canary(), min_delta=0.0, margin=0.05,
                           reports_refused=refused)[0]
    assert gate.message == (f"no compile report on the current dataset names {B[:12]} (cr-1: was compiled with "
                            "sim:seed=1, not the serving LM local:smollm2)")
    assert gate.evidence["checked"] == refused
    plain = promotion_gates(candidate_id=B, champion_id=A, report=None, canary=canary(), min_delta=0.0, margin=0.05)
    assert plain[0].message == f"no compile report on the current dataset names {B[:12]}"


def recorded(*steps: tuple[str, str | None]) -> list[AliasMove]:
    """`moves` with each `from_id` the champion it replaced, as the store records it."""
    history = moves(*steps)
    for i, move in enumerate(history):
        move.from_id = champion_stack(history[:i])[-1]
    return history


@pytest.mark.parametrize(("history", "rolled_back_at"), [
    ([], None),
    ([("promote", B)], None),  # serving
    ([("promote", B), ("rollback", None)], 1),  # a person took it back
    ([("promote", A), ("promote", B), ("rollback", A)], 2),
    ([("promote", B), ("rollback", None), ("promote", C)], 1),  # a later promotion of another keeps it taken back
    ([("promote", B), ("rollback", None), ("manual_set", B)], None),  # put back since, by a person
    ([("promote", B), ("promote", C), ("rollback", B)], None),  # rolled back *to*: it serves
    ([("promote", B), ("promote", C), ("rollback", None)], None),  # not serving when the rollback came
    ([("promote", A), ("rollback", None)], None),  # another program's
])
def test_a_program_is_taken_back_by_the_last_rollback_away_from_it_until_it_is_put_back(
        history: list[tuple[str, str | None]], rolled_back_at: int | None) -> None:
    found = taken_back(recorded(*history), B)
    assert (found.id if found else None) == rolled_back_at
