"""Promote and rollback services. Promote needs every gate (`domain/promotion.py`) to pass, or `force` with a
reason, which the history row records; a refusal is 409 with each gate's evidence. Rollback walks back one step
through the alias history (or to a named existing id, or `default`). Must not import the API."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from overnight.domain.gates import Decision
from overnight.domain.promotion import PROMOTE_METHOD, AliasMove, promotion_gates
from overnight.domain.runs import ID_PATTERN
from overnight.errors import CompileEvidenceMissing, PromotionRefused
from overnight.registry import RegisteredSignature
from overnight.serving.evidence import contender_against, naming_report, signature_artifact
from overnight.serving.programs import ProgramCache
from overnight.store import Store

DEFAULT_TARGET = "default"


class PromoteRequest(BaseModel):
    candidate_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    force: bool = False
    reason: str = Field(default="", max_length=2000)
    min_delta: float = Field(default=0.0, ge=-1, le=1)
    margin: float = Field(default=0.05, ge=0, le=1, description="the holdout delta's lower bound must be >= -margin")
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


def promote(store: Store, entry: RegisteredSignature, programs: ProgramCache, body: PromoteRequest, *,
            lm_id: str, actor: str) -> AliasMoveOut:
    sig = entry.contract.signature_id
    champion = contender_against(store, entry, programs, candidate_id=body.candidate_id, run_id=body.run_id,
                                 lm_id=lm_id)
    try:
        report = naming_report(store, entry, lm_id=lm_id, candidate_id=body.candidate_id, report_id=body.report_id)
    except CompileEvidenceMissing:
        report = None
    canary = store.find_canary(signature_id=sig, candidate_id=body.candidate_id)
    gates = promotion_gates(candidate_id=body.candidate_id, champion_id=champion, report=report, canary=canary,
                            min_delta=body.min_delta, margin=body.margin)
    failed = [g for g in gates if g.verdict != "pass"]
    if failed and not body.force:
        raise PromotionRefused(
            f"promotion of {body.candidate_id[:12]} refused: " + "; ".join(g.message for g in failed),
            details={"method": PROMOTE_METHOD, "gates": [g.model_dump(mode="json") for g in gates]})
    evidence = {"method": PROMOTE_METHOD, "forced": body.force, "gates_passed": not failed,
                "gates": [g.model_dump(mode="json") for g in gates], "report_id": report.report_id if report else None,
                "canary_id": canary.canary_id if canary else None}
    reason = body.reason.strip() or "; ".join(g.message for g in gates)
    move = store.promote(signature_id=sig, seen=store.champion(signature_id=sig), to_id=body.candidate_id,
                         actor=actor, reason=reason, run_id=body.run_id, evidence=evidence,
                         canary_id=canary.canary_id if canary and canary.status == "passed" else None)
    return AliasMoveOut(move=move, forced=body.force, gates=gates)


def rollback(store: Store, entry: RegisteredSignature, body: RollbackRequest, *, actor: str) -> AliasMoveOut:
    sig = entry.contract.signature_id
    if body.to not in (None, DEFAULT_TARGET):
        signature_artifact(store, entry, body.to)
    if body.run_id is not None:
        store.get_run(run_id=body.run_id)
    target = None if body.to in (None, DEFAULT_TARGET) else body.to
    move = store.rollback(signature_id=sig, to_id=target, explicit=body.to is not None, actor=actor,
                          reason=body.reason, run_id=body.run_id)
    return AliasMoveOut(move=move, forced=False)
