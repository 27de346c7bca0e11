"""Compile, compile reports and artifacts: `/api/v1/…`. Compiling needs admin; reading needs read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from overnight.api.deps import Admin, BackendDep, Reader, RegistryDep, SettingsDep, StoreDep
from overnight.compile.service import compile_signature
from overnight.domain.compiling import Artifact, CompiledIds, CompileReport, CompileRequest, rung_sentence
from overnight.domain.diff import ArtifactDiff, diff_artifacts
from overnight.domain.runs import ID_PATTERN, EventIn
from overnight.review.assemble import default_beside

router = APIRouter(prefix="/api/v1", tags=["compile"])
CompiledId = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="an artifact's compiled_id")]


@router.post("/signatures/{signature_id}/compile")
def compile_route(
    signature_id: Annotated[str, Path(pattern=ID_PATTERN)], body: CompileRequest, _: Admin, store: StoreDep,
    registry: RegistryDep, backend: BackendDep, settings: SettingsDep,
) -> CompileReport:
    """Compile the signature's current dataset with the configured LM. The same job on the same dataset returns
    the stored report with `cached: true` and spends no LM call."""
    entry = registry.get(signature_id)
    if body.run_id is not None:
        store.get_run(run_id=body.run_id)  # an unknown run is 404 before any LM call
    def progress(kind: str, data: dict[str, Any]) -> None:
        if body.run_id is not None:
            store.append_event(run_id=body.run_id, event=EventIn(
                kind=kind, phase="compile", message=rung_sentence(signature_id, data), data=data))

    report = compile_signature(store, entry, backend, seed=body.seed, max_lm_calls=body.max_lm_calls,
                               max_tokens=body.max_tokens, max_seconds=body.max_seconds, search=body.search,
                               optimizer_id=body.optimizer,
                               concurrency=settings.compile_concurrency, progress=progress)
    if body.run_id is not None:
        store.append_event(run_id=body.run_id, event=EventIn(
            kind="compile.report", phase="compile", level="info" if report.status == "completed" else "warning",
            message=_said(signature_id, report),
            data={"report_id": report.report_id, "status": report.status, "stopped_by": report.stopped_by,
                  "cached": report.cached,
                  "best_compiled_id": report.best_compiled_id, "improved": report.improved,
                  "lm_calls": report.lm_calls, "dataset_hash": report.dataset_hash, "job_hash": report.job_hash},
            client_event_id=f"compile.report.{report.report_id}.{report.status}",
        ))
    return report


def _said(signature_id: str, report: CompileReport) -> str:
    if limit := report.limit_reached():
        return (f"{signature_id}: {report.status} ({limit}) after "
                f"{report.lm_calls} LM calls, {len(report.candidates)} candidates, best so far "
                f"{report.best_compiled_id[:12]} on train: not compared on holdout, no report stored")
    return (f"{signature_id}: {report.status}, {len(report.candidates)} candidates, {report.lm_calls} LM calls, best "
            f"{report.best_compiled_id[:12]} ({'improved' if report.improved else 'no change'})"
            + (", cached" if report.cached else ""))


@router.get("/compile-reports/{report_id}")
def get_compile_report(report_id: Annotated[str, Path(pattern=ID_PATTERN)], _: Reader,
                       store: StoreDep) -> CompileReport:
    return store.get_compile_report(report_id=report_id)


@router.get("/artifacts")
def artifacts_starting(
    prefix: Annotated[str, Query(pattern=r"^[0-9a-f]{6,64}$", description="the first 6 or more hex characters")],
    _: Reader, store: StoreDep, limit: Annotated[int, Query(ge=1, le=100)] = 2,
) -> CompiledIds:
    """The compiled_ids that start with `prefix`, in order, at most `limit`: a client resolves the short ids the
    review prints (one found: that one; two: ambiguous) as `overnight` does on the store."""
    return CompiledIds(compiled_ids=store.compiled_ids_starting(prefix=prefix, limit=limit))


@router.get("/artifacts/{compiled_id}")
def get_artifact(compiled_id: CompiledId, _: Reader, store: StoreDep) -> Artifact:
    return store.get_artifact(compiled_id=compiled_id)


@router.get("/artifacts/{compiled_id}/default")
def get_default_beside(compiled_id: CompiledId, _: Reader, store: StoreDep) -> Artifact:
    """The signature's default program as compiled beside this one, in the newest compile report naming it: what
    this program was measured against (`overnight diff default ID`). 404 when no report names it."""
    return store.get_artifact(compiled_id=default_beside(store, compiled_id))


@router.get("/artifacts/{compiled_id}/diff/{other_id}")
def diff(compiled_id: CompiledId, other_id: CompiledId, _: Reader, store: StoreDep) -> ArtifactDiff:
    return diff_artifacts(store.get_artifact(compiled_id=compiled_id), store.get_artifact(compiled_id=other_id))
