"""A server killed in the middle of a request with an `Idempotency-Key` leaves that key claimed and unanswered. The
claim is leased: the live server renews it while the request runs (so a long request is never run twice), and a
claim nobody renews any more is taken over by a retry of the same request a lease later, which runs it again."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from overnight.client import OvernightClient
from overnight.store import SqlStore
from overnight.store.schema import idempotency_keys
from tests.factories import ADMIN_TOKEN, SteppingClock, live_server, make_store, serve_process, wait_for
from tests.serving.helpers import SIG, holdout

PREDICT = f"/api/v1/signatures/{SIG}/predict"
KEY = "agent-predict-1"


def claim_of(store: SqlStore) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(idempotency_keys).where(idempotency_keys.c.key == KEY)).mappings().first()
    return dict(row) if row else None


def a_predict() -> dict[str, Any]:
    row = holdout()[0]
    return {"input": row["input"], "expected": row["expected"], "request_key": "agent-1"}


def test_a_claim_left_by_a_server_killed_mid_request_is_taken_over_by_the_clients_retry(db_url: str,
                                                                                       tmp_path: Path) -> None:
    body = a_predict()
    with serve_process(db_url, tmp_path / "serve-1.log", OVERNIGHT_LM="sim:seed=1,latency_ms=60000") as server, \
            server.client() as http, ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(http.post, PREDICT, json=body, headers={"idempotency-key": KEY})
        store = make_store(db_url)
        try:
            wait_for(lambda: claim_of(store) is not None)  # claimed, its LM call in flight
        finally:
            store.close()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        with pytest.raises(httpx.TransportError):
            in_flight.result(timeout=30)  # the agent never got an answer: it retries with the same key

    with serve_process(db_url, tmp_path / "serve-2.log", OVERNIGHT_LM="sim:seed=1",
                       OVERNIGHT_IDEMPOTENCY_LEASE_S="3") as server, \
            OvernightClient(server.base_url, ADMIN_TOKEN, attempts=4) as client:
        answered = client.request("POST", PREDICT, json=body, idempotency_key=KEY)
        with server.client() as http:
            again = http.post(PREDICT, json=body, headers={"idempotency-key": KEY})
            receipts = http.get("/api/v1/receipts", params={"signature": SIG}).json()["receipts"]
        log = server.log()
    assert answered.status_code == 200
    assert (again.status_code, again.headers["idempotent-replayed"]) == (200, "true")
    assert again.json() == answered.json()
    assert [r["request_key"] for r in receipts] == ["agent-1"]  # run once to its end: one receipt
    assert "idempotency_claim_taken_over" in log  # the dead server's claim, not a fresh one


def test_a_claim_is_renewed_while_its_request_runs_so_a_retry_waits_instead_of_running_it_twice(
        db_url: str, clock: SteppingClock) -> None:
    """The lease is 1 s and, on the store's clock, an hour passes while the first attempt's LM call is in flight:
    the server renewed the claim meanwhile, so the retry is refused (`Retry-After`), not run a second time."""
    body = a_predict()
    with live_server(db_url, clock=clock, lm="sim:seed=1,latency_ms=1500", idempotency_lease_s=1) as server, \
            server.client() as http, ThreadPoolExecutor(1) as pool:
        first = pool.submit(http.post, PREDICT, json=body, headers={"idempotency-key": KEY})
        wait_for(lambda: claim_of(server.store) is not None)
        clock.advance(seconds=3600)
        wait_for(lambda: (claim_of(server.store) or {}).get("locked_at") == clock.now)  # renewed within 1/4 s
        retry = http.post(PREDICT, json=body, headers={"idempotency-key": KEY})
        answered = first.result(timeout=30)
        replayed = http.post(PREDICT, json=body, headers={"idempotency-key": KEY})
        receipts = http.get("/api/v1/receipts", params={"signature": SIG}).json()["receipts"]
    assert (retry.status_code, retry.json()["code"], retry.headers["retry-after"]) == (
        409, "idempotency_key_in_use", "1")
    assert "retry after 1s" in retry.json()["error"]
    assert answered.status_code == 200
    assert replayed.headers["idempotent-replayed"] == "true"
    assert len(receipts) == 1
