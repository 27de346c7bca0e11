"""Signatures and their datasets: `/api/v1/signatures…`. Imports need the admin role; reads need read."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from overnight.api.deps import Admin, Reader, RegistryDep, StoreDep
from overnight.domain.datasets import (
    SPLITS,
    DatasetCheck,
    ExamplePage,
    ExampleRow,
    ImportResult,
    SnapshotDetail,
    parse_dataset,
)
from overnight.domain.runs import ID_PATTERN
from overnight.domain.signatures import SignatureContract
from overnight.review.assemble import ServingStatus, serving_status

router = APIRouter(prefix="/api/v1", tags=["signatures"])
SignatureId = Annotated[str, Path(pattern=ID_PATTERN, description="e.g. SelectTool.v1")]
JSON_TYPES = ("application/json",)
_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON row per line"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    }
}


class SignatureList(BaseModel):
    signatures: list[dict[str, Any]]


@router.get("/signatures")
def list_signatures(_: Reader, registry: RegistryDep) -> SignatureList:
    return SignatureList(signatures=[registry.contract(sig).public() for sig in registry.ids()])


@router.get("/status")
def status(_: Reader, store: StoreDep, registry: RegistryDep) -> ServingStatus:
    """What serves each signature now: its champion, the move that made it, its canary (active, else the last),
    its last run with this signature's verdict. The same object as `overnight status --json`."""
    return serving_status(store, registry.ids())


@router.get("/signatures/{signature_id}")
def get_signature(signature_id: SignatureId, _: Reader, registry: RegistryDep) -> dict[str, Any]:
    return registry.contract(signature_id).public()


@router.post("/signatures/{signature_id}/examples:import", openapi_extra=_IMPORT_BODY)
async def import_examples(
    signature_id: SignatureId, request: Request, _: Admin, store: StoreDep, registry: RegistryDep,
    run_id: Annotated[str | None, Query(pattern=ID_PATTERN, description="record dataset.imported on this run")] = None,
    body_format: Annotated[Literal["jsonl", "json"] | None, Query(alias="format")] = None,
    replace: Annotated[bool, Query(description="the body is the whole dataset: remove the current rows it leaves "
                                               "out (the snapshots that hold them keep them)")] = False,
    dry_run: Annotated[bool, Query(description="do all of it, then roll it back: what it would do")] = False,
) -> ImportResult:
    """Upsert a JSONL body (or a JSON list of rows); rows a later body leaves out are kept, unless `replace`. One
    bad row rejects the whole body with 422 naming each line, field and reason, and nothing is written."""
    rows = await _parsed(request, registry.contract(signature_id), body_format)
    return await run_in_threadpool(store.import_examples, signature_id=signature_id, rows=rows, run_id=run_id,
                                   replace=replace, dry_run=dry_run)


async def _parsed(request: Request, contract: SignatureContract,
                  body_format: Literal["jsonl", "json"] | None) -> list[ExampleRow]:
    """The body as validated rows: JSONL, or a JSON list (by content type, or `?format=`). All or nothing."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt: Literal["jsonl", "json"] = body_format or ("json" if content_type in JSON_TYPES else "jsonl")
    rows: list[ExampleRow] = await run_in_threadpool(parse_dataset, contract, body, fmt=fmt)
    return rows


@router.post("/signatures/{signature_id}/examples:validate", openapi_extra=_IMPORT_BODY)
async def validate_examples(
    signature_id: SignatureId, request: Request, _: Admin, registry: RegistryDep,
    body_format: Annotated[Literal["jsonl", "json"] | None, Query(alias="format")] = None,
) -> DatasetCheck:
    """Check a dataset body exactly as an import would, writing nothing: 200 with the counts, or 422
    `dataset_invalid` naming every line, field and reason. A runner's preflight uses it."""
    rows = await _parsed(request, registry.contract(signature_id), body_format)
    return DatasetCheck(signature_id=signature_id, rows=len(rows),
                        splits={split: sum(r.split == split for r in rows) for split in SPLITS})


@router.get("/signatures/{signature_id}/examples")
def list_examples(
    signature_id: SignatureId, _: Reader, store: StoreDep, registry: RegistryDep,
    split: Annotated[Literal["train", "holdout", "test"] | None, Query(description=f"one of {SPLITS}")] = None,
    after: Annotated[str | None, Query(pattern=ID_PATTERN, description="page after this example_id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ExamplePage:
    registry.contract(signature_id)
    found = store.list_examples(signature_id=signature_id, split=split, after=after, limit=limit)
    return ExamplePage(examples=found, next_after=found[-1].example_id if len(found) == limit else None)


@router.get("/signatures/{signature_id}/snapshots/{dataset_hash}")
def get_snapshot(
    signature_id: SignatureId, dataset_hash: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")], _: Reader,
    store: StoreDep, registry: RegistryDep,
) -> SnapshotDetail:
    registry.contract(signature_id)
    return store.get_snapshot(signature_id=signature_id, dataset_hash=dataset_hash)
