"""The step a canary request was routed under: on the receipt, and per arm a count of receipts recorded after
the canary had already advanced (their LM call was in flight), which the per-step split test leaves out.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step", sa.Integer(), nullable=True))
    with op.batch_alter_table("canary_arms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("carried", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("canary_arms", schema=None) as batch_op:
        batch_op.drop_column("carried")
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_column("step")
