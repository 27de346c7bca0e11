"""A night run through `--base-url` from a host that has the API and a token, not the store (cron's host beside
replicated servers): the summary's `review it` and `to undo` commands work there as printed — `overnight show` and
`overnight rollback` through the same API — and say the same as on a host with the store; so do `runs`, `status`,
`canary`, `canary stop` and `promote`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from sqlalchemy import func, select

from overnight.store.schema import idempotency_keys
from tests.factories import ADMIN_TOKEN, READ_TOKEN, live_server
from tests.review.test_show import overnight
from tests.runner.helpers import BETTER, SELECT, overnight_run


def test_the_summary_commands_of_a_run_through_an_api_work_where_there_is_no_store(db_url: str,
                                                                                   tmp_path: Path) -> None:
    nowhere = f"sqlite:///{tmp_path / 'no-store-here.db'}"  # the cron host's OVERNIGHT_DB_URL: nothing there
    with live_server(db_url, lm=BETTER) as server, server.client() as api:
        code, summary, stderr = overnight_run(db_url, BETTER, "--base-url", server.base_url, "--dataset", str(SELECT),
                                              OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert code == 0, stderr[-3000:]
        run_id, url = summary["run_id"], server.base_url
        assert summary["base_url"] == url
        assert summary["review"] == f"overnight show {run_id} --base-url {url}"
        assert summary["undo"] == [f"overnight rollback -s SelectTool.v1 --to default --run {run_id} --reason "
                                   f"'undo {run_id}' --base-url {url}"]

        review = shlex.split(summary["review"])[1:]
        remote = overnight(nowhere, *review, OVERNIGHT_TOKEN=READ_TOKEN)
        local = overnight(db_url, "show", run_id)
        assert (remote.returncode, local.returncode) == (0, 0), remote.stderr + local.stderr
        assert remote.stdout == local.stdout.replace(f"--reason 'undo {run_id}'",
                                                     f"--reason 'undo {run_id}' --base-url {url}")
        latest = overnight(nowhere, "show", "--base-url", url, "--json", OVERNIGHT_TOKEN=READ_TOKEN)
        assert f'"run_id": "{run_id}"' in latest.stdout, latest.stderr
        for command in (("status",), ("canary", "-s", "SelectTool.v1"), ("runs",), ("runs", "--since", "1h")):
            # the morning's other looks: the same through the API
            remote, local = (overnight(nowhere, *command, "--base-url", url, OVERNIGHT_TOKEN=READ_TOKEN),
                             overnight(db_url, *command))
            assert (remote.returncode, remote.stdout) == (0, local.stdout), (command, remote.stderr)

        none = overnight(nowhere, "runs", "--since", "1h", "--status", "failed", "--base-url", url,
                         OVERNIGHT_TOKEN=READ_TOKEN)
        assert none.stdout.strip() == f"no runs match --since 1h --status failed on the API at {url}", none.stderr

        undo = shlex.split(summary["undo"][0])[1:]
        refused = overnight(nowhere, *undo, OVERNIGHT_TOKEN=READ_TOKEN)
        assert (refused.returncode, refused.stderr.split(":")[0]) == (1, "forbidden"), refused.stderr
        undone = overnight(nowhere, *undo, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert undone.returncode == 0, undone.stderr
        promoted = summary["signatures"]["SelectTool.v1"]["champion_after"]
        assert undone.stdout.startswith(f"SelectTool.v1: champion rollback {promoted} -> default by ops-agent: "
                                        f"undo {run_id}"), undone.stdout
        history = api.get("/api/v1/signatures/SelectTool.v1/aliases/history").json()
        answered = json.loads(overnight(nowhere, *review, "--json", OVERNIGHT_TOKEN=READ_TOKEN).stdout)
        assert answered["undo"] == []  # undone: the run's review no longer offers it
        assert answered["signatures"][0]["sentence"].endswith("; since the run: ops-agent rolled back to the default "
                                                              "program")
        assert [(m["action"], m["after_run"]) for m in answered["signatures"][0]["moves"]] == [
            ("promote", False), ("rollback", True)]
        assert answered["sentence"] == (f"Run {run_id} succeeded: SelectTool.v1 served {promoted[:12]} until "
                                        "ops-agent rolled back to the default program.")
        listed = {}  # the night's row in `runs`, and `status`' last run, say the undo too, on both hosts
        for command in (("runs",), ("runs", "--json"), ("status",)):
            remote, local = (overnight(nowhere, *command, "--base-url", url, columns="300", OVERNIGHT_TOKEN=READ_TOKEN),
                             overnight(db_url, *command, columns="300"))
            assert (remote.returncode, remote.stdout) == (0, local.stdout), (command, remote.stderr)
            listed[command[-1]] = local.stdout
        assert "SelectTool.v1: promoted, then ops-agent rolled back to the default program" in listed["runs"]
        assert f"{run_id} succeeded: promoted, then ops-agent rolled back to the default program" in listed["status"]
        night = json.loads(listed["--json"])[0]
        assert (night["run_id"], night["decisions"]) == (run_id, {"SelectTool.v1": "promoted"})
        assert [(m["signature_id"], m["action"], m["to_id"], m["actor"]) for m in night["moved_since"]] == [
            ("SelectTool.v1", "rollback", None, "ops-agent")]

        result = summary["signatures"]["SelectTool.v1"]  # the same candidate, canaried again: then stopped
        started = api.post("/api/v1/signatures/SelectTool.v1/canary:start", json={
            "candidate_id": result["best_compiled_id"], "report_id": result["report_id"]})
        assert started.status_code == 200, started.text
        stop = ("canary", "stop", "-s", "SelectTool.v1", "--reason", "seen enough", "--base-url", url)
        stopped = overnight(nowhere, *stop, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.startswith(f"SelectTool.v1: canary {started.json()['canary_id']} stopped by ops-agent: "
                                         "seen enough; "), stopped.stdout
        assert api.get("/api/v1/signatures/SelectTool.v1/canary").json()["canary"]["status"] == "stopped"

        promote = ("promote", result["best_compiled_id"], "-s", "SelectTool.v1", "--base-url", url)
        refused = overnight(nowhere, *promote, OVERNIGHT_TOKEN=ADMIN_TOKEN)  # its last canary was stopped
        assert (refused.returncode, refused.stderr.split(":")[0]) == (1, "promotion_refused"), refused.stderr
        forced = overnight(nowhere, *promote, "--force", "--reason", "seen enough", OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout.startswith(f"SelectTool.v1: champion promote default -> {result['best_compiled_id']} "
                                        "by ops-agent (forced): seen enough"), forced.stdout
        short = overnight(nowhere, "promote", result["best_compiled_id"][:12], "-s", "SelectTool.v1",
                          "--base-url", url, OVERNIGHT_TOKEN=ADMIN_TOKEN)  # resolved by the API, as on the store
        assert short.stderr.strip() == (f"conflict: {result['best_compiled_id'][:12]} already is the champion of "
                                        "SelectTool.v1"), short.stderr
        back = overnight(nowhere, "rollback", "-s", "SelectTool.v1", "--to", "default", "--reason", "x",
                         "--base-url", url, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert back.returncode == 0, back.stderr
        again = overnight(nowhere, "rollback", "-s", "SelectTool.v1", "--to", result["best_compiled_id"][:8],
                          "--reason", "forward again", "--base-url", url, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith(f"SelectTool.v1: champion rollback default -> {result['best_compiled_id']} "
                                       "by ops-agent: forward again"), again.stdout
        back = overnight(nowhere, "rollback", "-s", "SelectTool.v1", "--to", "default", "--reason", "x",
                         "--base-url", url, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert back.returncode == 0, back.stderr
    assert history["champion_id"] is None
    assert (history["history"][-1]["action"], history["history"][-1]["actor"]) == ("rollback", "ops-agent")
    assert not (tmp_path / "no-store-here.db").exists()


def test_rollback_through_an_api_refuses_what_it_cannot_honour(tmp_path: Path) -> None:
    """`--actor` (the API records its token's name) and a `--to` that is no compiled_id are usage errors, said
    before anything is sent."""
    nowhere = f"sqlite:///{tmp_path / 'none.db'}"
    url = "http://127.0.0.1:9"  # nothing listens: a request would fail differently
    actor = overnight(nowhere, "rollback", "-s", "SelectTool.v1", "--reason", "x", "--actor", "me", "--base-url", url,
                      OVERNIGHT_TOKEN=ADMIN_TOKEN)
    short = overnight(nowhere, "rollback", "-s", "SelectTool.v1", "--reason", "x", "--to", "7bedae-nope",
                      "--base-url", url, OVERNIGHT_TOKEN=ADMIN_TOKEN)
    stop_actor = overnight(nowhere, "canary", "stop", "-s", "SelectTool.v1", "--reason", "x", "--actor", "me",
                           "--base-url", url, OVERNIGHT_TOKEN=ADMIN_TOKEN)
    assert (actor.returncode, short.returncode, stop_actor.returncode) == (2, 2, 2), actor.stderr + short.stderr
    assert stop_actor.stderr.startswith("validation_error: --actor: through --base-url")
    assert actor.stderr.startswith("validation_error: --actor: through --base-url the API records the name")
    assert short.stderr.startswith("validation_error: to: '7bedae-nope' is not a compiled_id"), short.stderr
    assert not (tmp_path / "none.db").exists()


def test_import_compile_and_diff_through_an_api_say_what_they_say_on_the_store(db_url: str, tmp_path: Path) -> None:
    """A host with an admin token and not the store (or a laptop on a newer version than the servers' schema)
    imports, compiles and diffs through the API: the same lines as on the store, the server's signatures and LM
    judging; a dry run writes nothing there, not even its idempotency key; a bad file is refused whole."""
    nowhere = f"sqlite:///{tmp_path / 'no-store-here.db'}"
    with live_server(db_url, lm=BETTER) as server:
        url = server.base_url
        through = ("--base-url", url)
        imported = ("import", str(SELECT), "-s", "SelectTool.v1")

        dry = overnight(nowhere, *imported, "--dry-run", *through, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.startswith("dry run, nothing written: SelectTool.v1: "), dry.stdout
        assert dry.stdout == overnight(db_url, *imported, "--dry-run").stdout
        assert server.store.list_examples(signature_id="SelectTool.v1", limit=1) == []
        with server.store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(idempotency_keys)).scalar() == 0

        refused = overnight(nowhere, *imported, *through, OVERNIGHT_TOKEN=READ_TOKEN)
        assert (refused.returncode, refused.stderr.split(":")[0]) == (1, "forbidden"), refused.stderr
        bad = tmp_path / "bad.jsonl"
        bad.write_text(SELECT.read_text().splitlines()[0] + '\n{"example_id": "x"}\n')
        invalid = overnight(nowhere, "import", str(bad), "-s", "SelectTool.v1", *through, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert (invalid.returncode, invalid.stderr.split(":")[0]) == (1, "dataset_invalid"), invalid.stderr
        assert invalid.stderr.startswith("dataset_invalid: dataset rejected, nothing imported: line 2, ")
        assert server.store.list_examples(signature_id="SelectTool.v1", limit=1) == []

        first = overnight(nowhere, *imported, *through, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert first.returncode == 0, first.stderr
        assert first.stdout == dry.stdout.removeprefix("dry run, nothing written: ")
        rows = [json.loads(line) for line in SELECT.read_text().splitlines() if line.strip()]
        as_list = tmp_path / "select.json"  # a .json file is a JSON list, through the API as on the store
        as_list.write_text(json.dumps(rows))
        again = overnight(nowhere, "import", str(as_list), "-s", "SelectTool.v1", *through,
                          OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert (again.returncode, again.stdout) == (0, overnight(db_url, *imported).stdout), again.stderr
        assert f"{len(rows)} unchanged" in again.stdout

        compiled = overnight(nowhere, "compile", "-s", "SelectTool.v1", "--json", *through,
                             OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert compiled.returncode == 0, compiled.stderr
        report = json.loads(compiled.stdout)
        assert (report["status"], report["improved"]) == ("completed", True)
        local = json.loads(overnight(db_url, "compile", "-s", "SelectTool.v1", "--json", OVERNIGHT_LM=BETTER).stdout)
        assert (local["report_id"], local["cached"]) == (report["report_id"], True)  # the same job, the server's LM
        table = overnight(nowhere, "compile", "-s", "SelectTool.v1", *through, OVERNIGHT_TOKEN=ADMIN_TOKEN)
        assert table.stdout == overnight(db_url, "compile", "-s", "SelectTool.v1", OVERNIGHT_LM=BETTER).stdout

        default = next(c["compiled_id"] for c in report["candidates"] if c["is_default"])
        best = report["best_compiled_id"]
        diffed = overnight(nowhere, "diff", default, best, *through, OVERNIGHT_TOKEN=READ_TOKEN)
        assert diffed.returncode == 0, diffed.stderr
        assert diffed.stdout == overnight(db_url, "diff", "default", best[:12]).stdout
        assert "+ demo " in diffed.stdout
        # the ids as the review prints them, and `default`: resolved by the API as by the store
        assert overnight(nowhere, "diff", "default", best[:12], *through, OVERNIGHT_TOKEN=READ_TOKEN).stdout == \
            diffed.stdout
        assert overnight(nowhere, "diff", default[:6], best, *through, OVERNIGHT_TOKEN=READ_TOKEN).stdout == \
            diffed.stdout
        for ids in (("default", "default"), ("0" * 64, best), ("abcdef", best),
                    (best[:3], best), ("default", "0" * 12)):
            said = [overnight(where, "diff", *ids, *extra, **env)
                    for where, extra, env in ((db_url, (), {}), (nowhere, through, {"OVERNIGHT_TOKEN": READ_TOKEN}))]
            assert said[0].returncode != 0, said[0].stdout
            assert (said[1].returncode, said[1].stdout, said[1].stderr) == (
                said[0].returncode, said[0].stdout, said[0].stderr), ids
    assert not (tmp_path / "no-store-here.db").exists()
