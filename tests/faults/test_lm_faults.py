"""A real `overnight serve` using a remote LM (`overnight fake-llm` on loopback) that answers 5xx, times out,
hangs past the client's timeout and returns garbage: compile records the failed examples and completes (or
stops on its budget); during a canary the failures are counted as errors on the candidate's arm and the gates
roll it back; a call that never answers is ended by the LM timeout. Real processes, real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.factories import ADMIN_TOKEN, serve_process
from tests.lm.test_remote import fake_llm
from tests.runner.helpers import SELECT, overnight_run

FAILURES = {"lm_error", "parse_failure", "timeout"}
# Instruction variant 1 is the best answerer but fails 30% of its calls (a 500, a 504 or unparsable text); in
# compile the others fail 5% of theirs too. In the canary the control (the default, variant 0) never fails, so
# the end-to-end check after the rollback is clean.
FLAKY = "seed=3,instr=0.3/1/0.3,ierr=0.05/0.3/0.05,errors=raise/timeout/garbage,demos=0:0/4:0/8:0"
FLAKY_CANDIDATE = "seed=3,instr=0.3/1/0.3,ierr=0/0.3/0,errors=raise/timeout/garbage,demos=0:0/4:0/8:0"


def remote(base: str) -> dict[str, str]:
    return {"OVERNIGHT_LM": "openai/sim", "OVERNIGHT_LM_API_BASE": base, "OVERNIGHT_LM_API_KEY": "sk-fake",
            "OVERNIGHT_LM_RETRIES": "0", "OVERNIGHT_LM_TIMEOUT_S": "10"}


def test_compile_records_failed_examples_and_completes_or_stops_on_budget(db_url: str, tmp_path: Path) -> None:
    with fake_llm(FLAKY, tmp_path) as base, \
            serve_process(db_url, tmp_path / "serve.log", **remote(base)) as server, \
            server.client() as http:
        imported = http.post("/api/v1/signatures/SelectTool.v1/examples:import", content=SELECT.read_bytes(),
                             headers={"content-type": "application/x-ndjson"})
        assert imported.status_code == 200, imported.text
        capped = http.post("/api/v1/signatures/SelectTool.v1/compile", json={"max_lm_calls": 40, "seed": 1},
                           timeout=600)
        full = http.post("/api/v1/signatures/SelectTool.v1/compile", json={"seed": 0}, timeout=600)
    assert capped.status_code == 200, capped.text
    assert capped.json()["status"] == "budget_exhausted"
    assert capped.json()["lm_calls"] <= 40
    assert full.status_code == 200, full.text
    report = full.json()
    assert report["status"] == "completed"
    best = next(c for c in report["candidates"] if c["compiled_id"] == report["best_compiled_id"])
    assert best["params"]["instruction_index"] == 1  # still the best answerer, failures and all
    failed = set(_failed_codes(db_url, report))
    assert failed == FAILURES  # every kind of failure was met, recorded per example, and scored as wrong
    log = (tmp_path / "serve.log").read_text(encoding="utf-8")
    assert "sk-fake" not in log
    assert '"status": 500' not in log


def _failed_codes(db_url: str, report: dict[str, object]) -> list[str]:
    from tests.factories import make_store  # noqa: PLC0415

    store = make_store(db_url)
    try:
        lm_id = "remote:openai/sim|temperature=0,max_tokens=256"
        codes = []
        for candidate in report["candidates"]:  # type: ignore[attr-defined]
            for result in store.get_results(compiled_id=candidate["compiled_id"], lm_id=lm_id).values():
                if not result.ok:
                    assert result.correct in (None, False)
                    codes.append(str(result.error_code))
        return codes
    finally:
        store.close()


def test_canary_failures_are_errors_on_the_candidate_arm_and_it_is_rolled_back(db_url: str, tmp_path: Path) -> None:
    with fake_llm(FLAKY_CANDIDATE, tmp_path) as base, \
            serve_process(db_url, tmp_path / "serve.log", **remote(base)) as server:
        code, summary, stderr = overnight_run(db_url, "unused", "--base-url", server.base_url, "--steps", "50",
                                              "--dataset", str(SELECT), timeout=600,
                                              OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert code == 3, (summary, stderr[-3000:])
        result = summary["signatures"]["SelectTool.v1"]
        assert result["decision"] == "rolled_back"
        with server.client() as http:
            view = http.get("/api/v1/signatures/SelectTool.v1/canary").json()
            receipts = _receipts(http, view["canary"]["canary_id"])
            champion = http.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()["champion_id"]
    assert view["canary"]["status"] == "failed"
    by_arm = {arm: [r for r in receipts if r["arm"] == arm] for arm in ("control", "candidate")}
    for arm, counters in view["canary"]["arms"].items():
        assert counters["samples"] == len(by_arm[arm])
        assert counters["errors"] == sum(not r["ok"] for r in by_arm[arm])
    # Which kinds of failure the candidate met before the gates decided depends on which requests the split sent
    # it (one kind alone happens: CI once saw only `parse_failure`); each kind's code is pinned in
    # tests/lm/test_remote.py. Here: every failure is an error on the candidate's arm, and only there.
    candidate_codes = {r["error_code"] for r in by_arm["candidate"] if not r["ok"]}
    assert candidate_codes
    assert candidate_codes <= FAILURES
    assert view["canary"]["arms"]["control"]["errors"] == 0  # the control's instructions never fail
    assert champion is None  # nothing was promoted
    assert json.dumps(summary).count("sk-fake") == 0


def _receipts(http: httpx.Client, canary_id: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    after = None
    while True:
        page = http.get("/api/v1/receipts", params={"canary": canary_id, "limit": 1000,
                                                    **({"after": after} if after else {})}).json()
        batch = page["receipts"]
        found += batch
        if len(batch) < 1000:
            return found
        after = batch[-1]["receipt_id"]


def test_an_lm_that_never_answers_is_cut_off_by_the_client_timeout_and_counted(db_url: str, tmp_path: Path) -> None:
    """The fake holds every call open for an hour; the server's 2 s LM timeout ends each one as a counted
    `timeout` (a 502 to the caller with its receipt), and the server keeps answering."""
    row = json.loads(SELECT.read_text(encoding="utf-8").splitlines()[0])
    with fake_llm("seed=3,err=1,errors=hang", tmp_path) as base, \
            serve_process(db_url, tmp_path / "serve.log", **remote(base) | {"OVERNIGHT_LM_TIMEOUT_S": "2"}) as server, \
            server.client() as http:
        answers = [http.post("/api/v1/signatures/SelectTool.v1/predict", json={"input": row["input"]}, timeout=120)
                   for _ in range(2)]
        receipts = [http.get(f"/api/v1/receipts/{a.json()['details']['receipt_id']}").json() for a in answers]
        healthy = http.get("/readyz")
    assert [a.status_code for a in answers] == [502, 502]
    assert {a.json()["code"] for a in answers} == {"lm_call_failed"}
    assert [(r["ok"], r["error_code"]) for r in receipts] == [(False, "timeout"), (False, "timeout")]
    assert all(1500 <= r["latency_ms"] < 60_000 for r in receipts)  # ended by the timeout, not by an answer
    assert healthy.status_code == 200
