"""`overnight db backup`: a consistent copy of a SQLite store taken while a server writes to it, checked before it
is named a backup; it never overwrites, and on PostgreSQL it says to use pg_dump."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from overnight.domain.runs import EventIn, RunStart
from tests.factories import make_store
from tests.test_cli import overnight


def test_a_backup_taken_during_writes_is_a_whole_store_that_the_commands_read(tmp_path: Path) -> None:
    db, copy = tmp_path / "o.db", tmp_path / "backups" / "o-2026-11-30.db"
    copy.parent.mkdir()
    store = make_store(f"sqlite:///{db}")
    appended: list[int] = []
    stop = threading.Event()

    def writer() -> None:  # a server appending events the whole time
        while not stop.is_set():
            appended.append(store.append_event(run_id="nightly-1", event=EventIn(
                kind="step.note", phase="test", message="x" * 200)).event.seq)

    try:
        store.start_run(request=RunStart(run_id="nightly-1", signature_ids=["SelectTool.v1"]), actor="cron",
                        default_lease_s=600)
        for _ in range(500):
            store.append_event(run_id="nightly-1", event=EventIn(kind="step.note", phase="test", message="y" * 200))
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            backed_up = overnight("db", "backup", str(copy), "--json", db=db)
        finally:
            stop.set()
            thread.join()
    finally:
        store.close()
    assert backed_up.returncode == 0, backed_up.stderr
    assert appended  # the copy was taken while events were being appended
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [row[0] for row in conn.execute("SELECT seq FROM ops_run_events ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))  # a prefix of the stream: whole transactions, no gap
    assert len(seqs) >= 501
    said = __import__("json").loads(backed_up.stdout)
    assert (said["path"], said["runs"], said["events"], said["integrity"]) == (str(copy), 1, len(seqs), "ok")
    assert list(tmp_path.glob("backups/*")) == [copy]  # no partial file left beside it
    listed = overnight("runs", db=copy)
    assert "nightly-1" in listed.stdout, listed.stderr
    text = overnight("db", "backup", str(tmp_path / "second.db"), db=db)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"backed up sqlite:///{db} to {tmp_path / 'second.db'}: ")
    assert "integrity_check ok" in text.stdout


def test_a_backup_never_overwrites_and_needs_a_sqlite_store_that_is_there(tmp_path: Path) -> None:
    db, taken = tmp_path / "o.db", tmp_path / "taken.db"
    assert overnight("db", "upgrade", db=db).returncode == 0
    taken.write_bytes(b"last week's backup")
    refused = overnight("db", "backup", str(taken), db=db)
    assert (refused.returncode, refused.stderr.strip()) == (
        2, f"config_error: {taken} exists: a backup never overwrites a file; give a new path")
    assert taken.read_bytes() == b"last week's backup"
    nowhere = overnight("db", "backup", str(tmp_path / "no" / "such" / "dir.db"), db=db)
    assert nowhere.returncode == 2
    assert f"config_error: {tmp_path / 'no' / 'such'} is not a directory" in nowhere.stderr
    missing = overnight("db", "backup", str(tmp_path / "b.db"), db=tmp_path / "none.db")
    assert missing.returncode == 2
    assert "no overnight store at" in missing.stderr
    assert not (tmp_path / "b.db").exists()
    postgres = overnight("db", "backup", str(tmp_path / "b.db"), db=db,
                         OVERNIGHT_DB_URL="postgresql+psycopg://u:secret@127.0.0.1:9/overnight")
    assert postgres.returncode == 2
    assert postgres.stderr.strip().startswith("config_error: `overnight db backup` copies a SQLite store; for "
                                              "PostgreSQL use pg_dump")
    assert "secret" not in postgres.stderr


def test_on_a_filesystem_without_hard_links_the_checked_copy_is_renamed_to_its_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some network and FUSE mounts refuse link(2); the copy is still named only once whole, never over a file."""
    import errno  # noqa: PLC0415
    import os  # noqa: PLC0415

    from overnight.store.backup import backup_sqlite  # noqa: PLC0415
    from tests.factories import make_settings  # noqa: PLC0415

    db = tmp_path / "o.db"
    assert overnight("db", "upgrade", db=db).returncode == 0

    def no_links(_src: object, _dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    result = backup_sqlite(make_settings(f"sqlite:///{db}"), tmp_path / "copy.db")
    assert (result.path, result.integrity) == (str(tmp_path / "copy.db"), "ok")
    assert sorted(p.name for p in tmp_path.iterdir() if "copy" in p.name) == ["copy.db"]
