"""`overnight db backup`: a consistent copy of a SQLite store, taken while servers write to it, and checked before
it is named a backup.

SQLite's online backup API copies the database as one read transaction sees it (in WAL mode writers go on
meanwhile), so the copy holds whole transactions only: a prefix of every event stream, no half-written move. The
copy is written beside its destination under a temporary name, checked with `PRAGMA integrity_check`, and only then
linked to its name, which it never overwrites. PostgreSQL has pg_dump for this. Must not import FastAPI or httpx.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from pydantic import BaseModel, Field

from overnight.config import Settings
from overnight.errors import ConfigError
from overnight.store import build_store
from overnight.store.engine import parse_db_url, store_damaged


class BackupResult(BaseModel):
    source: str = Field(description="the store copied (its URL, any password hidden)")
    path: str
    bytes: int
    schema_revision: str | None
    runs: int
    events: int
    integrity: str = Field(description="SQLite's integrity_check of the copy: 'ok'")
    took_ms: int

    def sentence(self) -> str:
        return (f"backed up {self.source} to {self.path}: {self.bytes:,} bytes, {self.runs} runs, {self.events} "
                f"events, schema {self.schema_revision}, integrity_check {self.integrity}, in {self.took_ms} ms")


def backup_sqlite(settings: Settings, dest: Path) -> BackupResult:
    """Copy the store named by `settings` to `dest`, a new file. ConfigError for a PostgreSQL store, a `dest` that
    exists or has no directory, or no store; StoreUnavailable when the copy is not whole (a damaged store)."""
    if parse_db_url(settings.db_url.get_secret_value()).get_backend_name() != "sqlite":
        raise ConfigError("`overnight db backup` copies a SQLite store; for PostgreSQL use pg_dump (e.g. `pg_dump "
                          "--format=custom --file overnight.dump DBNAME`), which is consistent while servers write")
    dest = dest.expanduser()
    if dest.exists() or dest.is_symlink():
        raise _taken(dest)
    if not dest.parent.is_dir():
        raise ConfigError(f"{dest.parent} is not a directory: make it first, or give a path in an existing one")
    started = time.perf_counter()
    store = build_store(settings, existing=True, migrate=False)
    partial = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    try:
        raw = store.engine.raw_connection()
        try:
            revision, runs, events = _copied(raw.driver_connection, partial)  # type: ignore[arg-type]  # sqlite3's
        except sqlite3.DatabaseError as exc:
            raise store_damaged(f"its copy fails: {exc}", outcome=", so no copy was kept") from None
        finally:
            raw.close()
        _name(partial, dest)
        return BackupResult(source=store.shown(), path=str(dest), bytes=dest.stat().st_size, schema_revision=revision,
                            runs=runs, events=events, integrity="ok",
                            took_ms=round((time.perf_counter() - started) * 1000))
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        store.close()


def _name(partial: Path, dest: Path) -> None:
    """Give the checked copy its name, never over a file made meanwhile: a hard link fails if `dest` exists. A
    filesystem without hard links (some network and FUSE mounts) gets a rename after one more look."""
    try:
        os.link(partial, dest)
    except FileExistsError:
        raise _taken(dest) from None
    except OSError:
        if dest.exists():
            raise _taken(dest) from None
        partial.rename(dest)


def _taken(dest: Path) -> ConfigError:
    return ConfigError(f"{dest} exists: a backup never overwrites a file; give a new path")


def _copied(source: sqlite3.Connection, partial: Path) -> tuple[str | None, int, int]:
    """Copy the store to `partial` and check it: (schema revision, runs, events) of a whole copy, or
    `sqlite3.DatabaseError` naming what is wrong with it."""
    copy = sqlite3.connect(partial)
    try:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file (overnight sets WAL when it opens it)
        problems = [row[0] for row in copy.execute("PRAGMA integrity_check").fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("integrity_check: " + "; ".join(problems[:3]))
        runs, events = (int(copy.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                        for table in ("ops_runs", "ops_run_events"))
        revision = copy.execute("SELECT version_num FROM alembic_version").fetchone()
        return (str(revision[0]) if revision else None), runs, events
    finally:
        copy.close()
