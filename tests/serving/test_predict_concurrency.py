"""How many predicts one server process runs at once: `OVERNIGHT_PREDICT_CONCURRENCY`, in the predicts' own
thread pool. With a real LM a predict holds its thread for the whole LM call, so the pool's size is the process's
concurrency: it must not be anyio's default 40 threads (shared with every other blocking call), and it must hold.

The LM here is the simulator behind a gate that keeps every call waiting until the test opens it, so the number
of calls in flight at once is counted, not inferred from timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import dspy
import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from overnight.config import Settings
from overnight.lm.backends import Backend
from overnight.lm.engines import AsyncSimEngine, SimEngine
from overnight.lm.sim import SimSpec
from tests.factories import SERVE_TOKEN, LiveServer, auth, live_server
from tests.serving.helpers import SIG, holdout, predict


class GatedEngine:
    """The simulator, answering only once `opened` is set; counts the calls waiting inside it."""

    def __init__(self) -> None:
        self.sim = SimEngine(SimSpec.parse("seed=1"))
        self.opened = threading.Event()
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self._lock = threading.Lock()

    def complete(self, request: Any) -> Any:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if not self.opened.wait(timeout=60):
                raise TimeoutError("the test never opened the gate")
            return self.sim.complete(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def close(self) -> None:
        return None


@contextmanager
def gated_server(db_url: str, **settings: Any) -> Iterator[tuple[LiveServer, GatedEngine]]:
    gate = GatedEngine()
    lm = dspy.LM("sim/gated", engine=gate, async_engine=AsyncSimEngine(gate.sim), cache=False)
    backend = Backend("sim", "sim:gated", "sim:gated|test", lm, engine=gate.sim)

    def use_gate(app: FastAPI) -> None:
        app.state.backend = backend

    with live_server(db_url, customize=use_gate, lm="sim:seed=1", **settings) as server:
        try:
            yield server, gate
        finally:
            gate.opened.set()  # never leave a server thread waiting on a failed test


def wait_for(condition: Callable[[], bool], *, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@contextmanager
def burst(server: LiveServer, count: int) -> Iterator[list[Future[httpx.Response]]]:
    """`count` predicts sent at once, each on its own connection; yields their futures."""
    rows = holdout()
    limits = httpx.Limits(max_connections=count)
    with server.client(token=SERVE_TOKEN, limits=limits) as client, ThreadPoolExecutor(count) as pool:
        yield [pool.submit(predict, client, rows[i % len(rows)], f"burst-{i}", labeled=False) for i in range(count)]


def test_more_predicts_than_anyios_default_pool_are_in_flight_at_once(db_url: str) -> None:
    count = 60  # anyio lends 40 threads by default: a predict route on that pool never has 60 LM calls in flight
    with gated_server(db_url) as (server, gate), burst(server, count) as futures:
        all_waiting = wait_for(lambda: gate.in_flight == count)
        gate.opened.set()
        answers = [future.result() for future in futures]
    assert all_waiting, f"only {gate.peak} of {count} predicts reached the LM at once"
    assert [a.status_code for a in answers] == [200] * count, answers[0].text
    assert gate.peak == count


def test_the_limit_holds_and_admin_routes_answer_while_every_predict_slot_waits(db_url: str) -> None:
    count, limit = 10, 4
    with (gated_server(db_url, predict_concurrency=limit) as (server, gate), server.client() as admin,
          burst(server, count) as futures):
        slots_full = wait_for(lambda: gate.in_flight >= limit)
        time.sleep(0.5)  # time for a fifth call to get in, were the limit not holding
        waiting_then = gate.in_flight
        health = admin.get("/healthz", timeout=10)
        receipts = admin.get("/api/v1/receipts", params={"signature": SIG}, timeout=10)
        gate.opened.set()
        answers = [future.result() for future in futures]
    assert slots_full, f"only {gate.peak} predicts reached the LM"
    assert (waiting_then, gate.peak) == (limit, limit), f"{gate.peak} predicts were in the LM at once, not {limit}"
    assert health.status_code == 200, health.text
    assert receipts.status_code == 200, receipts.text
    assert receipts.json()["receipts"] == []  # none had finished while the gate was shut
    assert [a.status_code for a in answers] == [200] * count, answers[0].text


def test_a_predict_that_waits_past_the_queue_timeout_is_refused_server_busy_and_counted_nowhere(db_url: str) -> None:
    """Behind a slow LM the queue is shed, not served long after its callers gave up: a predict that finds no free
    slot within OVERNIGHT_PREDICT_QUEUE_TIMEOUT_S is 503 `server_busy` (retryable), never reaches the LM and
    writes no receipt, so it counts on neither arm of a canary."""
    count, limit = 5, 2
    with (gated_server(db_url, predict_concurrency=limit, predict_queue_timeout_s=0.3) as (server, gate),
          server.client() as admin, burst(server, count) as futures):
        shed = wait_for(lambda: sum(f.done() for f in futures) == count - limit, seconds=15)
        wait_for(lambda: gate.in_flight == limit)  # the two with slots may still be on their way on a busy machine
        in_lm_then = gate.in_flight
        receipts_then = admin.get("/api/v1/receipts", params={"signature": SIG}).json()["receipts"]
        gate.opened.set()
        answers = [future.result() for future in futures]
        receipts = admin.get("/api/v1/receipts", params={"signature": SIG}).json()["receipts"]
    assert shed, "the predicts past the limit were still waiting for a slot with the LM shut"
    assert (in_lm_then, gate.peak) == (limit, limit)
    assert receipts_then == []
    refused = [a for a in answers if a.status_code != 200]
    assert len(refused) == count - limit, [a.status_code for a in answers]
    for answer in refused:
        body = answer.json()
        assert (answer.status_code, body["code"]) == (503, "server_busy"), answer.text
        assert answer.headers["retry-after"] == "1"
        assert "OVERNIGHT_PREDICT_CONCURRENCY" in body["error"]
    served = {a.json()["receipt_id"] for a in answers if a.status_code == 200}
    assert len(served) == limit
    assert {r["receipt_id"] for r in receipts} == served  # the refused ones left no receipt


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotency-key"])
def test_a_queued_predict_whose_caller_left_is_dropped_not_run(db_url: str, idempotent: bool) -> None:
    """A caller that gives up (its timeout, a closed connection) while its predict waits for a slot is not served
    later: the predict is dropped as soon as the server sees the disconnect — no LM call, no receipt, no sample on a
    canary arm — instead of running when a slot frees up, up to the queue timeout later."""
    row = holdout()[0]
    with (gated_server(db_url, predict_concurrency=1, predict_queue_timeout_s=30) as (server, gate),
          server.client(token=SERVE_TOKEN) as holder, server.client() as admin, ThreadPoolExecutor(1) as pool):
        first = pool.submit(predict, holder, row, "holds-the-slot", labeled=False)
        assert wait_for(lambda: gate.in_flight == 1)
        headers = {"Idempotency-Key": "leaves-1"} if idempotent else {}
        with httpx.Client(base_url=server.base_url, headers={**headers, **auth(SERVE_TOKEN)}, timeout=0.5) as leaver, \
                pytest.raises(httpx.ReadTimeout):
            leaver.post(f"/api/v1/signatures/{SIG}/predict", json={"input": row["input"], "request_key": "leaves"})
        time.sleep(1.0)  # the server polls for the disconnect while the predict waits
        gate.opened.set()
        assert first.result().status_code == 200
        time.sleep(1.0)  # time for the dropped predict to reach the LM, were it run after all
        receipts = admin.get("/api/v1/receipts", params={"signature": SIG}).json()["receipts"]
    assert gate.calls == 1, f"the LM was called {gate.calls} times: the abandoned predict ran"
    assert [r["request_key"] for r in receipts] == ["holds-the-slot"]


@pytest.mark.parametrize(("name", "value"), [("predict_concurrency", "0"), ("predict_concurrency", "many"),
                                           ("predict_concurrency", "5000"), ("predict_queue_timeout_s", "0"),
                                           ("predict_queue_timeout_s", "-1"), ("predict_queue_timeout_s", "soon")])
def test_a_bad_predict_concurrency_or_queue_timeout_is_refused_by_name(name: str, value: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"OVERNIGHT_{name.upper()}", value)
    with pytest.raises(ValidationError, match=name):
        Settings()
