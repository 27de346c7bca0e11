"""A lease on an Idempotency-Key's claim: who holds it (`holder`, one per claim) and when it was last renewed
(`locked_at`, ms). A claim its holder stopped renewing — the server died mid-request — may be taken over a lease
later by a retry of the same request, instead of refusing it as `idempotency_key_in_use` for good.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Two nullable columns code of 0004 never reads. Its claims (no holder, never renewed) are judged from their
# creation; its complete and release still end the claim of the same key, which is what they did before.
older_code_may_serve = True


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("locked_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("locked_at")
        batch_op.drop_column("holder")
