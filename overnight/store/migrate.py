"""Applying the Alembic migrations: at API start-up and by `overnight db upgrade`.

Concurrent starters are safe: PostgreSQL takes an advisory lock for the upgrade; SQLite's write lock
(BEGIN IMMEDIATE) does the same. Must not import FastAPI or httpx.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from overnight.errors import ConfigError
from overnight.store.engine import outages_as_unavailable

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


def newer_schema(revision: str | None) -> ConfigError | None:
    """The refusal for a store another, newer overnight upgraded: this code cannot read or upgrade it (Alembic
    would fail with "Can't locate revision")."""
    if revision is None or revision in known_revisions():
        return None
    return ConfigError(f"the store's schema is at revision {revision}, newer than this overnight knows (it reads up "
                       f"to {head_revision()}): a newer overnight upgraded it; run that version here (the one the "
                       "servers run), or upgrade this one")


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
        refusal = newer_schema(MigrationContext.configure(conn).get_current_revision())
        if refusal is not None:
            raise refusal
        cfg.attributes["connection"] = conn
        step(cfg)
    return current_revision(engine)
