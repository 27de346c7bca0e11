"""Alembic environment: runs on the connection `overnight.store.migrate` hands it; no alembic.ini."""

from __future__ import annotations

from alembic import context

from overnight.store.schema import metadata

connection = context.config.attributes["connection"]
# SQLite DDL is transactional when we issue BEGIN ourselves (store.engine), so one upgrade is all-or-nothing.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
