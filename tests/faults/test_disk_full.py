"""The SQLite store's disk fills up under a real `overnight serve` (the database lives on a 3 MB tmpfs): writes
answer 503 `store_unavailable` in the one error shape, reads still work, nothing is half-written, and once the
disk has room again the server carries on. Needs root (to mount the tmpfs): CI runs as root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from tests.factories import serve_process

DATASET = Path(__file__).resolve().parents[2] / "datasets" / "selecttool.v1.jsonl"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_503_store_unavailable_and_nothing_is_half_written(small_disk: Path, tmp_path: Path,
                                                                         request: pytest.FixtureRequest) -> None:
    shutil.copy(request.getfixturevalue("_sqlite_template"), small_disk / "overnight.db")
    url = f"sqlite:///{small_disk / 'overnight.db'}"
    acked, attempted, full = [], [], None
    with serve_process(url, tmp_path / "serve.log", OVERNIGHT_MAX_EVENTS_PER_RUN="100000") as server, \
            server.client() as http:
        assert http.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"], "run_id": "full"}).status_code \
            == 201
        for i in range(2000):
            event_id = f"e{i}"
            attempted.append(event_id)
            answer = http.post("/api/v1/runs/full/events", json={
                "kind": "traffic.batch", "phase": "traffic", "message": f"{i:05d}" + "x" * 3000,
                "client_event_id": event_id})
            if answer.status_code != 201:
                full = answer
                break
            acked.append(event_id)
        assert full is not None, "the disk never filled"
        body = full.json()
        assert (full.status_code, body["code"], body["ok"]) == (503, "store_unavailable", False)
        assert full.headers["retry-after"] == "1"
        imported = http.post("/api/v1/signatures/SelectTool.v1/examples:import", content=DATASET.read_bytes(),
                             headers={"content-type": "application/x-ndjson"})
        assert (imported.status_code, imported.json()["code"]) == (503, "store_unavailable")
        assert http.get("/api/v1/signatures/SelectTool.v1/examples").json()["examples"] == []  # reads work
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # room again
        again = http.post("/api/v1/runs/full/events", json={"kind": "traffic.batch", "phase": "traffic",
                                                            "client_event_id": "after"})
        assert again.status_code == 201, again.text
        events, after = [], 0
        while page := http.get("/api/v1/runs/full/events", params={"after_seq": after, "limit": 1000}).json()[
                "events"]:
            events += page
            after = page[-1]["seq"]
    stored = [e["client_event_id"] for e in events if e["kind"] == "traffic.batch"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert stored == [*acked, "after"]  # every 2xx, in order; the refused append left nothing behind
    assert all(e["message"] == f"{i:05d}" + "x" * 3000 for i, e in enumerate(events[1:-1]))
    assert '"status": 500' not in (tmp_path / "serve.log").read_text(encoding="utf-8")


def test_on_a_full_disk_the_prune_is_refused_until_there_is_a_little_room(small_disk: Path,
                                                                          request: pytest.FixtureRequest) -> None:
    """What the runbook tells an operator whose disk filled with receipts: the prune cannot run on a full disk (a
    delete is written to the WAL first), says so, and deletes every old receipt once there is a little room."""
    from overnight.errors import StoreUnavailable  # noqa: PLC0415
    from tests.factories import SteppingClock, make_store  # noqa: PLC0415
    from tests.store.test_prune import DAY_S, champion_receipt  # noqa: PLC0415
    from tests.test_cli import overnight  # noqa: PLC0415

    shutil.copy(request.getfixturevalue("_sqlite_template"), small_disk / "overnight.db")
    store = make_store(f"sqlite:///{small_disk / 'overnight.db'}",
                       SteppingClock(now=int(time.time() * 1000) - 40 * DAY_S * 1000))  # 40 days ago
    written = 0
    with suppress(StoreUnavailable):  # written until the disk is full
        while written < 100_000:
            store.record_receipt(receipt=champion_receipt(f"r{written:06d}-" + "x" * 200))
            written += 1
    store.close()
    assert 10 < written < 100_000

    refused = overnight("db", "prune", "--keep-days", "30", db=small_disk / "overnight.db")
    assert refused.returncode == 1
    assert "the database said: database or disk is full" in refused.stderr
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)  # a little room
    pruned = overnight("db", "prune", "--keep-days", "30", "--json", db=small_disk / "overnight.db")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["receipts"] == written  # every one that was written; the refused one was not
