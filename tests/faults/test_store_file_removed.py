"""The SQLite file is deleted or replaced under a running `overnight serve` (`rm overnight.db*` to "start over", a
restore copied over it). SQLite keeps writing to the file it has open, which is no longer on any path: every 2xx
after that would be lost when the server stops. The server notices at the next transaction and refuses with 503
`store_unavailable` naming the file, and `/readyz` fails, instead of acknowledging writes no one will see."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.factories import serve_process


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_writes_are_refused_once_the_sqlite_file_is_no_longer_the_one_open(
        tmp_path: Path, how: str, request: pytest.FixtureRequest) -> None:
    db = tmp_path / "overnight.db"
    shutil.copy(request.getfixturevalue("_sqlite_template"), db)
    spare = tmp_path / "restored.db"
    shutil.copy(db, spare)
    with serve_process(f"sqlite:///{db}", tmp_path / "serve.log") as server, server.client() as http:
        assert http.post("/api/v1/runs", json={"signature_ids": ["SelectTool.v1"], "run_id": "r1"}).status_code == 201
        for path in tmp_path.glob("overnight.db*"):
            path.unlink()
        if how == "replaced":
            shutil.move(spare, db)
        refused = http.post("/api/v1/runs/r1/events", json={"kind": "note", "phase": "x", "client_event_id": "e"})
        ready = http.get("/readyz")
    body = refused.json()
    assert (refused.status_code, body["code"]) == (503, "store_unavailable"), refused.text
    assert f"the SQLite file {db} was deleted or replaced while overnight had it open" in body["error"]
    assert (ready.status_code, ready.json()["code"]) == (503, "store_unavailable")
    assert "sqlite_file_gone" in server.log()
