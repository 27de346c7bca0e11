"""Canary steps: per-step sample bases (the split test is per step), the naming compile report, the starting
actor, and a count of calls whose cost is known.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("canaries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step_base_json", sa.Text(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("report_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("actor", sa.String(length=128), nullable=True))
    with op.batch_alter_table("canary_arms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("costed", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("canary_arms", schema=None) as batch_op:
        batch_op.drop_column("costed")
    with op.batch_alter_table("canaries", schema=None) as batch_op:
        batch_op.drop_column("actor")
        batch_op.drop_column("report_id")
        batch_op.drop_column("step_base_json")
