"""`overnight run` end to end with the simulator: each decision, its exit code, and the record it leaves."""

from __future__ import annotations

import getpass
import json
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, inspect, select, table
from sqlalchemy.pool import NullPool

from overnight.store.migrate import current_revision, downgrade, head_revision, upgrade
from tests.factories import FAIR_SPLIT_P, live_server
from tests.runner.helpers import (
    BETTER,
    FAIR_SPLIT,
    FLAKY,
    NOTHING,
    SELECT,
    TRIAGE,
    UNSHOWN,
    overnight_run,
    runner_env,
)


def overnight_show(db_url: str, run_id: str) -> str:
    from tests.review.test_show import overnight  # noqa: PLC0415

    shown = overnight(db_url, "show", run_id, columns="200")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def _kinds(client: httpx.Client, run_id: str) -> list[str]:
    return [e["kind"] for e in client.get(f"/api/v1/runs/{run_id}/events", params={"limit": 1000}).json()["events"]]


def test_a_truly_better_candidate_is_promoted_and_every_link_resolves(db_url: str) -> None:
    code, summary, stderr = overnight_run(db_url, BETTER, "--dataset", str(SELECT))
    assert code == 0, stderr[-3000:]
    result = summary["signatures"]["SelectTool.v1"]
    assert result["decision"] == "promoted"
    assert result["e2e"]["ok"] is True
    assert result["e2e"]["served"] == [result["best_compiled_id"]]
    assert summary["base_url"] is None  # the embedded API is gone: no URL an agent could try to reach
    assert summary["review"] == f"overnight show {summary['run_id']}"  # the store's reader, no --base-url
    assert any(re.fullmatch(rf"SelectTool.v1: canary {result['canary_id']} on steps 25%, 50%, pass look at 153 "
                            "candidate requests", line) for line in progress(stderr)), progress(stderr)
    stepped = [line for line in progress(stderr) if line.startswith("SelectTool.v1: canary at ")]
    shown = " ".join(overnight_show(db_url, summary["run_id"]).split())
    assert re.search(r"paired holdout delta \+0\.\d+ \[\+0\.\d+, \+0\.\d+\] \(95% bootstrap, Bonferroni-adjusted "
                     r"for the best of 2 finalists\) over 30 examples", shown), shown  # picked among them on holdout
    assert "re-derived: each of the 2 gate decisions follows from the inputs recorded with it" in shown  # a step, the
    # pass: each run again on the counters it was drawn from
    assert any(re.fullmatch(r"SelectTool.v1: canary at 50% \(step 2 of 2\): \d+/153 candidate requests to its "
                            r"next look, 0 errors; \d+ sent", line) for line in stepped), progress(stderr)  # the step
    # it advanced to is said (and where it is every 30 s, which this run is too quick for)
    with live_server(db_url) as server, server.client() as api:
        run = api.get(f"/api/v1/runs/{summary['run_id']}").json()
        report = api.get(f"/api/v1/compile-reports/{result['report_id']}")
        canary = api.get("/api/v1/signatures/SelectTool.v1/canary").json()
        history = api.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()
        snapshot = api.get(f"/api/v1/signatures/SelectTool.v1/snapshots/{result['dataset_hash']}")
        kinds = _kinds(api, summary["run_id"])
    assert run["status"] == "succeeded"
    assert run["links"]["SelectTool.v1"]["compile_report"] == result["report_id"]
    assert run["summary"]["exit_code"] == 0
    assert report.status_code == 200
    assert snapshot.status_code == 200
    assert (canary["canary"]["canary_id"], canary["canary"]["status"]) == (result["canary_id"], "promoted")
    assert canary["canary"]["config"]["srm_threshold_p"] == FAIR_SPLIT_P  # the helper's flag reached the plan
    # what the summary says the canary counted is what its arms hold (requests still in flight when it decided
    # included); the rest of what was sent was served by the champion
    arms = canary["canary"]["arms"]
    assert result["requests_on_arms"] == arms["control"]["samples"] + arms["candidate"]["samples"]
    assert result["requests_on_arms"] <= result["requests_sent"]
    assert history["champion_id"] == result["best_compiled_id"]
    assert [h["id"] for h in history["history"]] == result["alias_history_ids"]
    for phase in ("preflight", "verify", "dataset.import", "compile", "canary.start", "traffic", "decide", "e2e"):
        assert f"{phase}.finished" in kinds, phase
    assert kinds[-1] == "run.finished"
    assert {"gate_evaluated", "canary.opened", "canary.promoted", "alias.moved", "compile.report"} <= set(kinds)
    assert all(n == 1 for k, n in Counter(kinds).items() if k.endswith((".started", ".finished")) and
               k.split(".")[0] not in ("run",)), Counter(kinds)
    # The next night, same data: compiled against the new champion, nothing beats it, nothing changes.
    again, second, stderr = overnight_run(db_url, BETTER, "--dataset", str(SELECT))
    assert again == 0, stderr[-3000:]
    assert second["signatures"]["SelectTool.v1"]["decision"] == "no_improvement"
    assert second["signatures"]["SelectTool.v1"]["e2e"]["served"] == [result["best_compiled_id"]]


def test_a_candidate_failing_30_percent_is_rolled_back_with_exit_3(db_url: str) -> None:
    code, summary, stderr = overnight_run(db_url, FLAKY, "--dataset", str(SELECT))
    assert code == 3, stderr[-3000:]
    result = summary["signatures"]["SelectTool.v1"]
    assert result["decision"] == "rolled_back"
    assert result["canary_status"] == "failed"
    with live_server(db_url) as server, server.client() as api:
        canary = api.get("/api/v1/signatures/SelectTool.v1/canary").json()
        history = api.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()
    assert history["champion_id"] is None
    assert history["history"] == []
    assert canary["history"][-1]["evidence"]["reason_code"] == "error_rate_exceeded"
    assert "e-value" in canary["canary"]["end_reason"]
    assert result["e2e"]["served"] == [result["champion_before"]]
    shown = subprocess.run([sys.executable, "-m", "overnight", "canary", "-s", "SelectTool.v1"], capture_output=True,
                           text=True, timeout=60, check=False, env=runner_env(db_url, FLAKY, COLUMNS="200"))
    line = next(x for x in shown.stdout.splitlines() if x.startswith("errors by code: "))
    assert re.match(r"errors by code: candidate: (lm_error|timeout|parse_failure) \d+", line), shown.stdout
    assert line.endswith(f"(each: GET /api/v1/receipts?canary={result['canary_id']}&ok=false)")
    codes = line.removeprefix("errors by code: ").split(" (each:")[0]
    review = subprocess.run([sys.executable, "-m", "overnight", "show", summary["run_id"]], capture_output=True,
                            text=True, timeout=60, check=False, env=runner_env(db_url, FLAKY, COLUMNS="200"))
    assert f"errors by code: {codes}\n" in review.stdout  # the morning review says the same
    with live_server(db_url) as server, server.client() as api:
        page = api.get(f"/review/runs/{summary['run_id']}").text
    assert f'<p class="errors-by-code">errors by code: {codes}</p>' in page


def progress(stderr: str) -> list[str]:
    """The runner's progress lines (JSON on stderr when it is not a terminal), in order."""
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [str(line["message"]) for line in lines if line.get("event") == "runner_progress"]


def test_a_candidate_the_promotion_would_refuse_on_its_holdout_delta_opens_no_canary(db_url: str) -> None:
    """Ahead on holdout but with an interval that cannot rule out worse, the candidate would be refused at the
    promotion (DESIGN §7's holdout gate): sending users' requests to it in a canary first would be for nothing."""
    code, summary, stderr = overnight_run(db_url, UNSHOWN, "--dataset", str(SELECT))
    assert code == 4, stderr[-3000:]  # inconclusive: the holdout could not show it either way
    result = summary["signatures"]["SelectTool.v1"]
    assert (result["decision"], result["canary_id"]) == ("inconclusive", None)
    assert result["champion_after"] == result["champion_before"]
    best = result["best_compiled_id"][:12]
    why = (f"compile's best {best}: paired holdout delta +0.133 [-0.100, +0.367] over 30 examples: needs delta >= 0 "
           "and lower bound >= -0.05; the promotion would refuse it, so no canary was opened (more holdout rows "
           "narrow the interval)")
    assert result["reason"] == why
    with live_server(db_url) as server, server.client() as api:
        assert api.get("/api/v1/signatures/SelectTool.v1/canary").status_code == 404  # none was ever opened
        kinds = _kinds(api, summary["run_id"])
    assert "canary.start.finished" in kinds
    assert "traffic.started" not in kinds
    shown = " ".join(overnight_show(db_url, summary["run_id"]).split())
    assert f"SelectTool.v1: no change — {why}; {result['champion_before'][:12]} still serves" in shown, shown


def test_a_stricter_holdout_bar_is_asked_before_the_canary_and_at_the_promotion(db_url: str) -> None:
    """BETTER's best is +0.433 [+0.233, +0.633] on holdout: short of --min-delta 0.5 it opens no canary; with
    --min-delta 0.4 --holdout-margin 0 it is canaried and promoted on that bar, which its alias move records."""
    code, summary, stderr = overnight_run(db_url, BETTER, "--dataset", str(SELECT), "--min-delta", "0.5")
    assert code == 4, stderr[-3000:]
    result = summary["signatures"]["SelectTool.v1"]
    assert (result["decision"], result["canary_id"]) == ("inconclusive", None)
    assert result["reason"].split(": ", 1)[1] == (  # not far enough ahead: more rows are no remedy, and not said
        "paired holdout delta +0.433 [+0.233, +0.633] over 30 examples: needs delta >= 0.5 and lower bound >= -0.05; "
        "the promotion would refuse it, so no canary was opened")
    code, summary, stderr = overnight_run(db_url, BETTER, "--min-delta", "0.4", "--holdout-margin", "0")
    assert code == 0, stderr[-3000:]
    assert summary["signatures"]["SelectTool.v1"]["decision"] == "promoted"
    with live_server(db_url) as server, server.client() as api:
        move = api.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()["history"][-1]
    holdout = next(g for g in move["evidence"]["gates"] if g["reason_code"] == "holdout_delta_met")
    assert (holdout["evidence"]["min_delta"], holdout["evidence"]["margin"]) == (0.4, 0)
    assert holdout["message"].endswith(">= 0.4, lower bound >= -0")
    from tests.review.test_show import overnight  # noqa: PLC0415

    refused = overnight(db_url, "run", "--holdout-margin", "-0.1")  # bad input: a usage error, and nothing run
    assert refused.returncode == 2
    assert "--holdout-margin" in refused.stderr
    refused = overnight(db_url, "promote", move["to_id"], "-s", "SelectTool.v1", "--min-delta", "2")
    assert refused.returncode == 2
    assert "--min-delta" in refused.stderr


def test_nothing_better_is_no_improvement_and_no_canary(db_url: str) -> None:
    code, summary, stderr = overnight_run(db_url, NOTHING, "--dataset", str(SELECT))
    assert code == 0, stderr[-3000:]
    result = summary["signatures"]["SelectTool.v1"]
    assert result["decision"] == "no_improvement"
    assert result["canary_id"] is None
    assert re.search(r"SelectTool.v1: compiled 9 candidates with [1-9]\d* LM calls; best", stderr)
    said = progress(stderr)  # the compile is one request to the API: its rungs are said as the server records them
    rungs = [line for line in said if " rung " in line]
    assert [line.split(",")[0] for line in rungs] == [f"SelectTool.v1: rung {i}" for i in range(3)], said  # once each
    assert re.fullmatch(r"SelectTool.v1: rung 0, 9 candidates on \d+ train examples \(\d+ evaluations so far\)",
                        rungs[0]), rungs
    assert said.index(rungs[-1]) < next(i for i, line in enumerate(said) if line.startswith("SelectTool.v1: compiled"))
    again, summary, stderr = overnight_run(db_url, NOTHING, "--dataset", str(SELECT))
    assert again == 0, stderr[-3000:]
    assert [line for line in progress(stderr) if " rung " in line] == []  # cached: no rung was run
    assert (f"SelectTool.v1: compile cached: report {result['report_id']} of the same job and dataset, no LM call; "
            "best") in stderr  # not the LM calls the stored report paid the night it was made
    with live_server(db_url) as server, server.client() as api:
        assert api.get("/api/v1/signatures/SelectTool.v1/canary").status_code == 404
        events = api.get(f"/api/v1/runs/{summary['run_id']}/events").json()["events"]
    compiled = next(e for e in events if e["kind"] == "compile.finished")
    assert (compiled["data"]["cached"], compiled["data"]["lm_calls"]) == (True, 0)


def test_keep_days_prunes_after_the_signatures_and_records_it_on_the_run(db_url: str) -> None:
    """The nightly job is one command: `--keep-days` prunes what grows with traffic as the run's last step."""
    from tests.factories import SteppingClock, make_store  # noqa: PLC0415
    from tests.store.test_prune import DAY_S, champion_receipt  # noqa: PLC0415

    store = make_store(db_url, SteppingClock(now=int(time.time() * 1000) - 40 * DAY_S * 1000))  # 40 days ago
    for i in range(3):
        store.record_receipt(receipt=champion_receipt(f"old-{i}"))
    store.close()
    code, summary, stderr = overnight_run(db_url, NOTHING, "--dataset", str(SELECT), "--keep-days", "30")
    assert code == 0, stderr[-3000:]
    assert (summary["pruned"]["receipts"], summary["pruned"]["keep_days"]) == (3, 30)
    with live_server(db_url) as server, server.client() as api:
        events = api.get(f"/api/v1/runs/{summary['run_id']}/events", params={"limit": 1000}).json()["events"]
        left = api.get("/api/v1/receipts", params={"limit": 1000}).json()["receipts"]
    kinds = [e["kind"] for e in events]
    assert kinds.index("prune.finished") > kinds.index("e2e.finished")  # after the night's work
    assert next(e for e in events if e["kind"] == "prune.finished")["data"]["receipts"] == 3
    assert left  # tonight's e2e receipts stay…
    assert not any(r["receipt_id"].startswith("old-") for r in left)  # …the old ones went
    said = "prune: deleted 3 receipts served outside any canary and 0 idempotency keys older than 30 days"
    assert said in overnight_show(db_url, summary["run_id"])  # the morning review says what went
    with live_server(db_url) as server, server.client() as api:
        assert said in api.get(f"/review/runs/{summary['run_id']}").text
    nothing = overnight_run(db_url, NOTHING, "--keep-days", "0")
    assert nothing[0] == 2


def test_two_signatures_each_get_their_own_decision(db_url: str) -> None:
    code, summary, stderr = overnight_run(db_url, BETTER, "-s", "SelectTool.v1", "-s", "SupportTriage.v1",
                                          "--dataset", f"SelectTool.v1={SELECT}",
                                          "--dataset", f"SupportTriage.v1={TRIAGE}")
    assert code in (0, 3, 4), stderr[-3000:]
    assert set(summary["signatures"]) == {"SelectTool.v1", "SupportTriage.v1"}
    assert summary["signatures"]["SelectTool.v1"]["decision"] == "promoted"
    triage = summary["signatures"]["SupportTriage.v1"]
    assert triage["decision"] in ("promoted", "no_improvement", "inconclusive", "rolled_back")
    assert triage["report_id"] != summary["signatures"]["SelectTool.v1"]["report_id"]


def test_preflight_fails_fast_with_exit_2_records_why_and_changes_nothing_else(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(SELECT.read_text() + '{"example_id": "x", "split": "train"}\n')
    code, summary, _stderr = overnight_run(db_url, BETTER, "--dataset", str(bad))
    assert code == 2
    assert "dataset_invalid" in summary["verdict"]
    assert "line 78" in summary["verdict"]
    missing = overnight_run(db_url, BETTER, "--dataset", str(tmp_path / "nope.jsonl"))
    assert missing[0] == 2
    assert missing[1]["verdict"].endswith(f"dataset file {tmp_path / 'nope.jsonl'} for SelectTool.v1 cannot be read: "
                                          "No such file or directory")
    folder = overnight_run(db_url, BETTER, "--dataset", str(tmp_path))
    assert folder[0] == 2
    assert folder[1]["verdict"].endswith(f"dataset file {tmp_path} for SelectTool.v1 cannot be read: Is a directory")
    broken_lm = overnight_run(db_url, "sim:err=1,errors=raise", "--dataset", str(SELECT))
    assert broken_lm[0] == 2
    assert "did not answer" in broken_lm[1]["verdict"]
    unreachable = overnight_run(db_url, BETTER, "--base-url", "http://127.0.0.1:9", "--dataset", str(SELECT),
                                OVERNIGHT_TOKEN="x" * 40)
    assert unreachable[0] == 2
    assert "api_unreachable" in unreachable[1]["verdict"]
    bad_deadline = overnight_run(db_url, BETTER, "--deadline", "soon")
    assert bad_deadline[0] == 2
    assert "config_error: --deadline" in bad_deadline[2]
    bad_threshold = overnight_run(db_url, BETTER, "--srm-threshold", "0.5", "--dataset", str(SELECT))
    assert bad_threshold[0] == 2
    assert "config_error: --srm-threshold 0.5: give a p-value in (0, 0.05]" in bad_threshold[2]
    twice = overnight_run(db_url, BETTER, "-s", "SelectTool.v1", "-s", "SupportTriage.v1", "-s", "SelectTool.v1")
    assert twice[0] == 2
    assert "config_error: --signature SelectTool.v1 is given twice" in twice[2]
    two_files = overnight_run(db_url, BETTER, "--dataset", str(SELECT), "--dataset", f"SelectTool.v1={bad}")
    assert two_files[0] == 2
    assert (f"config_error: --dataset SelectTool.v1={bad}: SelectTool.v1 already has a dataset ({SELECT})"
            in two_files[2])
    elsewhere = subprocess.run([sys.executable, "-m", "overnight", "run", "--json", "-s", "SupportTriage.v1"],
                               capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
                               env=runner_env(db_url, BETTER))  # no datasets/ here, no rows in the store
    assert elsewhere.returncode == 2, elsewhere.stderr[-2000:]
    assert json.loads(elsewhere.stdout)["verdict"] == (
        "preflight failed: config_error: SupportTriage.v1 has no train and no holdout rows in the store, and no "
        "dataset file was given: pass --dataset SupportTriage.v1=FILE (or put datasets/supporttriage.v1.jsonl in the "
        "current directory), or `overnight import FILE -s SupportTriage.v1` first")
    with live_server(db_url) as server, server.client() as api:
        runs = api.get("/api/v1/runs").json()["runs"]
        assert api.get("/api/v1/signatures/SelectTool.v1/examples").json()["examples"] == []  # nothing imported
    # what the API could hear of is on the record, newest first: a failed run each, with the verdict it printed;
    # an unreachable API, and the options refused before the preflight, left none
    recorded = [code, missing[0], folder[0], broken_lm[0], 2]
    verdicts = [summary["verdict"], missing[1]["verdict"], folder[1]["verdict"], broken_lm[1]["verdict"],
                json.loads(elsewhere.stdout)["verdict"]]
    assert [(r["status"], r["summary"]["exit_code"], r["summary"]["verdict"]) for r in reversed(runs)] == [
        ("failed", c, v) for c, v in zip(recorded, verdicts, strict=True)]
    assert all(not r["signatures"] for r in (summary, missing[1], folder[1], broken_lm[1]))


def test_a_night_whose_preflight_fails_is_on_the_record_for_the_morning(db_url: str) -> None:
    """Cron at 2 a.m., the LM down: exit 2 as before, and a failed run that `overnight runs` and `show` name, so
    the morning's review sees the night that did not happen and why, not a gap. Nothing else is changed."""
    broken_lm = "sim:err=1,errors=raise"
    code, summary, stderr = overnight_run(db_url, broken_lm, "--dataset", str(SELECT))
    assert code == 2, stderr[-2000:]
    run_id = summary["run_id"]
    assert run_id is not None
    assert summary["status"] == "failed"
    assert summary["verdict"].startswith("preflight failed: config_error: the LM sim:")
    assert "did not answer SelectTool.v1's sample input" in summary["verdict"]
    assert summary["review"] == f"overnight show {run_id}"
    with live_server(db_url) as server, server.client() as api:
        run = api.get(f"/api/v1/runs/{run_id}").json()
        kinds = _kinds(api, run_id)
        failed = [e for e in api.get(f"/api/v1/runs/{run_id}/events").json()["events"]
                  if e["kind"] == "preflight.failed"]
        examples = api.get("/api/v1/signatures/SelectTool.v1/examples").json()["examples"]
        locks = api.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"]})
    assert (run["status"], run["summary"]["verdict"]) == ("failed", summary["verdict"])
    assert kinds[0] == "run.started"
    assert "preflight.finished" not in kinds
    assert not any(kind.startswith(("dataset.", "compile", "canary")) for kind in kinds)
    assert len(failed) == 1
    assert failed[0]["level"] == "error"
    assert failed[0]["data"]["code"] == "config_error"
    assert "did not answer" in failed[0]["data"]["error"]
    assert examples == []  # the dataset was not imported
    assert locks.status_code == 201, locks.text  # the failed run holds no lease
    shown = overnight_show(db_url, run_id)
    assert "preflight failed: config_error: the LM" in shown
    from tests.api.test_review_pages import signed_in  # noqa: PLC0415
    from tests.review.test_show import overnight  # noqa: PLC0415

    listed = overnight(db_url, "runs", columns="400")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if run_id in line)
    assert f"SelectTool.v1: - ({summary['verdict'][:40]}" in row  # the table says why no signature was decided
    with live_server(db_url) as server, signed_in(server) as browser:
        page = browser.get("/review").text
    assert re.search(r'SelectTool\.v1</a>: <span class="">-</span> <span class="failed">\(preflight failed: '
                     r"config_error: the LM sim:", page), page

    before = _rows_per_table(db_url)
    dry = overnight_run(db_url, broken_lm, "--dry-run", "--dataset", str(SELECT))
    assert dry[0] == 2
    assert dry[1]["run_id"] is None  # a dry run changes nothing, its failure included
    assert _rows_per_table(db_url) == before


def _rows_per_table(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {name: conn.execute(select(func.count()).select_from(table(name))).scalar_one()
                    for name in inspect(conn).get_table_names()}
    finally:
        engine.dispose()


def test_a_dry_run_checks_what_a_night_would_and_changes_nothing(db_url: str) -> None:
    with live_server(db_url) as server, server.client() as api:  # a store with a night's worth of state in it
        assert api.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"]}).status_code == 201
    before = _rows_per_table(db_url)
    assert (before["ops_runs"], before["run_locks"]) == (1, 1)
    code, summary, stderr = overnight_run(db_url, BETTER, "--dry-run", "--dataset", str(SELECT))
    assert code == 0, stderr[-2000:]
    assert summary["verdict"] == "dry run: preflight passed; nothing was changed"
    assert "preflight: SelectTool.v1 answered by" in stderr
    assert _rows_per_table(db_url) == before


def test_a_dry_run_makes_no_store_and_upgrades_none(db_url: str, tmp_path: Path) -> None:
    """"Preflight only: change nothing" holds for the store itself: a dry run before the first night (or against a
    mistyped OVERNIGHT_DB_URL) made and migrated the database; one after an upgrade migrated the schema."""
    new = tmp_path / "not" / "yet" / "overnight.db"
    code, summary, stderr = overnight_run(f"sqlite:///{new}", BETTER, "--dry-run", "--dataset", str(SELECT))
    assert code == 0, stderr[-2000:]
    said = (f"no overnight store at sqlite:///{new} yet (a real run, import or `overnight serve` makes it): this dry "
            "run reads an empty temporary store")
    assert summary["verdict"] == f"dry run: preflight passed; nothing was changed; {said}"
    assert said in stderr
    assert not (tmp_path / "not").exists()

    engine = create_engine(db_url, poolclass=NullPool)
    downgrade(engine, "base")  # a database with no overnight tables: what a new PostgreSQL database is
    code, summary, stderr = overnight_run(db_url, BETTER, "--dry-run", "--dataset", str(SELECT))
    assert code == 0, stderr[-2000:]
    assert "this dry run reads an empty temporary store" in stderr
    assert current_revision(engine) is None

    upgrade(engine, "0002")  # a store an older overnight made
    code, summary, stderr = overnight_run(db_url, BETTER, "--dry-run", "--dataset", str(SELECT))
    assert code == 2
    assert f"the store's schema is at revision 0002 and this version needs {head_revision()}" in stderr
    assert "`overnight db upgrade`" in stderr
    assert current_revision(engine) == "0002"
    engine.dispose()


def test_resuming_a_run_that_is_not_there_or_not_running_is_a_preflight_failure_before_the_lm_is_asked(
        db_url: str) -> None:
    """Exit 2 (a usage error: nothing changed), not a preflight that runs the LM check (minutes on the local model)
    and then fails with exit 1. The LM here fails every call, so reaching its check would say "did not answer"."""
    broken_lm = "sim:err=1,errors=raise"
    code, summary, _ = overnight_run(db_url, broken_lm, "--resume", "night-nope")
    assert code == 2
    assert summary["verdict"].startswith("preflight failed: run_not_found: "), summary["verdict"]
    with live_server(db_url) as server, server.client() as api:
        assert api.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"], "run_id": "done-run"}).status_code \
            == 201
        finished = api.post("/api/v1/runs/done-run/finish", json={"status": "succeeded", "summary": {}, "links": {}})
        assert finished.status_code == 200, finished.text
    code, summary, _ = overnight_run(db_url, broken_lm, "--resume", "done-run")
    assert code == 2
    assert summary["verdict"] == ("preflight failed: run_not_running: run done-run is succeeded: only a running run "
                                  "can be resumed; start a new run instead")
    with live_server(db_url) as server, server.client() as api:  # one still running, as a crashed night leaves it
        assert api.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"], "run_id": "live-run"}).status_code \
            == 201
    code, summary, _ = overnight_run(db_url, broken_lm, "--resume", "live-run")
    assert code == 2, summary
    assert summary["verdict"].startswith("preflight failed: config_error: the LM sim:"), summary["verdict"]
    with live_server(db_url) as server, server.client() as api:  # told to the run it would have resumed: no more
        run = api.get("/api/v1/runs/live-run").json()
        told = api.get("/api/v1/runs/live-run/events").json()["events"]
    assert run["status"] == "running"
    assert [(e["kind"], e["level"], e["message"]) for e in told if e["kind"] != "run.started"] == [(
        "resume.refused", "warning", f"a resume of this run was refused: {summary['verdict']}; nothing changed, and it "
        "can be resumed again")]



@pytest.mark.parametrize("bar", ["", "--min-delta 0.4 --holdout-margin 0"])
def test_no_promote_holds_a_passed_canary_for_a_person_and_the_printed_command_promotes_it(db_url: str,
                                                                                            bar: str) -> None:
    """`--no-promote` (Argo's autoPromotionEnabled: false, Flagger's confirm-promotion): the night compiles, runs
    its canary to a pass and stops there: nothing moves, the champion serves everything (the e2e check says so),
    exit 0. The summary, `show` and the run page print the promote command, which passes every gate in the
    morning — on the holdout bar the night asked, which the review shows; a run that promoted nothing has nothing
    to undo."""
    done = subprocess.run([sys.executable, "-m", "overnight", "run", "--dataset", str(SELECT), "--no-promote",
                           *bar.split(), *FAIR_SPLIT], capture_output=True, text=True, timeout=300, check=False,
                          env=runner_env(db_url, BETTER))
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.split()[1].rstrip(":")
    lines = done.stdout.splitlines()
    assert "  SelectTool.v1: held — canary passed; held for a person to promote (--no-promote)" in lines
    assert "to undo:" not in lines
    command = lines[lines.index("to promote what it held:") + 1].strip()
    asked = f" {bar}" if bar else ""
    assert re.fullmatch(rf"overnight promote [0-9a-f]{{64}} -s SelectTool.v1{asked} --run {run_id} --reason 'promote "
                        rf"what {run_id} held'", command), command
    candidate = command.split()[2]
    with live_server(db_url, lm=BETTER) as server, server.client() as api:
        run = api.get(f"/api/v1/runs/{run_id}").json()
        canary = api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]
        champion = api.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()["champion_id"]
        review = api.get(f"/api/v1/runs/{run_id}/review").json()
        page = api.get(f"/review/runs/{run_id}").text
    result = run["summary"]["signatures"]["SelectTool.v1"]
    assert (run["summary"]["exit_code"], result["decision"], result["canary_status"]) == (0, "held", "passed")
    assert (canary["candidate_id"], canary["status"], champion) == (candidate, "passed", None)  # nothing moved
    assert result["champion_after"] == result["champion_before"]
    assert result["e2e"]["ok"] is True
    assert result["e2e"]["served"] == [result["champion_before"]]  # the champion serves everything
    assert (run["summary"]["promote"], run["summary"]["undo"], review["promote"], review["undo"]) == (
        [command], [], [command], [])
    assert review["signatures"][0]["sentence"].startswith("SelectTool.v1: held — holdout +")
    assert review["signatures"][0]["sentence"].endswith(f"serves until a person promotes {candidate[:12]}")
    escaped = command.replace("'", "&#39;")  # as the page's template writes a quote
    assert f'<pre class="mono">{escaped}</pre>' in page
    assert f'<pre class="mono">{escaped} --base-url URL</pre>' in page  # and for a host with only the API
    shown = overnight_show(db_url, run_id).splitlines()
    assert shown[shown.index("to promote what it held:") + 1] == f"  {command}"
    assert review["holdout_bar"] == (bar or None)
    assert (f"holdout bar: {bar}" in shown, f'<p id="holdout-bar">holdout bar: <code>{bar}</code></p>' in page) == (
        bool(bar), bool(bar))
    promoted = subprocess.run([sys.executable, "-m", "overnight", *shlex.split(command)[1:], "--json"],
                              capture_output=True, text=True, timeout=60, check=False, env=runner_env(db_url, BETTER))
    assert promoted.returncode == 0, promoted.stderr  # every gate passes: no --force
    moved = json.loads(promoted.stdout)
    assert (moved["move"]["to_id"], moved["forced"]) == (candidate, False)
    assert moved["move"]["reason"] == f"promote what {run_id} held"
    holdout = next(g for g in moved["move"]["evidence"]["gates"] if g["reason_code"] == "holdout_delta_met")
    assert (holdout["evidence"]["min_delta"], holdout["evidence"]["margin"]) == ((0.4, 0) if bar else (0, 0.05))
    assert moved["move"]["run_id"] == run_id  # the morning's move answers the night: its review shows it
    shown = overnight_show(db_url, run_id).splitlines()
    assert "to promote what it held:" not in shown
    undo = shown[shown.index("to undo:") + 1].strip()
    assert undo == f"overnight rollback -s SelectTool.v1 --to default --run {run_id} --reason 'undo {run_id}'"
    assert any(line.endswith("(after the run): the gates above passed") for line in shown), shown
    assert any(line.strip().endswith(f"since the run: cli:{getpass.getuser()} promoted {candidate[:12]}")
               for line in shown), shown
    assert f"Run {run_id} succeeded: the run changed nothing (SelectTool.v1 held, then cli:{getpass.getuser()} " \
           f"promoted {candidate[:12]})." in shown, shown
    with live_server(db_url, lm=BETTER) as server, server.client() as api:
        page = api.get(f"/review/runs/{run_id}").text
    assert f"by cli:{getpass.getuser()} (after the run):" in page
    assert 'id="promote"' not in page
    assert '<pre class="mono">' + undo.replace("'", "&#39;") + "</pre>" in page


def test_the_summary_ends_with_the_command_that_undoes_the_promotion_and_it_runs_as_printed(db_url: str) -> None:
    """A cron log or an agent's transcript is often all a person sees of the night: the summary it printed names
    the undo command as the review does, whole, ready to paste (and `--json` has it as `undo`)."""
    done = subprocess.run([sys.executable, "-m", "overnight", "run", "--dataset", str(SELECT), *FAIR_SPLIT],
                          capture_output=True, text=True, timeout=300, check=False, env=runner_env(db_url, BETTER))
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.split()[1].rstrip(":")
    lines = done.stdout.splitlines()
    command = lines[lines.index("to undo:") + 1].strip()
    assert command == f"overnight rollback -s SelectTool.v1 --to default --run {run_id} --reason 'undo {run_id}'"
    undone = subprocess.run([sys.executable, "-m", "overnight", *shlex.split(command)[1:], "--json"],
                            capture_output=True, text=True, timeout=60, check=False, env=runner_env(db_url, BETTER))
    assert undone.returncode == 0, undone.stderr
    assert json.loads(undone.stdout)["move"]["to_id"] is None
    again, summary, stderr = overnight_run(db_url, FLAKY, "--dataset", str(SELECT))  # rolled back: nothing to undo
    assert again == 3, stderr[-3000:]
    assert summary["undo"] == []


def test_a_program_someone_rolled_back_is_not_tried_again_by_the_next_night(db_url: str) -> None:
    """The gates passed it; in the morning a person rolled it back for a reason the gates cannot see. The next night
    compiles the same data with the same LM, so the same program comes out best: that night opens no canary for
    it and changes nothing (exit 0), and says who took it back and how to serve it anyway."""
    code, first, stderr = overnight_run(db_url, BETTER, "--dataset", str(SELECT))
    assert (code, first["signatures"]["SelectTool.v1"]["decision"]) == (0, "promoted"), stderr[-3000:]
    best = first["signatures"]["SelectTool.v1"]["champion_after"]
    undo = shlex.split(first["undo"][0])
    undone = subprocess.run([sys.executable, "-m", "overnight", *undo[1:], "--actor", "cli:alice"],
                            capture_output=True, text=True, timeout=60, check=False, env=runner_env(db_url, BETTER))
    assert undone.returncode == 0, undone.stderr
    code, summary, stderr = overnight_run(db_url, BETTER, "--dataset", str(SELECT))
    assert code == 0, stderr[-3000:]
    result = summary["signatures"]["SelectTool.v1"]
    assert (result["best_compiled_id"], result["decision"], result["canary_id"]) == (best, "no_improvement", None)
    default = first["signatures"]["SelectTool.v1"]["champion_before"]
    assert result["champion_before"] == result["champion_after"] == default  # the default program still serves
    assert re.fullmatch(
        rf"compile's best {best[:12]} was rolled back by cli:alice at \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\dZ "
        rf"\('undo {first['run_id']}'\), so no canary was opened: a night does not try again a program taken off "
        rf"serving until someone promotes it \(overnight promote {best[:12]} -s SelectTool.v1 --force --reason …\)",
        result["reason"]), result["reason"]
    with live_server(db_url) as server, server.client() as api:
        kinds = _kinds(api, summary["run_id"])
        canary = api.get("/api/v1/signatures/SelectTool.v1/canary").json()
    assert "traffic.started" not in kinds
    assert canary["canary"]["canary_id"] == first["signatures"]["SelectTool.v1"]["canary_id"]  # the first night's
    shown = " ".join(overnight_show(db_url, summary["run_id"]).split())
    assert f"SelectTool.v1: no change — {result['reason']}; {default[:12]} still serves" in shown, shown
