"""Rolling upgrades: the oldest revision whose code may serve the schema, recorded by every upgrade.

A migration that older code can run on — it only adds what older code never reads, and what older code writes
keeps the newer code right — says so with `older_code_may_serve = True`. Every upgrade then records, in the one
row of `overnight_schema`, the oldest revision reached by walking down such migrations from the one it stopped
at; a server of an older version that knows that revision keeps serving the newer schema (its `/readyz` stays
200) instead of going out of service until it is restarted on the new version.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

older_code_may_serve = True  # a new table, which code of 0003 never reads


def upgrade() -> None:
    op.create_table(
        "overnight_schema",
        sa.Column("serves_from", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("serves_from"),
    )


def downgrade() -> None:
    op.drop_table("overnight_schema")
