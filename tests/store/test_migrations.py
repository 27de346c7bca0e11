"""The Alembic revisions and `store/schema.py` describe the same schema, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from overnight.store.engine import build_engine
from overnight.store.migrate import current_revision, downgrade, head_revision, upgrade
from overnight.store.schema import metadata


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
