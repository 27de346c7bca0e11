"""SQL for ops runs, their leases and their event stream. Called by `SqlStore` inside its transactions.

Serialisation: every change to a run (start, heartbeat, finish, append) first locks the run's row
(`SELECT … FOR UPDATE` on PostgreSQL; SQLite's single writer does the same), so `seq` is assigned with no gap
and no duplicate however many replicas append at once. Must not import FastAPI or httpx.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, insert, select, update

from overnight.domain.hashing import canonical_json
from overnight.domain.runs import (
    EventBounds,
    EventIn,
    FinishRun,
    Run,
    RunEvent,
    RunStart,
    RunStatus,
    StartedRun,
    finish_conflict,
    lease_is_stale,
    truncation_marker,
    would_exceed,
)
from overnight.errors import RunAlreadyFinished, RunIdConflict, RunLocked, RunNotFound, RunNotRunning
from overnight.store.schema import ops_run_events, ops_runs, run_locks


def new_run_id(now: int) -> str:
    stamp = datetime.fromtimestamp(now / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"run-{stamp}-{secrets.token_hex(3)}"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_from_row(row: RowMapping) -> Run:
    return Run(
        run_id=row["run_id"], status=RunStatus(row["status"]), actor=row["actor"],
        commit_sha=row["commit_sha"], base_url=row["base_url"],
        signature_ids=json.loads(row["signature_ids_json"]), lease_s=row["lease_s"],
        lease_expires_at=row["lease_expires_at"], summary=json.loads(row["summary_json"]),
        links=json.loads(row["links_json"]), event_count=row["event_count"],
        event_bytes=row["event_bytes"], truncated=bool(row["truncated"]),
        started_at=row["started_at"], ended_at=row["ended_at"],
    )


def event_from_row(row: RowMapping) -> RunEvent:
    return RunEvent(
        run_id=row["run_id"], seq=row["seq"], ts=row["ts"], kind=row["kind"], phase=row["phase"],
        level=row["level"], message=row["message"], data=json.loads(row["data_json"]),
        client_event_id=row["client_event_id"],
    )


def lock_run(conn: Connection, run_id: str) -> Run:
    """The run's row, locked for the rest of the transaction."""
    row = conn.execute(select(ops_runs).where(ops_runs.c.run_id == run_id).with_for_update()).mappings().first()
    if row is None:
        raise RunNotFound(f"no run {run_id!r}")
    return run_from_row(row)


def find_run(conn: Connection, run_id: str) -> Run | None:
    row = conn.execute(select(ops_runs).where(ops_runs.c.run_id == run_id)).mappings().first()
    return run_from_row(row) if row else None


def insert_event(conn: Connection, run: Run, event: EventIn, now: int) -> tuple[Run, RunEvent]:
    """Append `event` as the run's next `seq`, unconditionally, and return the updated run and event."""
    seq, size = run.event_count + 1, event.size_bytes()
    conn.execute(insert(ops_run_events).values(
        run_id=run.run_id, seq=seq, ts=now, kind=event.kind, phase=event.phase, level=event.level,
        message=event.message, data_json=canonical_json(event.data), client_event_id=event.client_event_id,
    ))
    conn.execute(update(ops_runs).where(ops_runs.c.run_id == run.run_id).values(
        event_count=seq, event_bytes=ops_runs.c.event_bytes + size,
    ))
    stored = RunEvent(run_id=run.run_id, seq=seq, ts=now, client_event_id=event.client_event_id,
                      **event.model_dump(exclude={"client_event_id"}))
    return run.model_copy(update={"event_count": seq, "event_bytes": run.event_bytes + size}), stored


def find_client_event(conn: Connection, run_id: str, client_event_id: str) -> RunEvent | None:
    row = conn.execute(select(ops_run_events).where(
        ops_run_events.c.run_id == run_id, ops_run_events.c.client_event_id == client_event_id,
    )).mappings().first()
    return event_from_row(row) if row else None


def note_on_run(conn: Connection, *, run_id: str, event: EventIn, bounds: EventBounds, now: int) -> None:
    """Copy a server decision (a gate verdict, an alias move) onto the run it belongs to, while that run still
    takes events. The decision's own table (canary or alias history) is the record; a run that has finished,
    been taken over or hit its bound must never make a predict or a rollback fail."""
    row = conn.execute(select(ops_runs.c.status).where(ops_runs.c.run_id == run_id)).first()
    if row is not None and row.status == RunStatus.running.value:
        append_bounded(conn, run_id=run_id, event=event, bounds=bounds, now=now)


def append_bounded(
    conn: Connection, *, run_id: str, event: EventIn, bounds: EventBounds, now: int
) -> tuple[RunEvent | None, bool]:
    """Append a client event within the run's bounds.

    Returns (event, duplicate). `(None, False)` means the bound was hit: the caller commits (so the one
    truncation marker lands) and then refuses the event.
    """
    run = lock_run(conn, run_id)
    if event.client_event_id is not None:
        existing = find_client_event(conn, run_id, event.client_event_id)
        if existing is not None:
            return existing, True
    if run.status != RunStatus.running:
        raise RunNotRunning(f"run {run_id} is {run.status.value}; it takes no more events",
                            details={"run_id": run_id, "status": run.status.value})
    if run.truncated:
        return None, False
    if would_exceed(bounds=bounds, event_count=run.event_count, event_bytes=run.event_bytes,
                    size=event.size_bytes()):
        marker = truncation_marker(bounds=bounds, event_count=run.event_count, event_bytes=run.event_bytes)
        insert_event(conn, run, marker, now)
        conn.execute(update(ops_runs).where(ops_runs.c.run_id == run_id).values(truncated=True))
        return None, False
    return insert_event(conn, run, event, now)[1], False


def start_run(conn: Connection, *, request: RunStart, actor: str, lease_s: int, now: int) -> StartedRun:
    """Start (or, for a known client `run_id`, return) a run and take the lease on its signatures."""
    if request.run_id is not None:
        existing = conn.execute(
            select(ops_runs).where(ops_runs.c.run_id == request.run_id).with_for_update()
        ).mappings().first()
        if existing is not None:
            return _restart(conn, run_from_row(existing), request, now)
    holders = _stale_holders(conn, request.signature_ids, now)
    run = Run(
        run_id=request.run_id or new_run_id(now), status=RunStatus.running, actor=actor,
        commit_sha=request.commit_sha, base_url=request.base_url, signature_ids=request.signature_ids,
        lease_s=lease_s, lease_expires_at=now + lease_s * 1000, summary={}, links={}, event_count=0,
        event_bytes=0, truncated=False, started_at=now, ended_at=None,
    )
    conn.execute(insert(ops_runs).values(_run_values(run)))
    took_over = [_abandon(conn, holder, sigs, by=run, now=now) for holder, sigs in holders.values()]
    conn.execute(insert(run_locks), [{"signature_id": s, "run_id": run.run_id} for s in run.signature_ids])
    run, _ = insert_event(conn, run, EventIn(
        kind="run.started", phase="run", message=f"run started by {actor} for {', '.join(run.signature_ids)}",
        data={"actor": actor, "signature_ids": run.signature_ids, "lease_s": lease_s,
              "commit_sha": run.commit_sha},
    ), now)
    for item in took_over:
        run, _ = insert_event(conn, run, EventIn(
            kind="lease_taken_over", phase="lease", level="warning",
            message=f"took over the stale lease of run {item['from_run_id']} on {item['signature_ids']}",
            data=dict(item),
        ), now)
    return StartedRun(run=run, created=True, took_over=took_over)


def _restart(conn: Connection, run: Run, request: RunStart, now: int) -> StartedRun:
    """A start retried with a known `run_id`: the same run back, its lease renewed while it runs."""
    if run.signature_ids != request.signature_ids:
        raise RunIdConflict(
            f"run {run.run_id} already exists for {run.signature_ids}, not {request.signature_ids}",
            details={"run_id": run.run_id, "signature_ids": run.signature_ids},
        )
    if run.status == RunStatus.running:
        run = _renew(conn, run, now)
    return StartedRun(run=run, created=False)


def _stale_holders(conn: Connection, signature_ids: list[str], now: int) -> dict[str, tuple[Run, list[str]]]:
    """Runs holding any of `signature_ids` whose lease has gone stale; raises `RunLocked` for a live one."""
    found: dict[str, tuple[Run, list[str]]] = {}
    for sig in signature_ids:  # sorted, so concurrent starters lock rows in the same order
        lock = conn.execute(select(run_locks).where(run_locks.c.signature_id == sig).with_for_update()).first()
        if lock is None:
            continue
        holder = found[lock.run_id][0] if lock.run_id in found else lock_run(conn, lock.run_id)
        if holder.status == RunStatus.running and not lease_is_stale(
            lease_expires_at=holder.lease_expires_at, now=now
        ):
            raise RunLocked(
                f"signature {sig} is held by run {holder.run_id} (actor {holder.actor}) "
                f"until {iso(holder.lease_expires_at)} unless it heartbeats",
                details={"signature_id": sig, "holder_run_id": holder.run_id, "holder_actor": holder.actor,
                         "lease_expires_at": holder.lease_expires_at},
            )
        found.setdefault(holder.run_id, (holder, []))[1].append(sig)
    return found


def _abandon(conn: Connection, holder: Run, sigs: list[str], *, by: Run, now: int) -> dict[str, str]:
    """Mark a stale holder abandoned, free all its locks, and record the takeover on it."""
    takeover = {"from_run_id": holder.run_id, "to_run_id": by.run_id, "signature_ids": ",".join(sigs),
                "stale_since": iso(holder.lease_expires_at)}
    conn.execute(delete(run_locks).where(run_locks.c.run_id == holder.run_id))
    if holder.status == RunStatus.running:
        insert_event(conn, holder, EventIn(
            kind="lease_taken_over", phase="lease", level="warning",
            message=f"lease stale since {takeover['stale_since']}; run {by.run_id} took over {', '.join(sigs)}",
            data=dict(takeover),
        ), now)
        verdict = (f"abandoned: its lease went stale at {takeover['stale_since']}; run {by.run_id} took over "
                   f"{', '.join(sigs)}")
        conn.execute(update(ops_runs).where(ops_runs.c.run_id == holder.run_id).values(
            status=RunStatus.abandoned.value, ended_at=now,
            summary_json=canonical_json({**holder.summary, "status": "abandoned", "verdict": verdict}),
        ))
    return takeover


def _renew(conn: Connection, run: Run, now: int) -> Run:
    expires = now + run.lease_s * 1000
    conn.execute(update(ops_runs).where(ops_runs.c.run_id == run.run_id).values(lease_expires_at=expires))
    return run.model_copy(update={"lease_expires_at": expires})


def heartbeat(conn: Connection, *, run_id: str, now: int) -> Run:
    run = lock_run(conn, run_id)
    if run.status != RunStatus.running:
        raise RunNotRunning(f"run {run_id} is {run.status.value}; its lease cannot be renewed",
                            details={"run_id": run_id, "status": run.status.value})
    return _renew(conn, run, now)


def finish_run(conn: Connection, *, run_id: str, finish: FinishRun, actor: str, now: int) -> Run:
    run = lock_run(conn, run_id)
    conflict = finish_conflict(current=run.status, requested=finish.status)
    if conflict is not None:
        raise RunAlreadyFinished(conflict, details={"run_id": run_id, "status": run.status.value})
    if run.status != RunStatus.running:
        return run  # the same finish, retried
    conn.execute(delete(run_locks).where(run_locks.c.run_id == run_id))
    values: dict[str, Any] = {"status": finish.status, "ended_at": now, "lease_expires_at": now,
                              "summary_json": canonical_json(finish.summary),
                              "links_json": canonical_json(finish.links)}
    conn.execute(update(ops_runs).where(ops_runs.c.run_id == run_id).values(values))
    run = run.model_copy(update={"status": RunStatus(finish.status), "ended_at": now, "lease_expires_at": now,
                                 "summary": finish.summary, "links": finish.links})
    return insert_event(conn, run, EventIn(
        kind="run.finished", phase="run", level="info" if finish.status == "succeeded" else "warning",
        message=f"run finished {finish.status} by {actor}", data={"status": finish.status, "actor": actor},
    ), now)[0]


def _run_values(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id, "status": run.status.value, "actor": run.actor, "commit_sha": run.commit_sha,
        "base_url": run.base_url, "signature_ids_json": canonical_json(run.signature_ids),
        "lease_s": run.lease_s, "lease_expires_at": run.lease_expires_at,
        "summary_json": canonical_json(run.summary), "links_json": canonical_json(run.links),
        "event_count": run.event_count, "event_bytes": run.event_bytes, "truncated": run.truncated,
        "started_at": run.started_at, "ended_at": run.ended_at,
    }
