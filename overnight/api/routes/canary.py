"""Canaries and the champion alias: `/api/v1/signatures/{sig}/canary…`, `/api/v1/canaries/{id}`, `…/promote`,
`…/rollback`, `…/aliases/history`. Mutations need admin; reads need read. The actor is the token's name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from overnight.api.deps import Admin, BackendDep, HeldKeyDep, ProgramsDep, Reader, RegistryDep, StoreDep
from overnight.domain.canary import CanaryRecord, CanaryStart, CanaryStop, CanaryView
from overnight.domain.promotion import AliasHistory, AliasMoveOut, PromoteRequest, RollbackRequest
from overnight.domain.runs import ID_PATTERN
from overnight.serving.aliases import promote, rollback
from overnight.serving.canary import canary_view, start_canary, view_of

router = APIRouter(prefix="/api/v1", tags=["canary"])
SignatureId = Annotated[str, Path(pattern=ID_PATTERN, description="e.g. SelectTool.v1")]
CanaryId = Annotated[str, Path(pattern=ID_PATTERN, description="e.g. can-1790000000000-1a2b3c4d")]


@router.post("/signatures/{signature_id}/canary:start")
def start(signature_id: SignatureId, body: CanaryStart, principal: Admin, store: StoreDep, registry: RegistryDep,
          backend: BackendDep, programs: ProgramsDep) -> CanaryRecord:
    """Open a canary for a candidate a compile report on the current dataset names. 409 `canary_active` while
    one runs; 409 `compile_evidence_missing` without the report."""
    return start_canary(store, registry.get(signature_id), programs, body, lm_id=backend.lm_id,
                        actor=principal.name)


@router.post("/signatures/{signature_id}/canary:stop")
def stop(signature_id: SignatureId, body: CanaryStop, principal: Admin, store: StoreDep,
         registry: RegistryDep) -> CanaryRecord:
    registry.get(signature_id)
    return store.stop_canary(signature_id=signature_id, actor=principal.name, reason=body.reason,
                             canary_id=body.canary_id)


@router.get("/signatures/{signature_id}/canary")
def get_canary(signature_id: SignatureId, _: Reader, store: StoreDep, registry: RegistryDep) -> CanaryView:
    """The active (or most recent) canary: config, per-arm counters, the gates right now, and its history."""
    registry.get(signature_id)
    return canary_view(store, signature_id)


@router.get("/canaries/{canary_id}")
def get_canary_by_id(canary_id: CanaryId, _: Reader, store: StoreDep) -> CanaryView:
    """One canary by id, active or ended, in the same shape: what a runner reads to follow the canary it started
    even after another has replaced it. 404 `canary_not_found`."""
    return view_of(store, store.get_canary(canary_id=canary_id))


@router.post("/signatures/{signature_id}/promote", response_model=AliasMoveOut)
def promote_route(signature_id: SignatureId, body: PromoteRequest, principal: Admin, store: StoreDep,
                  registry: RegistryDep, backend: BackendDep, programs: ProgramsDep, held: HeldKeyDep) -> Response:
    """Move the champion to a candidate whose gates all pass (or `force` with a reason); 409
    `promotion_refused` with every gate's evidence otherwise."""
    return _as_kept(promote(store, registry.get(signature_id), programs, body, lm_id=backend.lm_id,
                            actor=principal.name, held=held))


@router.post("/signatures/{signature_id}/rollback", response_model=AliasMoveOut)
def rollback_route(signature_id: SignatureId, body: RollbackRequest, principal: Admin, store: StoreDep,
                   registry: RegistryDep, held: HeldKeyDep) -> Response:
    """One step back through the alias history, or `to` a named existing id (or `default`); ends any canary."""
    return _as_kept(rollback(store, registry.get(signature_id), body, actor=principal.name, held=held))


def _as_kept(out: AliasMoveOut) -> Response:
    """The move's answer in the very bytes kept with it for its Idempotency-Key (`serving.aliases`), so the
    first answer and a retry's replay are the same."""
    return Response(out.model_dump_json(), media_type="application/json")


@router.get("/signatures/{signature_id}/aliases/history")
def alias_history(signature_id: SignatureId, _: Reader, store: StoreDep, registry: RegistryDep,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AliasHistory:
    registry.get(signature_id)
    return AliasHistory(signature_id=signature_id, champion_id=store.champion(signature_id=signature_id),
                        history=store.alias_history(signature_id=signature_id, limit=limit))
