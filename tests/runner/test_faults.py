"""The runner against real faults: a second runner, SIGKILL and --resume, an API that answers 503 for a while,
an API that goes away for good."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine, update
from sqlalchemy.pool import NullPool

from overnight.store.schema import idempotency_keys
from tests.factories import ADMIN_TOKEN, LiveServer, live_server, serve_process, wait_for
from tests.runner.helpers import BETTER, FAIR_SPLIT, SELECT, TRIAGE, overnight_run, runner_env, start_runner
from tests.runner.test_runner import overnight_show

SLOW = BETTER + ",latency_ms=15"  # traffic takes a few seconds: time to interfere


def events(client: httpx.Client, run_id: str) -> list[dict[str, object]]:
    return list(client.get(f"/api/v1/runs/{run_id}/events", params={"limit": 1000}).json()["events"])


def current_run(client: httpx.Client) -> str | None:
    runs = client.get("/api/v1/runs").json()["runs"]
    return str(runs[0]["run_id"]) if runs else None


def traffic_started(client: httpx.Client) -> bool:
    run_id = current_run(client)
    return run_id is not None and any(e["kind"] == "traffic.started" for e in events(client, run_id))


def killed_in_traffic(api: httpx.Client, db_url: str, args: tuple[str, ...], log: Path) -> str:
    """A night on the API at `args`' --base-url, SIGKILLed once its canary has traffic: its run id."""
    runner = start_runner(db_url, SLOW, *args, log=log, OVERNIGHT_TOKEN=ADMIN_TOKEN)
    wait_for(lambda: traffic_started(api))
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)
    return str(current_run(api))


def test_a_second_runner_for_the_same_signature_exits_run_locked(db_url: str, tmp_path: Path) -> None:
    first = start_runner(db_url, SLOW, "--dataset", str(SELECT), log=tmp_path / "first.log")
    try:
        with live_server(db_url) as server, server.client() as api:
            wait_for(lambda: current_run(api) is not None)
        code, summary, _ = overnight_run(db_url, SLOW, "--dataset", str(SELECT))
    finally:
        first.wait(timeout=300)
    assert code == 1
    assert summary["verdict"].startswith("run_locked:")
    assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]


def test_a_compile_longer_than_the_lease_keeps_it_so_a_second_runner_is_refused(db_url: str, tmp_path: Path) -> None:
    """The compile is one long request (here ~10 s of 150 ms calls; minutes on the local model) and the lease is
    3 s: the runner renews it from a background thread, so the run is not stale and cannot be taken over."""
    quick = {"OVERNIGHT_TOKEN": ADMIN_TOKEN, "OVERNIGHT_LEASE_S": "3"}
    slow = BETTER + ",latency_ms=150"
    with serve_process(db_url, tmp_path / "serve.log", OVERNIGHT_LM=slow) as server, server.client() as api:
        args = ("--base-url", server.base_url, "--dataset", str(SELECT))
        first = start_runner(db_url, slow, *args, log=tmp_path / "first.log", **quick)
        wait_for(lambda: (run := current_run(api)) is not None
                 and any(e["kind"] == "compile.started" for e in events(api, run)))
        time.sleep(3.5)  # longer than the lease, while the compile request is still running
        still_compiling = not any(e["kind"] == "compile.finished" for e in events(api, str(current_run(api))))
        code, summary, _ = overnight_run(db_url, slow, *args, **quick)
        first.wait(timeout=300)
        run_events = events(api, str(current_run(api)))
    assert still_compiling
    assert code == 1
    assert summary["verdict"].startswith("run_locked:")
    assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert not any(e["kind"] == "lease_taken_over" for e in run_events)


@pytest.mark.parametrize(("first", "decision", "bar"), [
    ((), "promoted", (0.0, 0.05)),
    (("--no-promote",), "held", None),
    (("--min-delta", "0.4", "--holdout-margin", "0"), "promoted", (0.4, 0.0)),
])
def test_sigkill_during_traffic_then_resume_completes_without_duplicated_events(
        db_url: str, tmp_path: Path, first: tuple[str, ...], decision: str, bar: tuple[float, float] | None) -> None:
    """Resumed from where it was killed; a night started with `--no-promote`, or a stricter holdout bar, keeps it
    when resumed without it (the night's owner asked; whoever resumes it need not remember)."""
    with serve_process(db_url, tmp_path / "serve.log", OVERNIGHT_LM=SLOW) as server, server.client() as api:
        args = ("--base-url", server.base_url, "--dataset", str(SELECT))
        runner = start_runner(db_url, SLOW, *args, *first, log=tmp_path / "runner.log", OVERNIGHT_TOKEN=ADMIN_TOKEN)
        wait_for(lambda: traffic_started(api))
        time.sleep(1.0)  # some traffic is in flight
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
        run_id = current_run(api)
        assert run_id is not None
        assert api.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
        code, summary, stderr = overnight_run(db_url, SLOW, *args, "--resume", run_id, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        stream = events(api, run_id)
        run = api.get(f"/api/v1/runs/{run_id}").json()
        moves = api.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()["history"]
    assert code == 0, stderr[-3000:]
    assert summary["run_id"] == run_id
    assert summary["signatures"]["SelectTool.v1"]["decision"] == decision
    assert bool(summary["undo"]) == (decision == "promoted")
    assert bool(summary["promote"]) == (decision == "held")
    assert run["status"] == "succeeded"
    markers = Counter(str(e["kind"]) for e in stream if str(e["kind"]).endswith((".started", ".finished"))
                      and not str(e["kind"]).startswith("run."))
    assert markers["traffic.started"] == 1
    assert markers["compile.started"] == 1
    assert all(n == 1 for n in markers.values()), markers
    assert [e["seq"] for e in stream] == list(range(1, len(stream) + 1))
    assert sum(e["kind"] == "canary.opened" for e in stream) == 1  # the same canary carried on
    result = summary["signatures"]["SelectTool.v1"]
    assert result["requests_before"] > 0  # the killed runner's, on the arms: not said as the resume's requests
    said = re.search(r"canary passed: (\d+) requests on its arms \(\d+ control, \d+ candidate\), (\d+) of them "
                     r"before this runner carried it on \((\d+) sent since\): ", stderr)
    assert said, stderr[-3000:]
    assert [int(n) for n in said.groups()] == [result[k] for k in ("requests_on_arms", "requests_before",
                                                                    "requests_sent")]
    if bar is not None:  # the promotion asked the bar the night was started with
        holdout = next(g for g in moves[-1]["evidence"]["gates"] if g["reason_code"] == "holdout_delta_met")
        assert (holdout["evidence"]["min_delta"], holdout["evidence"]["margin"]) == bar
    if first:
        assert f"{run_id} was started with {' '.join(first).replace(' --', ', --')}" in stderr, stderr[-3000:]


def test_a_resume_past_its_deadline_stops_the_canary_it_carries_on(db_url: str, tmp_path: Path) -> None:
    """A run killed with its canary open, resumed by a night whose deadline has passed by the time it gets back to
    the canary: the canary it had opened is continued by the traffic step, whose first look stops it at the deadline.
    It said "the run's deadline passed before its canary could start" and, the run then succeeding, left that canary
    sending users to the candidate until the canary's own deadline."""
    slow_check = threading.Event()

    def late(app: FastAPI) -> None:
        @app.middleware("http")
        async def slow(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            if slow_check.is_set() and request.url.path.endswith("/lm:check"):
                await asyncio.sleep(3)  # the resume's preflight outlasts its 2 s deadline
            return await call_next(request)

    with live_server(db_url, customize=late, lm=SLOW) as server, server.client() as api:
        args = ("--base-url", server.base_url, "--dataset", str(SELECT))
        run_id = killed_in_traffic(api, db_url, args, tmp_path / "runner.log")
        opened = api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]
        slow_check.set()
        code, summary, stderr = overnight_run(db_url, SLOW, *args, "--resume", run_id, "--deadline", "2s",
                                              OVERNIGHT_TOKEN=ADMIN_TOKEN)
        canary = api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]
    assert opened["status"] == "active"
    assert code == 4, stderr[-3000:]
    result = summary["signatures"]["SelectTool.v1"]
    assert (result["decision"], result["canary_id"]) == ("inconclusive", opened["canary_id"])
    reason = "the run's deadline (2 s) passed before the gates decided"
    assert result["reason"].endswith(reason), result["reason"]
    assert (canary["canary_id"], canary["status"], canary["end_reason"]) == (opened["canary_id"], "stopped", reason)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_stops_the_canary_and_finishes_the_run_cancelled(
        db_url: str, tmp_path: Path, signum: signal.Signals, code: int) -> None:
    """cron's `timeout`, systemd and Kubernetes stop a job with SIGTERM: it killed the runner on the spot, leaving
    its canary sending real users to the candidate and the run `running` until its lease lapsed. Now the runner
    stops its canaries, finishes the run `cancelled`, prints its summary and exits 128 + the signal's number."""
    with serve_process(db_url, tmp_path / "serve.log", OVERNIGHT_LM=SLOW) as server, server.client() as api:
        command = [sys.executable, "-m", "overnight", "run", "--json", "--base-url", server.base_url, "--dataset",
                   str(SELECT), *FAIR_SPLIT]
        with (tmp_path / "stdout").open("wb") as out, (tmp_path / "stderr").open("wb") as err:
            runner = subprocess.Popen(command, stdout=out, stderr=err,
                                      env=runner_env(db_url, SLOW, OVERNIGHT_TOKEN=ADMIN_TOKEN))
        wait_for(lambda: traffic_started(api))
        time.sleep(1.0)  # some traffic is in flight
        runner.send_signal(signum)
        assert runner.wait(timeout=60) == code, (tmp_path / "stderr").read_text()[-3000:]
        run_id = current_run(api)
        run = api.get(f"/api/v1/runs/{run_id}").json()
        canary = api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]
        kinds = [e["kind"] for e in events(api, str(run_id))]
    name = signal.Signals(signum).name
    summary = json.loads((tmp_path / "stdout").read_text())
    assert (summary["status"], summary["exit_code"]) == ("cancelled", code)
    assert summary["verdict"] == f"cancelled: terminated by {name}"
    assert (run["status"], run["summary"]["exit_code"]) == ("cancelled", code)
    assert (canary["status"], canary["end_reason"]) == ("stopped", f"runner cancelled: terminated by {name}")
    assert kinds[-1] == "run.finished"
    assert "Traceback" not in (tmp_path / "stderr").read_text()


@pytest.mark.parametrize(("held", "said"), [("POST /api/v1/lm:check", "in the preflight"),
                                            ("POST /api/v1/runs", "as the run started")])
def test_a_night_cancelled_before_its_run_was_taken_is_on_the_record(db_url: str, tmp_path: Path, held: str,
                                                                     said: str) -> None:
    """cron's `timeout` can land while the preflight waits on a slow LM, or while the run's start is on the wire:
    the night left no run at all (or, for a start that had reached the API, a `running` one until its lease
    lapsed), and the morning's `overnight runs` showed a gap. Now the runner takes the run — the same one, when
    its start had reached the API — and finishes it `cancelled`, saying where the signal found it."""
    reached = threading.Event()

    def hold(app: FastAPI) -> None:
        @app.middleware("http")
        async def slow(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            answered = await call_next(request)  # the request is done on the server: only its answer is late
            if f"{request.method} {request.url.path}" == held and not reached.is_set():
                reached.set()
                await asyncio.sleep(8)
            return answered

    with live_server(db_url, customize=hold, lm=BETTER) as server, server.client() as api:
        with (tmp_path / "stdout").open("wb") as out, (tmp_path / "stderr").open("wb") as err:
            runner = subprocess.Popen(
                [sys.executable, "-m", "overnight", "run", "--json", "--base-url", server.base_url, "--dataset",
                 str(SELECT), *FAIR_SPLIT], stdout=out, stderr=err, env=runner_env(db_url, BETTER,
                                                                                    OVERNIGHT_TOKEN=ADMIN_TOKEN))
        assert reached.wait(timeout=120), (tmp_path / "stderr").read_text()[-3000:]
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 143, (tmp_path / "stderr").read_text()[-3000:]
        runs = api.get("/api/v1/runs").json()["runs"]
        kinds = [e["kind"] for e in events(api, runs[0]["run_id"])] if runs else []
    summary = json.loads((tmp_path / "stdout").read_text())
    verdict = f"cancelled: terminated by SIGTERM {said}"
    assert (summary["status"], summary["verdict"]) == ("cancelled", verdict)
    assert [(r["run_id"], r["status"], r["summary"]["verdict"]) for r in runs] == [
        (summary["run_id"], "cancelled", verdict)]  # one run: a start cut short was asked again, not made twice
    assert kinds == ["run.started", "run.finished"]
    assert "Traceback" not in (tmp_path / "stderr").read_text()


@pytest.mark.parametrize("sitting_on", ["/heartbeat", "/predict"])
def test_sigterm_does_not_wait_for_requests_the_api_is_sitting_on(db_url: str, tmp_path: Path, sitting_on: str) -> None:
    """The lease's heartbeat runs beside each step, and the traffic's predicts in a pool; a cancel waited for those
    in flight, and an API that holds requests (overloaded, a proxy that lost its upstream) could keep them the
    client's whole timeout — past any scheduler's grace period, so SIGKILL came and the canary stayed on. Now the
    cancel is recorded without them."""
    holding, held = threading.Event(), threading.Event()

    def sit_on(app: FastAPI) -> None:
        @app.middleware("http")
        async def hang(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            if holding.is_set() and request.url.path.endswith(sitting_on):
                held.set()
                await asyncio.sleep(90)
            return await call_next(request)

    with live_server(db_url, customize=sit_on, lm=SLOW) as server, server.client() as api:
        runner = start_runner(db_url, SLOW, "--base-url", server.base_url, "--dataset", str(SELECT),
                              log=tmp_path / "runner.log", OVERNIGHT_TOKEN=ADMIN_TOKEN, OVERNIGHT_LEASE_S="3")
        wait_for(lambda: traffic_started(api))
        holding.set()
        assert held.wait(timeout=30)  # a request is in flight, and will be for 90 s (the client waits 120)
        runner.send_signal(signal.SIGTERM)
        try:
            assert runner.wait(timeout=45) == 143, (tmp_path / "runner.log").read_text()[-3000:]
        finally:
            runner.kill()
        canary = api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]
        run = api.get(f"/api/v1/runs/{current_run(api)}").json()
    assert (canary["status"], run["status"]) == ("stopped", "cancelled")


def test_a_few_seconds_of_503_mid_run_are_retried_and_the_run_carries_on(db_url: str, tmp_path: Path) -> None:
    outage = threading.Event()
    refused = Counter[str]()

    def flaky(app: FastAPI) -> None:
        @app.middleware("http")
        async def unavailable(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            if outage.is_set() and request.url.path.startswith("/api/"):
                refused[request.url.path.rsplit("/", 1)[-1]] += 1
                return JSONResponse({"ok": False, "code": "store_unavailable", "error": "down for maintenance",
                                     "status": 503, "request_id": "x"}, status_code=503)
            return await call_next(request)

    with live_server(db_url, customize=flaky, lm=SLOW) as server, server.client() as api:
        runner = start_runner(db_url, SLOW, "--base-url", server.base_url, "--dataset", str(SELECT),
                              log=tmp_path / "runner.log", OVERNIGHT_TOKEN=ADMIN_TOKEN)
        wait_for(lambda: traffic_started(api))
        outage.set()
        time.sleep(3)
        outage.clear()
        runner.wait(timeout=300)
    log = (tmp_path / "runner.log").read_text()
    summary = json.loads(log[log.index('{\n  "run_id"'):]) if '{\n  "run_id"' in log else {}
    assert runner.returncode == 0, log[-3000:]
    assert summary["signatures"]["SelectTool.v1"]["decision"] == "promoted"
    assert sum(refused.values()) > 0  # the outage really was seen


def test_the_api_gone_for_good_exits_1_and_the_run_is_finished_failed_when_it_returns(
    db_url: str, tmp_path: Path,
) -> None:
    fast = {"OVERNIGHT_TOKEN": ADMIN_TOKEN, "OVERNIGHT_CLIENT_ATTEMPTS": "3", "OVERNIGHT_LEASE_S": "3"}
    with serve_process(db_url, tmp_path / "serve.log", OVERNIGHT_LM=SLOW) as server, server.client() as api:
        runner = start_runner(db_url, SLOW, "--base-url", server.base_url, "--dataset", str(SELECT),
                              log=tmp_path / "runner.log", **fast)
        wait_for(lambda: traffic_started(api))
        run_id = current_run(api)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
    runner.wait(timeout=300)
    log = (tmp_path / "runner.log").read_text()
    assert runner.returncode == 1, log[-3000:]
    assert "api_unreachable" in log
    time.sleep(3.5)  # the lease (3 s) lapses with no heartbeat
    with serve_process(db_url, tmp_path / "again.log", OVERNIGHT_LM=SLOW) as server, server.client() as api:
        run = api.get(f"/api/v1/runs/{run_id}").json()
        canary = api.get("/api/v1/signatures/SelectTool.v1/canary").json()
    assert run["status"] == "failed"
    assert "runner is gone" in run["summary"]["verdict"]
    assert canary["canary"]["status"] == "stopped"
    assert canary["canary"]["run_id"] == run_id


def test_a_new_run_that_takes_over_a_stale_lease_continues_the_old_runs_canary(db_url: str, tmp_path: Path) -> None:
    quick = {"OVERNIGHT_TOKEN": ADMIN_TOKEN, "OVERNIGHT_LEASE_S": "3"}
    with serve_process(db_url, tmp_path / "serve.log", OVERNIGHT_LM=SLOW) as server, server.client() as api:
        args = ("--base-url", server.base_url, "--dataset", str(SELECT))
        first = start_runner(db_url, SLOW, *args, log=tmp_path / "first.log", **quick)
        wait_for(lambda: traffic_started(api))
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        old_run = current_run(api)
        old_canary = api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]
        time.sleep(3.5)  # its lease lapses
        code, summary, stderr = overnight_run(db_url, SLOW, *args, **quick)
        old = api.get(f"/api/v1/runs/{old_run}").json()
        new_events = events(api, str(summary["run_id"]))
    assert code == 0, stderr[-3000:]
    assert old["status"] == "abandoned"
    result = summary["signatures"]["SelectTool.v1"]
    assert result["decision"] == "promoted"
    assert result["canary_id"] == old_canary["canary_id"]  # carried on, not restarted: no evidence thrown away
    assert any(e["kind"] == "lease_taken_over" for e in new_events)
    assert not any(e["kind"] == "canary.opened" for e in new_events)



def test_a_run_that_takes_over_a_stale_lease_and_then_fails_stops_the_old_runs_canary(db_url: str,
                                                                                       tmp_path: Path) -> None:
    """Once the crashed run is abandoned no later run can continue its canary: the run that took it over and then
    failed (here at its preflight, the night's dataset file gone) stops it as it would its own, rather than leave
    real users on the candidate with no runner until the canary's deadline. Its failure is on the record."""
    quick = {"OVERNIGHT_TOKEN": ADMIN_TOKEN, "OVERNIGHT_LEASE_S": "3"}
    gone = tmp_path / "gone.jsonl"
    with serve_process(db_url, tmp_path / "serve.log", OVERNIGHT_LM=SLOW) as server, server.client() as api:
        first = start_runner(db_url, SLOW, "--base-url", server.base_url, "--dataset", str(SELECT),
                             log=tmp_path / "first.log", **quick)
        wait_for(lambda: traffic_started(api))
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        old_run = current_run(api)
        time.sleep(3.5)  # its lease lapses
        code, summary, stderr = overnight_run(db_url, SLOW, "--base-url", server.base_url, "--dataset", str(gone),
                                              **quick)
        old = api.get(f"/api/v1/runs/{old_run}").json()
        canary = api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]
        new_events = events(api, str(summary["run_id"]))
    assert code == 2, stderr[-3000:]
    verdict = f"preflight failed: config_error: dataset file {gone} for SelectTool.v1 cannot be read: No such file " \
              "or directory"
    assert summary["verdict"] == verdict
    assert old["status"] == "abandoned"
    assert (canary["run_id"], canary["status"]) == (old_run, "stopped")
    assert canary["end_reason"] == f"runner failed: {verdict}"
    assert [e["kind"] for e in new_events] == ["run.started", "lease_taken_over", "preflight.failed", "run.finished"]


def _e2e_predicts_fail(app: FastAPI, *, first: Callable[[], None] = lambda: None) -> None:
    """Every predict of the runner's smoke check answers `lm_call_failed`; `first` runs before the first of them."""
    seen = []

    @app.middleware("http")
    async def failing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        smoke = b'"request_key":"e2e-' in (await request.body()).replace(b" ", b"")
        if request.url.path.endswith("/predict") and smoke:
            if not seen:
                seen.append(first())
            return JSONResponse({"ok": False, "code": "lm_call_failed", "error": "the LM call failed: HTTP 500",
                                 "status": 502, "request_id": "x"}, status_code=502)
        return await call_next(request)


def test_a_promotion_whose_e2e_check_fails_is_rolled_back_by_the_run_that_made_it(db_url: str, tmp_path: Path) -> None:
    """The candidate passed its canary and was promoted, then the smoke check's predicts failed. Nobody reads the
    result until morning, so the run puts back the champion it replaced itself (recorded as its own alias move, with
    the check's problem as the reason) instead of leaving a program that just failed in front of every user."""
    from overnight.review.assemble import run_review  # noqa: PLC0415

    with live_server(db_url, customize=_e2e_predicts_fail, lm=BETTER) as server, server.client() as api:
        code, summary, stderr = overnight_run(db_url, BETTER, "--base-url", server.base_url, "--dataset", str(SELECT),
                                              OVERNIGHT_TOKEN=ADMIN_TOKEN)
        history = api.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()
        review = run_review(server.store, summary["run_id"])
        api_events = events(api, summary["run_id"])
    result = summary["signatures"]["SelectTool.v1"]
    assert code == 1, stderr[-3000:]
    assert result["decision"] == "failed"
    assert result["reason"] == ("e2e smoke check failed after promotion: 5 of 5 failed: lm_call_failed: the LM call "
                                "failed: HTTP 500; rolled back to the default program")
    assert history["champion_id"] is None  # the default program serves again
    promote, rollback = history["history"][-2:]
    assert (promote["action"], promote["to_id"], promote["run_id"]) == ("promote", result["best_compiled_id"],
                                                                      summary["run_id"])
    assert (rollback["action"], rollback["to_id"], rollback["run_id"]) == ("rollback", None, summary["run_id"])
    assert rollback["reason"].startswith("e2e smoke check failed after promotion")
    assert result["champion_after"] is None
    assert result["alias_history_ids"] == [promote["id"], rollback["id"]]
    assert review.undo == []  # nothing left to undo: the run undid it
    moved = [e for e in api_events if e["kind"] == "alias.moved"]
    assert [e["phase"] for e in moved] == ["decide", "rollback"]  # the server's record of each move, in its step
    assert [m.action for m in review.signatures[0].moves] == ["promote", "rollback"]


def test_a_failed_e2e_check_leaves_the_champion_alone_when_someone_moved_it_since(db_url: str, tmp_path: Path) -> None:
    """An operator's move after the promotion is the newer decision: the run does not undo it, and says so."""
    holder: list[LiveServer] = []

    def operator_rolls_back() -> None:
        holder[0].store.rollback(signature_id="SelectTool.v1", to_id=None, explicit=True, actor="ops",
                                 reason="by hand", run_id=None)

    with live_server(db_url, customize=lambda app: _e2e_predicts_fail(app, first=operator_rolls_back),
                     lm=BETTER) as server, server.client() as api:
        holder.append(server)
        code, summary, stderr = overnight_run(db_url, BETTER, "--base-url", server.base_url, "--dataset", str(SELECT),
                                              OVERNIGHT_TOKEN=ADMIN_TOKEN)
        history = api.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()
    result = summary["signatures"]["SelectTool.v1"]
    assert code == 1, stderr[-3000:]
    assert result["reason"].endswith("; not rolled back: the champion has moved since, to the default program")
    assert [(m["action"], m["actor"]) for m in history["history"][-2:]] == [("promote", "ops-agent"),
                                                                            ("rollback", "ops")]


def test_one_lm_error_in_the_e2e_check_is_reported_and_does_not_undo_a_promotion(db_url: str, tmp_path: Path) -> None:
    """The canary measured the candidate's error rate with a bound; five smoke predicts cannot. A candidate whose
    LM fails 1% of calls would fail a "no error at all" smoke check one night in twenty, and be rolled back. The check
    is what the design names: each predict served by the expected program (an LM failure's receipt says which
    served it), and the program answering at all."""
    def one_lm_error(app: FastAPI) -> None:
        failed = []

        @app.middleware("http")
        async def first_smoke_fails(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            smoke = b'"request_key":"e2e-' in (await request.body()).replace(b" ", b"")
            response = await call_next(request)
            if not (request.url.path.endswith("/predict") and smoke and response.status_code == 200) or failed:
                return response
            failed.append(True)
            served = json.loads(b"".join([chunk async for chunk in response.body_iterator]))  # type: ignore[attr-defined]
            return JSONResponse({"ok": False, "code": "lm_call_failed", "error": "the LM call failed (timeout): slow",
                                 "status": 502, "request_id": "x",
                                 "details": {"compiled_id": served["compiled_id"], "arm": served["arm"]}},
                                status_code=502)

    with live_server(db_url, customize=one_lm_error, lm=BETTER) as server:
        code, summary, stderr = overnight_run(db_url, BETTER, "--base-url", server.base_url, "--dataset", str(SELECT),
                                              OVERNIGHT_TOKEN=ADMIN_TOKEN)
    result = summary["signatures"]["SelectTool.v1"]
    assert code == 0, stderr[-3000:]
    assert result["decision"] == "promoted"
    e2e = result["e2e"]
    assert (e2e["ok"], e2e["served"], e2e["problem"]) == (True, [result["best_compiled_id"]], "")
    assert e2e["lm_failures"] == ["1 of 5: lm_call_failed: the LM call failed (timeout): slow"]
    assert (f"e2e: ok — 5 requests served by {result['best_compiled_id'][:12]}; the LM failed 1 of 5: lm_call_failed: "
            "the LM call failed (timeout): slow") in overnight_show(db_url, summary["run_id"])


def test_an_operator_stops_the_canary_from_the_cli_mid_traffic_and_the_champion_stays(db_url: str,
                                                                                        tmp_path: Path) -> None:
    """At 3 am an operator sees the candidate misbehave: `overnight canary` shows the live arms and gates, `overnight
    canary stop` ends it at once without touching the champion (a rollback would move it), and the night says so."""
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "overnight", *args], capture_output=True, text=True, timeout=60,
                              check=False, env=runner_env(db_url, SLOW, COLUMNS="160", TERM="dumb"))

    # At 1% the candidate's look (153 of its requests) is ~15,000 requests away, past the runner's 5,000: the gates
    # cannot decide before the operator acts, however slow the machine.
    runner = start_runner(db_url, SLOW, "--dataset", str(SELECT), "--steps", "1,2", log=tmp_path / "runner.log")
    try:
        with live_server(db_url) as server, server.client() as api:
            wait_for(lambda: traffic_started(api))
        live = cli("canary", "-s", "SelectTool.v1")
        looked_at = re.search(r"canary (\S+) active", live.stdout)
        assert looked_at, live.stdout + live.stderr
        not_that = cli("canary", "stop", "-s", "SelectTool.v1", "--id", "can-0-other", "--reason", "stale")
        stopped = cli("canary", "stop", "-s", "SelectTool.v1", "--id", looked_at[1], "--reason",
                      "users report wrong tools", "--json")
        again = cli("canary", "stop", "-s", "SelectTool.v1", "--reason", "twice")
    finally:
        runner.wait(timeout=300)
    log = (tmp_path / "runner.log").read_text()
    assert live.returncode == 0, live.stderr
    assert "canary_id" in json.loads(stopped.stdout), stopped.stdout + stopped.stderr
    canary_id = json.loads(stopped.stdout)["canary_id"]
    assert canary_id == looked_at[1]
    assert (not_that.returncode, not_that.stderr.strip()) == (
        1, f"canary_not_found: canary can-0-other is not active on SelectTool.v1 ({canary_id} is): nothing stopped")
    for needle in ("control", "candidate", "gates now:", "keep driving", "opened at 1% (step 0) by overnight-run",
                   "errors by code: none"):
        assert needle in live.stdout, needle
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["status"] == "stopped"
    assert again.returncode == 1
    assert again.stderr.startswith("canary_not_found: SelectTool.v1 has no active canary to stop")
    assert runner.returncode == 4, log[-3000:]
    summary = json.loads(log[log.index('{\n  "run_id"'):])
    result = summary["signatures"]["SelectTool.v1"]
    assert (result["decision"], result["canary_status"]) == ("inconclusive", "stopped")
    assert re.fullmatch(r"canary stopped by cli:\S+: users report wrong tools", result["reason"]), result["reason"]
    assert result["champion_after"] == result["champion_before"]  # the default program still serves
    assert result["alias_history_ids"] == []
    shown = cli("canary", "-s", "SelectTool.v1")
    assert f"canary {canary_id} stopped" in shown.stdout
    assert re.search(r"stopped at 1% \(step 0\) by cli:\S+: users report wrong tools", shown.stdout), shown.stdout
    assert "gates now:" not in shown.stdout  # an ended canary has no live evaluation


def test_a_canary_replaced_mid_traffic_is_reported_as_the_runners_own_not_the_new_one(db_url: str,
                                                                                       tmp_path: Path) -> None:
    """Someone stops the runner's canary and at once starts another: the night reports its own canary — stopped, by
    whom, on its own arms — and leaves the new one, which it did not start, running. Its smoke check after the
    decision counts the predicts the new canary's candidate took apart, instead of failing the night on them (at 1%
    it did one night in twenty; at 50%, here, nearly always)."""
    # 200 ms per LM call at the runner's 4 concurrent requests: a batch of 40 takes ~2 s between the runner's looks,
    # and the stop and the new start below take milliseconds, so the runner's next look finds the new canary.
    lm = BETTER + ",latency_ms=200"
    runner = start_runner(db_url, lm, "--dataset", str(SELECT), "--steps", "1,2", log=tmp_path / "runner.log")
    try:
        with live_server(db_url, lm=lm) as server, server.client() as api:
            wait_for(lambda: traffic_started(api))
            ours = api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]
            stopped = api.post("/api/v1/signatures/SelectTool.v1/canary:stop", json={"reason": "replacing it"})
            theirs = api.post("/api/v1/signatures/SelectTool.v1/canary:start", json={
                "candidate_id": ours["candidate_id"], "report_id": ours["report_id"], "steps": [50],
                "srm_threshold_p": FAIR_SPLIT[1]})
            assert stopped.status_code == 200, stopped.text
            assert theirs.status_code == 200, theirs.text
            runner.wait(timeout=300)
            left = api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]
            own = api.get(f"/api/v1/canaries/{ours['canary_id']}").json()["canary"]
    finally:
        if runner.poll() is None:
            runner.kill()
    log = (tmp_path / "runner.log").read_text()
    assert runner.returncode == 4, log[-3000:]
    summary = json.loads(log[log.index('{\n  "run_id"'):])
    result = summary["signatures"]["SelectTool.v1"]
    assert result["canary_id"] == ours["canary_id"] != theirs.json()["canary_id"]
    assert (result["decision"], result["canary_status"]) == ("inconclusive", "stopped"), result
    assert result["reason"] == "canary stopped by ops-agent: replacing it"
    assert result["requests_on_arms"] == sum(arm["samples"] for arm in own["arms"].values())
    assert (left["canary_id"], left["status"]) == (theirs.json()["canary_id"], "active")  # not the runner's to stop
    e2e = result["e2e"]
    assert (e2e["ok"], e2e["requests"], e2e["served"]) == (True, 5, [result["champion_after"]]), e2e
    assert set(e2e["elsewhere"]) <= {theirs.json()["canary_id"]}


def _answering(app: FastAPI, picks: Callable[[Request], bool], status: int, body: dict[str, Any]) -> None:
    """Make `app` answer the requests `picks` as an older API would; and its whoami as every API from before the
    features it has were said there: without them."""
    @app.middleware("http")
    async def as_older(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if picks(request):
            return JSONResponse({"ok": False, "status": status, "request_id": "older", **body}, status_code=status)
        if request.url.path == "/api/v1/whoami":
            said = json.loads(b"".join([chunk async for chunk in (await call_next(request)).body_iterator]))
            return JSONResponse({"name": said["name"], "role": said["role"]})
        return await call_next(request)


def _without_canary_by_id(app: FastAPI) -> None:
    """An API from before GET /api/v1/canaries/{canary_id}, which the runner follows its canary with."""
    _answering(app, lambda request: request.url.path.startswith("/api/v1/canaries/"), 404,
               {"code": "not_found", "error": "no such route"})


def _without_compile_max_seconds(app: FastAPI) -> None:
    """An API from before compile's `max_seconds`: its CompileRequest (extra="forbid") refuses the field."""
    refused = {"field": "body.max_seconds", "message": "Extra inputs are not permitted", "type": "extra_forbidden"}
    _answering(app, lambda request: request.url.path.endswith("/compile"), 422,
               {"code": "validation_error", "error": "invalid request: body.max_seconds: Extra inputs are not "
                "permitted", "details": {"errors": [refused]}})


def _saying_it_lacks_compile_max_seconds(app: FastAPI) -> None:
    """An API that says what it has (and lacks one): believed, without a probe."""
    @app.middleware("http")
    async def says(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path.endswith("/compile"):
            raise AssertionError("the runner probed an API that said what it has")
        if request.url.path != "/api/v1/whoami":
            return await call_next(request)
        said = json.loads(b"".join([chunk async for chunk in (await call_next(request)).body_iterator]))
        return JSONResponse({**said, "features": [f for f in said["features"] if f != "compile_max_seconds"]})


@pytest.mark.parametrize(("older", "lacks"), [
    (_without_canary_by_id, "GET /api/v1/canaries/{canary_id}, which the runner follows its canary with"),
    (_without_compile_max_seconds, "max_seconds in its compile request, which holds a compile to the run's deadline"),
    (_saying_it_lacks_compile_max_seconds,
     "max_seconds in its compile request, which holds a compile to the run's deadline"),
], ids=["canary-by-id", "compile-max-seconds", "said-by-the-api"])
def test_a_runner_newer_than_its_api_stops_at_preflight_before_anything_starts(
    db_url: str, older: Callable[[FastAPI], None], lacks: str,
) -> None:
    """Upgrading the cron host before the servers: found out mid-night, what the older API cannot do would fail the
    run (and could leave its canary running); preflight says so and starts nothing. An API that says what it has
    (its whoami's `features`) is taken at its word; one from before it said is probed."""
    with live_server(db_url, customize=older, lm=BETTER) as server, server.client() as api:
        code, summary, _ = overnight_run(db_url, BETTER, "--base-url", server.base_url, "--dataset", str(SELECT),
                                         OVERNIGHT_TOKEN=ADMIN_TOKEN)
        runs = api.get("/api/v1/runs").json()["runs"]
    assert code == 2, summary
    assert summary["verdict"] == (f"preflight failed: config_error: the API at {server.base_url} is older than this "
                                  f"runner (it has no {lacks}): upgrade the servers first")
    assert runs == []


def test_a_whole_night_asks_the_api_nothing_it_refuses(db_url: str) -> None:
    """The server's log of a good night holds no 4xx: a 404 or a 422 from the runner's own checks every night at
    2 a.m. would be noise an ops engineer alerting on client errors learns to ignore."""
    refused: list[str] = []

    def watched(app: FastAPI) -> None:
        @app.middleware("http")
        async def watch(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            response = await call_next(request)
            if response.status_code >= 400:
                refused.append(f"{request.method} {request.url.path} -> {response.status_code}")
            return response

    with live_server(db_url, customize=watched, lm=BETTER) as server:
        code, summary, _ = overnight_run(db_url, BETTER, "--base-url", server.base_url, "--dataset", str(SELECT),
                                         OVERNIGHT_TOKEN=ADMIN_TOKEN)
    assert code == 0, summary
    assert refused == []


def test_a_resumed_night_keeps_its_refusal_of_a_program_someone_rolled_back(db_url: str, tmp_path: Path) -> None:
    """Killed after it refused to canary a program rolled back the morning before (and before it finished the next
    signature), the night resumed keeps that refusal as recorded: no canary, the same reason."""
    code, first, stderr = overnight_run(db_url, SLOW, "--dataset", str(SELECT))
    assert (code, first["signatures"]["SelectTool.v1"]["decision"]) == (0, "promoted"), stderr[-3000:]
    with serve_process(db_url, tmp_path / "serve.log", OVERNIGHT_LM=SLOW) as server, server.client() as api:
        api.post("/api/v1/signatures/SelectTool.v1/rollback", json={"reason": "answers look off"},
                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).raise_for_status()
        args = ("--base-url", server.base_url, "--signature", "SelectTool.v1", "--signature", "SupportTriage.v1",
                "--dataset", f"SelectTool.v1={SELECT}", "--dataset", f"SupportTriage.v1={TRIAGE}")
        runner = start_runner(db_url, SLOW, *args, log=tmp_path / "runner.log", OVERNIGHT_TOKEN=ADMIN_TOKEN)
        wait_for(lambda: (run := current_run(api)) is not None and run != first["run_id"] and any(
            e["kind"] == "traffic.started" and e["data"]["signature"] == "SupportTriage.v1" for e in events(api, run)))
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
        run_id = str(current_run(api))
        refused = next(e["data"] for e in events(api, run_id) if e["kind"] == "canary.start.finished")
        code, summary, stderr = overnight_run(db_url, SLOW, *args, "--resume", run_id, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        stream = events(api, run_id)
    assert code == 0, stderr[-3000:]
    result = summary["signatures"]["SelectTool.v1"]
    assert (refused["skipped"], refused["decision"]) == ("taken_back", "no_improvement")
    assert (result["decision"], result["reason"], result["canary_id"]) == ("no_improvement", refused["reason"], None)
    assert "('answers look off')" in result["reason"]
    opened = [e for e in stream if e["kind"] in ("canary.start.started", "canary.start.finished")
              and e["data"]["signature"] == "SelectTool.v1"]
    assert [e["kind"] for e in opened] == ["canary.start.started", "canary.start.finished"]


@pytest.mark.parametrize("where", ["embedded", "served"])
def test_sigkill_during_the_compile_then_resume_completes(db_url: str, tmp_path: Path, where: str) -> None:
    """The compile is the longest step (hours on a local model), so the likeliest to be killed in. The resume asks
    for it again with what is left of its own deadline: a different request from the one killed, which the killed
    one's idempotency key must not refuse — whether that compile died with the runner's embedded API or is still
    running on a server. The job is the same, so it resumes from the scores kept, or reads the finished report."""
    lm = BETTER + ",latency_ms=60"
    with contextlib.ExitStack() as stack:
        extra: dict[str, str] = {}
        args: tuple[str, ...] = ("--dataset", str(SELECT))
        if where == "served":
            server = stack.enter_context(serve_process(db_url, tmp_path / "serve.log", OVERNIGHT_LM=lm))
            args, extra = ("--base-url", server.base_url, *args), {"OVERNIGHT_TOKEN": ADMIN_TOKEN}
        runner = start_runner(db_url, lm, *args, log=tmp_path / "runner.log", **extra)
        with live_server(db_url) as watcher, watcher.client() as api:
            wait_for(lambda: (run := current_run(api)) is not None
                     and any(e["kind"] == "compile.started" for e in events(api, run)))
            time.sleep(1.0)  # LM calls in flight
            run_id = str(current_run(api))
            runner.send_signal(signal.SIGKILL)
            runner.wait(timeout=30)
            assert not any(e["kind"] == "compile.finished" for e in events(api, run_id))
            code, summary, stderr = overnight_run(db_url, lm, *args, "--resume", run_id, **extra)
            stream = events(api, run_id)
    assert code == 0, stderr[-3000:]
    assert (summary["run_id"], summary["signatures"]["SelectTool.v1"]["decision"]) == (run_id, "promoted")
    markers = Counter(str(e["kind"]) for e in stream if str(e["kind"]).endswith((".started", ".finished")))
    assert markers["compile.started"] == markers["compile.finished"] == 1, markers


def test_a_canary_opened_just_before_the_runner_died_is_the_one_its_resume_carries_on(
        db_url: str, tmp_path: Path) -> None:
    """Killed after the API opened its canary but before the answer reached it, the runner had no record of that
    canary; here it has also been stopped since. The resume carries that canary on as it is (stopped: the night is
    inconclusive) rather than give the candidate a second canary the same night."""
    held, release = threading.Event(), threading.Event()

    def hold(app: FastAPI) -> None:
        @app.middleware("http")
        async def late(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            answered = await call_next(request)  # the canary is open on the server: only its answer is late
            if request.method == "POST" and request.url.path.endswith("/canary:start") and not held.is_set():
                held.set()
                while not release.is_set():
                    await asyncio.sleep(0.1)
            return answered

    with live_server(db_url, customize=hold, lm=SLOW) as server, server.client() as api:
        args = ("--base-url", server.base_url, "--dataset", str(SELECT))
        runner = start_runner(db_url, SLOW, *args, log=tmp_path / "runner.log", OVERNIGHT_TOKEN=ADMIN_TOKEN)
        try:
            assert held.wait(timeout=120), (tmp_path / "runner.log").read_text()[-3000:]
            runner.send_signal(signal.SIGKILL)
            runner.wait(timeout=30)
        finally:
            release.set()
        run_id = str(current_run(api))
        opened = api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]
        api.post("/api/v1/signatures/SelectTool.v1/canary:stop", json={"reason": "looks off"},
                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).raise_for_status()
        code, summary, stderr = overnight_run(db_url, SLOW, *args, "--resume", run_id, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        stream = events(api, run_id)
    assert opened["run_id"] == run_id
    assert code == 4, stderr[-3000:]
    result = summary["signatures"]["SelectTool.v1"]
    assert (result["decision"], result["canary_id"]) == ("inconclusive", opened["canary_id"])
    assert sum(e["kind"] == "canary.opened" for e in stream) == 1


def test_a_request_the_killed_runner_had_in_flight_does_not_refuse_its_resume(db_url: str, tmp_path: Path) -> None:
    """SIGKILL can land while an event is being appended (or the dataset imported): a claim on that request's
    Idempotency-Key is then left pending for good when the API died with the runner (the embedded one). The
    resume appends that event again; the store keeps it once (its client_event_id), and the dead claim must not
    refuse it as `idempotency_key_in_use`. Here the killed runner's claim on its `traffic.started` event is put
    back to pending, as an append it died in would have left it."""
    with serve_process(db_url, tmp_path / "serve.log", OVERNIGHT_LM=SLOW) as server, server.client() as api:
        args = ("--base-url", server.base_url, "--dataset", str(SELECT))
        run_id = killed_in_traffic(api, db_url, args, tmp_path / "runner.log")
        engine = create_engine(db_url, poolclass=NullPool)
        with engine.begin() as conn:
            died_in = conn.execute(update(idempotency_keys).where(
                idempotency_keys.c.key.contains(run_id), idempotency_keys.c.key.contains("traffic:started"),
            ).values(state="pending", status_code=None, response_body=None)).rowcount
        engine.dispose()
        code, summary, stderr = overnight_run(db_url, SLOW, *args, "--resume", run_id, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        stream = events(api, run_id)
    assert died_in == 1
    assert code == 0, stderr[-3000:]
    assert summary["signatures"]["SelectTool.v1"]["decision"] == "promoted"
    assert sum(e["kind"] == "traffic.started" for e in stream) == 1


@pytest.mark.parametrize("move", ["promote", "rollback"])
def test_a_move_made_whose_answer_was_lost_is_the_nights_own(db_url: str, move: str) -> None:
    """The server dies between moving the champion and keeping the answer for the request's key (an embedded API
    killed with its runner, then resumed): the claim is left unanswered, and a lease later the same request runs
    again and is refused, the move being done — the candidate already champion (409 `conflict`), nothing left to
    roll back (`nothing_to_roll_back`, for the rollback of a promotion whose e2e check failed). The night must not
    fail on its own move, nor make it twice. Here the answer is lost once, the claim left as a dead server leaves
    it, and the server answers 503 in its place; the client asks again."""
    lost: list[int] = []

    def forget_the_answer() -> None:
        engine = create_engine(db_url, poolclass=NullPool)
        with engine.begin() as conn:
            lost.append(conn.execute(update(idempotency_keys).where(idempotency_keys.c.key.endswith(f":{move}"))
                                     .values(state="pending", status_code=None, response_body=None,
                                             locked_at=0)).rowcount)
        engine.dispose()

    def lose_it(app: FastAPI) -> None:
        if move == "rollback":
            _e2e_predicts_fail(app)

        @app.middleware("http")
        async def die_after_the_move(request: Request,
                                     call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            answered = await call_next(request)
            if request.url.path.endswith(f"/{move}") and not lost:
                await asyncio.to_thread(forget_the_answer)
                return JSONResponse({"ok": False, "code": "store_unavailable", "error": "gone", "status": 503},
                                    status_code=503)
            return answered

    with live_server(db_url, customize=lose_it, lm=BETTER) as server, server.client() as api:
        code, summary, stderr = overnight_run(db_url, BETTER, "--base-url", server.base_url, "--dataset",
                                              str(SELECT), OVERNIGHT_TOKEN=ADMIN_TOKEN)
        moves = api.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()["history"]
    result = summary["signatures"]["SelectTool.v1"]
    made = [(m["action"], m["run_id"]) for m in moves]
    assert lost == [1]
    assert "was made before its answer was lost" in stderr, stderr[-3000:]
    if move == "promote":
        assert code == 0, stderr[-3000:]
        assert made == [("promote", summary["run_id"])]  # made once
        assert (result["decision"], result["alias_history_ids"]) == ("promoted", [moves[0]["id"]])
    else:
        assert code == 1, stderr[-3000:]
        assert made == [("promote", summary["run_id"]), ("rollback", summary["run_id"])]
        assert result["decision"] == "failed"
        assert result["reason"].endswith("; rolled back to the default program")
        assert result["alias_history_ids"] == [m["id"] for m in moves]
