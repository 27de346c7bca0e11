"""Canary start, stop and view. Start is refused unless a compile report for the current dataset names the
candidate; a new `canary_id` (and salt) per start, so evidence is never reset. Must not import the API."""

from __future__ import annotations

import secrets

from overnight.domain.canary import CanaryRecord, CanaryStart, CanaryView, resolve_plan
from overnight.errors import CanaryNotFound, InvalidInput
from overnight.registry import RegisteredSignature
from overnight.serving.evidence import contender_against, naming_report
from overnight.serving.programs import ProgramCache
from overnight.store import Store


def start_canary(store: Store, entry: RegisteredSignature, programs: ProgramCache, body: CanaryStart, *,
                 lm_id: str, actor: str) -> CanaryRecord:
    sig = entry.contract.signature_id
    control = contender_against(store, entry, programs, candidate_id=body.candidate_id, run_id=body.run_id,
                                lm_id=lm_id)
    report = naming_report(store, entry, lm_id=lm_id, candidate_id=body.candidate_id, report_id=body.report_id)
    now = store.clock()
    try:
        config = resolve_plan(body, budget=entry.contract.budget, now=now)
    except ValueError as exc:
        raise InvalidInput(str(exc), details={"field": "min_samples"}) from None
    canary = CanaryRecord(canary_id=f"can-{now}-{secrets.token_hex(4)}", signature_id=sig, control_id=control,
                          candidate_id=body.candidate_id, config=config, step=0,
                          step_base={"control": 0, "candidate": 0}, status="active", end_reason=None,
                          run_id=body.run_id, report_id=report.report_id, actor=actor, started_at=now, ended_at=None,
                          arms={})
    return store.start_canary(canary=canary, salt=secrets.token_hex(16))


def canary_view(store: Store, signature_id: str) -> CanaryView:
    """The signature's active (else most recent) canary."""
    canary = store.find_canary(signature_id=signature_id)
    if canary is None:
        raise CanaryNotFound(f"{signature_id} has never had a canary")
    return view_of(store, canary)


def view_of(store: Store, canary: CanaryRecord) -> CanaryView:
    """A canary with the gates on its counters right now (while active), its history and its errors by code."""
    evaluation = None
    if canary.status == "active":
        keys = store.canary_step_keys(canary=canary) if canary.tests_split() else None
        evaluation = canary.assess(store.clock(), keys).evidence(canary.arms["control"], canary.arms["candidate"])
    return CanaryView(canary=canary, rollout_pct=canary.rollout_pct, evaluation=evaluation,
                      history=store.canary_history(canary_id=canary.canary_id),
                      error_codes=store.canary_error_codes(canary_id=canary.canary_id))
