"""Promote and rollback services. Promote needs every gate (`domain/promotion.py`) to pass, or `force` with a
reason, which the history row records; a refusal is 409 with each gate's evidence. Rollback walks back one step
through the alias history (or to a named existing id, or `default`). Must not import the API."""

from __future__ import annotations

from overnight.domain.gates import Decision
from overnight.domain.promotion import (
    DEFAULT_TARGET,
    PROMOTE_METHOD,
    AliasMoveOut,
    PromoteRequest,
    RollbackRequest,
    promotion_gates,
)
from overnight.errors import CompileEvidenceMissing, PromotionRefused
from overnight.registry import RegisteredSignature
from overnight.serving.evidence import contender_against, naming_report
from overnight.serving.programs import ProgramCache, signature_artifact
from overnight.store import Store
from overnight.store.base import HeldKey, KeptAnswer


def promote(store: Store, entry: RegisteredSignature, programs: ProgramCache, body: PromoteRequest, *,
            lm_id: str, actor: str, held: HeldKey | None = None) -> AliasMoveOut:
    sig = entry.contract.signature_id
    champion = contender_against(store, entry, programs, candidate_id=body.candidate_id, run_id=body.run_id,
                                 lm_id=lm_id)
    refused: list[str] = []
    try:
        report = naming_report(store, entry, lm_id=lm_id, candidate_id=body.candidate_id, report_id=body.report_id)
    except CompileEvidenceMissing as missing:
        report, refused = None, list(missing.details.get("checked", []))
    canary = store.find_canary(signature_id=sig, candidate_id=body.candidate_id)
    gates = promotion_gates(candidate_id=body.candidate_id, champion_id=champion, report=report, canary=canary,
                            min_delta=body.min_delta, margin=body.margin, reports_refused=refused)
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
                         canary_id=canary.canary_id if canary and canary.status == "passed" else None,
                         answer=_kept(held, forced=body.force, gates=gates))
    return _answered(held, AliasMoveOut(move=move, forced=body.force, gates=gates))


def rollback(store: Store, entry: RegisteredSignature, body: RollbackRequest, *, actor: str,
             held: HeldKey | None = None) -> AliasMoveOut:
    sig = entry.contract.signature_id
    if body.to not in (None, DEFAULT_TARGET):
        signature_artifact(store, entry, body.to)
    if body.run_id is not None:
        store.get_run(run_id=body.run_id)
    target = None if body.to in (None, DEFAULT_TARGET) else body.to
    move = store.rollback(signature_id=sig, to_id=target, explicit=body.to is not None, actor=actor,
                          reason=body.reason, run_id=body.run_id, answer=_kept(held, forced=False, gates=[]))
    return _answered(held, AliasMoveOut(move=move, forced=False))


def _kept(held: HeldKey | None, *, forced: bool, gates: list[Decision]) -> KeptAnswer | None:
    """The move's answer, kept with it when the request holds an Idempotency-Key: the server dying between the
    two would leave the move made and its answer lost, and the retry would make it again (a one-step-back
    rollback walking back one champion too many) or be refused as done."""
    if held is None:
        return None
    return KeptAnswer(held=held, render=lambda move: AliasMoveOut(move=move, forced=forced,
                                                                  gates=gates).model_dump_json())


def _answered(held: HeldKey | None, out: AliasMoveOut) -> AliasMoveOut:
    if held is not None:
        held.answered = True  # kept with the move: the middleware keeps nothing more
    return out
