"""The tables of the whole data model (DESIGN §3), as SQLAlchemy Core objects.

Queries in `store/` are built from these. The Alembic revisions under `migrations/versions/` create the same
schema explicitly; `tests/store/test_migrations.py` checks the two never drift. Timestamps are integer ms UTC.
Must not import FastAPI or httpx.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

ID = 128  # max length of ids
HASH = 64  # sha256 hex


def _ts(name: str, *, nullable: bool = False) -> Column[int]:
    return Column(name, BigInteger, nullable=nullable)


examples = Table(
    "examples", metadata,
    Column("signature_id", String(ID), nullable=False),
    Column("example_id", String(ID), nullable=False),
    Column("input_json", Text, nullable=False),
    Column("expected_json", Text, nullable=False),
    Column("split", String(16), nullable=False),
    Column("tags_json", Text, nullable=False),
    Column("row_hash", String(HASH), nullable=False),
    _ts("created_at"), _ts("updated_at"),
    PrimaryKeyConstraint("signature_id", "example_id"),
)

# Every version of every row ever imported, by content, so that old snapshots keep their rows.
example_rows = Table(
    "example_rows", metadata,
    Column("signature_id", String(ID), nullable=False),
    Column("row_hash", String(HASH), nullable=False),
    Column("example_id", String(ID), nullable=False),
    Column("input_json", Text, nullable=False),
    Column("expected_json", Text, nullable=False),
    Column("split", String(16), nullable=False),
    Column("tags_json", Text, nullable=False),
    _ts("created_at"),
    PrimaryKeyConstraint("signature_id", "row_hash"),
)

dataset_snapshots = Table(
    "dataset_snapshots", metadata,
    Column("signature_id", String(ID), nullable=False),
    Column("dataset_hash", String(HASH), nullable=False),
    Column("example_count", Integer, nullable=False),
    Column("split_counts_json", Text, nullable=False),
    _ts("created_at"),
    PrimaryKeyConstraint("signature_id", "dataset_hash"),
)

snapshot_members = Table(
    "snapshot_members", metadata,
    Column("signature_id", String(ID), nullable=False),
    Column("dataset_hash", String(HASH), nullable=False),
    Column("example_id", String(ID), nullable=False),
    Column("row_hash", String(HASH), nullable=False),
    PrimaryKeyConstraint("signature_id", "dataset_hash", "example_id"),
)

artifacts = Table(
    "artifacts", metadata,
    Column("compiled_id", String(HASH), primary_key=True),
    Column("signature_id", String(ID), nullable=False, index=True),
    Column("state_json", Text, nullable=False),
    Column("params_json", Text, nullable=False),
    Column("lm_id", String(256), nullable=False),
    _ts("created_at"),
)

compile_jobs = Table(
    "compile_jobs", metadata,
    Column("job_id", String(ID), primary_key=True),
    Column("signature_id", String(ID), nullable=False),
    Column("job_hash", String(HASH), nullable=False),
    Column("dataset_hash", String(HASH), nullable=False),
    Column("job_spec_json", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("run_id", String(ID)),
    _ts("created_at"), _ts("updated_at"),
    UniqueConstraint("signature_id", "job_hash", "dataset_hash", name="uq_compile_jobs_key"),
)

compile_reports = Table(
    "compile_reports", metadata,
    Column("report_id", String(ID), primary_key=True),
    Column("job_id", String(ID), nullable=False, index=True),
    Column("signature_id", String(ID), nullable=False),
    Column("job_hash", String(HASH), nullable=False),
    Column("dataset_hash", String(HASH), nullable=False),
    Column("status", String(32), nullable=False),
    Column("best_compiled_id", String(HASH)),
    Column("incumbent_compiled_id", String(HASH)),
    Column("report_json", Text, nullable=False),
    Column("lm_calls", Integer, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    _ts("created_at"),
    Index("ix_compile_reports_key", "signature_id", "job_hash", "dataset_hash"),
)

# Per-candidate, per-example results, persisted as computed so a crashed compile resumes without paying again.
compile_results = Table(
    "compile_results", metadata,
    Column("compiled_id", String(HASH), nullable=False),
    Column("row_hash", String(HASH), nullable=False),
    Column("lm_id", String(256), nullable=False),
    Column("output_json", Text),
    Column("ok", Boolean, nullable=False),
    Column("correct", Boolean),
    Column("error_code", String(64)),
    Column("latency_ms", Integer, nullable=False),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    _ts("created_at"),
    PrimaryKeyConstraint("compiled_id", "row_hash", "lm_id"),
)

aliases = Table(
    "aliases", metadata,
    Column("signature_id", String(ID), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("compiled_id", String(HASH), nullable=False),
    _ts("updated_at"),
    PrimaryKeyConstraint("signature_id", "alias"),
)

alias_history = Table(
    "alias_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("signature_id", String(ID), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_id", String(HASH)),
    Column("to_id", String(HASH)),
    Column("action", String(16), nullable=False),
    Column("actor", String(ID), nullable=False),
    Column("reason", Text, nullable=False),
    Column("run_id", String(ID)),
    Column("evidence_json", Text, nullable=False),
    _ts("created_at"),
    Index("ix_alias_history_sig", "signature_id", "alias", "id"),
)

canaries = Table(
    "canaries", metadata,
    Column("canary_id", String(ID), primary_key=True),
    Column("signature_id", String(ID), nullable=False),
    Column("control_id", String(HASH), nullable=False),
    Column("candidate_id", String(HASH), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("plan_json", Text, nullable=False),
    Column("config_json", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("end_reason", Text),
    Column("run_id", String(ID)),
    _ts("started_at"), _ts("ended_at", nullable=True),
    # revision 0002: samples per arm when the current step began (the split test is per step), the compile
    # report that named the candidate, and who started it.
    Column("step_base_json", Text, nullable=False, server_default="{}"),
    Column("report_id", String(ID)),
    Column("actor", String(ID)),
    # At most one active canary per signature, enforced by the database on both backends.
    Index("uq_canaries_active", "signature_id", unique=True,
          sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
)

canary_arms = Table(
    "canary_arms", metadata,
    Column("canary_id", String(ID), nullable=False),
    Column("arm", String(16), nullable=False),
    Column("samples", Integer, nullable=False, server_default="0"),
    Column("errors", Integer, nullable=False, server_default="0"),
    Column("labeled", Integer, nullable=False, server_default="0"),
    Column("correct", Integer, nullable=False, server_default="0"),
    Column("latency_sum_ms", BigInteger, nullable=False, server_default="0"),
    Column("tokens_in", BigInteger, nullable=False, server_default="0"),
    Column("tokens_out", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("costed", Integer, nullable=False, server_default="0"),  # revision 0002: calls whose cost is known
    Column("carried", Integer, nullable=False, server_default="0"),  # revision 0003: routed under an earlier step
    PrimaryKeyConstraint("canary_id", "arm"),
)

canary_latency_buckets = Table(
    "canary_latency_buckets", metadata,
    Column("canary_id", String(ID), nullable=False),
    Column("arm", String(16), nullable=False),
    Column("bucket_ms", Integer, nullable=False),
    Column("count", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("canary_id", "arm", "bucket_ms"),
)

canary_history = Table(
    "canary_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("canary_id", String(ID), nullable=False),
    Column("signature_id", String(ID), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("step", Integer, nullable=False),
    Column("verdict", String(16)),
    Column("actor", String(ID)),
    Column("evidence_json", Text, nullable=False),
    _ts("created_at"),
    Index("ix_canary_history_canary", "canary_id", "id"),
)

receipts = Table(
    "receipts", metadata,
    Column("receipt_id", String(ID), primary_key=True),
    Column("signature_id", String(ID), nullable=False),
    Column("compiled_id", String(HASH), nullable=False),
    Column("canary_id", String(ID)),
    Column("arm", String(16), nullable=False),
    Column("step", Integer),  # revision 0003: the canary step the request was routed under
    Column("request_key", String(256), nullable=False),
    Column("input_hash", String(HASH), nullable=False),
    Column("output_json", Text),
    Column("ok", Boolean, nullable=False),
    Column("error_code", String(64)),
    Column("correct", Boolean),
    Column("latency_ms", Integer, nullable=False),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("cost_usd", Float),
    Column("lm_id", String(256), nullable=False),
    Column("request_id", String(ID), nullable=False),
    _ts("created_at"),
    Index("ix_receipts_sig_created", "signature_id", "created_at"),
    Index("ix_receipts_canary", "canary_id"),
)

ops_runs = Table(
    "ops_runs", metadata,
    Column("run_id", String(ID), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("actor", String(ID), nullable=False),
    Column("commit_sha", String(64)),
    Column("base_url", String(512)),
    Column("signature_ids_json", Text, nullable=False),
    Column("lease_s", Integer, nullable=False),
    _ts("lease_expires_at"),
    Column("summary_json", Text, nullable=False),
    Column("links_json", Text, nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("event_bytes", BigInteger, nullable=False),
    Column("truncated", Boolean, nullable=False),
    _ts("started_at"), _ts("ended_at", nullable=True),
    Index("ix_ops_runs_started", "started_at"),
)

# One row per signature held by a running run: the primary key makes "one running run per signature" a fact
# the database enforces, whatever the number of API replicas.
run_locks = Table(
    "run_locks", metadata,
    Column("signature_id", String(ID), primary_key=True),
    Column("run_id", String(ID), nullable=False, index=True),
)

ops_run_events = Table(
    "ops_run_events", metadata,
    Column("run_id", String(ID), nullable=False),
    Column("seq", Integer, nullable=False),
    _ts("ts"),
    Column("kind", String(64), nullable=False),
    Column("phase", String(64), nullable=False),
    Column("level", String(8), nullable=False),
    Column("message", Text, nullable=False),
    Column("data_json", Text, nullable=False),
    Column("client_event_id", String(ID)),
    PrimaryKeyConstraint("run_id", "seq"),
    UniqueConstraint("run_id", "client_event_id", name="uq_ops_run_events_client_id"),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("actor", String(ID), nullable=False),
    Column("key", String(256), nullable=False),
    Column("fingerprint", String(HASH), nullable=False),
    Column("state", String(16), nullable=False),
    Column("status_code", Integer),
    Column("response_body", Text),
    _ts("created_at"),
    Column("holder", String(32)),  # revision 0005: the claim's lease; NULL on claims older code made
    _ts("locked_at", nullable=True),  # when the holder last renewed it
    PrimaryKeyConstraint("actor", "key"),
)

# Tables whose rows, once written, the database itself refuses to change or delete.
APPEND_ONLY_TABLES = ("ops_run_events", "alias_history", "canary_history")


overnight_schema = Table(  # revision 0004: one row, written by every upgrade (store/migrate.py)
    "overnight_schema", metadata,
    Column("serves_from", String(32), primary_key=True),  # the oldest revision whose code may serve this schema
)
