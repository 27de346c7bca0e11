"""`overnight show` on a fixed finished run: the whole review, byte for byte (golden), on both stores; and
`overnight runs` with its filters."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from overnight.domain.compiling import Artifact
from overnight.domain.runs import EventIn, RunStart
from overnight.store.sql import SqlStore
from tests.factories import READ_TOKEN, SteppingClock, live_server
from tests.review import golden_run

GOLDEN = Path(__file__).parent / "golden" / "show.txt"


def overnight(db_url: str, *args: str, columns: str | None = "120", **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_") and k != "COLUMNS"}
    width = {"COLUMNS": columns} if columns else {}
    return subprocess.run([sys.executable, "-m", "overnight", *args], capture_output=True, text=True, timeout=60,
                          check=False, env={**base, "OVERNIGHT_DB_URL": db_url, "TERM": "dumb", **width, **env})


@pytest.fixture
def golden_db(db_url: str, open_store: Callable[..., SqlStore], clock: SteppingClock) -> str:
    golden_run.build(open_store(), clock)
    return db_url


def test_show_prints_the_same_review_every_time(golden_db: str) -> None:
    shown = overnight(golden_db, "show", golden_run.RUN_ID)
    assert shown.returncode == 0, shown.stderr
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(shown.stdout, encoding="utf-8")
    assert shown.stdout == GOLDEN.read_text(encoding="utf-8")


def test_the_golden_review_says_what_changed_and_why(golden_db: str) -> None:
    """What the golden file must keep saying, whatever its layout becomes."""
    text = GOLDEN.read_text(encoding="utf-8")
    for needle in ("night-golden  succeeded (exit 0)", "SelectTool.v1: promoted", "cr-golden",
                   "85 LM calls, 77 scores read back from earlier compiles",
                   "paired holdout delta +0.300", "canary can-golden promoted", "error_rate_within_bound: pass",
                   "quality_not_worse: pass", "alias move #1",
                   "re-derived: each of the 2 gate decisions follows from the inputs recorded with it",
                   "e2e: ok — 5 requests served by bbbbbbbbbbbb",
                   "to undo:\n  overnight rollback -s SelectTool.v1"):
        assert needle in text, needle
    assert text.index("timeline") < text.index("compile cr-golden") < text.index("canary can-golden") \
        < text.index("alias move") < text.index("e2e:") < text.index("Run night-golden succeeded")


def test_a_gate_decision_that_does_not_follow_from_its_recorded_inputs_is_flagged(golden_db: str) -> None:
    """Each gate decision is run again on the inputs recorded with it; a forged record (or one drawn by a gate
    changed without a new method version) is marked where it stands, and counted under the canary."""
    golden_run.forge_a_pass(golden_db)
    shown = overnight(golden_db, "show", golden_run.RUN_ID)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    forged = lines.index("    ! re-derived: differs — recorded gate_evaluated pass; its inputs give look_missed "
                         "inconclusive")
    promoted = lines.index("  promoted at 50% (step 1) by ops-agent: the champion moved (the alias move below)")
    assert promoted < forged  # under the forged verdict, the last entry, not under the true one before it
    assert lines[forged - 1].startswith("    - split_as_planned: pass")
    assert ("  re-derived: 2 of 3 gate decisions follow from the inputs recorded with them; 1 DO NOT (marked above)"
            in lines)
    assert sum(line.startswith("    ! re-derived") for line in lines) == 1
    as_json = json.loads(overnight(golden_db, "show", golden_run.RUN_ID, "--json").stdout)
    history = as_json["signatures"][0]["canary"]["history"]
    assert [entry["rederived"] and entry["rederived"]["status"] for entry in history] == [
        None, "agrees", "agrees", None, "differs"]


def test_the_undo_command_the_review_ends_with_runs_as_printed(golden_db: str) -> None:
    """The review's last line said `overnight rollback SelectTool.v1`, which the CLI refuses (no -s, no --reason):
    the one command a reviewer copies at 7 am. Each undo command is printed whole on a line of its own (a command
    wrapped across lines would run as two, one cut at the terminal's edge would fail — as every `--to <64 hex>`
    did on a terminal under 150 columns), and it puts back the champion the run replaced."""
    for columns in ("80", "50"):
        shown = overnight(golden_db, "show", golden_run.RUN_ID, columns=columns)
        lines = shown.stdout.splitlines()
        command = lines[lines.index("to undo:") + 1].strip()
        assert command == (f"overnight rollback -s {golden_run.SIG} --to default --run {golden_run.RUN_ID} --reason "
                           f"'undo {golden_run.RUN_ID}'"), columns
    assert json.loads(overnight(golden_db, "show", golden_run.RUN_ID, "--json").stdout)["undo"] == [command]
    undone = overnight(golden_db, *shlex.split(command)[1:], "--json")
    assert undone.returncode == 0, undone.stderr
    move = json.loads(undone.stdout)["move"]
    assert (move["from_id"], move["to_id"], move["reason"]) == (golden_run.BEST, None, f"undo {golden_run.RUN_ID}")


def test_the_short_ids_the_review_prints_are_taken_wherever_an_id_is_asked(
        golden_db: str, open_store: Callable[..., SqlStore]) -> None:
    """The review prints 12 characters of each compiled_id; `diff`, `promote` and `rollback --to` wanted all 64
    ("no artifact 'dddddddddddd'"). A unique prefix of at least 6 is resolved, as git does; an ambiguous one or a
    malformed one is refused naming the problem, and nothing moves."""
    short_default, short_best = golden_run.DEFAULT[:12], golden_run.BEST[:12]
    by_prefix = overnight(golden_db, "diff", short_default, short_best, "--json")
    assert by_prefix.returncode == 0, by_prefix.stderr
    assert by_prefix.stdout == overnight(golden_db, "diff", golden_run.DEFAULT, golden_run.BEST, "--json").stdout
    back = overnight(golden_db, "rollback", "-s", golden_run.SIG, "--to", short_default, "--reason", "r", "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["move"]["to_id"] == golden_run.DEFAULT
    forward = overnight(golden_db, "promote", short_best.upper(), "-s", golden_run.SIG, "--force", "--reason", "r",
                        "--json", OVERNIGHT_LM="sim:seed=1")  # promote names the LM; the local extra may be absent
    assert forward.returncode == 0, forward.stderr
    assert json.loads(forward.stdout)["move"]["to_id"] == golden_run.BEST

    twin = golden_run.BEST[:8] + "c" * 56  # shares 8 characters with BEST
    open_store().put_artifact(artifact=Artifact(compiled_id=twin, signature_id=golden_run.SIG, lm_id="sim:golden",
                                                state={}, params={}))
    history = len(open_store().alias_history(signature_id=golden_run.SIG))
    ambiguous = overnight(golden_db, "rollback", "-s", golden_run.SIG, "--to", golden_run.BEST[:8], "--reason", "r")
    assert ambiguous.returncode == 2
    assert ambiguous.stderr == (f"validation_error: to: '{golden_run.BEST[:8]}' is the start of more than one "
                                f"compiled_id ({golden_run.BEST[:16]}…, {twin[:16]}…): give more of it\n")
    for given in ("nope", "bbbbb", "b" * 65):
        malformed = overnight(golden_db, "promote", given, "-s", golden_run.SIG)
        assert malformed.returncode == 2
        assert malformed.stderr == (f"validation_error: candidate_id: {given!r} is not a compiled_id: give its 64 "
                                    "hex characters, or the first 6 or more (as `overnight show` prints 12)\n")
    unknown = overnight(golden_db, "diff", "abcdef", short_best)
    assert unknown.returncode == 1
    assert unknown.stderr == "artifact_not_found: no artifact whose compiled_id starts with 'abcdef'\n"
    assert len(open_store().alias_history(signature_id=golden_run.SIG)) == history


def test_diff_takes_default_for_the_default_program_compiled_beside_the_other(
        golden_db: str, open_store: Callable[..., SqlStore]) -> None:
    """The review says `champion the default program -> 7bedaebd3fa9` and undoes with `--to default`; `overnight
    diff default 7bedaebd3fa9` answered `no artifact 'default'`. It is the default program of the compile that
    made the other one; programs of two signatures are not compared silently."""
    short_best = golden_run.BEST[:12]
    forward = overnight(golden_db, "diff", "default", short_best, "--json")
    assert forward.returncode == 0, forward.stderr
    assert forward.stdout == overnight(golden_db, "diff", golden_run.DEFAULT, golden_run.BEST, "--json").stdout
    backward = overnight(golden_db, "diff", short_best, "DEFAULT")
    assert backward.stdout == overnight(golden_db, "diff", golden_run.BEST, golden_run.DEFAULT).stdout
    both = overnight(golden_db, "diff", "default", "default")
    assert both.returncode == 2
    assert both.stderr == ("validation_error: a: 'default' is the default program beside a compiled one: give the "
                           "other program's compiled_id\n")
    lone = "f" * 64  # an artifact no compile report names
    open_store().put_artifact(artifact=Artifact(compiled_id=lone, signature_id=golden_run.SIG, lm_id="sim:golden",
                                                state={}, params={}))
    alone = overnight(golden_db, "diff", "default", lone[:12])
    assert alone.returncode == 1
    assert alone.stderr == (f"artifact_not_found: no compile report of {golden_run.SIG} names ffffffffffff, so no "
                            "default program was compiled beside it: give the default's compiled_id (`overnight show "
                            "RUN_ID` lists it in the compile table, role default)\n")
    other = "a" * 64
    open_store().put_artifact(artifact=Artifact(compiled_id=other, signature_id="SupportTriage.v1", lm_id="sim:golden",
                                                state={}, params={}))
    across = overnight(golden_db, "diff", short_best, other[:12])
    assert across.returncode == 0, across.stderr
    assert across.stdout.splitlines()[0] == (f"two signatures' programs: {short_best} is {golden_run.SIG}'s, "
                                             "aaaaaaaaaaaa is SupportTriage.v1's")


def test_show_piped_without_columns_cuts_no_table_cell_short(golden_db: str) -> None:
    """An agent reads `overnight show` through a pipe, where rich would assume 80 columns and cut cells to
    "candi…"; piped with no COLUMNS it gets room for every table."""
    piped = overnight(golden_db, "show", golden_run.RUN_ID, columns=None)
    assert piped.returncode == 0, piped.stderr
    assert "…" not in piped.stdout
    assert "│ candidate " in piped.stdout
    narrow = overnight(golden_db, "show", golden_run.RUN_ID, columns="80")  # COLUMNS still rules
    assert "│ candidate " not in narrow.stdout  # too narrow for that table: its rows as records


def test_a_narrow_terminal_gets_every_value_and_no_cell_cut_short(golden_db: str) -> None:
    """In an 80-column terminal (an SSH session's default, a split pane) every table was cut to fit: "contr…",
    "(n=3…", "$0.0…", "night-20…" — the numbers and ids the reviewer came for. A table with no room for all its
    cells prints each row as a record instead: its first cell, then one `column  value` line per cell."""
    shown = overnight(golden_db, "show", golden_run.RUN_ID, columns="80")
    runs = overnight(golden_db, "runs", columns="80")
    status = overnight(golden_db, "status", columns="80")
    for done in (shown, runs, status):
        assert done.returncode == 0, done.stderr
        assert "…" not in done.stdout, done.stdout
        assert all(len(line) <= 80 for line in done.stdout.splitlines()  # but a command, printed whole to paste
                   if not line.startswith("  overnight ")), done.stdout
    lines = [line.strip() for line in shown.stdout.splitlines()]
    control = lines.index("control")
    assert lines[control + 1:control + 9] == [
        "compiled_id  dddddddddddd", "requests     304", "errors       0", "error rate   0.000",
        "upper bound  0.010", "accuracy     0.625 (n=304)", "p95 ms       ≤ 1000", "cost/call    -"]
    assert "role         incumbent, default" in lines
    assert "│ SelectTool.v1 │ dataset.import │" in shown.stdout  # a table that fits stays a table
    assert "verdict per signature  SelectTool.v1: promoted" in [line.strip() for line in runs.stdout.splitlines()]
    assert "last move  promote by ops-agent (night-golden)" in [line.strip() for line in status.stdout.splitlines()]


def test_show_json_is_the_same_review(golden_db: str) -> None:
    shown = overnight(golden_db, "show", golden_run.RUN_ID, "--json")
    assert shown.returncode == 0, shown.stderr
    review = json.loads(shown.stdout)
    sig = review["signatures"][0]
    assert (sig["decision"], sig["champion_before"], sig["champion_after"]) == (
        "promoted", golden_run.DEFAULT, golden_run.BEST)
    assert [c["compiled_id"] for c in sig["compile"]["candidates"]] == [golden_run.BEST, golden_run.DEFAULT,
                                                                       golden_run.OTHER]
    arms = {a["arm"]: a for a in sig["canary"]["arms"]}
    assert arms["candidate"]["samples"] == sig["canary"]["targets"][-1]
    assert arms["candidate"]["errors"] == 0
    assert [p["phase"] for p in review["phases"]] == ["verify", "dataset.import", "compile", "canary.start",
                                                      "traffic", "decide", "e2e"]
    assert review["phases"][2]["duration_ms"] == 95_000
    series = {s["arm"]: s["points"] for s in sig["canary"]["series"]}
    assert series["candidate"][-1]["n"] == arms["candidate"]["samples"]
    assert series["control"][-1]["n"] == arms["control"]["samples"]


def test_show_without_a_run_id_is_the_latest_run(golden_db: str, open_store: Callable[..., SqlStore],
                                                 clock: SteppingClock, tmp_path: Path) -> None:
    """The morning question is "what did last night do?": `overnight show` alone answers it, as `git show` shows
    HEAD, and says which run it is on its first line."""
    latest = overnight(golden_db, "show")
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout == overnight(golden_db, "show", golden_run.RUN_ID).stdout
    clock.advance(seconds=3600)
    open_store().start_run(request=RunStart(run_id="night-later", signature_ids=["SupportTriage.v1"]),
                           actor="ops-agent", default_lease_s=600)
    assert json.loads(overnight(golden_db, "show", "--json").stdout)["run_id"] == "night-later"
    empty = tmp_path / "empty.db"
    assert overnight(f"sqlite:///{empty}", "db", "upgrade").returncode == 0
    nothing = overnight(f"sqlite:///{empty}", "show")
    assert nothing.returncode == 1
    assert nothing.stderr == f"run_not_found: no runs in sqlite:///{empty}\n"


def test_a_run_killed_after_it_held_back_its_canary_is_reviewed_with_the_reason_it_recorded(
    golden_db: str, open_store: Callable[..., SqlStore], clock: SteppingClock,
) -> None:
    """No summary was written (the runner was SIGKILLed after the step): the review reads the decision and reason
    the runner recorded on its skipped canary.start step, rather than guessing one."""
    clock.advance(seconds=3600)
    store = open_store()
    store.start_run(request=RunStart(run_id="night-killed", signature_ids=["SelectTool.v1"]), actor="ops-agent",
                    default_lease_s=600)
    reason = ("compile stopped at the run's deadline (60 s) after 40 LM calls, before it could compare candidates on "
              "holdout; the champion stays, and the next compile resumes from the scores this one kept")
    store.append_event(run_id="night-killed", event=EventIn(
        kind="canary.start.finished", phase="canary.start", message="SelectTool.v1: canary.start finished",
        data={"skipped": "deadline", "decision": "inconclusive", "reason": reason, "elapsed_s": 61},
        client_event_id="SelectTool.v1:canary.start:finished"))
    review = json.loads(overnight(golden_db, "show", "night-killed", "--json").stdout)
    assert (review["signatures"][0]["decision"], review["signatures"][0]["reason"]) == ("inconclusive", reason)


def test_show_of_an_unknown_run_says_so_and_exits_1(golden_db: str) -> None:
    shown = overnight(golden_db, "show", "night-nope")
    assert shown.returncode == 1
    assert shown.stderr.strip().startswith("run_not_found:")
    # `overnight show "$RUN_ID"` with the variable unset: not the latest run passed off as the one asked for
    unset = overnight(golden_db, "show", "")
    assert (unset.returncode, unset.stdout, unset.stderr.split(":")[0]) == (1, "", "run_not_found"), unset.stderr


def test_runs_lists_the_verdict_per_signature_and_filters(golden_db: str, open_store: Callable[..., SqlStore],
                                                          clock: SteppingClock) -> None:
    clock.advance(seconds=48 * 3600)
    open_store().start_run(request=RunStart(run_id="night-later", signature_ids=["SupportTriage.v1"]),
                           actor="ops-agent", default_lease_s=600)
    listed = overnight(golden_db, "runs", "--json")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == ["night-later", "night-golden"]
    golden = json.loads(listed.stdout)[1]
    assert (golden["status"], golden["exit_code"], golden["decisions"]) == (
        "succeeded", 0, {"SelectTool.v1": "promoted"})
    table = overnight(golden_db, "runs", "--status", "succeeded")
    assert "night-golden" in table.stdout
    assert "SelectTool.v1: promoted" in table.stdout
    assert "night-later" not in table.stdout
    # --since counts back from the store's clock (here: the wall clock, far past both runs)
    assert json.loads(overnight(golden_db, "runs", "--since", "24h", "--json").stdout) == []
    refused = overnight(golden_db, "runs", "--since", "yesterday")
    assert refused.returncode == 2
    assert "--since 'yesterday'" in refused.stderr


def test_the_api_serves_the_same_review_as_show_json(golden_db: str) -> None:
    """An agent on another machine has a read token, not the database: `GET /api/v1/runs/{id}/review` is the review
    `overnight show --json` prints, undo commands included."""
    from tests.factories import READ_TOKEN, SERVE_TOKEN, live_server  # noqa: PLC0415

    shown = json.loads(overnight(golden_db, "show", golden_run.RUN_ID, "--json").stdout)
    with live_server(golden_db) as server, server.client(token=READ_TOKEN) as api:
        served = api.get(f"/api/v1/runs/{golden_run.RUN_ID}/review")
        missing = api.get("/api/v1/runs/nope/review")
    with live_server(golden_db) as server, server.client(token=SERVE_TOKEN) as api:
        forbidden = api.get(f"/api/v1/runs/{golden_run.RUN_ID}/review")
    assert served.status_code == 200, served.text
    assert served.json() == shown
    assert served.json()["undo"] == shown["undo"] != []
    assert (missing.status_code, missing.json()["code"]) == (404, "run_not_found")
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "forbidden")


def test_status_says_what_serves_each_signature_now(golden_db: str, open_store: Callable[..., SqlStore],
                                                    clock: SteppingClock) -> None:
    """The first question after an alert: per signature, which program serves, since when and by whose move, what
    canary runs, and the last night's verdict — one command, from the store."""
    from tests.store.test_canary_store import open_canary  # noqa: PLC0415

    store = open_store()
    open_canary(store, clock)  # SelectTool.v1's champion stays; a canary at 20% of its traffic
    store.start_run(request=RunStart(run_id="night-triage", signature_ids=["SupportTriage.v1"]), actor="cron",
                    default_lease_s=600)
    shown = overnight(golden_db, "status", columns="250")
    as_json = overnight(golden_db, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[1]: line for line in shown.stdout.splitlines() if line.startswith("│")}
    select, triage = lines["SelectTool.v1"], lines["SupportTriage.v1"]
    for needle in ("bbbbbbbbbbbb", "promote by ops-agent (night-golden)",
                   "can-steps active at 20%: 0/4 candidate requests to its next look",
                   "night-golden succeeded: promoted"):
        assert needle in select, (needle, select)
    for needle in ("default program", "none", "night-triage running"):
        assert needle in triage, (needle, triage)
    assert as_json.returncode == 0, as_json.stderr
    rows = {row["signature_id"]: row for row in json.loads(as_json.stdout)["signatures"]}
    assert rows["SelectTool.v1"]["champion_id"] == golden_run.BEST
    assert rows["SelectTool.v1"]["last_move"]["action"] == "promote"
    assert rows["SelectTool.v1"]["canary"] == {
        "canary_id": "can-steps", "status": "active", "rollout_pct": 20.0, "candidate_id": "d" * 64,
        "candidate_samples": 0, "next_target": 4, "end_reason": None}
    assert rows["SelectTool.v1"]["last_run"] == {"run_id": golden_run.RUN_ID, "status": "succeeded",
                                                 "decision": "promoted", "moved_since": []}
    with live_server(golden_db) as server, server.client(token=READ_TOKEN) as reader:
        assert reader.get("/api/v1/status").json() == json.loads(as_json.stdout)  # the API answers the same
    assert rows["SupportTriage.v1"] == {"signature_id": "SupportTriage.v1", "champion_id": None, "last_move": None,
                                        "canary": None, "last_run": {"run_id": "night-triage", "status": "running",
                                                                     "decision": None, "moved_since": []}}
    rolled = overnight(golden_db, "rollback", "-s", "SelectTool.v1", "--to", "default", "--reason", "bad answers",
                       "--actor", "bob")
    assert rolled.returncode == 0, rolled.stderr
    after = json.loads(overnight(golden_db, "status", "--json").stdout)["signatures"][0]
    assert (after["champion_id"], after["last_move"]["action"], after["last_move"]["actor"]) == (None, "rollback",
                                                                                                 "bob")
    assert after["canary"]["status"] == "stopped"  # a rollback ends the canary


@pytest.mark.parametrize("args", [("show", golden_run.RUN_ID, "--events", "--json"), ("runs",), ("status",)],
                         ids=["more than a pipe's buffer", "a table", "less than a pipe's buffer"])
def test_a_reader_that_stops_reading_ends_the_command_as_sigpipe_would_silently(golden_db: str,
                                                                                args: tuple[str, ...]) -> None:
    """`overnight show … | head`: the reader is gone before the answer is written. Exit 141 (128 + SIGPIPE), as
    `cat` and every C tool give a shell's `pipefail`, and nothing on stderr: not exit 1, which says the command
    failed, nor Python's "Exception ignored … BrokenPipeError" at exit (and its exit 120)."""
    whole = overnight(golden_db, *args)
    assert whole.returncode == 0, whole.stderr
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left: every write to stdout meets EPIPE, whether mid-answer or at its flush
    base = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
    cut = subprocess.run([sys.executable, "-m", "overnight", *args], stdout=write_end, stderr=subprocess.PIPE,
                         text=True, timeout=60, check=False, env={**base, "OVERNIGHT_DB_URL": golden_db})
    os.close(write_end)
    assert (cut.returncode, cut.stderr) == (141, "")
