"""Event append throughput: the store alone, and over HTTP with concurrent appenders.

    make bench-events                       # SQLite in a temporary directory
    OVERNIGHT_BENCH_PG_URL=postgresql+psycopg://… make bench-events   # PostgreSQL too

Prints events per second. The physical limit for the store figure is one write transaction per event (SQLite:
one writer at a time; PostgreSQL: one row lock per run); over HTTP, the server's per-request CPU on 2 cores.
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from figures import record  # benchmarks/ is on sys.path when a script runs

from overnight.api.app import create_app
from overnight.api.embedded import embedded_server
from overnight.config import Settings
from overnight.domain.runs import EventIn, FinishRun, RunStart
from overnight.logging import configure_logging
from overnight.store import SqlStore, build_store

TOKEN = "bench-" + "B" * 40
STORE_EVENTS, HTTP_EVENTS, APPENDERS = 5000, 4000, 20
FINISHED = FinishRun(status="succeeded", summary={"status": "succeeded", "verdict": "benchmark"})


def settings(db_url: str) -> Settings:
    return Settings(db_url=db_url, tokens=f"bench:admin:{TOKEN}", max_events_per_run=100_000,
                    log_level="warning", log_format="json")


def bench_store(store: SqlStore) -> float:
    started_run = store.start_run(request=RunStart(signature_ids=["bench.store"]), actor="bench", default_lease_s=600)
    run_id = started_run.run.run_id
    try:
        started = time.perf_counter()
        for n in range(STORE_EVENTS):
            store.append_event(run_id=run_id, event=EventIn(kind="bench.event", phase="bench", data={"n": n}))
        return STORE_EVENTS / (time.perf_counter() - started)
    finally:  # ends the run, so that its lease does not hold the signature against the next `make bench`
        store.finish_run(run_id=run_id, finish=FINISHED, actor="bench")


def bench_http(store: SqlStore, config: Settings) -> float:
    with embedded_server(create_app(config, store)) as base:
        return _drive(base)


def _drive(base: str) -> float:
    headers = {"authorization": f"Bearer {TOKEN}"}
    start = httpx.post(f"{base}/api/v1/runs", json={"signature_ids": ["SelectTool.v1"]}, headers=headers)
    run_id = start.json()["run"]["run_id"]

    def appender(worker: int) -> None:
        with httpx.Client(base_url=base, headers=headers) as client:
            for n in range(HTTP_EVENTS // APPENDERS):
                client.post(f"/api/v1/runs/{run_id}/events", json={
                    "kind": "bench.event", "phase": "bench", "client_event_id": f"{worker}-{n}"}).raise_for_status()

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(APPENDERS) as pool:
            list(pool.map(appender, range(APPENDERS)))
        return HTTP_EVENTS / (time.perf_counter() - started)
    finally:
        httpx.post(f"{base}/api/v1/runs/{run_id}/finish", json=FINISHED.model_dump(), headers=headers)


def main() -> None:
    configure_logging(fmt="json", level="warning")
    targets = {"sqlite": f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"}
    if os.environ.get("OVERNIGHT_BENCH_PG_URL"):
        targets["postgresql"] = os.environ["OVERNIGHT_BENCH_PG_URL"]
    print(f"{'store':<12}{'store appends/s':>18}{'HTTP appends/s':>18}  ({APPENDERS} concurrent HTTP appenders)")
    for name, url in targets.items():
        config = settings(url)
        store = build_store(config)
        try:
            direct, http = bench_store(store), bench_http(store, config)
            print(f"{name:<12}{direct:>18,.0f}{http:>18,.0f}")
            record("events", f"appends/s, store alone ({name})", direct, "/s")
            record("events", f"appends/s, HTTP x{APPENDERS} ({name})", http, "/s")
        finally:
            store.close()


if __name__ == "__main__":
    main()
