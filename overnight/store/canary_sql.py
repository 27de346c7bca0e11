"""SQL for canaries, their per-arm counters and history, and receipts.

A receipt and its arm's counters are written in one transaction with atomic increments (`SET samples = samples
+ 1 … RETURNING`), and the canary is assessed in that same transaction: every candidate sample count is seen by
exactly one transaction, on any number of replicas, so the single pass look happens exactly at its target.
Lock order everywhere: arm row, latency bucket row, canary row, run row. Must not import FastAPI or httpx.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from sqlalchemy import Connection, Float, and_, bindparam, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from overnight.domain.canary import (
    ARMS,
    GATE_KINDS,
    ArmCounters,
    Assessment,
    CanaryConfig,
    CanaryEntry,
    CanaryRecord,
    latency_bucket,
)
from overnight.domain.hashing import canonical_json
from overnight.domain.receipts import Receipt
from overnight.domain.runs import EventBounds, EventIn
from overnight.errors import CanaryNotFound, ReceiptNotFound
from overnight.store import runs_sql
from overnight.store.aliases_sql import CHAMPION
from overnight.store.schema import aliases, canaries, canary_arms, canary_history, canary_latency_buckets, receipts

END_STATUS = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}


def insert_canary(conn: Connection, canary: CanaryRecord, *, salt: str) -> None:
    conn.execute(insert(canaries).values(
        canary_id=canary.canary_id, signature_id=canary.signature_id, control_id=canary.control_id,
        candidate_id=canary.candidate_id, salt=salt, plan_json=canonical_json(list(canary.config.steps)),
        config_json=canary.config.model_dump_json(), step=0, status="active", run_id=canary.run_id,
        report_id=canary.report_id, actor=canary.actor, started_at=canary.started_at,
        step_base_json=canonical_json(canary.step_base),
    ))
    conn.execute(insert(canary_arms), [{"canary_id": canary.canary_id, "arm": arm} for arm in ARMS])


def load(conn: Connection, canary_id: str, *, lock_arms: bool = False) -> CanaryRecord:
    """A canary with both arms' counters; `lock_arms` first waits for every in-flight bump of either arm (row
    locks on PostgreSQL; SQLite's writer is already alone), so a step base counts exactly what was recorded."""
    if lock_arms:
        conn.execute(select(canary_arms.c.arm).where(canary_arms.c.canary_id == canary_id)
                     .order_by(canary_arms.c.arm).with_for_update()).all()
    row = conn.execute(select(canaries).where(canaries.c.canary_id == canary_id)).mappings().first()
    if row is None:
        raise CanaryNotFound(f"no canary {canary_id!r}")
    return _record(conn, row)


# What serving reads on every predict, built once: the champion (NULL when none) and the signature's active
# canary (NULLs when none) in one row — the anchor row makes a row whether either exists.
_ANCHOR = select(literal(1).label("one")).subquery("anchor")
SERVING_ROUTE = select(
    select(aliases.c.compiled_id).where(aliases.c.signature_id == bindparam("signature_id"),
                                        aliases.c.alias == CHAMPION).scalar_subquery().label("champion_id"),
    canaries.c.canary_id, canaries.c.salt, canaries.c.step, canaries.c.config_json, canaries.c.control_id,
    canaries.c.candidate_id,
).select_from(_ANCHOR.outerjoin(canaries, and_(canaries.c.signature_id == bindparam("signature_id"),
                                               canaries.c.status == "active")))


# Newest first. Two canaries can start in the same millisecond (a stop and a start back to back); their
# "opened" history rows were still written in order, so that id breaks the tie (a canary id's suffix is random).
_OPENED = select(func.min(canary_history.c.id)).where(
    canary_history.c.canary_id == canaries.c.canary_id).scalar_subquery()
_NEWEST_FIRST = (canaries.c.started_at.desc(), _OPENED.desc())


def find(conn: Connection, signature_id: str, *, active_only: bool) -> CanaryRecord | None:
    """The signature's active canary, or (unless `active_only`) its most recent one."""
    query = select(canaries).where(canaries.c.signature_id == signature_id)
    if active_only:
        query = query.where(canaries.c.status == "active")
    row = conn.execute(query.order_by(*_NEWEST_FIRST).limit(1)).mappings().first()
    return _record(conn, row) if row else None


def latest_for_candidate(conn: Connection, signature_id: str, candidate_id: str) -> CanaryRecord | None:
    row = conn.execute(select(canaries).where(
        canaries.c.signature_id == signature_id, canaries.c.candidate_id == candidate_id,
    ).order_by(*_NEWEST_FIRST).limit(1)).mappings().first()
    return _record(conn, row) if row else None


def salt_of(conn: Connection, canary_id: str) -> str:
    salt: str = conn.execute(select(canaries.c.salt).where(canaries.c.canary_id == canary_id)).scalar_one()
    return salt


def _record(conn: Connection, row: Any) -> CanaryRecord:
    return CanaryRecord(
        canary_id=row["canary_id"], signature_id=row["signature_id"], control_id=row["control_id"],
        candidate_id=row["candidate_id"], config=CanaryConfig.model_validate_json(row["config_json"]),
        step=row["step"], step_base=json.loads(row["step_base_json"]), status=row["status"],
        end_reason=row["end_reason"], run_id=row["run_id"], report_id=row["report_id"], actor=row["actor"],
        started_at=row["started_at"], ended_at=row["ended_at"], arms=arms(conn, row["canary_id"]),
    )


def arms(conn: Connection, canary_id: str) -> dict[str, ArmCounters]:
    buckets: dict[str, dict[int, int]] = {arm: {} for arm in ARMS}
    query = select(canary_latency_buckets).where(canary_latency_buckets.c.canary_id == canary_id)
    for b in conn.execute(query).mappings():
        buckets[b["arm"]][b["bucket_ms"]] = b["count"]
    found = {}
    for r in conn.execute(select(canary_arms).where(canary_arms.c.canary_id == canary_id)).mappings():
        found[r["arm"]] = ArmCounters(**{k: r[k] for k in ArmCounters.model_fields if k in r},
                                      latency_buckets=buckets[r["arm"]])
    return found


def history(conn: Connection, canary_id: str) -> list[CanaryEntry]:
    query = select(canary_history).where(canary_history.c.canary_id == canary_id).order_by(canary_history.c.id)
    return [CanaryEntry(id=r["id"], canary_id=r["canary_id"], kind=r["kind"], step=r["step"], verdict=r["verdict"],
                        actor=r["actor"], evidence=json.loads(r["evidence_json"]), created_at=r["created_at"])
            for r in conn.execute(query).mappings()]


def add_history(conn: Connection, canary: CanaryRecord, *, kind: str, step: int, verdict: str | None,
                actor: str | None, evidence: dict[str, Any], now: int, bounds: EventBounds, message: str) -> None:
    """A history row and, when the canary belongs to a run, the same decision on the run's event stream."""
    conn.execute(insert(canary_history).values(
        canary_id=canary.canary_id, signature_id=canary.signature_id, kind=kind, step=step, verdict=verdict,
        actor=actor, evidence_json=canonical_json(evidence), created_at=now,
    ))
    if canary.run_id is not None:
        runs_sql.note_on_run(conn, run_id=canary.run_id, bounds=bounds, now=now, event=EventIn(
            kind="gate_evaluated" if kind in GATE_KINDS else f"canary.{kind}",
            phase="canary", level="warning" if verdict in ("fail", "inconclusive") else "info",
            message=f"{canary.signature_id}: {message}",
            data={"canary_id": canary.canary_id, "kind": kind, "step": step, "verdict": verdict, "actor": actor,
                  **evidence}))


def end(conn: Connection, canary: CanaryRecord, *, status: str, reason: str, now: int) -> bool:
    """Close an active canary; False when another transaction closed it first."""
    done = conn.execute(update(canaries).where(
        canaries.c.canary_id == canary.canary_id, canaries.c.status == canary.status,
    ).values(status=status, end_reason=reason, ended_at=now if canary.ended_at is None else canary.ended_at))
    return done.rowcount == 1


# receipts -------------------------------------------------------------------------------------------------------

def insert_receipt(conn: Connection, receipt: Receipt, now: int) -> None:
    # parameters, not .values(): the statement's cache key stays the same for every receipt (a third of the
    # predict path's store time went into keying a fresh .values() statement)
    conn.execute(insert(receipts), {
        **receipt.model_dump(exclude={"output", "created_at"}), "created_at": now,
        "output_json": canonical_json(receipt.output) if receipt.output is not None else None,
    })


# The two statements of `bump`, built once with parameters: building the SET expressions afresh for every receipt
# cost a canary predict about as much as running them.
_arm = canary_arms.c
_BUMP_ARM = update(canary_arms).where(
    _arm.canary_id == bindparam("b_canary_id"), _arm.arm == bindparam("b_arm"),
).values(
    samples=_arm.samples + 1, errors=_arm.errors + bindparam("d_errors"), labeled=_arm.labeled + bindparam("d_labeled"),
    correct=_arm.correct + bindparam("d_correct"), latency_sum_ms=_arm.latency_sum_ms + bindparam("d_latency_ms"),
    tokens_in=_arm.tokens_in + bindparam("d_tokens_in"), tokens_out=_arm.tokens_out + bindparam("d_tokens_out"),
    cost_usd=_arm.cost_usd + bindparam("d_cost_usd", type_=Float), costed=_arm.costed + bindparam("d_costed"),
)
_BUMP_BUCKET = {
    name: build(canary_latency_buckets).values(
        canary_id=bindparam("b_canary_id"), arm=bindparam("b_arm"), bucket_ms=bindparam("b_bucket_ms"), count=1,
    ).on_conflict_do_update(
        index_elements=["canary_id", "arm", "bucket_ms"], set_={"count": canary_latency_buckets.c.count + 1},
    )
    for name, build in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def bump(conn: Connection, receipt: Receipt) -> None:
    """Atomic increments of the receipt's arm and its latency bucket."""
    where = {"b_canary_id": receipt.canary_id, "b_arm": receipt.arm}
    conn.execute(_BUMP_ARM, {
        **where, "d_errors": int(not receipt.ok), "d_labeled": int(receipt.correct is not None),
        "d_correct": int(bool(receipt.correct)), "d_latency_ms": receipt.latency_ms,
        "d_tokens_in": receipt.tokens_in, "d_tokens_out": receipt.tokens_out,
        "d_cost_usd": float(receipt.cost_usd or 0.0), "d_costed": int(receipt.cost_usd is not None),
    })
    conn.execute(_BUMP_BUCKET[conn.dialect.name], {**where, "b_bucket_ms": latency_bucket(receipt.latency_ms)})


class CanaryState(NamedTuple):
    status: str
    step: int
    deadline_at: int


def state(conn: Connection, canary_id: str) -> CanaryState:
    """Status, current step and deadline, without the counters. Read after `bump`, which holds the arm's row
    lock: a concurrent advance has then either counted this receipt in its new base, or committed first."""
    row = conn.execute(select(canaries.c.status, canaries.c.step, canaries.c.config_json).where(
        canaries.c.canary_id == canary_id)).one()
    return CanaryState(row.status, row.step, CanaryConfig.model_validate_json(row.config_json).deadline_at)


def carry(conn: Connection, receipt: Receipt) -> None:
    """The receipt was routed under an earlier step than the canary is at: keep it out of this step's split."""
    conn.execute(update(canary_arms).where(
        canary_arms.c.canary_id == receipt.canary_id, canary_arms.c.arm == receipt.arm,
    ).values(carried=canary_arms.c.carried + 1))


def step_keys(conn: Connection, canary: CanaryRecord) -> dict[str, int]:
    """The distinct request keys each arm got under the canary's step (what its split counts): read only where the
    split is tested, at a step's end and at the look."""
    r = receipts.c
    counted: dict[str, int] = dict(conn.execute(
        select(r.arm, func.count(r.request_key.distinct())).where(
            r.canary_id == canary.canary_id, r.step == canary.step, r.arm.in_(ARMS)).group_by(r.arm)).all())
    return {arm: counted.get(arm, 0) for arm in ARMS}


def assess(conn: Connection, canary: CanaryRecord, now: int) -> Assessment:
    """The canary's assessment now, with its step's request keys where it tests the split."""
    return canary.assess(now, step_keys(conn, canary) if canary.tests_split() else None)


def apply(conn: Connection, canary: CanaryRecord, assessment: Assessment, *, now: int, bounds: EventBounds) -> None:
    """Persist what an assessment decided: a step advance or a verdict (once, if another replica has not)."""
    recorded = canary.decision_record(assessment, now)
    if recorded is None:
        return
    kind, verdict, evidence = recorded

    def record(step: int) -> None:
        add_history(conn, canary, kind=kind, step=step, verdict=verdict, actor=None, evidence=evidence, now=now,
                    bounds=bounds, message=assessment.message)

    if kind == "look_missed":  # nothing can pass any more: say why, once (the look is assessed exactly once)
        record(canary.step)
    elif kind == "step_advanced":
        base = {arm: counters.routed_here() for arm, counters in canary.arms.items()}
        moved = conn.execute(update(canaries).where(
            canaries.c.canary_id == canary.canary_id, canaries.c.status == "active",
            canaries.c.step == canary.step,
        ).values(step=canary.step + 1, step_base_json=canonical_json(base))).rowcount == 1
        if moved:
            record(canary.step + 1)
    elif end(conn, canary, status=END_STATUS[assessment.outcome], reason=assessment.message, now=now):
        record(canary.step)


def get_receipt(conn: Connection, receipt_id: str) -> Receipt:
    row = conn.execute(select(receipts).where(receipts.c.receipt_id == receipt_id)).mappings().first()
    if row is None:
        raise ReceiptNotFound(f"no receipt {receipt_id!r}")
    return _receipt(row)


def list_receipts(conn: Connection, *, signature_id: str | None, canary_id: str | None, after: str | None,
                  limit: int, ok: bool | None = None) -> list[Receipt]:
    query = select(receipts).order_by(receipts.c.receipt_id).limit(limit)
    if signature_id is not None:
        query = query.where(receipts.c.signature_id == signature_id)
    if canary_id is not None:
        query = query.where(receipts.c.canary_id == canary_id)
    if ok is not None:
        query = query.where(receipts.c.ok == ok)
    if after is not None:
        query = query.where(receipts.c.receipt_id > after)
    return [_receipt(row) for row in conn.execute(query).mappings()]


def error_codes(conn: Connection, canary_id: str) -> dict[str, dict[str, int]]:
    """arm -> error code -> failed receipts, the most frequent code first."""
    count = func.count().label("n")
    query = (select(receipts.c.arm, receipts.c.error_code, count)
             .where(receipts.c.canary_id == canary_id, receipts.c.ok.is_(False))
             .group_by(receipts.c.arm, receipts.c.error_code)
             .order_by(receipts.c.arm, count.desc(), receipts.c.error_code))
    found: dict[str, dict[str, int]] = {}
    for arm, code, n in conn.execute(query):
        found.setdefault(arm, {})[code or "unknown"] = int(n)
    return found


def outcomes(conn: Connection, canary_id: str, *, limit: int) -> list[tuple[str, bool, bool | None]]:
    """(arm, ok, correct) of a canary's first `limit` receipts in the order written: what its chart plots."""
    query = select(receipts.c.arm, receipts.c.ok, receipts.c.correct).where(
        receipts.c.canary_id == canary_id).order_by(receipts.c.receipt_id).limit(limit)
    return [(row.arm, row.ok, row.correct) for row in conn.execute(query)]


def _receipt(row: Any) -> Receipt:
    values = {k: row[k] for k in Receipt.model_fields if k in row}
    return Receipt(**values, output=json.loads(row["output_json"]) if row["output_json"] else None)
