"""Shared steps for the serving tests: a compiled signature, and exerciser traffic over real HTTP."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.factories import FAIR_SPLIT_P

ROOT = Path(__file__).resolve().parents[2]
SIG = "SelectTool.v1"
NDJSON = {"content-type": "application/x-ndjson"}
# Variant 1 with 4 demos is truly better than the default (0.55); variant 2 errors 30% of the time.
TRUTH = "sim:seed=1,instr=0.55/0.8/0.6,ierr=0/0/0.3,demos=0:0/4:0.1/8:0.05"
FAIR_SPLIT = {"srm_threshold_p": FAIR_SPLIT_P}  # the split itself is checked in test_replicas


def holdout() -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (ROOT / "datasets" / "selecttool.v1.jsonl").read_text().splitlines()]
    return [row for row in rows if row["split"] == "holdout"]


def compiled(client: httpx.Client) -> dict[str, Any]:
    """Import the SelectTool dataset and compile it; returns the report."""
    client.post(f"/api/v1/signatures/{SIG}/examples:import", headers=NDJSON,
                content=(ROOT / "datasets" / "selecttool.v1.jsonl").read_bytes()).raise_for_status()
    report = client.post(f"/api/v1/signatures/{SIG}/compile", json={})
    report.raise_for_status()
    body: dict[str, Any] = report.json()
    return body


def candidate_with(report: dict[str, Any], *, instruction_index: int, demo_count: int) -> str:
    found: str = next(c["compiled_id"] for c in report["candidates"]
                      if c["params"].get("instruction_index") == instruction_index
                      and c["params"].get("demo_count") == demo_count)
    return found


def predict(client: httpx.Client, row: dict[str, Any], key: str, *, labeled: bool = True) -> httpx.Response:
    body: dict[str, Any] = {"input": row["input"], "request_key": key}
    if labeled:
        body["expected"] = row["expected"]
    return client.post(f"/api/v1/signatures/{SIG}/predict", json=body)


def drive(client: httpx.Client, count: int, *, prefix: str, workers: int = 8, start: int = 0) -> list[httpx.Response]:
    """`count` labeled exerciser requests over the holdout inputs, each with its own request key."""
    rows = holdout()
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda i: predict(client, rows[i % len(rows)], f"{prefix}-{i}"),
                             range(start, start + count)))


def drive_until_decided(app: httpx.Client, reader: httpx.Client, *, prefix: str, limit: int = 4000,
                        batch: int = 100) -> dict[str, Any]:
    """Exerciser traffic in batches until the canary is no longer active; returns the canary view."""
    sent = 0
    while sent < limit:
        drive(app, batch, prefix=prefix, start=sent)
        sent += batch
        view: dict[str, Any] = reader.get(f"/api/v1/signatures/{SIG}/canary").json()
        if view["canary"]["status"] != "active":
            return view
    raise AssertionError(f"canary still active after {limit} requests")
