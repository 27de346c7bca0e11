"""`SqlStore`: the one implementation of `Store`, on SQLite and PostgreSQL alike (SQLAlchemy Core).

Every verb is one transaction. Must not import FastAPI or httpx.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    ColumnElement,
    Engine,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from overnight.domain.compiling import Artifact, CompileReport, ExampleResult
from overnight.domain.datasets import ExampleRow, ImportResult, SnapshotDetail, StoredExample
from overnight.domain.receipts import PruneResult
from overnight.domain.runs import (
    AppendedEvent,
    EventBounds,
    EventIn,
    FinishRun,
    Run,
    RunEvent,
    RunStart,
    StartedRun,
)
from overnight.errors import EventLimitReached, EventTooLarge, RunNotFound
from overnight.logging import get_logger
from overnight.store import aliases_sql, compile_sql, datasets_sql, runs_sql
from overnight.store.base import IdempotencyClaim
from overnight.store.engine import Transactions
from overnight.store.idempotency_sql import answer, held, this_key
from overnight.store.migrate import SchemaState, read_schema_state
from overnight.store.schema import idempotency_keys, ops_run_events, ops_runs, receipts
from overnight.store.serving_store import ServingVerbs

T = TypeVar("T")
Clock = Callable[[], int]
DAY_MS = 86_400_000
PRUNE_BATCH = 2_000
log = get_logger(__name__)


def system_clock() -> int:
    """Milliseconds since the epoch, UTC."""
    return time.time_ns() // 1_000_000




class SqlStore(ServingVerbs):
    """The store. `clock` is injectable so tests can age leases without sleeping."""

    def __init__(self, engine: Engine, *, bounds: EventBounds, clock: Clock = system_clock,
                 write_wait_s: float = 30.0) -> None:
        self._tx = Transactions(engine, write_wait_s=write_wait_s)
        self.engine = engine
        self.kind = self._tx.dialect
        self.bounds = bounds
        self.clock = clock

    def close(self) -> None:
        self.engine.dispose()

    def shown(self) -> str:
        """The store's URL, its password hidden: what a message names as the store it read."""
        return self.engine.url.render_as_string(hide_password=True)

    def ping(self) -> SchemaState:
        """The store answers; where its schema is (one connection: reading the revision is the probe)."""
        with self._tx.read() as conn:
            return read_schema_state(conn)

    def _retry_on_race(self, work: Callable[[], T]) -> T:
        """Run `work` again once if a concurrent writer won a unique-key race (PostgreSQL); the second
        attempt sees the winner's row and answers from it."""
        try:
            return work()
        except IntegrityError:
            return work()

    # ops runs ---------------------------------------------------------------------------------------------

    def start_run(self, *, request: RunStart, actor: str, default_lease_s: int) -> StartedRun:
        def work() -> StartedRun:
            with self._tx.write() as conn:
                started = runs_sql.start_run(conn, request=request, actor=actor,
                                             lease_s=request.lease_s or default_lease_s, now=self.clock())
                for taken in started.took_over:  # the stale run is abandoned: its canaries elsewhere have no runner
                    took = taken["signature_ids"].replace(",", ", ")
                    self._stop_runs_canaries(conn, taken["from_run_id"], actor=actor, sparing=request.signature_ids,
                                             reason=f"run {taken['from_run_id']} was abandoned (its lease went stale) "
                                                    f"and run {started.run.run_id} took over {took} only: no runner "
                                                    "is left to follow this canary")
                return started
        return self._retry_on_race(work)

    def get_run(self, *, run_id: str) -> Run:
        with self._tx.read() as conn:
            run = runs_sql.find_run(conn, run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r}")
        return run

    def list_runs(self, *, limit: int, status: str | None = None, signature_id: str | None = None,
                  since: int | None = None) -> list[Run]:
        query = select(ops_runs).order_by(ops_runs.c.started_at.desc(), ops_runs.c.run_id.desc()).limit(limit)
        if since is not None:
            query = query.where(ops_runs.c.started_at >= since)
        if status is not None:
            query = query.where(ops_runs.c.status == status)
        if signature_id is not None:
            query = query.where(ops_runs.c.signature_ids_json.contains(f'"{signature_id}"', autoescape=True))
        with self._tx.read() as conn:
            return [runs_sql.run_from_row(row) for row in conn.execute(query).mappings()]

    def heartbeat(self, *, run_id: str) -> Run:
        with self._tx.write() as conn:
            return runs_sql.heartbeat(conn, run_id=run_id, now=self.clock())

    def finish_run(self, *, run_id: str, finish: FinishRun, actor: str) -> Run:
        with self._tx.write() as conn:
            return runs_sql.finish_run(conn, run_id=run_id, finish=finish, actor=actor, now=self.clock())

    # the event stream -------------------------------------------------------------------------------------

    def append_event(self, *, run_id: str, event: EventIn) -> AppendedEvent:
        size = event.size_bytes()
        if size > self.bounds.max_event_bytes:
            raise EventTooLarge(
                f"event is {size} bytes; the limit is {self.bounds.max_event_bytes} (OVERNIGHT_MAX_EVENT_BYTES)",
                details={"size": size, "limit": self.bounds.max_event_bytes},
            )

        def work() -> tuple[RunEvent | None, bool]:
            with self._tx.write() as conn:
                return runs_sql.append_bounded(conn, run_id=run_id, event=event, bounds=self.bounds,
                                               now=self.clock())
        stored, duplicate = self._retry_on_race(work)
        if stored is None:
            raise EventLimitReached(
                f"run {run_id} reached its event limit ({self.bounds.max_events} events or "
                f"{self.bounds.max_run_bytes} bytes); the event was refused",
                details={"run_id": run_id, "max_events": self.bounds.max_events},
            )
        return AppendedEvent(event=stored, duplicate=duplicate)

    def list_events(self, *, run_id: str, after_seq: int, limit: int,
                    kinds_ending: tuple[str, ...] = ()) -> list[RunEvent]:
        """A page of events after `after_seq`; `kinds_ending` keeps only kinds with one of those suffixes (the
        review reads a 10,000-event run's step marks without reading every event)."""
        query = (select(ops_run_events)
                 .where(ops_run_events.c.run_id == run_id, ops_run_events.c.seq > after_seq)
                 .order_by(ops_run_events.c.seq).limit(limit))
        if kinds_ending:
            query = query.where(or_(*(ops_run_events.c.kind.endswith(s, autoescape=True) for s in kinds_ending)))
        with self._tx.read() as conn:
            if runs_sql.find_run(conn, run_id) is None:
                raise RunNotFound(f"no run {run_id!r}")
            return [runs_sql.event_from_row(row) for row in conn.execute(query).mappings()]

    # datasets ---------------------------------------------------------------------------------------------

    def import_examples(self, *, signature_id: str, rows: list[ExampleRow], run_id: str | None = None,
                        replace: bool = False, dry_run: bool = False) -> ImportResult:
        """Upsert validated rows (`replace`: and remove the current rows they leave out), snapshot the result, and
        (in the same transaction) record `dataset.imported` on the run when one is named. All or nothing.
        `dry_run`: all of it, then the transaction is rolled back, so what it says is exactly what an import does."""
        def work() -> ImportResult:
            with self._tx.write(roll_back=dry_run) as conn:
                now = self.clock()
                counts, snapshot, is_new = datasets_sql.upsert_examples(
                    conn, signature_id=signature_id, rows=rows, now=now, replace=replace)
                result = ImportResult(signature_id=signature_id, rows_in_file=len(rows), **counts,
                                      dataset_hash=snapshot.dataset_hash, new_snapshot=is_new, snapshot=snapshot,
                                      run_id=run_id, dry_run=dry_run)
                if run_id is not None:
                    runs_sql.append_bounded(conn, run_id=run_id, bounds=self.bounds, now=now, event=EventIn(
                        kind="dataset.imported", phase="dataset.import",
                        message=(f"{signature_id}: {result.counted()}; dataset {snapshot.dataset_hash[:12]}"),
                        data=result.model_dump(mode="json", exclude={"run_id", "dry_run"}),
                        client_event_id=f"dataset.imported.{signature_id}.{snapshot.dataset_hash[:32]}"))
                return result
        return self._retry_on_race(work)

    def list_examples(self, *, signature_id: str, split: str | None = None, after: str | None = None,
                      limit: int = 100) -> list[StoredExample]:
        with self._tx.read() as conn:
            return datasets_sql.list_examples(conn, signature_id=signature_id, split=split, after=after, limit=limit)

    def get_snapshot(self, *, signature_id: str, dataset_hash: str) -> SnapshotDetail:
        with self._tx.read() as conn:
            return datasets_sql.snapshot_detail(conn, signature_id, dataset_hash)

    def all_examples(self, *, signature_id: str) -> list[StoredExample]:
        """Every current row of a signature (compile reads the whole dataset: no silent cap)."""
        with self._tx.read() as conn:
            return datasets_sql.list_examples(conn, signature_id=signature_id, split=None, after=None, limit=None)

    # compile ----------------------------------------------------------------------------------------------

    def put_artifact(self, *, artifact: Artifact) -> None:
        with self._tx.write() as conn:
            compile_sql.put_artifact(conn, artifact, self.clock())

    def get_artifact(self, *, compiled_id: str) -> Artifact:
        with self._tx.read() as conn:
            return compile_sql.get_artifact(conn, compiled_id)

    def compiled_ids_starting(self, *, prefix: str, limit: int = 2) -> list[str]:
        with self._tx.read() as conn:
            return compile_sql.compiled_ids_starting(conn, prefix, limit)

    def get_results(self, *, compiled_id: str, lm_id: str) -> dict[str, ExampleResult]:
        with self._tx.read() as conn:
            return compile_sql.get_results(conn, compiled_id=compiled_id, lm_id=lm_id)

    def put_result(self, *, result: ExampleResult) -> None:
        with self._tx.write() as conn:
            compile_sql.put_result(conn, result, self.clock())

    def find_compile_report(self, *, signature_id: str, job_hash: str, dataset_hash: str) -> CompileReport | None:
        with self._tx.read() as conn:
            return compile_sql.find_report(conn, signature_id=signature_id, job_hash=job_hash,
                                           dataset_hash=dataset_hash)

    def get_compile_report(self, *, report_id: str) -> CompileReport:
        with self._tx.read() as conn:
            return compile_sql.get_report(conn, report_id)

    def save_compile_report(self, *, report: CompileReport) -> CompileReport:
        def work() -> CompileReport:
            with self._tx.write() as conn:
                existing = compile_sql.find_report(conn, signature_id=report.signature_id, job_hash=report.job_hash,
                                                   dataset_hash=report.dataset_hash)
                return existing or compile_sql.save_report(conn, report, self.clock())
        return self._retry_on_race(work)

    def champion(self, *, signature_id: str) -> str | None:
        with self._tx.read() as conn:
            return aliases_sql.current(conn, signature_id)

    # idempotency keys -------------------------------------------------------------------------------------

    def claim_idempotency_key(self, *, actor: str, key: str, fingerprint: str, lease_ms: int) -> IdempotencyClaim:
        holder = uuid.uuid4().hex

        def work() -> IdempotencyClaim:
            with self._tx.write() as conn:
                now, this = self.clock(), this_key(actor, key)
                row = conn.execute(select(idempotency_keys).where(this).with_for_update()).mappings().first()
                if row is None:
                    conn.execute(insert(idempotency_keys).values(actor=actor, key=key, fingerprint=fingerprint,
                                                                 state="pending", created_at=now, holder=holder,
                                                                 locked_at=now))
                    return IdempotencyClaim(outcome="claimed", holder=holder)
                if row["fingerprint"] != fingerprint:
                    return IdempotencyClaim(outcome="mismatch")
                if row["state"] == "done":
                    return IdempotencyClaim(outcome="replay", status_code=row["status_code"],
                                            response_body=row["response_body"])
                renewed = row["created_at"] if row["locked_at"] is None else row["locked_at"]  # older code's: never
                if renewed + lease_ms > now:
                    return IdempotencyClaim(outcome="in_progress", retry_after_ms=renewed + lease_ms - now)
                conn.execute(update(idempotency_keys).where(this).values(holder=holder, locked_at=now))
            log.warning("idempotency_claim_taken_over", actor=actor, key=key, unrenewed_ms=now - renewed)
            return IdempotencyClaim(outcome="claimed", holder=holder, taken_over=True)
        return self._retry_on_race(work)

    def touch_idempotency_key(self, *, actor: str, key: str, holder: str) -> bool:
        with self._tx.write() as conn:
            return conn.execute(update(idempotency_keys).where(held(actor, key, holder))
                                .values(locked_at=self.clock())).rowcount == 1

    def complete_idempotency_key(self, *, actor: str, key: str, holder: str, status_code: int,
                                 response_body: str) -> bool:
        with self._tx.write() as conn:
            return answer(conn, actor=actor, key=key, holder=holder, status_code=status_code,
                          response_body=response_body)

    def release_idempotency_key(self, *, actor: str, key: str, holder: str) -> None:
        with self._tx.write() as conn:
            conn.execute(delete(idempotency_keys).where(held(actor, key, holder)))

    # retention ----------------------------------------------------------------------------------------------

    def prune(self, *, keep_days: int, dry_run: bool = False, batch: int = PRUNE_BATCH) -> PruneResult:
        """Delete receipts served outside any canary made more than `keep_days` ago, and idempotency keys whose
        request last ran (was claimed, or its claim renewed) that long ago — a request still running keeps its key —
        in transactions of at most `batch` rows, so predicts keep being served (SQLite has one writer) meanwhile."""
        cutoff = self.clock() - keep_days * DAY_MS
        aged = [(receipts, (receipts.c.receipt_id,),
                 and_(receipts.c.canary_id.is_(None), receipts.c.created_at < cutoff)),
                (idempotency_keys, (idempotency_keys.c.actor, idempotency_keys.c.key),
                 func.coalesce(idempotency_keys.c.locked_at, idempotency_keys.c.created_at) < cutoff)]
        counts = [self._count(table, old) if dry_run else self._delete_in_batches(table, key, old, batch)
                  for table, key, old in aged]
        result = PruneResult(keep_days=keep_days, cutoff=cutoff, receipts=counts[0], idempotency_keys=counts[1],
                             dry_run=dry_run)
        log.info("store_pruned", **result.model_dump())
        return result

    def _count(self, table: Table, where: ColumnElement[bool]) -> int:
        with self._tx.read() as conn:
            return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())

    def _delete_in_batches(self, table: Table, key: tuple[Column[Any], ...], where: ColumnElement[bool],
                           batch: int) -> int:
        """Delete `table`'s rows matching `where`, at most `batch` (by `key`) per transaction; how many went."""
        total = 0
        while True:
            with self._tx.write() as conn:
                deleted = int(conn.execute(delete(table).where(
                    tuple_(*key).in_(select(*key).where(where).limit(batch)))).rowcount)
            total += deleted
            if deleted < batch:
                return total
