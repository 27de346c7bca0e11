"""Compile, reports and artifacts over real HTTP, with the simulator as the configured LM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import READ_TOKEN, LiveServer, SteppingClock, live_server

ROOT = Path(__file__).resolve().parents[2]
TRUTH = "sim:seed=1,instr=0.55/0.8/0.6,demos=0:0/4:0.1/8:0.05"
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
def api(db_url: str, clock: SteppingClock) -> Iterator[LiveServer]:
    with live_server(db_url, clock=clock, lm=TRUTH) as server:
        yield server


def test_compile_over_http_then_cached_then_read_back(api: LiveServer) -> None:
    with api.client() as client:
        run_id = client.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"]}).json()["run"]["run_id"]
        client.post("/api/v1/signatures/SelectTool.v1/examples:import", headers=NDJSON,
                    content=(ROOT / "datasets" / "selecttool.v1.jsonl").read_bytes()).raise_for_status()
        first = client.post("/api/v1/signatures/SelectTool.v1/compile", json={"run_id": run_id})
        again = client.post("/api/v1/signatures/SelectTool.v1/compile", json={})
        report = client.get(f"/api/v1/compile-reports/{first.json()['report_id']}").json()
        best = client.get(f"/api/v1/artifacts/{report['best_compiled_id']}").json()
        diff = client.get(f"/api/v1/artifacts/{report['incumbent_compiled_id']}/diff/{report['best_compiled_id']}")
        events = client.get(f"/api/v1/runs/{run_id}/events").json()["events"]
    assert first.status_code == 200, first.text
    assert first.json()["cached"] is False
    assert again.json()["cached"] is True
    assert again.json()["report_id"] == first.json()["report_id"]
    assert report["improved"] is True
    assert best["params"]["instruction_index"] == 1
    assert best["state"]["signature"]["instructions"].startswith("You route requests")
    assert len(best["state"]["demos"]) == 4
    body = diff.json()
    assert any(line.startswith("+You route requests") for line in body["instructions_diff"])
    assert len(body["demos_added"]) == 4
    assert body["demos_removed"] == []
    assert [e["kind"] for e in events][-1] == "compile.report"
    assert events[-1]["data"]["report_id"] == first.json()["report_id"]


def test_short_ids_and_the_default_beside_a_program_are_found_as_on_the_store(api: LiveServer) -> None:
    """What a client without the store resolves `overnight diff default 7bedaebd3fa9` with."""
    with api.client() as client:
        client.post("/api/v1/signatures/SelectTool.v1/examples:import", headers=NDJSON,
                    content=(ROOT / "datasets" / "selecttool.v1.jsonl").read_bytes()).raise_for_status()
        report = client.post("/api/v1/signatures/SelectTool.v1/compile", json={}).json()
    best = report["best_compiled_id"]
    default = next(c["compiled_id"] for c in report["candidates"] if c["is_default"])
    stored = sorted(c["compiled_id"] for c in report["candidates"])
    with api.client(token=READ_TOKEN) as reader:
        assert reader.get("/api/v1/artifacts", params={"prefix": best[:12]}).json() == {"compiled_ids": [best]}
        assert reader.get("/api/v1/artifacts", params={"prefix": best}).json() == {"compiled_ids": [best]}
        assert reader.get("/api/v1/artifacts", params={"prefix": "f" * 40}).json() == {"compiled_ids": []}
        assert [reader.get("/api/v1/artifacts", params={"prefix": i[:6], "limit": 100}).json()["compiled_ids"]
                for i in stored] == [[j for j in stored if j.startswith(i[:6])] for i in stored]
        beside = reader.get(f"/api/v1/artifacts/{best}/default")
        assert beside.json()["compiled_id"] == default, beside.text
        for refused in ({"prefix": best[:5]}, {"prefix": best[:12].upper()}, {}, {"prefix": best[:12], "limit": 0}):
            answer = reader.get("/api/v1/artifacts", params=refused)
            assert (answer.status_code, answer.json()["code"]) == (422, "validation_error"), refused
        unnamed = reader.get(f"/api/v1/artifacts/{'a' * 64}/default")
    assert (unnamed.status_code, unnamed.json()["code"]) == (404, "artifact_not_found")


def test_compile_errors(api: LiveServer) -> None:
    with api.client() as client:
        not_ready = client.post("/api/v1/signatures/SelectTool.v1/compile", json={})
        unknown = client.post("/api/v1/signatures/Nope.v1/compile", json={})
        bad_budget = client.post("/api/v1/signatures/SelectTool.v1/compile", json={"max_lm_calls": 0})
        bad_time = client.post("/api/v1/signatures/SelectTool.v1/compile", json={"max_seconds": -1})
        unknown_field = client.post("/api/v1/signatures/SelectTool.v1/compile", json={"max_minutes": 5})
        no_report = client.get("/api/v1/compile-reports/cr-nothing")
        no_artifact = client.get(f"/api/v1/artifacts/{'a' * 64}")
        bad_id = client.get("/api/v1/artifacts/not-a-hash")
        no_run = client.post("/api/v1/signatures/SelectTool.v1/compile", json={"run_id": "no-such-run"})
    with api.client(token=None) as anonymous:
        forbidden = anonymous.post("/api/v1/signatures/SelectTool.v1/compile", json={})
    assert (not_ready.status_code, not_ready.json()["code"]) == (409, "dataset_not_ready")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "signature_not_found")
    assert bad_budget.json()["details"]["errors"][0]["field"] == "body.max_lm_calls"
    assert bad_time.json()["details"]["errors"][0]["field"] == "body.max_seconds"
    # How an API refuses a field it does not know: the runner's preflight tells an older API by it (test_faults).
    assert [{k: e[k] for k in ("field", "type")} for e in unknown_field.json()["details"]["errors"]] == [
        {"field": "body.max_minutes", "type": "extra_forbidden"}]
    assert (no_report.status_code, no_report.json()["code"]) == (404, "compile_report_not_found")
    assert (no_artifact.status_code, no_artifact.json()["code"]) == (404, "artifact_not_found")
    assert bad_id.status_code == 422
    assert no_run.json()["code"] == "run_not_found"
    assert forbidden.status_code == 401
