"""Initial schema: the whole data model of DESIGN §3, and the append-only triggers.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen here on purpose: a later revision that makes another table append-only adds its own triggers.
APPEND_ONLY_TABLES = ("ops_run_events", "alias_history", "canary_history")


def _refuse_changes(tables: tuple[str, ...]) -> None:
    """Make the database itself refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on `tables`."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION overnight_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$"
        )
        for table in tables:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION overnight_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION overnight_append_only()"
            )
        return
    for table in tables:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
            )


def _allow_changes(tables: tuple[str, ...]) -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in tables:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS overnight_append_only()")


def upgrade() -> None:
    _create_tables()
    _refuse_changes(APPEND_ONLY_TABLES)


def _create_tables() -> None:
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("from_id", sa.String(length=64), nullable=True),
        sa.Column("to_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.Column("evidence_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alias_history", schema=None) as batch_op:
        batch_op.create_index("ix_alias_history_sig", ["signature_id", "alias", "id"], unique=False)

    op.create_table(
        "aliases",
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("compiled_id", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("signature_id", "alias"),
    )
    op.create_table(
        "artifacts",
        sa.Column("compiled_id", sa.String(length=64), nullable=False),
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("state_json", sa.Text(), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("lm_id", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("compiled_id"),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_signature_id"), ["signature_id"], unique=False)

    op.create_table(
        "canaries",
        sa.Column("canary_id", sa.String(length=128), nullable=False),
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("control_id", sa.String(length=64), nullable=False),
        sa.Column("candidate_id", sa.String(length=64), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("plan_json", sa.Text(), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("canary_id"),
    )
    with op.batch_alter_table("canaries", schema=None) as batch_op:
        batch_op.create_index(
            "uq_canaries_active",
            ["signature_id"],
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.create_table(
        "canary_arms",
        sa.Column("canary_id", sa.String(length=128), nullable=False),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column("samples", sa.Integer(), server_default="0", nullable=False),
        sa.Column("errors", sa.Integer(), server_default="0", nullable=False),
        sa.Column("labeled", sa.Integer(), server_default="0", nullable=False),
        sa.Column("correct", sa.Integer(), server_default="0", nullable=False),
        sa.Column("latency_sum_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tokens_in", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tokens_out", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("canary_id", "arm"),
    )
    op.create_table(
        "canary_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("canary_id", sa.String(length=128), nullable=False),
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("evidence_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("canary_history", schema=None) as batch_op:
        batch_op.create_index("ix_canary_history_canary", ["canary_id", "id"], unique=False)

    op.create_table(
        "canary_latency_buckets",
        sa.Column("canary_id", sa.String(length=128), nullable=False),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column("bucket_ms", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("canary_id", "arm", "bucket_ms"),
    )
    op.create_table(
        "compile_jobs",
        sa.Column("job_id", sa.String(length=128), nullable=False),
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("job_hash", sa.String(length=64), nullable=False),
        sa.Column("dataset_hash", sa.String(length=64), nullable=False),
        sa.Column("job_spec_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
        sa.UniqueConstraint("signature_id", "job_hash", "dataset_hash", name="uq_compile_jobs_key"),
    )
    op.create_table(
        "compile_reports",
        sa.Column("report_id", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=False),
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("job_hash", sa.String(length=64), nullable=False),
        sa.Column("dataset_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("best_compiled_id", sa.String(length=64), nullable=True),
        sa.Column("incumbent_compiled_id", sa.String(length=64), nullable=True),
        sa.Column("report_json", sa.Text(), nullable=False),
        sa.Column("lm_calls", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("report_id"),
    )
    with op.batch_alter_table("compile_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compile_reports_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            "ix_compile_reports_key", ["signature_id", "job_hash", "dataset_hash"], unique=False
        )

    op.create_table(
        "compile_results",
        sa.Column("compiled_id", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("lm_id", sa.String(length=256), nullable=False),
        sa.Column("output_json", sa.Text(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("compiled_id", "row_hash", "lm_id"),
    )
    op.create_table(
        "dataset_snapshots",
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("dataset_hash", sa.String(length=64), nullable=False),
        sa.Column("example_count", sa.Integer(), nullable=False),
        sa.Column("split_counts_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("signature_id", "dataset_hash"),
    )
    op.create_table(
        "example_rows",
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("example_id", sa.String(length=128), nullable=False),
        sa.Column("input_json", sa.Text(), nullable=False),
        sa.Column("expected_json", sa.Text(), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("tags_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("signature_id", "row_hash"),
    )
    op.create_table(
        "examples",
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("example_id", sa.String(length=128), nullable=False),
        sa.Column("input_json", sa.Text(), nullable=False),
        sa.Column("expected_json", sa.Text(), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("tags_json", sa.Text(), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("signature_id", "example_id"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("actor", "key"),
    )
    op.create_table(
        "ops_run_events",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("phase", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data_json", sa.Text(), nullable=False),
        sa.Column("client_event_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "seq"),
        sa.UniqueConstraint("run_id", "client_event_id", name="uq_ops_run_events_client_id"),
    )
    op.create_table(
        "ops_runs",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=True),
        sa.Column("base_url", sa.String(length=512), nullable=True),
        sa.Column("signature_ids_json", sa.Text(), nullable=False),
        sa.Column("lease_s", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", sa.BigInteger(), nullable=False),
        sa.Column("summary_json", sa.Text(), nullable=False),
        sa.Column("links_json", sa.Text(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("event_bytes", sa.BigInteger(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("ops_runs", schema=None) as batch_op:
        batch_op.create_index("ix_ops_runs_started", ["started_at"], unique=False)

    op.create_table(
        "receipts",
        sa.Column("receipt_id", sa.String(length=128), nullable=False),
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("compiled_id", sa.String(length=64), nullable=False),
        sa.Column("canary_id", sa.String(length=128), nullable=True),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column("request_key", sa.String(length=256), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("output_json", sa.Text(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("lm_id", sa.String(length=256), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("receipt_id"),
    )
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.create_index("ix_receipts_canary", ["canary_id"], unique=False)
        batch_op.create_index("ix_receipts_sig_created", ["signature_id", "created_at"], unique=False)

    op.create_table(
        "run_locks",
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("signature_id"),
    )
    with op.batch_alter_table("run_locks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_locks_run_id"), ["run_id"], unique=False)

    op.create_table(
        "snapshot_members",
        sa.Column("signature_id", sa.String(length=128), nullable=False),
        sa.Column("dataset_hash", sa.String(length=64), nullable=False),
        sa.Column("example_id", sa.String(length=128), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("signature_id", "dataset_hash", "example_id"),
    )


def downgrade() -> None:
    _allow_changes(APPEND_ONLY_TABLES)
    op.drop_table("snapshot_members")
    with op.batch_alter_table("run_locks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_locks_run_id"))

    op.drop_table("run_locks")
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_receipts_sig_created")
        batch_op.drop_index("ix_receipts_canary")

    op.drop_table("receipts")
    with op.batch_alter_table("ops_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_ops_runs_started")

    op.drop_table("ops_runs")
    op.drop_table("ops_run_events")
    op.drop_table("idempotency_keys")
    op.drop_table("examples")
    op.drop_table("example_rows")
    op.drop_table("dataset_snapshots")
    op.drop_table("compile_results")
    with op.batch_alter_table("compile_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_compile_reports_key")
        batch_op.drop_index(batch_op.f("ix_compile_reports_job_id"))

    op.drop_table("compile_reports")
    op.drop_table("compile_jobs")
    op.drop_table("canary_latency_buckets")
    with op.batch_alter_table("canary_history", schema=None) as batch_op:
        batch_op.drop_index("ix_canary_history_canary")

    op.drop_table("canary_history")
    op.drop_table("canary_arms")
    with op.batch_alter_table("canaries", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_canaries_active",
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.drop_table("canaries")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_signature_id"))

    op.drop_table("artifacts")
    op.drop_table("aliases")
    with op.batch_alter_table("alias_history", schema=None) as batch_op:
        batch_op.drop_index("ix_alias_history_sig")

    op.drop_table("alias_history")
