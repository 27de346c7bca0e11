"""The store: one `Store` interface, one SQLAlchemy Core implementation (SQLite and PostgreSQL), migrations.

`build_store(settings)` is the factory; nothing is built at import time. Must not import FastAPI or httpx.
"""

from __future__ import annotations

from sqlalchemy import Engine

from overnight.config import Settings
from overnight.domain.runs import EventBounds
from overnight.store.base import IdempotencyClaim, Store
from overnight.store.engine import build_engine
from overnight.store.migrate import upgrade
from overnight.store.sql import Clock, SqlStore, system_clock

__all__ = ["IdempotencyClaim", "SqlStore", "Store", "bounds_from", "build_store", "engine_for"]


def bounds_from(settings: Settings) -> EventBounds:
    return EventBounds(max_events=settings.max_events_per_run, max_event_bytes=settings.max_event_bytes,
                       max_run_bytes=settings.max_run_event_bytes)


def engine_for(settings: Settings) -> Engine:
    """The engine for OVERNIGHT_DB_URL with the settings' busy and pool timeouts."""
    return build_engine(settings.db_url.get_secret_value(), busy_timeout_ms=settings.db_busy_timeout_ms,
                        pool_timeout_s=settings.db_pool_timeout_s)


def build_store(settings: Settings, *, clock: Clock = system_clock, migrate: bool = True) -> SqlStore:
    """Connect to the store named by the settings and, by default, bring its schema up to date."""
    engine = engine_for(settings)
    if migrate:
        upgrade(engine)
    return SqlStore(engine, bounds=bounds_from(settings), clock=clock,
                    write_wait_s=settings.db_busy_timeout_ms / 1000)
