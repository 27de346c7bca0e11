"""A fixed finished run, written through the real store's verbs with a stepping clock: the same records every
time (ids, timestamps, counters), so its review renders to the same text every time."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import create_engine, insert, select

from overnight.domain.canary import ArmCounters, CanaryPlanRequest, CanaryRecord, resolve_plan
from overnight.domain.compiling import Artifact, CandidateReport, CompileReport
from overnight.domain.hashing import canonical_json
from overnight.domain.receipts import Receipt
from overnight.domain.runs import EventIn, FinishRun, RunStart
from overnight.domain.signatures import Budget
from overnight.domain.stats import paired_delta
from overnight.store import Store
from overnight.store.schema import canary_history
from tests.factories import SteppingClock

RUN_ID = "night-golden"
SIG = "SelectTool.v1"
DEFAULT, BEST, OTHER = "d" * 64, "b" * 64, "e" * 64
HOLDOUT = 30


def _report() -> CompileReport:
    best = [1.0] * 27 + [0.0] * 3
    default = [1.0] * 18 + [0.0] * 12
    ids = [f"h{i:02d}" for i in range(HOLDOUT)]

    def candidate(compiled_id: str, instruction: int, demos: int, train: float, holdout: list[float] | None,
                  rung: int | None, calls: int) -> CandidateReport:
        return CandidateReport(
            compiled_id=compiled_id, params={"instruction_index": instruction, "demo_count": demos},
            is_default=compiled_id == DEFAULT, is_incumbent=compiled_id == DEFAULT, train_n=47 if holdout else 8,
            train_score=train, eliminated_at_rung=rung, holdout_n=HOLDOUT if holdout else 0,
            holdout_score=sum(holdout) / HOLDOUT if holdout else None,
            holdout_results=dict(zip(ids, holdout, strict=True)) if holdout else {}, lm_calls=calls)

    return CompileReport(
        report_id="cr-golden", signature_id=SIG, job_hash="j" * 64, dataset_hash="a" * 64, job_spec={"seed": 0},
        status="completed", best_compiled_id=BEST, incumbent_compiled_id=DEFAULT, improved=True,
        candidates=[candidate(DEFAULT, 0, 0, 0.625, default, None, 77), candidate(BEST, 1, 4, 0.915, best, None, 77),
                    candidate(OTHER, 2, 8, 0.375, None, 0, 8)],
        rungs=[{"rung": 0, "examples": 8, "candidates": 3}, {"rung": 1, "examples": 47, "candidates": 2}],
        paired_delta=paired_delta(best, default, seed=0), lm_calls=85, evaluations=162, reused=77, tokens=25_500,
        full_grid_lm_calls=231, budget={"max_lm_calls": None})


def build(store: Store, clock: SteppingClock) -> None:
    """Start → import → compile → canary (25% then 50%, passes at its look) → promote → e2e → finish."""
    store.start_run(request=RunStart(run_id=RUN_ID, signature_ids=[SIG]), actor="ops-agent", default_lease_s=600)

    def step(scope: str, phase: str, seconds: float, work: Callable[[], object] | None = None, **data: object) -> None:
        store.append_event(run_id=RUN_ID, event=EventIn(kind=f"{phase}.started", phase=phase,
                                                        message=f"{scope}: {phase}", data={"signature": scope},
                                                        client_event_id=f"{scope}:{phase}:started"))
        if work is not None:
            work()
        clock.advance(seconds=seconds)
        store.append_event(run_id=RUN_ID, event=EventIn(kind=f"{phase}.finished", phase=phase,
                                                        message=f"{scope}: {phase} finished",
                                                        data={"signature": scope, **data},
                                                        client_event_id=f"{scope}:{phase}:finished"))
        clock.advance(seconds=0.2)

    step("run", "verify", 1.5, checks=[])
    for compiled_id, instructions, demos in ((DEFAULT, "Pick the tool for the message.", []),
                                             (BEST, "Pick the one tool that does what the message asks.\n"
                                                    "Answer with the tool's name only.",
                                              [{"message": "email bob the notes", "tool": "send_email"}])):
        store.put_artifact(artifact=Artifact(compiled_id=compiled_id, signature_id=SIG, lm_id="sim:golden",
                                             state={"signature": {"instructions": instructions}, "demos": demos},
                                             params={"decode": {"temperature": 0.0}}))
    step(SIG, "dataset.import", 0.4, dataset_hash="a" * 64)
    report = store.save_compile_report(report=_report())
    step(SIG, "compile", 95.0, report_id=report.report_id, best_compiled_id=BEST, incumbent_compiled_id=DEFAULT,
         improved=True)
    config = resolve_plan(CanaryPlanRequest(steps=[25.0, 50.0]), now=clock(),
                          budget=Budget(max_latency_p95_ms=10_000, max_cost_per_call_usd=0.01))
    canary = store.start_canary(canary=CanaryRecord(
        canary_id="can-golden", signature_id=SIG, control_id=DEFAULT, candidate_id=BEST, config=config, step=0,
        step_base={"control": 0, "candidate": 0}, status="active", end_reason=None, run_id=RUN_ID,
        report_id=report.report_id, actor="ops-agent", started_at=clock(), ended_at=None,
        arms={"control": ArmCounters(), "candidate": ArmCounters()}), salt="golden")
    step(SIG, "canary.start", 0.1, canary_id=canary.canary_id)
    step(SIG, "traffic", 0.1, lambda: _traffic(store, clock), canary_id=canary.canary_id, status="passed")
    move = store.promote(signature_id=SIG, seen=None, to_id=BEST, actor="ops-agent", run_id=RUN_ID,
                         reason="compile report cr-golden names it; canary can-golden passed",
                         evidence={"gates": []}, canary_id=canary.canary_id)
    step(SIG, "decide", 0.1, decision="promoted", reason=move.reason, champion_after=BEST)
    e2e = {"ok": True, "requests": 5, "expected_compiled_id": BEST, "served": [BEST], "problem": "",
           "elsewhere": {"can-ops": 2}}  # an operator's canary, opened after the promotion, took two of its predicts
    step(SIG, "e2e", 1.0, **e2e)
    result = {"signature_id": SIG, "decision": "promoted", "reason": move.reason, "dataset_hash": "a" * 64,
              "report_id": report.report_id, "best_compiled_id": BEST, "champion_before": DEFAULT,
              "champion_after": BEST, "canary_id": canary.canary_id, "canary_status": "passed",
              "requests_sent": 0, "alias_history_ids": [move.id], "e2e": e2e}
    store.finish_run(run_id=RUN_ID, actor="ops-agent", finish=FinishRun(
        status="succeeded", summary={"run_id": RUN_ID, "status": "succeeded", "exit_code": 0,
                                     "verdict": f"{SIG}: promoted", "signatures": {SIG: result}},
        links={SIG: {"compile_report": report.report_id, "canary": canary.canary_id}}))


def _traffic(store: Store, clock: SteppingClock) -> None:
    """Requests in a fixed arm pattern matching each step's rollout until the canary decides: the candidate
    never errors and is right 9 times in 10; the control is right 6 times in 10."""
    sent = 0
    while store.get_canary(canary_id="can-golden").status == "active":
        canary = store.get_canary(canary_id="can-golden")
        period = 4 if canary.step == 0 else 2  # one candidate request in 4 at 25%, in 2 at 50%
        arm = "candidate" if sent % period == 0 else "control"
        right = (sent // period) % 10 < (9 if arm == "candidate" else 6)
        store.record_receipt(receipt=Receipt(
            receipt_id=f"r{sent:06d}", signature_id=SIG, compiled_id=BEST if arm == "candidate" else DEFAULT,
            canary_id="can-golden", arm=arm, step=canary.step, request_key=f"k{sent}", input_hash="i" * 64,
            output={"tool": "x"}, ok=True, error_code=None, correct=right, latency_ms=400 + sent % 7 * 50,
            tokens_in=120, tokens_out=8, cost_usd=None, lm_id="sim:golden", request_id=f"req-{sent}"))
        clock.advance(seconds=0.25)
        sent += 1


def forge_a_pass(db_url: str) -> None:
    """Append a forged copy of the canary's pass to its history (the table refuses edits, not an insert by whoever
    holds the database's password): drawn, it says, from 8 more candidate errors than the pass was."""
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            row = conn.execute(select(canary_history).where(canary_history.c.kind == "gate_evaluated")).mappings().one()
            evidence = json.loads(row["evidence_json"])
            evidence["inputs"]["arms"]["candidate"]["errors"] += 8
            conn.execute(insert(canary_history).values(
                {**{k: v for k, v in row.items() if k != "id"}, "evidence_json": canonical_json(evidence)}))
    finally:
        engine.dispose()
