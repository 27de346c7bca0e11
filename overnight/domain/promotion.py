"""Promote and rollback, pure: the gates a promotion must pass, and where a rollback goes.

Rollback walks back through the alias history as a stack — a promote (or manual set) pushes, a rollback pops
(to the named id when one was given) — so promote A, promote B, rollback, rollback ends at the original default
(no champion), never toggling between A and B. Must not import I/O modules, the clock or DSPy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from overnight.domain.canary import CanaryRecord
from overnight.domain.compiling import CompileReport
from overnight.domain.gates import HOLDOUT_MARGIN, MIN_DELTA, Decision, HoldoutMargin, MinDelta
from overnight.domain.runs import ID_PATTERN
from overnight.domain.stats import PairedDelta, paired_delta

AliasAction = Literal["promote", "rollback", "manual_set"]
PROMOTE_METHOD = "promotion_gates@1"


class AliasMove(BaseModel):
    """One row of `alias_history`: append-only."""

    id: int
    signature_id: str
    alias: str
    from_id: str | None
    to_id: str | None  # None: the signature's default program
    action: AliasAction
    actor: str
    reason: str
    run_id: str | None
    evidence: dict[str, Any]
    created_at: int

    @property
    def forced(self) -> bool:
        return bool(self.evidence.get("forced"))


def champion_stack(history: list[AliasMove]) -> list[str | None]:
    """The champions in the order they were pushed; the last is the current one, `None` = default program."""
    stack: list[str | None] = [None]
    for move in history:
        if move.action != "rollback":
            stack.append(move.to_id)
            continue
        while len(stack) > 1 and stack[-1] != move.to_id:
            stack.pop()
        if stack[-1] != move.to_id:  # rolled back to an id that was never champion: it becomes the top
            stack.append(move.to_id)
    return stack


def rollback_target(history: list[AliasMove]) -> str | None:
    """Where one step back goes. Raises ValueError when there is nothing to walk back to."""
    stack = champion_stack(history)
    if len(stack) < 2:
        raise ValueError("the champion is the default program and has no earlier champion to roll back to")
    return stack[-2]


def taken_back(history: list[AliasMove], compiled_id: str) -> AliasMove | None:
    """The rollback that took `compiled_id` off serving, unless it has been made champion again since (a promote,
    a manual set, a rollback to it). A night opens no canary for such a program: someone decided against it, and
    the gates do not know why. `history` oldest first."""
    for move in reversed(history):
        if move.to_id == compiled_id:
            return None
        if move.action == "rollback" and move.from_id == compiled_id:
            return move
    return None


def promotion_gates(*, candidate_id: str, champion_id: str, report: CompileReport | None,
                    canary: CanaryRecord | None, min_delta: float, margin: float,
                    reports_refused: list[str] | None = None) -> list[Decision]:
    """Every gate a promotion needs (DESIGN §7); it may go ahead only when all pass. `reports_refused`: why each
    report on the current dataset did not count, when none did (another LM's, an older contract's)."""
    return [_report_gate(candidate_id, champion_id, report, reports_refused or []),
            _delta_gate(candidate_id, report, min_delta, margin), _canary_gate(candidate_id, champion_id, canary)]


def _report_gate(candidate_id: str, champion_id: str, report: CompileReport | None, refused: list[str]) -> Decision:
    if report is None:
        return Decision(verdict="fail", reason_code="no_compile_report",
                        evidence={"candidate_id": candidate_id, "checked": refused},
                        message=f"no compile report on the current dataset names {candidate_id[:12]}"
                                + (f" ({'; '.join(refused)})" if refused else ""))
    evidence = {"report_id": report.report_id, "job_hash": report.job_hash, "dataset_hash": report.dataset_hash,
                "incumbent_compiled_id": report.incumbent_compiled_id, "champion_id": champion_id}
    if report.incumbent_compiled_id != champion_id:
        return Decision(verdict="fail", reason_code="report_incumbent_is_not_champion", evidence=evidence, message=(
            f"compile report {report.report_id} compared against {report.incumbent_compiled_id[:12]}, but the "
            f"champion is now {champion_id[:12]}: compile again"))
    return Decision(verdict="pass", reason_code="compile_report_current", evidence=evidence,
                    message=f"compile report {report.report_id} on dataset {report.dataset_hash[:12]} names it")


def _delta_gate(candidate_id: str, report: CompileReport | None, min_delta: float, margin: float) -> Decision:
    delta = None
    if report is not None:
        delta = report.paired_delta if report.best_compiled_id == candidate_id else _paired(report, candidate_id)
    return holdout_delta_gate(delta, min_delta=min_delta, margin=margin)


def holdout_delta_gate(delta: PairedDelta | None, *, min_delta: float = MIN_DELTA,
                       margin: float = HOLDOUT_MARGIN) -> Decision:
    """The candidate's paired holdout delta over the champion: at least `min_delta`, and its lower bound at least
    `-margin`. The promotion checks it; the runner checks it before opening a canary the promotion would refuse."""
    evidence: dict[str, Any] = {"min_delta": min_delta, "margin": margin}
    if delta is None:
        return Decision(verdict="fail", reason_code="no_paired_holdout_delta", evidence=evidence,
                        message="no paired holdout comparison of this candidate with the champion")
    evidence.update(delta.model_dump(mode="json"))
    said = (f"paired holdout delta {delta.delta:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}] over {delta.n} "
            f"examples")
    if delta.delta >= min_delta and delta.low >= -margin:
        return Decision(verdict="pass", reason_code="holdout_delta_met", evidence=evidence,
                        message=f"{said} >= {min_delta:g}, lower bound >= -{margin:g}")
    return Decision(verdict="fail", reason_code="holdout_delta_not_met", evidence=evidence,
                    message=f"{said}: needs delta >= {min_delta:g} and lower bound >= -{margin:g}")


def _paired(report: CompileReport, candidate_id: str) -> Any:
    scores = {c.compiled_id: c.holdout_results for c in report.candidates}
    mine, theirs = scores.get(candidate_id) or {}, scores.get(report.incumbent_compiled_id) or {}
    common = sorted(set(mine) & set(theirs))
    if not common:
        return None
    finalists = sum(1 for c in report.candidates if c.holdout_results and c.compiled_id != report.incumbent_compiled_id)
    return paired_delta([mine[i] for i in common], [theirs[i] for i in common],
                        seed=int(report.job_spec.get("seed", 0)), compared=max(1, finalists))


def _canary_gate(candidate_id: str, champion_id: str, canary: CanaryRecord | None) -> Decision:
    if canary is None:
        return Decision(verdict="fail", reason_code="no_passed_canary", evidence={"candidate_id": candidate_id},
                        message=f"no canary has passed for {candidate_id[:12]}")
    evidence = {"canary_id": canary.canary_id, "status": canary.status, "control_id": canary.control_id,
                "arms": {arm: counters.summary() for arm, counters in canary.arms.items()}}
    if canary.status != "passed":
        return Decision(verdict="fail", reason_code="no_passed_canary", evidence=evidence, message=(
            f"canary {canary.canary_id} for {candidate_id[:12]} is {canary.status}"
            + (f": {canary.end_reason}" if canary.end_reason else "")))
    if canary.control_id != champion_id:
        return Decision(verdict="fail", reason_code="canary_control_is_not_champion", evidence=evidence, message=(
            f"canary {canary.canary_id} compared against {canary.control_id[:12]}, but the champion is now "
            f"{champion_id[:12]}"))
    return Decision(verdict="pass", reason_code="canary_passed", evidence=evidence,
                    message=f"canary {canary.canary_id} passed: {canary.end_reason}")


DEFAULT_TARGET = "default"


class PromoteRequest(BaseModel):
    candidate_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    force: bool = False
    reason: str = Field(default="", max_length=2000)
    min_delta: MinDelta = MIN_DELTA
    margin: HoldoutMargin = Field(default=HOLDOUT_MARGIN,
                                  description="the holdout delta's lower bound must be >= -margin")
    report_id: str | None = Field(default=None, pattern=ID_PATTERN)
    run_id: str | None = Field(default=None, pattern=ID_PATTERN)

    @model_validator(mode="after")
    def _forced_needs_a_reason(self) -> PromoteRequest:
        if self.force and not self.reason.strip():
            raise ValueError("force: true needs a reason (it is written into the alias history)")
        return self


class RollbackRequest(BaseModel):
    to: str | None = Field(default=None, pattern=rf"^([0-9a-f]{{64}}|{DEFAULT_TARGET})$",
                           description="a compiled_id of this signature, or `default`; absent: one step back")
    reason: str = Field(min_length=1, max_length=2000)
    run_id: str | None = Field(default=None, pattern=ID_PATTERN)


class AliasMoveOut(BaseModel):
    move: AliasMove
    forced: bool
    gates: list[Decision] = Field(default_factory=list)


class AliasHistory(BaseModel):
    signature_id: str
    champion_id: str | None
    history: list[AliasMove]
