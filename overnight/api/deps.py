"""Route dependencies: the store and settings the app was built with. Must not import SQL.

They are `async def` because they only read app state: FastAPI runs a plain `def` dependency in its thread pool,
and that hop per dependency was a sixth of a predict's CPU time."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from overnight.api.auth import Principal, require_admin, require_any, require_read, require_serve
from overnight.api.predict_pool import PredictPool
from overnight.config import Settings
from overnight.lm.backends import Backend, build_backend
from overnight.registry import Registry
from overnight.serving.programs import ProgramCache
from overnight.store import Store
from overnight.store.base import HeldKey


async def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def _backend(request: Request) -> Backend:
    """The LM backend, built from the settings on first use (building the local model loads it into memory, so
    that happens in the thread pool, once)."""
    state = request.app.state
    backend: Backend | None = state.backend
    return backend if backend is not None else await run_in_threadpool(_build_backend, state)


def _build_backend(state: Any) -> Backend:
    with state.backend_lock:
        if state.backend is None:
            state.backend = build_backend(state.settings)
        backend: Backend = state.backend
        return backend


async def _programs(request: Request) -> ProgramCache:
    programs: ProgramCache = request.app.state.programs
    return programs


async def _predict_pool(request: Request) -> PredictPool:
    pool: PredictPool = request.app.state.predict_pool
    return pool


async def _request_id(request: Request) -> str:
    return str(request.state.request_id)


async def _held_key(request: Request) -> HeldKey | None:
    """The claim this request holds on its Idempotency-Key, when it sent one (`middleware.IdempotencyKeys`)."""
    held: HeldKey | None = getattr(request.state, "held_key", None)
    return held


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[Store, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
RegistryDep = Annotated[Registry, Depends(_registry)]
BackendDep = Annotated[Backend, Depends(_backend)]
ProgramsDep = Annotated[ProgramCache, Depends(_programs)]
PredictPoolDep = Annotated[PredictPool, Depends(_predict_pool)]
RequestId = Annotated[str, Depends(_request_id)]
Admin = Annotated[Principal, Depends(require_admin)]
Reader = Annotated[Principal, Depends(require_read)]
Server = Annotated[Principal, Depends(require_serve)]
AnyRole = Annotated[Principal, Depends(require_any)]
HeldKeyDep = Annotated[HeldKey | None, Depends(_held_key)]
