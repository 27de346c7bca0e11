"""Dataset import over real HTTP, on SQLite and PostgreSQL: idempotent, snapshotted, all-or-nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from overnight.store.schema import metadata
from tests.factories import LiveServer, jsonl, live_server, select_tool_row

ROOT = Path(__file__).resolve().parents[2]
SELECT_TOOL = ROOT / "datasets" / "selecttool.v1.jsonl"
IMPORT = "/api/v1/signatures/SelectTool.v1/examples:import"
NDJSON = {"content-type": "application/x-ndjson"}


def import_body(client: httpx.Client, body: bytes, **params: str) -> httpx.Response:
    return client.post(IMPORT, content=body, headers=NDJSON, params=params)


def store_state(api: LiveServer) -> tuple[list[Any], str]:
    """Every row of every table, and (SQLite) the database files' bytes."""
    with api.store.engine.connect() as conn:
        rows = [sorted(map(tuple, conn.execute(select(table)).all()), key=repr)
                for table in metadata.sorted_tables]
    url = api.store.engine.url
    digest = ""
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal"):
            path = Path(f"{url.database}{suffix}")
            digest += hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"
    return rows, digest


def test_importing_the_same_file_twice_changes_nothing_the_second_time(api: LiveServer) -> None:
    with api.client() as client:
        first = import_body(client, SELECT_TOOL.read_bytes()).json()
        second = import_body(client, SELECT_TOOL.read_bytes()).json()
    assert (first["inserted"], first["updated"], first["unchanged"], first["new_snapshot"]) == (77, 0, 0, True)
    assert (second["inserted"], second["updated"], second["unchanged"], second["new_snapshot"]) == (0, 0, 77, False)
    assert second["dataset_hash"] == first["dataset_hash"]
    assert second["snapshot"]["created_at"] == first["snapshot"]["created_at"]
    assert first["snapshot"]["split_counts"] == {"train": 47, "holdout": 30, "test": 0}


def test_editing_one_row_updates_one_and_keeps_the_old_snapshot_intact(api: LiveServer) -> None:
    lines = SELECT_TOOL.read_text(encoding="utf-8").splitlines()
    edited_row = json.loads(lines[4])
    edited_row["tags"] = [*edited_row["tags"], "reviewed"]
    edited = "\n".join([*lines[:4], json.dumps(edited_row), *lines[5:]]).encode()
    with api.client() as client:
        before = import_body(client, SELECT_TOOL.read_bytes()).json()
        after = import_body(client, edited).json()
        old = client.get(f"/api/v1/signatures/SelectTool.v1/snapshots/{before['dataset_hash']}").json()
        new = client.get(f"/api/v1/signatures/SelectTool.v1/snapshots/{after['dataset_hash']}").json()
    assert (after["inserted"], after["updated"], after["unchanged"], after["new_snapshot"]) == (0, 1, 76, True)
    assert after["dataset_hash"] != before["dataset_hash"]
    old_member = next(m for m in old["members"] if m["example_id"] == edited_row["example_id"])
    new_member = next(m for m in new["members"] if m["example_id"] == edited_row["example_id"])
    assert old_member["row_hash"] != new_member["row_hash"]
    assert len(old["members"]) == len(new["members"]) == 77
    assert [m for m in old["members"] if m["example_id"] != edited_row["example_id"]] == [
        m for m in new["members"] if m["example_id"] != edited_row["example_id"]]


def test_rows_not_in_a_later_file_are_kept_and_counted_in_the_hash(api: LiveServer) -> None:
    with api.client() as client:
        import_body(client, jsonl(select_tool_row("a"), select_tool_row("b", message="search cats")))
        partial = import_body(client, jsonl(select_tool_row("c", message="email the team"))).json()
    assert partial["snapshot"]["example_count"] == 3


def test_a_replace_import_makes_the_file_the_dataset_and_old_snapshots_keep_what_it_removed(
        api: LiveServer) -> None:
    """A mislabeled example found in the morning is deleted from the file; `replace=true` makes the current dataset
    exactly the file (an upsert keeps rows a file leaves out), in one transaction. The record is not rewritten: the
    snapshots that held the row still hold it, so the compiles and canaries that used it stay explainable."""
    with api.client() as client:
        first = import_body(client, jsonl(select_tool_row("a"), select_tool_row("b", message="search cats"))).json()
        replaced = import_body(client, jsonl(select_tool_row("a"), select_tool_row("c", message="email the team")),
                               replace="true").json()
        current = client.get("/api/v1/signatures/SelectTool.v1/examples").json()["examples"]
        old = client.get(f"/api/v1/signatures/SelectTool.v1/snapshots/{first['dataset_hash']}").json()
        again = import_body(client, jsonl(select_tool_row("a"), select_tool_row("c", message="email the team"))).json()
    assert (replaced["inserted"], replaced["updated"], replaced["unchanged"], replaced["removed"]) == (1, 0, 1, 1)
    assert (replaced["snapshot"]["example_count"], replaced["new_snapshot"]) == (2, True)
    assert [e["example_id"] for e in current] == ["a", "c"]
    assert [m["example_id"] for m in old["members"]] == ["a", "b"]  # the old snapshot is intact
    assert (again["unchanged"], again["removed"], again["new_snapshot"]) == (2, 0, False)  # the nightly upsert after
    assert again["dataset_hash"] == replaced["dataset_hash"]
    assert first["removed"] == 0


def test_a_dry_run_import_says_what_it_would_do_and_writes_nothing(api: LiveServer) -> None:
    """Before a `replace`, which removes rows: the exact counts and hash the import would give, from the same code
    in a transaction that is rolled back."""
    with api.client() as client:
        import_body(client, jsonl(select_tool_row("a"), select_tool_row("b", message="search cats")))
        before = store_state(api)
        body = jsonl(select_tool_row("a"), select_tool_row("c", message="email the team"))
        tried = import_body(client, body, replace="true", dry_run="true", run_id="nope-no-such-run")
        assert tried.status_code == 404  # a dry run checks what the import would check
        would = import_body(client, body, replace="true", dry_run="true").json()
        after = store_state(api)
        done = import_body(client, body, replace="true").json()
    assert after == before
    assert (would["inserted"], would["unchanged"], would["removed"], would["dry_run"]) == (1, 1, 1, True)
    assert (would["dataset_hash"], would["new_snapshot"]) == (done["dataset_hash"], True)
    assert done["dry_run"] is False


def test_a_bad_replace_import_removes_nothing(api: LiveServer) -> None:
    with api.client() as client:
        import_body(client, jsonl(select_tool_row("a"), select_tool_row("b", message="search cats")))
        before = store_state(api)
        response = import_body(client, jsonl(select_tool_row("c"), "{broken"), replace="true")
        after = store_state(api)
    assert response.status_code == 422
    assert response.json()["code"] == "dataset_invalid"
    assert after == before


@pytest.mark.parametrize(("body", "line", "field"), [
    (jsonl(select_tool_row("a"), "{broken"), 2, "line"),
    (jsonl(select_tool_row("a"), {k: v for k, v in select_tool_row("b").items() if k != "input"}), 2, "input"),
    (jsonl(select_tool_row("a", split="validation")), 1, "split"),
    (jsonl(select_tool_row("a", expected={"action": "tool", "tool_name": "launch_rocket"})), 1, "expected"),
    (jsonl(select_tool_row("a"), select_tool_row("b"), select_tool_row("a")), 3, "example_id"),
])
def test_a_bad_line_rejects_the_whole_file_and_changes_nothing(
    api: LiveServer, body: bytes, line: int, field: str
) -> None:
    with api.client() as client:
        import_body(client, jsonl(select_tool_row("seed")))
        before = store_state(api)
        response = import_body(client, body)
        after = store_state(api)
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "dataset_invalid"
    assert (error["details"]["errors"][0]["line"], error["details"]["errors"][0]["field"]) == (line, field)
    assert f"line {line}" in error["error"]
    assert after == before


def test_json_list_body_imports_too(api: LiveServer) -> None:
    with api.client() as client:
        response = client.post(IMPORT, json=[select_tool_row("a"), select_tool_row("b", message="find cats")])
    assert response.status_code == 200
    assert response.json()["inserted"] == 2


def test_oversize_body_is_413(db_url: str) -> None:
    with live_server(db_url, max_body_bytes=4096) as server, server.client() as client:
        response = import_body(client, SELECT_TOOL.read_bytes())
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_unknown_signature_is_404_everywhere(api: LiveServer) -> None:
    with api.client() as client:
        responses = [
            client.post("/api/v1/signatures/Nope.v1/examples:import", content=jsonl(select_tool_row()),
                        headers=NDJSON),
            client.get("/api/v1/signatures/Nope.v1"),
            client.get("/api/v1/signatures/Nope.v1/examples"),
            client.get(f"/api/v1/signatures/Nope.v1/snapshots/{'0' * 64}"),
        ]
    for response in responses:
        assert response.status_code == 404
        assert response.json()["code"] == "signature_not_found"


def test_import_in_a_run_records_dataset_imported(api: LiveServer) -> None:
    with api.client() as client:
        run_id = client.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"]}).json()["run"]["run_id"]
        result = import_body(client, SELECT_TOOL.read_bytes(), run_id=run_id).json()
        events = client.get(f"/api/v1/runs/{run_id}/events").json()["events"]
        before = store_state(api)
        missing = import_body(client, jsonl(select_tool_row("z")), run_id="no-such-run")
        after = store_state(api)
    imported = [e for e in events if e["kind"] == "dataset.imported"]
    assert len(imported) == 1
    assert imported[0]["data"]["dataset_hash"] == result["dataset_hash"]
    assert imported[0]["data"]["inserted"] == 77
    assert missing.json()["code"] == "run_not_found"
    assert after == before


def test_examples_and_signatures_can_be_read(api: LiveServer) -> None:
    with api.client() as client:
        import_body(client, SELECT_TOOL.read_bytes())
        signatures = client.get("/api/v1/signatures").json()["signatures"]
        one = client.get("/api/v1/signatures/SelectTool.v1").json()
        holdout: list[dict[str, Any]] = []
        after = None
        while True:
            page = client.get("/api/v1/signatures/SelectTool.v1/examples",
                              params={"split": "holdout", "limit": 7, **({"after": after} if after else {})}).json()
            holdout += page["examples"]
            if page["next_after"] is None:
                break
            after = page["next_after"]
    assert [s["signature_id"] for s in signatures] == ["SelectTool.v1", "SupportTriage.v1"]
    assert len(one["search_space"]["instructions"]) == 3
    assert len(holdout) == 30
    assert all(e["split"] == "holdout" for e in holdout)
