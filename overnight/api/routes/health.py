"""`/healthz` (process up, no auth) and `/readyz` (store reachable and migrated, no auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from overnight.api.deps import StoreDep
from overnight.errors import StoreUnavailable
from overnight.store.migrate import head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"ok": True}


@router.get("/readyz")
def readyz(store: StoreDep) -> dict[str, Any]:
    state = store.ping()
    if state["schema_revision"] != head_revision():
        raise StoreUnavailable(
            f"store schema is at {state['schema_revision']}, this server needs {head_revision()}: "
            "run `overnight db upgrade`"
        )
    return {"ok": True, **state}
