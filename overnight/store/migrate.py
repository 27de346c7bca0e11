"""Applying the Alembic migrations: at API start-up and by `overnight db upgrade`.

Concurrent starters are safe: PostgreSQL takes an advisory lock for the upgrade; SQLite's write lock
(BEGIN IMMEDIATE) does the same. Rolling upgrades: a migration that code of the revision before it can still run
on says `older_code_may_serve = True`; every upgrade records the oldest revision whose code may serve the schema
(`overnight_schema.serves_from`, from revision 0004), and code that finds a newer schema than its own serves it when
it knows that revision (`SchemaState.servable`). Must not import FastAPI or httpx.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, delete, insert, inspect, select, text

from overnight.errors import ConfigError
from overnight.store.engine import outages_as_unavailable
from overnight.store.schema import overnight_schema

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x6F766E74  # "ovnt": one advisory lock id for schema upgrades


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@cache
def head_revision() -> str:
    """The newest revision this code knows. Read once per process: building Alembic's script directory loads every
    migration file, and `/readyz` asks on every probe."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"  # noqa: S101 - packaging bug, not user input
    return head


@cache
def known_revisions() -> frozenset[str]:
    """Every revision this code has a migration for (read once per process, as `head_revision`)."""
    return frozenset(script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions())


@dataclass(frozen=True)
class SchemaState:
    """Where the database's schema is, and the oldest revision whose code may serve it (recorded by the upgrade
    that brought it there; None before revision 0004)."""

    revision: str | None
    serves_from: str | None = None

    @property
    def newer(self) -> bool:
        """A newer overnight upgraded it: this code has no migration for its revision."""
        return self.revision is not None and self.revision not in known_revisions()

    @property
    def servable(self) -> bool:
        """This code may use it as it is: it is this code's schema, or a newer one whose upgrade said that code of
        a revision this code knows — this code's or an older one — may serve it."""
        return self.revision == head_revision() or (self.newer and self.serves_from in known_revisions())


def newer_schema(state: SchemaState) -> ConfigError | None:
    """The refusal for a store another, newer overnight upgraded and that this code may not serve: it cannot
    upgrade it either (Alembic would fail with "Can't locate revision")."""
    if not state.newer or state.servable:
        return None
    return ConfigError(f"the store's schema is at revision {state.revision}, newer than this overnight knows (it "
                       f"reads up to {head_revision()}): a newer overnight upgraded it; run that version here (the one "
                       "the servers run), or upgrade this one")


def schema_state(engine: Engine) -> SchemaState:
    """The database's schema revision and what its last upgrade recorded."""
    with outages_as_unavailable(), engine.connect() as conn:
        return read_schema_state(conn)


def read_schema_state(conn: Connection) -> SchemaState:
    """`schema_state` on a connection the caller holds (a transaction of its own, the upgrade's)."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None or not inspect(conn).has_table(overnight_schema.name):
        return SchemaState(revision)
    return SchemaState(revision, conn.execute(select(overnight_schema.c.serves_from)).scalar())


def serves_from(revision: str) -> str:
    """The oldest revision whose code may serve the schema at `revision`: down from it while each migration says
    older code may serve it."""
    scripts = ScriptDirectory.from_config(_config())
    script = scripts.get_revision(revision)
    while script is not None and getattr(script.module, "older_code_may_serve", False) and script.down_revision:
        script = scripts.get_revision(str(script.down_revision))
    assert script is not None, f"no migration {revision}"  # noqa: S101 - packaging bug, not user input
    return str(script.revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when empty)."""
    with outages_as_unavailable(), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database up to `revision` and return the revision it is at afterwards."""
    return _migrate(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str) -> str | None:
    """Take the database down to `revision` (`base` = empty) and return where it is afterwards."""
    return _migrate(engine, lambda cfg: command.downgrade(cfg, revision))


def _migrate(engine: Engine, step: Callable[[Config], None]) -> str | None:
    cfg = _config()
    with outages_as_unavailable(), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        state = read_schema_state(conn)
        refusal = newer_schema(state)
        if refusal is not None:
            raise refusal
        if state.newer:
            return state.revision  # ahead of this code, which it may serve as it is: nothing here to apply
        cfg.attributes["connection"] = conn
        step(cfg)
        _record_serves_from(conn, before=state)
    return current_revision(engine)


def _record_serves_from(conn: Connection, *, before: SchemaState) -> None:
    """Write, in the upgrade's own transaction, which code may serve the schema it leaves (from revision 0004) —
    only when that changed: an upgrade with nothing to apply (every command that may write starts with one) stays a
    read, which on SQLite could not become a write while a server is writing."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None or not inspect(conn).has_table(overnight_schema.name):
        return
    recorded = serves_from(revision)
    if (revision, recorded) == (before.revision, before.serves_from):
        return
    conn.execute(delete(overnight_schema))
    conn.execute(insert(overnight_schema).values(serves_from=recorded))
