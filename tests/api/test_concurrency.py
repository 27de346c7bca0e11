"""Concurrency proofs against `overnight serve` in its own process, on SQLite and PostgreSQL.

50 appenders post 10,000 events to one run: none lost, none duplicated, `seq` gapless, the bound enforced with
exactly one truncation marker. Concurrent starts for one signature: exactly one run holds it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.factories import ServeProcess, serve_process

APPENDERS, PER_APPENDER, BOUND = 50, 200, 5000


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[ServeProcess]:
    with serve_process(db_url, tmp_path / "serve.log", OVERNIGHT_LOG_LEVEL="warning") as server:
        yield server


def test_50_concurrent_appenders_lose_nothing_and_duplicate_nothing(served: ServeProcess) -> None:
    with served.client() as client:
        run_id = client.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"]}).json()["run"]["run_id"]
    barrier = threading.Barrier(APPENDERS)

    def appender(worker: int) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        with served.client() as client:
            barrier.wait()
            for n in range(PER_APPENDER):
                event_id = f"w{worker}-e{n}"
                body = {"kind": "traffic.sent", "phase": "traffic", "client_event_id": event_id, "data": {"n": n}}
                response = client.post(f"/api/v1/runs/{run_id}/events", json=body)
                outcomes[f"{response.status_code}:{response.json().get('code', 'ok')}"] += 1
                if response.status_code == 201:
                    outcomes[f"accepted:{event_id}"] += 1
        return outcomes

    with ThreadPoolExecutor(APPENDERS) as pool:
        total = sum(pool.map(appender, range(APPENDERS)), Counter())

    with served.client() as client:
        events: list[dict[str, Any]] = []
        while page := client.get(f"/api/v1/runs/{run_id}/events",
                                 params={"after_seq": events[-1]["seq"] if events else 0, "limit": 1000}
                                 ).json()["events"]:
            events += page
    accepted = {key.split(":", 1)[1] for key in total if key.startswith("accepted:")}
    stored = [e["client_event_id"] for e in events if e["client_event_id"] is not None]

    assert total["201:ok"] + total["409:event_limit_reached"] == APPENDERS * PER_APPENDER
    assert total["201:ok"] == BOUND - 1  # run.started holds the first of the BOUND slots
    assert sorted(stored) == sorted(accepted)  # every 2xx is stored, once; nothing else is
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["kind"] for e in events].count("events_truncated") == 1
    assert events[-1]["kind"] == "events_truncated"
    assert len(events) == BOUND + 1


def test_concurrent_starts_for_one_signature_one_runs_the_rest_are_locked(served: ServeProcess) -> None:
    contenders = 12
    barrier = threading.Barrier(contenders)

    def contender(_: int) -> tuple[int, str]:
        with served.client() as client:
            barrier.wait()
            response = client.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"]})
            return response.status_code, response.json().get("code", "started")

    with ThreadPoolExecutor(contenders) as pool:
        outcomes = sorted(pool.map(contender, range(contenders)))
    assert outcomes == [(201, "started")] + [(409, "run_locked")] * (contenders - 1)
    with served.client() as client:
        running = client.get("/api/v1/runs", params={"status": "running"}).json()["runs"]
    assert len(running) == 1
