"""The store: one `Store` interface, one SQLAlchemy Core implementation (SQLite and PostgreSQL), migrations.

`build_store(settings)` is the factory; nothing is built at import time. Must not import FastAPI or httpx.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import Engine

from overnight.config import Settings
from overnight.domain.runs import EventBounds
from overnight.errors import ConfigError
from overnight.store.base import IdempotencyClaim, Store
from overnight.store.engine import build_engine, parse_db_url
from overnight.store.migrate import SchemaState, head_revision, newer_schema, schema_state, upgrade
from overnight.store.sql import Clock, SqlStore, system_clock

_NO_TABLES = "the database has no overnight tables"

__all__ = ["IdempotencyClaim", "SqlStore", "Store", "bounds_from", "build_store", "engine_for", "store_for_dry_run"]


def bounds_from(settings: Settings) -> EventBounds:
    return EventBounds(max_events=settings.max_events_per_run, max_event_bytes=settings.max_event_bytes,
                       max_run_bytes=settings.max_run_event_bytes)


def engine_for(settings: Settings) -> Engine:
    """The engine for OVERNIGHT_DB_URL with the settings' busy and pool timeouts."""
    return build_engine(settings.db_url.get_secret_value(), busy_timeout_ms=settings.db_busy_timeout_ms,
                        pool_timeout_s=settings.db_pool_timeout_s)


def build_store(settings: Settings, *, clock: Clock = system_clock, migrate: bool = True,
                existing: bool = False, read_only: bool = False) -> SqlStore:
    """Connect to the store named by the settings and, by default, bring its schema up to date.

    `existing=True` is for commands that act on what is recorded (promote, rollback, prune): a store that is not
    there is a `ConfigError`, and none is made — an empty table from the wrong `./overnight.db` would tell a
    reviewer that nothing ran. `read_only=True` (the review commands) also leaves the schema as it is: reading
    changes nothing, and a schema upgraded under running servers of the older version can take them out of service
    (their `/readyz` answers 503) — a store on a schema this code may not serve as it is (an older one, or a newer
    one whose upgrade did not say so) is refused, saying what to do."""
    url = settings.db_url.get_secret_value()
    if existing or read_only:
        _refuse_missing_file(url)
    engine = engine_for(settings)
    if existing or read_only:
        try:
            _refuse_schema(url, schema_state(engine), read_only=read_only)
        except BaseException:
            engine.dispose()
            raise
    if migrate and not read_only:
        upgrade(engine)
    return SqlStore(engine, bounds=bounds_from(settings), clock=clock,
                    write_wait_s=settings.db_busy_timeout_ms / 1000)


@contextmanager
def store_for_dry_run(settings: Settings) -> Iterator[tuple[SqlStore, str | None]]:
    """The store a dry run reads, and what to say about it: a dry run changes nothing, the database included.

    A store that is not made yet (no SQLite file, or a database with no overnight tables) is read as an empty
    temporary SQLite store — what a real run would find — and deleted after; one on an older schema is refused, as
    reading it would need the upgrade. Otherwise the store itself, not migrated."""
    url = settings.db_url.get_secret_value()
    state = SchemaState(None)
    if _sqlite_not_made(url) is None:
        engine = engine_for(settings)
        try:
            state = schema_state(engine)
        finally:
            engine.dispose()
    if state.revision is not None:
        _same_schema(state, "a dry run changes nothing")
        store = build_store(settings, migrate=False)
        try:
            yield store, None
        finally:
            store.close()
        return
    shown = parse_db_url(url).render_as_string(hide_password=True)
    with tempfile.TemporaryDirectory(prefix="overnight-dry-run-") as folder:
        empty = settings.model_copy(update={"db_url": SecretStr(f"sqlite:///{Path(folder) / 'overnight.db'}")})
        store = build_store(empty)
        try:
            yield store, (f"no overnight store at {shown} yet (a real run, import or `overnight serve` makes it): "
                          "this dry run reads an empty temporary store")
        finally:
            store.close()


def _refuse_schema(url: str, state: SchemaState, *, read_only: bool) -> None:
    if state.revision is None:
        raise _not_there(url, _NO_TABLES)
    if read_only:
        _same_schema(state, "reading changes nothing")


def _same_schema(state: SchemaState, why: str) -> None:
    """Refuse a store this code may not use as it is, for a command that must leave the schema as it is: an older
    schema, or a newer one whose upgrade did not say this code may serve it."""
    if state.servable:
        return
    raise newer_schema(state) or ConfigError(
        f"the store's schema is at revision {state.revision} and this version needs {head_revision()}; {why}, the "
        "schema included: `overnight db upgrade` brings an older store up to date (as a real run or `overnight serve` "
        "does on start) — once the servers that use it run this version too (an older server's /readyz answers 503 "
        "on a newer schema it may not serve) —, then try again")


def _refuse_missing_file(url: str) -> None:
    why = _sqlite_not_made(url)
    if why is not None:
        raise _not_there(url, why)


def _sqlite_not_made(url: str) -> str | None:
    """Why a SQLite store is not there (None when it is, or when the URL is not SQLite). SQLite makes a missing file
    on the first connection (and our connect hook makes an empty one a WAL database), so the file is looked at
    read-only before any engine connects."""
    parsed = parse_db_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    path = Path(parsed.database).expanduser()
    if not path.exists():
        return "the file does not exist"
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            found = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'alembic_version'").fetchone()
    except sqlite3.Error:
        return None  # not SQLite: the engine refuses the file by its header (ConfigError)
    return None if found[0] else _NO_TABLES


def _not_there(url: str, why: str) -> ConfigError:
    shown = parse_db_url(url).render_as_string(hide_password=True)
    return ConfigError(f"no overnight store at {shown}: {why}; set OVERNIGHT_DB_URL to the store the runs were "
                       f"recorded in (a relative SQLite path is from the current directory, {Path.cwd()})",
                       details={"no_store": shown})
