"""`/healthz` (process up, no auth), `/readyz` (store reachable and migrated, no auth), the two preflight
checks a runner makes: `GET /api/v1/whoami` (any token) and `POST /api/v1/lm:check` (admin), and the store's
retention: `POST /api/v1/store:prune` (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from overnight.api.deps import Admin, AnyRole, BackendDep, RegistryDep, StoreDep
from overnight.domain.access import API_FEATURES, Identity
from overnight.domain.lm import LMCheck
from overnight.domain.receipts import PruneRequest, PruneResult
from overnight.domain.runs import ID_PATTERN
from overnight.errors import StoreUnavailable
from overnight.lm.invoke import check
from overnight.store.migrate import head_revision, newer_schema

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"ok": True}


@router.get("/readyz")
def readyz(store: StoreDep) -> dict[str, Any]:
    """Ready when the store answers and this server may serve its schema: its own, or a newer one whose upgrade
    said this server's version may serve it (a rolling upgrade: `code_revision` then is older than
    `schema_revision`)."""
    state = store.ping()
    if not state.servable:
        raise StoreUnavailable(
            f"store schema is at {state.revision}, newer than this server knows ({head_revision()}): a newer "
            "overnight upgraded it; run that version here" if newer_schema(state) else
            f"store schema is at {state.revision}, this server needs {head_revision()}: run `overnight db upgrade`"
        )
    return {"ok": True, "store": store.kind, "schema_revision": state.revision, "code_revision": head_revision()}


@router.get("/api/v1/whoami")
def whoami(principal: AnyRole) -> Identity:
    """The token's name and role, so a runner can fail fast without the admin role; and what this API can do that
    earlier versions could not, so a newer runner can tell it is older without asking what it would refuse."""
    return Identity(name=principal.name, role=principal.role, features=sorted(API_FEATURES))


@router.post("/api/v1/lm:check")
def lm_check(_: Admin, registry: RegistryDep, backend: BackendDep,
             signature: Annotated[str, Query(pattern=ID_PATTERN)] = "SelectTool.v1") -> LMCheck:
    """One call of the signature's default program on its sample input with the server's LM (no receipt)."""
    return check(registry.get(signature), backend)


@router.post("/api/v1/store:prune")
def prune(request: PruneRequest, _: Admin, store: StoreDep) -> PruneResult:
    """Delete receipts served outside any canary, and idempotency keys whose request last ran, more than
    `keep_days` ago, in small transactions (predicts keep being served); `dry_run` counts them. Nothing else is
    ever pruned."""
    return store.prune(keep_days=request.keep_days, dry_run=request.dry_run)
