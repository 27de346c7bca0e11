"""SQL for artifacts, per-example compile results, compile jobs and reports.
Must not import FastAPI or httpx."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, insert, select

from overnight.domain.compiling import Artifact, CompileReport, ExampleResult
from overnight.domain.hashing import canonical_json
from overnight.errors import ArtifactNotFound, CompileReportNotFound
from overnight.store.datasets_sql import insert_ignoring_duplicates
from overnight.store.schema import artifacts, compile_jobs, compile_reports, compile_results


def put_artifact(conn: Connection, artifact: Artifact, now: int) -> None:
    """Write-once: the id is the content's hash, so a second write of the same id is the same artifact."""
    insert_ignoring_duplicates(conn, artifacts, [{
        "compiled_id": artifact.compiled_id, "signature_id": artifact.signature_id,
        "state_json": canonical_json(artifact.state), "params_json": canonical_json(artifact.params),
        "lm_id": artifact.lm_id, "created_at": now,
    }])


def get_artifact(conn: Connection, compiled_id: str) -> Artifact:
    row = conn.execute(select(artifacts).where(artifacts.c.compiled_id == compiled_id)).mappings().first()
    if row is None:
        raise ArtifactNotFound(f"no artifact {compiled_id!r}")
    return Artifact(compiled_id=compiled_id, signature_id=row["signature_id"], state=json.loads(row["state_json"]),
                    params=json.loads(row["params_json"]), lm_id=row["lm_id"], created_at=row["created_at"])


def compiled_ids_starting(conn: Connection, prefix: str, limit: int) -> list[str]:
    """The compiled_ids that begin with a lowercase hex `prefix`, in order: a range on the primary key (its
    index, on both stores), since every id is lowercase hex and "g" sorts after "f"."""
    query = (select(artifacts.c.compiled_id)
             .where(artifacts.c.compiled_id >= prefix, artifacts.c.compiled_id < prefix + "g")
             .order_by(artifacts.c.compiled_id).limit(limit))
    return list(conn.execute(query).scalars())


def get_results(conn: Connection, *, compiled_id: str, lm_id: str) -> dict[str, ExampleResult]:
    query = select(compile_results).where(compile_results.c.compiled_id == compiled_id,
                                          compile_results.c.lm_id == lm_id)
    return {r["row_hash"]: ExampleResult(
        compiled_id=compiled_id, row_hash=r["row_hash"], lm_id=lm_id, ok=bool(r["ok"]),
        output=json.loads(r["output_json"]) if r["output_json"] else None,
        correct=None if r["correct"] is None else bool(r["correct"]), error_code=r["error_code"],
        latency_ms=r["latency_ms"], tokens_in=r["tokens_in"], tokens_out=r["tokens_out"],
    ) for r in conn.execute(query).mappings()}


def put_result(conn: Connection, result: ExampleResult, now: int) -> None:
    insert_ignoring_duplicates(conn, compile_results, [{
        **result.model_dump(exclude={"output"}), "created_at": now,
        "output_json": canonical_json(result.output) if result.output is not None else None,
    }])


def find_report(conn: Connection, *, signature_id: str, job_hash: str, dataset_hash: str) -> CompileReport | None:
    row = conn.execute(select(compile_reports.c.report_json).where(
        compile_reports.c.signature_id == signature_id, compile_reports.c.job_hash == job_hash,
        compile_reports.c.dataset_hash == dataset_hash, compile_reports.c.status == "completed",
    )).first()
    return CompileReport.model_validate_json(row.report_json) if row else None


def get_report(conn: Connection, report_id: str) -> CompileReport:
    row = conn.execute(select(compile_reports.c.report_json).where(compile_reports.c.report_id == report_id)).first()
    if row is None:
        raise CompileReportNotFound(f"no compile report {report_id!r}")
    return CompileReport.model_validate_json(row.report_json)


def save_report(conn: Connection, report: CompileReport, now: int) -> CompileReport:
    """Record the job and its report (one row each per key; a completed report is never overwritten)."""
    stored = report.model_copy(update={"created_at": now})
    job: dict[str, Any] = {"job_id": report.report_id, "signature_id": report.signature_id,
                           "job_hash": report.job_hash, "dataset_hash": report.dataset_hash,
                           "job_spec_json": canonical_json(report.job_spec), "status": report.status,
                           "run_id": None, "created_at": now, "updated_at": now}
    insert_ignoring_duplicates(conn, compile_jobs, [job])
    if report.status == "completed":
        conn.execute(insert(compile_reports).values(
            report_id=report.report_id, job_id=report.report_id, signature_id=report.signature_id,
            job_hash=report.job_hash, dataset_hash=report.dataset_hash, status=report.status,
            best_compiled_id=report.best_compiled_id, incumbent_compiled_id=report.incumbent_compiled_id,
            report_json=stored.model_dump_json(), lm_calls=report.lm_calls, tokens=report.tokens, created_at=now,
        ))
    return stored

