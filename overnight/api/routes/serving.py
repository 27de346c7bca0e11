"""Serving and receipts: `POST /api/v1/signatures/{sig}/predict` (serve or admin) and the receipts it writes
(read). No endpoint accepts receipts or counters from clients."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from overnight.api.deps import BackendDep, PredictPoolDep, ProgramsDep, Reader, RegistryDep, RequestId, Server, StoreDep
from overnight.domain.receipts import Prediction, PredictRequest, Receipt
from overnight.domain.runs import ID_PATTERN
from overnight.serving.predict import predict

router = APIRouter(prefix="/api/v1", tags=["serving"])
SignatureId = Annotated[str, Path(pattern=ID_PATTERN, description="e.g. SelectTool.v1")]


class ReceiptPage(BaseModel):
    receipts: list[Receipt]
    next_after: str | None


@router.post("/signatures/{signature_id}/predict", response_model=Prediction)
async def predict_route(signature_id: SignatureId, body: PredictRequest, _: Server, store: StoreDep,
                        registry: RegistryDep, backend: BackendDep, programs: ProgramsDep, pool: PredictPoolDep,
                        request_id: RequestId, request: Request) -> Response:
    """Serve one prediction from the champion, or from the canary's arm for this `request_key` (sticky). An LM
    failure is 502 `lm_call_failed`, with the receipt id: it is counted as an error on its arm. With every predict
    slot taken past the queue timeout it is 503 `server_busy`: not run, counted nowhere; retry later. A caller
    that disconnects while its predict waits for a slot is dropped the same way (logged as 499)."""
    # One hop to a thread for the blocking work (the LM call, the store), from the predicts' own pool (a bounded
    # wait for a turn, then 503 server_busy), and the answer serialized here from the model it already is: a plain
    # `def` route costs a second hop for FastAPI to re-validate it.
    work = partial(predict, store, registry.get(signature_id), backend, programs, body, request_id=request_id)
    prediction = await pool.run(work, left=request.is_disconnected)
    return Response(prediction.model_dump_json(), media_type="application/json")


@router.get("/receipts/{receipt_id}")
def get_receipt(receipt_id: Annotated[str, Path(pattern=ID_PATTERN)], _: Reader, store: StoreDep) -> Receipt:
    return store.get_receipt(receipt_id=receipt_id)


@router.get("/receipts")
def list_receipts(
    _: Reader, store: StoreDep, registry: RegistryDep,
    signature: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    canary: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ok: Annotated[bool | None, Query(description="only answered (true) or only failed (false) requests")] = None,
) -> ReceiptPage:
    """Receipts in the order they were written, paged by `after` (the last receipt_id of the previous page).
    A `signature` that is neither registered nor in any receipt is 404 `signature_not_found` (a typo answered an
    empty page, which reads as "no traffic"); a retired signature's receipts stay listable."""
    page = store.list_receipts(signature_id=signature, canary_id=canary, after=after, limit=limit, ok=ok)
    if signature is not None and not page and signature not in registry.ids() \
            and not store.list_receipts(signature_id=signature, limit=1):
        registry.get(signature)  # signature_not_found, naming the known ones
    return ReceiptPage(receipts=page, next_after=page[-1].receipt_id if len(page) == limit else None)
