"""`overnight serve` SIGKILLed in the middle of a burst of event appends from several clients, then started
again on the same store: every append that was answered 2xx is there, nothing was written twice or torn, the
seqs are 1..N with no gap, and nothing is there that no client sent."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from overnight.domain.runs import RunStart
from tests.factories import make_store, serve_process

CLIENTS, PER_CLIENT = 6, 400


def burst(base_url: str, token_header: dict[str, str], client: int, acked: set[str], attempted: set[str],
          stop: threading.Event) -> None:
    with httpx.Client(base_url=base_url, headers=token_header, timeout=5) as http:
        for i in range(PER_CLIENT):
            if stop.is_set():
                return
            event_id = f"c{client}-{i}"
            attempted.add(event_id)
            try:
                answer = http.post("/api/v1/runs/burst/events", json={
                    "kind": "traffic.batch", "phase": "traffic", "message": f"{event_id} " + "x" * 200,
                    "data": {"client": client, "i": i}, "client_event_id": event_id})
            except httpx.TransportError:
                return  # the server is gone: this append's fate is unknown, which the test allows
            if answer.status_code in (200, 201):
                acked.add(event_id)


def test_every_acknowledged_append_survives_a_sigkill(db_url: str, tmp_path: Path) -> None:
    store = make_store(db_url)
    store.start_run(request=RunStart(run_id="burst", signature_ids=["SelectTool.v1"]), actor="ops-agent",
                    default_lease_s=3600)
    store.close()
    acked: set[str] = set()
    attempted: set[str] = set()
    stop = threading.Event()
    with serve_process(db_url, tmp_path / "serve-1.log", OVERNIGHT_MAX_EVENTS_PER_RUN="100000") as server:
        headers = {"authorization": server.client().headers["authorization"]}
        threads = [threading.Thread(target=burst, args=(server.base_url, headers, c, acked, attempted, stop))
                   for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.process.send_signal(signal.SIGKILL)  # mid-burst: appends are in flight on every client
        server.process.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert 300 <= len(acked) < CLIENTS * PER_CLIENT  # it really died mid-burst
    with serve_process(db_url, tmp_path / "serve-2.log", OVERNIGHT_MAX_EVENTS_PER_RUN="100000") as server, \
            server.client() as http:
        events, after = [], 0
        while page := http.get("/api/v1/runs/burst/events", params={"after_seq": after, "limit": 1000}).json()[
                "events"]:
            events += page
            after = page[-1]["seq"]
        run = http.get("/api/v1/runs/burst").json()
    stored = [e["client_event_id"] for e in events if e["kind"] == "traffic.batch"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # gapless
    assert run["event_count"] == len(events)
    assert len(stored) == len(set(stored))  # nothing twice
    assert acked <= set(stored)  # every 2xx is there …
    assert set(stored) <= attempted  # … and nothing no client sent
    for event in events:
        if event["kind"] == "traffic.batch":  # nothing torn: each stored event is whole
            client, i = event["data"]["client"], event["data"]["i"]
            assert event["client_event_id"] == f"c{client}-{i}"
            assert event["message"] == f"c{client}-{i} " + "x" * 200
