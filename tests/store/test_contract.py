"""The store's contract: one file, run on SQLite and on PostgreSQL (the `db_url` fixture)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Connection, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from overnight.domain.compiling import Artifact
from overnight.domain.runs import EventIn, FinishRun, RunStart, RunStatus
from overnight.errors import (
    EventLimitReached,
    EventTooLarge,
    IdempotencyKeyInUse,
    RunAlreadyFinished,
    RunIdConflict,
    RunLocked,
    RunNotFound,
    RunNotRunning,
    StoreUnavailable,
)
from overnight.store import SqlStore, build_store
from overnight.store.base import HeldKey, IdempotencyClaim, KeptAnswer
from overnight.store.runs_sql import iso
from overnight.store.schema import alias_history, canary_history, idempotency_keys
from tests.factories import SteppingClock, make_settings, make_store


@pytest.fixture
def store(open_store: Callable[..., SqlStore]) -> SqlStore:
    return open_store()


def start(store: SqlStore, *sigs: str, run_id: str | None = None, actor: str = "ops-agent"):
    return store.start_run(request=RunStart(run_id=run_id, signature_ids=list(sigs)), actor=actor,
                           default_lease_s=60)


def event(kind: str = "compile.started", client_event_id: str | None = None, **data: object) -> EventIn:
    return EventIn(kind=kind, phase=kind.split(".", maxsplit=1)[0], client_event_id=client_event_id, data=dict(data))


def kinds(store: SqlStore, run_id: str) -> list[str]:
    return [e.kind for e in store.list_events(run_id=run_id, after_seq=0, limit=1000)]


def test_start_records_the_run_its_lease_and_a_started_event(store: SqlStore, clock: SteppingClock) -> None:
    started = start(store, "select_tool.v1", "triage.v1")
    run = store.get_run(run_id=started.run.run_id)
    assert started.created
    assert run.status == RunStatus.running
    assert run.signature_ids == ["select_tool.v1", "triage.v1"]
    assert run.lease_expires_at == clock.now + 60_000
    assert kinds(store, run.run_id) == ["run.started"]


def test_second_start_on_an_overlapping_signature_is_locked_and_names_the_holder(store: SqlStore) -> None:
    holder = start(store, "a", "b").run
    with pytest.raises(RunLocked) as refused:
        start(store, "b", "c")
    assert refused.value.details["holder_run_id"] == holder.run_id
    assert holder.run_id in refused.value.message
    assert start(store, "c").created  # a disjoint signature is free
    assert [r.run_id for r in store.list_runs(limit=10, signature_id="c")] != [holder.run_id]


def test_start_with_a_known_run_id_returns_the_same_run(store: SqlStore) -> None:
    first = start(store, "a", run_id="nightly-1")
    again = start(store, "a", run_id="nightly-1")
    assert not again.created
    assert again.run.run_id == first.run.run_id
    assert len(store.list_runs(limit=10)) == 1
    assert kinds(store, "nightly-1") == ["run.started"]


def test_start_with_a_known_run_id_but_other_signatures_is_refused(store: SqlStore) -> None:
    start(store, "a", run_id="nightly-1")
    with pytest.raises(RunIdConflict):
        start(store, "b", run_id="nightly-1")


def test_stale_lease_is_taken_over_and_recorded_on_both_runs(store: SqlStore, clock: SteppingClock) -> None:
    old = start(store, "a", "b").run
    clock.advance(seconds=61)
    new = start(store, "b")
    assert new.took_over[0]["from_run_id"] == old.run_id
    abandoned = store.get_run(run_id=old.run_id)
    assert abandoned.status == RunStatus.abandoned
    assert abandoned.undecided_because() == (  # what `overnight runs` says of it
        f"abandoned: its lease went stale at {iso(old.lease_expires_at)}; run {new.run.run_id} took over b")
    assert kinds(store, old.run_id) == ["run.started", "lease_taken_over"]
    assert kinds(store, new.run.run_id) == ["run.started", "lease_taken_over"]
    assert start(store, "a").created  # the abandoned run's other signature was released too


def test_heartbeat_keeps_the_lease(store: SqlStore, clock: SteppingClock) -> None:
    run = start(store, "a").run
    clock.advance(seconds=50)
    store.heartbeat(run_id=run.run_id)
    clock.advance(seconds=50)
    with pytest.raises(RunLocked):
        start(store, "a")


def test_finish_once_releases_the_lease_and_a_different_second_finish_conflicts(store: SqlStore) -> None:
    run = start(store, "a").run
    finished = store.finish_run(run_id=run.run_id, finish=FinishRun(status="succeeded", summary={"x": 1}),
                                actor="ops-agent")
    assert finished.status == RunStatus.succeeded
    assert finished.summary == {"x": 1}
    retried = store.finish_run(run_id=run.run_id, finish=FinishRun(status="succeeded"), actor="ops-agent")
    assert retried.ended_at == finished.ended_at
    with pytest.raises(RunAlreadyFinished):
        store.finish_run(run_id=run.run_id, finish=FinishRun(status="failed"), actor="ops-agent")
    assert kinds(store, run.run_id) == ["run.started", "run.finished"]
    assert start(store, "a").created
    with pytest.raises(RunNotRunning):
        store.heartbeat(run_id=run.run_id)
    with pytest.raises(RunNotRunning):
        store.append_event(run_id=run.run_id, event=event())


def test_events_get_gapless_seq_and_a_retried_client_event_id_is_stored_once(store: SqlStore) -> None:
    run_id = start(store, "a").run.run_id
    first = store.append_event(run_id=run_id, event=event(client_event_id="e-1", n=1))
    again = store.append_event(run_id=run_id, event=event(client_event_id="e-1", n=1))
    other = store.append_event(run_id=run_id, event=event("compile.finished"))
    assert not first.duplicate
    assert again.duplicate
    assert again.event == first.event
    assert [first.event.seq, other.event.seq] == [2, 3]
    assert [e.seq for e in store.list_events(run_id=run_id, after_seq=1, limit=10)] == [2, 3]
    assert store.get_run(run_id=run_id).event_count == 3


def test_event_bound_gives_exactly_one_truncation_marker(open_store: Callable[..., SqlStore]) -> None:
    store = open_store(max_events_per_run=10)
    run_id = start(store, "a").run.run_id
    accepted, refused = 0, 0
    for n in range(20):
        try:
            store.append_event(run_id=run_id, event=event(n=n))
            accepted += 1
        except EventLimitReached:
            refused += 1
    assert (accepted, refused) == (9, 11)  # run.started + 9 = the bound of 10
    assert kinds(store, run_id).count("events_truncated") == 1
    assert kinds(store, run_id)[-1] == "events_truncated"
    store.finish_run(run_id=run_id, finish=FinishRun(status="succeeded"), actor="ops-agent")
    assert kinds(store, run_id)[-1] == "run.finished"  # the run's end is never lost to the bound


def test_oversize_event_is_refused_and_nothing_is_written(store: SqlStore) -> None:
    run_id = start(store, "a").run.run_id
    with pytest.raises(EventTooLarge):
        store.append_event(run_id=run_id, event=event(blob="x" * 70_000))
    assert kinds(store, run_id) == ["run.started"]


def test_run_byte_bound_truncates(open_store: Callable[..., SqlStore]) -> None:
    store = open_store(max_run_event_bytes=65_536)
    run_id = start(store, "a").run.run_id
    for _ in range(3):
        store.append_event(run_id=run_id, event=event(blob="x" * 20_000))
    with pytest.raises(EventLimitReached):
        store.append_event(run_id=run_id, event=event(blob="x" * 20_000))
    assert kinds(store, run_id) == ["run.started", "compile.started", "compile.started", "compile.started",
                                    "events_truncated"]


def test_unknown_run_is_not_found(store: SqlStore) -> None:
    for call in (lambda: store.get_run(run_id="nope"), lambda: store.heartbeat(run_id="nope"),
                 lambda: store.append_event(run_id="nope", event=event()),
                 lambda: store.list_events(run_id="nope", after_seq=0, limit=1)):
        with pytest.raises(RunNotFound):
            call()


@pytest.mark.parametrize("statement", [
    "UPDATE ops_run_events SET message = 'rewritten'",
    "DELETE FROM ops_run_events",
    "UPDATE alias_history SET reason = 'rewritten'",
    "DELETE FROM alias_history",
    "UPDATE canary_history SET verdict = 'pass'",
    "DELETE FROM canary_history",
])
def test_database_refuses_to_change_append_only_tables(store: SqlStore, statement: str) -> None:
    run_id = start(store, "a").run.run_id
    with store.engine.begin() as conn:
        conn.execute(insert(alias_history).values(
            signature_id="a", alias="champion", from_id=None, to_id="c1", action="promote", actor="ops-agent",
            reason="seed", run_id=run_id, evidence_json="{}", created_at=0))
        conn.execute(insert(canary_history).values(
            canary_id="k1", signature_id="a", kind="gate_evaluated", step=0, verdict="fail", actor=None,
            evidence_json="{}", created_at=0))
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    with store.engine.connect() as conn:
        counts = [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                  for t in ("ops_run_events", "alias_history", "canary_history")]
        reason = conn.execute(text("SELECT reason FROM alias_history")).scalar_one()
    assert counts == [1, 1, 1]
    assert reason == "seed"


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_postgres_also_refuses_truncate(store: SqlStore) -> None:
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("TRUNCATE ops_run_events"))


def test_concurrent_starts_for_one_signature_leave_exactly_one_running(store: SqlStore) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def contender() -> None:
        barrier.wait()
        try:
            start(store, "shared")
            outcomes.append("started")
        except RunLocked:
            outcomes.append("locked")

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["locked"] * 7 + ["started"]
    assert len(store.list_runs(limit=10, status="running")) == 1


LEASE_MS = 60_000


def claim(store: SqlStore, actor: str, key: str, fingerprint: str) -> IdempotencyClaim:
    return store.claim_idempotency_key(actor=actor, key=key, fingerprint=fingerprint, lease_ms=LEASE_MS)


def test_idempotency_key_claims(store: SqlStore) -> None:
    first = claim(store, "a", "k", "f1")
    assert (first.outcome, first.taken_over) == ("claimed", False)
    assert claim(store, "a", "k", "f1").outcome == "in_progress"
    assert claim(store, "a", "k", "f2").outcome == "mismatch"
    other = claim(store, "b", "k", "f2")
    assert other.outcome == "claimed"
    assert "" != first.holder != other.holder != ""
    assert store.complete_idempotency_key(actor="a", key="k", holder=first.holder, status_code=201,
                                          response_body='{"ok":true}')
    replay = claim(store, "a", "k", "f1")
    assert (replay.outcome, replay.status_code, replay.response_body) == ("replay", 201, '{"ok":true}')
    store.release_idempotency_key(actor="b", key="k", holder=other.holder)
    assert claim(store, "b", "k", "f3").outcome == "claimed"


def test_a_claim_its_holder_stopped_renewing_is_taken_over_after_the_lease(store: SqlStore,
                                                                           clock: SteppingClock) -> None:
    """A server killed mid-request never answers, completes or releases its claim: after its lease (renewed by the
    live holder while the request runs) the same request may run again, as after a 5xx. The dead holder's late
    writes, were it only slow, no longer touch the claim: the request's answer is the one that holds it."""
    dead = claim(store, "a", "k", "f1")
    clock.advance(seconds=45)
    waiting = claim(store, "a", "k", "f1")
    assert (waiting.outcome, waiting.retry_after_ms) == ("in_progress", 15_000)
    assert store.touch_idempotency_key(actor="a", key="k", holder=dead.holder)  # renewed: a lease from now
    clock.advance(seconds=59)
    assert claim(store, "a", "k", "f1").retry_after_ms == 1_000
    clock.advance(seconds=1)
    assert claim(store, "a", "k", "f2").outcome == "mismatch"  # an old claim is still this request's key
    retried = claim(store, "a", "k", "f1")
    assert (retried.outcome, retried.taken_over) == ("claimed", True)
    assert retried.holder not in ("", dead.holder)
    assert claim(store, "a", "k", "f1").outcome == "in_progress"  # the new holder's lease starts now

    assert not store.touch_idempotency_key(actor="a", key="k", holder=dead.holder)
    assert not store.complete_idempotency_key(actor="a", key="k", holder=dead.holder, status_code=201,
                                              response_body='{"late":true}')
    store.release_idempotency_key(actor="a", key="k", holder=dead.holder)
    assert claim(store, "a", "k", "f1").outcome == "in_progress"  # neither ended the new holder's claim
    assert store.complete_idempotency_key(actor="a", key="k", holder=retried.holder, status_code=200,
                                          response_body='{"ok":true}')
    assert not store.touch_idempotency_key(actor="a", key="k", holder=retried.holder)  # answered: nothing to hold
    clock.advance(seconds=3600)
    replay = claim(store, "a", "k", "f1")
    assert (replay.outcome, replay.response_body) == ("replay", '{"ok":true}')  # an answer has no lease


def test_a_claim_written_before_claims_had_leases_is_judged_from_its_creation(store: SqlStore,
                                                                              clock: SteppingClock) -> None:
    """Claims left pending by a server of schema 0004 (no holder, never renewed) — during a rolling upgrade, or
    the dead claims a crash left before this version — are taken over a lease after they were made."""
    with store.engine.begin() as conn:
        conn.execute(insert(idempotency_keys).values(actor="a", key="old", fingerprint="f1", state="pending",
                                                     created_at=clock.now))
    clock.advance(seconds=59)
    assert claim(store, "a", "old", "f1").outcome == "in_progress"
    clock.advance(seconds=1)
    assert claim(store, "a", "old", "f1").outcome == "claimed"


def test_a_move_keeps_its_answer_with_it_and_is_refused_once_its_claim_was_taken_over(
        store: SqlStore, clock: SteppingClock) -> None:
    """A promote or rollback keeps its request's answer in the move's transaction: the claim is answered when the
    move commits, so a retry replays it. A request whose claim a retry took over (its lease lapsed unrenewed) is
    refused its move, which the retry makes: one move, never two."""
    for compiled_id in ("a" * 64, "b" * 64):
        store.put_artifact(artifact=Artifact(compiled_id=compiled_id, signature_id="Sig.v1", lm_id="sim:test",
                                             state={}, params={}))
    mine = claim(store, "ops", "promote-a", "f1")
    held = HeldKey(actor="ops", key="promote-a", holder=mine.holder)
    moved = store.promote(signature_id="Sig.v1", seen=None, to_id="a" * 64, actor="ops", reason="r", run_id=None,
                          evidence={}, canary_id=None, answer=KeptAnswer(held, render=lambda m: f'{{"id":{m.id}}}'))
    replay = claim(store, "ops", "promote-a", "f1")
    assert (replay.outcome, replay.status_code, replay.response_body) == ("replay", 200, f'{{"id":{moved.id}}}')

    slow = claim(store, "ops", "rollback", "f2")
    clock.advance(seconds=61)
    retry = claim(store, "ops", "rollback", "f2")
    assert retry.taken_over
    with pytest.raises(IdempotencyKeyInUse, match="taken over by a retry"):
        store.rollback(signature_id="Sig.v1", to_id=None, explicit=False, actor="ops", reason="r", run_id=None,
                       answer=KeptAnswer(HeldKey(actor="ops", key="rollback", holder=slow.holder), render=str))
    assert [m.id for m in store.alias_history(signature_id="Sig.v1")] == [moved.id]  # refused: nothing moved
    back = store.rollback(signature_id="Sig.v1", to_id=None, explicit=False, actor="ops", reason="r", run_id=None,
                          answer=KeptAnswer(HeldKey(actor="ops", key="rollback", holder=retry.holder),
                                            render=lambda m: str(m.id)))
    assert [m.id for m in store.alias_history(signature_id="Sig.v1")] == [moved.id, back.id]
    assert claim(store, "ops", "rollback", "f2").response_body == str(back.id)


def test_unreachable_postgres_is_store_unavailable() -> None:
    settings = make_settings("postgresql+psycopg://nobody:hunter2-secret@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable) as refused:
        build_store(settings)
    assert "hunter2" not in refused.value.message
    store = build_store(settings, migrate=False)
    with pytest.raises(StoreUnavailable):
        store.ping()
    store.close()


def every_connection(store: SqlStore) -> list[Connection]:
    """Check out every connection the store's pool will give (until it times out waiting for one)."""
    held: list[Connection] = []
    try:
        while len(held) < 1000:
            held.append(store.engine.connect())
    except PoolTimeout:
        return held
    raise AssertionError("the pool never ran out")


def test_no_free_connection_in_time_is_store_unavailable_and_the_store_recovers(
        open_store: Callable[..., SqlStore]) -> None:
    store = open_store(db_pool_timeout_s=0.2)
    run = start(store, "select_tool.v1").run
    held = every_connection(store)
    try:
        with pytest.raises(StoreUnavailable) as busy:
            store.get_run(run_id=run.run_id)
        with pytest.raises(StoreUnavailable):
            store.append_event(run_id=run.run_id, event=event())
    finally:
        for conn in held:
            conn.close()
    assert busy.value.code == "store_unavailable"
    assert "OVERNIGHT_DB_POOL_TIMEOUT_S" in busy.value.message
    assert len(held) == 40  # the pool's documented size, per process
    assert kinds(store, run.run_id) == ["run.started"]  # the refused append wrote nothing
    assert store.get_run(run_id=run.run_id).run_id == run.run_id


def test_list_runs_filters_by_exact_signature_and_status(store: SqlStore) -> None:
    wanted = start(store, "select_tool.v1").run
    start(store, "selectXtool.v1")  # `_` must not act as a LIKE wildcard
    start(store, "select_tool.v10")
    store.finish_run(run_id=wanted.run_id, finish=FinishRun(status="failed"), actor="ops-agent")
    assert [r.run_id for r in store.list_runs(limit=10, signature_id="select_tool.v1")] == [wanted.run_id]
    assert [r.run_id for r in store.list_runs(limit=10, status="failed")] == [wanted.run_id]
    assert len(store.list_runs(limit=2)) == 2


def test_sqlite_commits_are_on_disk_before_they_are_acknowledged(tmp_path: Path) -> None:
    """WAL with synchronous=FULL on every connection the store opens: a write that was answered survives a power
    loss, not only the process dying (a power loss cannot be staged here; the setting that decides it can)."""
    store = make_store(f"sqlite:///{tmp_path / 'overnight.db'}")
    start(store, "select_tool.v1")
    with store._tx.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL (NORMAL is 1)
    store.close()


def test_a_sqlite_writer_waits_for_another_in_process_writer_no_longer_than_the_busy_timeout(tmp_path: Path) -> None:
    """Writers in one process queue on a lock (so they don't spin in SQLite's busy handler); the wait is bounded
    like a wait on another process's write: past OVERNIGHT_DB_BUSY_TIMEOUT_MS it is 503 `store_unavailable`,
    nothing written, and the store writes again once the lock is free."""
    store = make_store(f"sqlite:///{tmp_path / 'overnight.db'}", db_busy_timeout_ms=300)
    run = start(store, "select_tool.v1").run
    holding, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        with store._tx.write():  # a long write transaction, as a big import is
            holding.set()
            release.wait(timeout=60)

    holder, writer = threading.Thread(target=hold_the_write_lock), ThreadPoolExecutor(1)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        waited = writer.submit(store.append_event, run_id=run.run_id, event=event())
        with pytest.raises(StoreUnavailable) as busy:
            waited.result(timeout=20)  # unbounded, it would wait here until the holder lets go
    finally:
        release.set()
        holder.join(timeout=10)
        writer.shutdown()
    assert busy.value.code == "store_unavailable"
    assert "OVERNIGHT_DB_BUSY_TIMEOUT_MS" in busy.value.message
    assert kinds(store, run.run_id) == ["run.started"]
    store.append_event(run_id=run.run_id, event=event())
    assert kinds(store, run.run_id) == ["run.started", "compile.started"]
    store.close()
