"""The Alembic revisions and `store/schema.py` describe the same schema, on both backends."""

from __future__ import annotations

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import column, func, select, table, update
from sqlalchemy.engine import make_url

from overnight.errors import ConfigError
from overnight.store import build_store
from overnight.store.engine import build_engine
from overnight.store.migrate import (
    MIGRATIONS,
    SchemaState,
    current_revision,
    downgrade,
    head_revision,
    schema_state,
    serves_from,
    upgrade,
)
from overnight.store.schema import metadata, overnight_schema
from tests.factories import make_settings

alembic_version = table("alembic_version", column("version_num"))


def test_migrated_schema_matches_the_table_definitions(db_url: str) -> None:
    engine = build_engine(db_url)
    try:
        with engine.connect() as conn:
            drift = compare_metadata(MigrationContext.configure(conn), metadata)
        assert drift == []
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_downgrade_to_nothing_and_upgrade_again(db_url: str) -> None:
    engine = build_engine(db_url)
    try:
        assert downgrade(engine, "base") is None
        assert upgrade(engine) == head_revision()
        assert upgrade(engine) == head_revision()  # a second upgrade is a no-op
    finally:
        engine.dispose()


def test_a_store_that_must_exist_is_not_made_from_an_empty_database(db_url: str) -> None:
    """The review and alias commands open the store with `existing=True`: a database without the schema (here the
    test's own, taken down to nothing) is refused, naming the URL without its password, and left as it was."""
    engine = build_engine(db_url)
    try:
        downgrade(engine, "base")
        with pytest.raises(ConfigError) as refused:
            build_store(make_settings(db_url), existing=True)
        shown = make_url(db_url).render_as_string(hide_password=True)
        assert refused.value.message.startswith(f"no overnight store at {shown}: the database has no overnight "
                                                "tables; set OVERNIGHT_DB_URL")
        password = make_url(db_url).password
        assert password is None or str(password) not in refused.value.message
        assert current_revision(engine) is None  # nothing was created

        upgrade(engine)
        build_store(make_settings(db_url), existing=True).close()  # a store that is there opens as before
    finally:
        engine.dispose()


def test_every_upgrade_records_which_code_may_serve_the_schema_it_leaves(db_url: str) -> None:
    """Rolling upgrades: an older server reads `serves_from` to know whether it may go on serving a schema a newer
    overnight upgraded; the upgrade writes it in its own transaction, one row, from revision 0004 on."""
    engine = build_engine(db_url)
    try:
        assert schema_state(engine) == SchemaState(head_revision(), serves_from(head_revision()))
        assert upgrade(engine) == head_revision()  # again: still one row
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(overnight_schema)).scalar_one() == 1
        assert downgrade(engine, "0003") == "0003"
        assert schema_state(engine) == SchemaState("0003", None)  # before the table: nothing recorded
        assert not schema_state(engine).servable  # older than this code: upgrade it
        assert upgrade(engine) == head_revision()
        assert schema_state(engine).servable
    finally:
        engine.dispose()


def test_serves_from_walks_down_only_through_migrations_that_let_older_code_serve() -> None:
    assert serves_from("0005") == "0003"  # 0005 adds the claims' lease columns, which code of 0004 never reads
    assert serves_from("0004") == "0003"  # 0004 only adds a table that code of 0003 never reads
    assert serves_from("0003") == "0003"  # 0003's receipts and counters are read by its own code only
    assert serves_from("0001") == "0001"


def test_every_migration_from_0004_says_whether_older_code_may_serve_it() -> None:
    """A migration's author decides it, knowingly: a missing answer would read as "no" and take every older server
    out of service on the next upgrade without anyone having chosen that."""
    scripts = ScriptDirectory(str(MIGRATIONS))
    unsaid = [s.revision for s in scripts.walk_revisions() if s.revision >= "0004"
              and not isinstance(getattr(s.module, "older_code_may_serve", None), bool)]
    assert unsaid == []


def test_a_newer_schema_is_served_as_it_is_only_when_its_upgrade_says_this_code_may(db_url: str) -> None:
    engine = build_engine(db_url)

    def at(revision: str, said: str) -> None:
        with engine.begin() as conn:
            conn.execute(update(alembic_version).values(version_num=revision))
            conn.execute(update(overnight_schema).values(serves_from=said))

    try:
        at("0099", head_revision())
        assert upgrade(engine) == "0099"  # nothing this code can apply, and nothing refused
        build_store(make_settings(db_url), read_only=True).close()
        build_store(make_settings(db_url), existing=True).close()
        at("0099", "0050")  # a revision this code does not know: a newer version's, past this one
        with pytest.raises(ConfigError) as refused:
            upgrade(engine)
        assert "the store's schema is at revision 0099, newer than this overnight knows" in refused.value.message
        with pytest.raises(ConfigError):
            build_store(make_settings(db_url), read_only=True)
    finally:
        at(head_revision(), serves_from(head_revision()))
        engine.dispose()


def test_an_upgrade_with_nothing_to_apply_writes_nothing(db_url: str) -> None:
    """Every command that may write starts with an upgrade; one that wrote its record each time failed on SQLite
    with `database is locked` while a server was writing (a read snapshot cannot become a write). Held here: the
    write lock taken by another connection for the whole upgrade."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's one writer: PostgreSQL writers do not exclude each other")
    engine = build_engine(db_url, busy_timeout_ms=200)
    holder = sqlite3.connect(make_url(db_url).database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a server in the middle of a write
        assert upgrade(engine) == head_revision()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()
