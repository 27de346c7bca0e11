"""The Alembic revisions and `store/schema.py` describe the same schema, on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from overnight.errors import ConfigError
from overnight.store import build_store
from overnight.store.engine import build_engine
from overnight.store.migrate import current_revision, downgrade, head_revision, upgrade
from overnight.store.schema import metadata
from tests.factories import make_settings


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
