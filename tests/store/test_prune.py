"""Pruning on both stores: receipts served outside any canary and idempotency keys older than the kept days go,
in batches; canary receipts (the evidence behind a decision and its chart) and everything else stay."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from overnight.domain.receipts import PruneRequest, Receipt
from overnight.store import SqlStore
from overnight.store.schema import idempotency_keys, receipts
from tests.factories import SteppingClock
from tests.store.test_canary_store import CANARY, SIG, open_canary, record

DAY_S = 86_400


def champion_receipt(receipt_id: str, signature_id: str = SIG) -> Receipt:
    return Receipt(receipt_id=receipt_id, signature_id=signature_id, compiled_id="c" * 64, canary_id=None,
                   arm="champion", request_key=receipt_id, input_hash="i" * 64, output={"tool": "x"}, ok=True,
                   error_code=None, correct=None, latency_ms=5, tokens_in=1, tokens_out=1, cost_usd=None,
                   lm_id="sim:test", request_id=f"req-{receipt_id}")


def rows(store: SqlStore, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_prune_deletes_old_champion_receipts_and_idempotency_keys_only(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    store = open_store()
    open_canary(store, clock)
    for i in range(5):  # in one millisecond: more than a batch shares the last deleted one's time
        store.record_receipt(receipt=champion_receipt(f"old-{i}"))
    record(store, "control", routed_at=0, count=3, prefix="old")  # canary receipts, as old
    clock.advance(seconds=1)
    store.record_receipt(receipt=champion_receipt("old-triage", "SupportTriage.v1"))  # another signature
    store.record_receipt(receipt=champion_receipt("old-5"))
    store.claim_idempotency_key(actor="ops", key="old-key", fingerprint="f" * 64, lease_ms=60_000)
    clock.advance(seconds=31 * DAY_S)
    store.record_receipt(receipt=champion_receipt("new-0"))
    store.claim_idempotency_key(actor="ops", key="new-key", fingerprint="f" * 64, lease_ms=60_000)

    counted = store.prune(keep_days=30, dry_run=True)
    assert (counted.receipts, counted.idempotency_keys, counted.dry_run) == (7, 1, True)
    assert counted.cutoff == clock() - 30 * DAY_S * 1000
    assert (rows(store, receipts), rows(store, idempotency_keys)) == (11, 2)  # a dry run deletes nothing

    pruned = store.prune(keep_days=30, batch=2)
    assert (pruned.receipts, pruned.idempotency_keys, pruned.dry_run) == (7, 1, False)
    left = {r.receipt_id for r in store.list_receipts(limit=100)}
    assert left == {"new-0", "old-control-0", "old-control-1", "old-control-2"}
    assert {r.receipt_id for r in store.list_receipts(canary_id=CANARY)} == {f"old-control-{i}" for i in range(3)}
    claim = partial(store.claim_idempotency_key, actor="ops", lease_ms=60_000)
    assert claim(key="new-key", fingerprint="f" * 64).outcome == "in_progress"
    assert claim(key="old-key", fingerprint="e" * 64).outcome == "claimed"

    again = store.prune(keep_days=30)
    assert (again.receipts, again.idempotency_keys) == (0, 0)
    assert store.get_canary(canary_id=CANARY).arms["control"].samples == 3  # the counters are untouched


@pytest.mark.parametrize("keep_days", [0, -1])
def test_fewer_than_one_kept_day_is_refused(keep_days: int) -> None:
    with pytest.raises(ValidationError, match="keep_days"):
        PruneRequest(keep_days=keep_days)


def test_a_key_whose_request_is_still_running_is_not_pruned(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    """A key ages from when its request last ran: a claim still renewed (a request running longer than the kept
    days) stays, so its retry is still refused, not run twice; a claim left by a server that died, as old, goes."""
    store = open_store()
    running = store.claim_idempotency_key(actor="ops", key="running", fingerprint="f" * 64, lease_ms=60_000)
    store.claim_idempotency_key(actor="ops", key="orphaned", fingerprint="f" * 64, lease_ms=60_000)
    clock.advance(seconds=2 * DAY_S)
    assert store.touch_idempotency_key(actor="ops", key="running", holder=running.holder)

    assert store.prune(keep_days=1, dry_run=True).idempotency_keys == 1
    assert store.prune(keep_days=1).idempotency_keys == 1
    claim = partial(store.claim_idempotency_key, actor="ops", fingerprint="f" * 64, lease_ms=60_000)
    assert claim(key="running").outcome == "in_progress"
    orphaned = claim(key="orphaned")
    assert (orphaned.outcome, orphaned.taken_over) == ("claimed", False)  # pruned: a new claim, not a takeover
    assert store.complete_idempotency_key(actor="ops", key="running", holder=running.holder, status_code=200,
                                          response_body="{}")
