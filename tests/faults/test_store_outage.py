"""PostgreSQL going away under a real `overnight serve` (a TCP proxy between them is cut, then restored):
every request in the outage is a 503 `store_unavailable` in the one error shape, `/readyz` says so, nothing is
half-written, and the server carries on by itself once the database is back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from overnight.domain.runs import RunStart
from tests.factories import make_store, serve_process
from tests.faults.proxy import cuttable

DATASET = Path(__file__).resolve().parents[2] / "datasets" / "selecttool.v1.jsonl"


def appender(http: httpx.Client, acked: set[str], attempted: set[str], statuses: list[int],
             stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        event_id = f"e{i}"
        attempted.add(event_id)
        answer = http.post("/api/v1/runs/outage/events",
                           json={"kind": "traffic.batch", "phase": "traffic", "client_event_id": event_id})
        statuses.append(answer.status_code)
        if answer.status_code in (200, 201):
            acked.add(event_id)
        else:
            body = answer.json()
            assert (answer.status_code, body["code"], body["ok"]) == (503, "store_unavailable", False), body
            assert answer.headers["retry-after"] == "1"
        i += 1


def wait_ready(http: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the server did not recover after the database came back"
        time.sleep(0.2)


def test_a_database_outage_is_503_store_unavailable_and_nothing_is_half_written(postgres_db_url: str,
                                                                                tmp_path: Path) -> None:
    url = make_url(postgres_db_url)
    store = make_store(postgres_db_url)
    store.start_run(request=RunStart(run_id="outage", signature_ids=["SelectTool.v1"]), actor="ops-agent",
                    default_lease_s=3600)
    store.close()
    with cuttable(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with serve_process(proxied, tmp_path / "serve.log") as server, server.client() as http:
            acked: set[str] = set()
            attempted: set[str] = set()
            statuses: list[int] = []
            stop = threading.Event()
            worker = threading.Thread(target=appender, args=(http, acked, attempted, statuses, stop))
            worker.start()
            while len(acked) < 50:
                time.sleep(0.01)
            proxy.cut()
            time.sleep(1.0)
            ready = http.get("/readyz")
            imported = http.post("/api/v1/signatures/SelectTool.v1/examples:import", content=DATASET.read_bytes(),
                                 headers={"content-type": "application/x-ndjson"})
            keyed = http.post("/api/v1/runs/outage/heartbeat", headers={"idempotency-key": "beat-in-outage"})
            proxy.restore()
            wait_ready(http)
            time.sleep(0.5)
            stop.set()
            worker.join(timeout=30)
            assert (ready.status_code, ready.json()["code"]) == (503, "store_unavailable")
            assert (imported.status_code, imported.json()["code"]) == (503, "store_unavailable")
            # refused by the Idempotency-Key middleware (its claim needs the store), rendered outside the routes
            assert (keyed.status_code, keyed.json()["code"]) == (503, "store_unavailable")
            assert [each.headers["retry-after"] for each in (ready, imported, keyed)] == ["1", "1", "1"]
            assert 503 in statuses  # the appender saw the outage …
            assert statuses[-1] in (200, 201)  # … and the server carried on after it
            events = http.get("/api/v1/runs/outage/events", params={"limit": 1000}).json()["events"]
            examples = http.get("/api/v1/signatures/SelectTool.v1/examples").json()["examples"]
    stored = [e["client_event_id"] for e in events if e["kind"] == "traffic.batch"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len(stored) == len(set(stored))
    assert acked <= set(stored) <= attempted
    assert examples == []  # the import in the outage wrote nothing: all or nothing
    log = (tmp_path / "serve.log").read_text(encoding="utf-8")
    assert "store_unavailable" in log
    assert '"status": 500' not in log
