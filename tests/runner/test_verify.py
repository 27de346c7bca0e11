"""`overnight run --verify CMD`: a command the night must pass first. One that cannot run is the operator's mistake
(exit 2, nothing started); one that fails or outlives the run's deadline fails the run, its output on the record."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx

from tests.api.test_review_pages import signed_in
from tests.factories import live_server
from tests.runner.helpers import BETTER, SELECT, TRIAGE, overnight_run
from tests.runner.test_runner import overnight_show


def _runs(db_url: str) -> list[dict[str, object]]:
    with live_server(db_url) as server, server.client() as api:
        return list(api.get("/api/v1/runs").json()["runs"])


def _events(db_url: str, run_id: str) -> list[dict[str, object]]:
    with live_server(db_url) as server, server.client() as api:
        answer: httpx.Response = api.get(f"/api/v1/runs/{run_id}/events", params={"limit": 1000})
        return list(answer.json()["events"])


def test_a_verify_command_that_cannot_be_parsed_is_a_usage_error_and_makes_no_store(tmp_path: Path) -> None:
    db = tmp_path / "overnight.db"
    code, summary, stderr = overnight_run(f"sqlite:///{db}", BETTER, "--dataset", str(SELECT),
                                          "--verify", "echo 'unclosed")
    assert code == 2, stderr[-2000:]
    assert summary["code"] == "config_error"  # a usage error: no run summary; with --json the error object
    assert "--verify \"echo 'unclosed\"" in stderr
    assert "no closing quotation" in stderr.lower()
    assert "Traceback" not in stderr
    assert not db.exists()


def test_a_verify_command_that_is_not_there_fails_the_preflight_and_runs_nothing(db_url: str) -> None:
    code, summary, stderr = overnight_run(db_url, BETTER, "--dataset", str(SELECT),
                                          "--verify", "true", "--verify", "no-such-check-xyz --fast")
    assert code == 2, stderr[-2000:]
    assert summary["verdict"].startswith("preflight failed: config_error: --verify 'no-such-check-xyz --fast': ")
    assert "no-such-check-xyz is not a program on PATH" in summary["verdict"]
    assert [(r["run_id"], r["status"]) for r in _runs(db_url)] == [(summary["run_id"], "failed")]
    kinds = [e["kind"] for e in _events(db_url, str(summary["run_id"]))]
    assert "preflight.failed" in kinds
    assert not any(kind.startswith("verify.") for kind in kinds)  # not even the command that is there


def test_a_failing_verify_command_fails_the_run_with_its_output_on_the_record(db_url: str) -> None:
    check = "sh -c 'echo collecting; echo 3 failed, 40 passed >&2; exit 5'"
    code, summary, stderr = overnight_run(db_url, BETTER, "--dataset", str(SELECT), "--verify", "true",
                                          "--verify", check)
    assert code == 1, stderr[-2000:]
    assert summary["status"] == "failed"
    assert summary["verdict"] == (f"failed: verify_failed: verify command exited 5: {check}; "
                                  "its output ends: 3 failed, 40 passed")
    events = _events(db_url, summary["run_id"])
    failed = [e for e in events if e["kind"] == "verify.failed"]
    assert len(failed) == 1
    assert failed[0]["level"] == "error"
    data = failed[0]["data"]
    assert isinstance(data, dict)
    assert data["code"] == "verify_failed"
    checks = data["details"]["checks"]
    assert [(c["command"], c["exit_code"]) for c in checks] == [("true", 0), (check, 5)]
    assert "collecting" in checks[1]["output_tail"]
    assert "3 failed, 40 passed" in checks[1]["output_tail"]
    assert not any(e["kind"] == "dataset.import.started" for e in events)  # the night stopped at verify
    shown = overnight_show(db_url, summary["run_id"])
    assert "failed after" in next(line for line in shown.splitlines() if "│ verify " in line)
    with live_server(db_url) as server, signed_in(server) as browser:
        page = browser.get(f"/review/runs/{summary['run_id']}").text
    row = re.search(r"<td>verify</td>.*?</tr>", page, re.S)
    assert row is not None
    assert "failed after" in row.group(0)


def test_a_verify_command_is_stopped_at_the_runs_deadline_with_what_it_started(db_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "still-running"
    check = f"sh -c 'sleep 41.7; touch {marker}'"
    begun = time.monotonic()
    code, summary, stderr = overnight_run(db_url, BETTER, "--dataset", str(SELECT), "--deadline", "3s",
                                          "--verify", check)
    took = time.monotonic() - begun
    assert code == 1, stderr[-2000:]
    assert summary["verdict"].startswith("failed: verify_failed: verify command did not finish within the run's "
                                         f"deadline (3 s), stopped: {check}")
    assert took < 40  # not waited out
    # the shell and the sleep it started were both stopped: nothing left to touch the marker
    left = subprocess.run(["pgrep", "-f", "sleep 41.7"], capture_output=True, text=True, check=False)
    assert left.stdout.strip() == ""
    assert not marker.exists()


def test_a_failed_step_whose_details_are_too_large_for_an_event_is_recorded_without_them(tmp_path: Path) -> None:
    """The `.failed` event carries the error's details (here the command's 2,000-character output tail) when they
    fit OVERNIGHT_MAX_EVENT_BYTES; past it, the error alone, rather than no record of the failed step."""
    db_url = f"sqlite:///{tmp_path / 'overnight.db'}"
    check = "sh -c 'head -c 3000 /dev/zero | tr \"\\0\" x; echo; echo the last line; exit 1'"
    code, summary, stderr = overnight_run(db_url, BETTER, "--dataset", str(SELECT), "--verify", check,
                                          OVERNIGHT_MAX_EVENT_BYTES="1024")
    assert code == 1, stderr[-2000:]
    assert summary["verdict"].endswith("its output ends: the last line")
    failed = [e for e in _events(db_url, summary["run_id"]) if e["kind"] == "verify.failed"]
    assert len(failed) == 1
    assert failed[0]["data"] == {"signature": "run", "code": "verify_failed",
                                 "error": summary["verdict"].removeprefix("failed: verify_failed: ")}


def test_a_compile_stops_at_the_runs_deadline_and_the_next_night_resumes_from_its_scores(db_url: str) -> None:
    """The compile starts no LM call past the run's deadline: the night ends the signature `inconclusive` without a
    canary (one opened after the deadline would be stopped at the traffic step's first look, after real requests had
    gone to the candidate for nothing), and the next night's compile reads back the scores this one paid for."""
    code, summary, stderr = overnight_run(db_url, BETTER + ",latency_ms=100", "--dataset", str(SELECT),
                                          "--deadline", "3s")
    assert code == 4, stderr[-2000:]
    result = summary["signatures"]["SelectTool.v1"]
    assert result["decision"] == "inconclusive"
    assert re.fullmatch(r"compile stopped at the run's deadline \(3 s\) after \d+ LM calls, before it could compare "
                        r"candidates on holdout; the champion stays, and the next compile resumes from the scores "
                        r"this one kept", result["reason"]), result["reason"]
    assert result["canary_id"] is None
    assert result["report_id"] is None  # a stopped compile stores no report
    events = _events(db_url, str(summary["run_id"]))
    report = next(e for e in events if e["kind"] == "compile.report")
    assert report["level"] == "warning"
    assert report["data"]["stopped_by"] == "max_seconds"  # type: ignore[index]
    assert re.fullmatch(r"SelectTool\.v1: budget_exhausted \(max_seconds [1-3]\) after \d+ LM calls, 9 candidates, "
                        r"best so far [0-9a-f]{12} on train: not compared on holdout, no report stored",
                        str(report["message"]))
    paid = int(re.search(r"after (\d+) LM calls", result["reason"]).group(1))  # type: ignore[union-attr]
    assert paid > 0
    with live_server(db_url) as server, server.client() as api:
        assert api.get("/api/v1/signatures/SelectTool.v1/canary").json()["code"] == "canary_not_found"
        assert api.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()["champion_id"] is None
    shown = overnight_show(db_url, str(summary["run_id"]))
    assert "compile stopped at the run's deadline (3 s)" in " ".join(shown.split())

    code, summary, stderr = overnight_run(db_url, BETTER + ",latency_ms=100")
    assert code == 0, stderr[-2000:]
    assert summary["signatures"]["SelectTool.v1"]["decision"] == "promoted"
    assert re.search(rf"\({paid} scores read back from earlier compiles\)", stderr), stderr[-3000:]


def test_a_signature_whose_turn_comes_after_the_deadline_makes_no_lm_call(db_url: str) -> None:
    code, summary, stderr = overnight_run(db_url, BETTER + ",latency_ms=100", "-s", "SelectTool.v1", "-s",
                                          "SupportTriage.v1", "--dataset", f"SelectTool.v1={SELECT}",
                                          "--dataset", f"SupportTriage.v1={TRIAGE}",
                                          "--deadline", "3s")
    assert code == 4, stderr[-2000:]
    late = summary["signatures"]["SupportTriage.v1"]
    assert late["decision"] == "inconclusive"
    assert late["reason"].startswith("compile stopped at the run's deadline (3 s) after 0 LM calls"), late["reason"]
    reports = {e["data"]["report_id"]: e["data"] for e in _events(db_url, str(summary["run_id"]))  # type: ignore[index]
               if e["kind"] == "compile.report"}
    assert sorted(r["lm_calls"] > 0 for r in reports.values()) == [False, True]
