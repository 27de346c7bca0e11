"""`create_app(settings, store)`: the FastAPI app. No import-time singletons; tests pass their own store.

Must not import SQL.
"""

from __future__ import annotations

import threading

from fastapi import FastAPI
from fastapi.routing import APIRoute

from overnight import __version__
from overnight.api.auth import Require, SignInRequired, TokenRegistry
from overnight.api.errors import install_error_handlers
from overnight.api.middleware import IdempotencyKeys, RequestContext
from overnight.api.routes import canary, health, review, runs, serving, signatures
from overnight.api.routes import compile as compile_routes
from overnight.config import Settings
from overnight.lm.backends import Backend
from overnight.registry import Registry
from overnight.serving.programs import ProgramCache
from overnight.store import Store

ROUTERS = (health.router, runs.router, signatures.router, compile_routes.router, canary.router, serving.router,
           review.router)


def route_inventory() -> list[tuple[str, str, frozenset[str]]]:
    """Every (method, path, roles allowed) the app serves; roles are empty for the unauthenticated probes."""
    found: list[tuple[str, str, frozenset[str]]] = []
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                roles = next((d.call.roles for d in route.dependant.dependencies if isinstance(d.call, Require)),
                             frozenset())
                found.extend((method, route.path, roles) for method in sorted(route.methods or ()))
    return found


def create_app(settings: Settings, store: Store, *, tokens: TokenRegistry | None = None,
               registry: Registry | None = None, backend: Backend | None = None) -> FastAPI:
    """Build the admin API. Raises `ConfigError` before serving anything when the tokens are unusable or a
    signature module is broken (the registry is discovered here, not on the first request)."""
    token_registry = tokens or TokenRegistry.from_spec(settings.tokens.get_secret_value(), dev=settings.dev)
    signature_registry = registry or Registry()
    signature_registry.ids()
    app = FastAPI(
        title="overnight admin API", version=__version__,
        description="Every overnight action as an endpoint. Auth: Authorization: Bearer <token>.",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.tokens = token_registry
    app.state.registry = signature_registry
    app.state.backend = backend  # built from the settings on first use when not given
    app.state.backend_lock = threading.Lock()
    app.state.programs = ProgramCache()  # programs by compiled_id; which id serves is read on every request
    install_error_handlers(app)
    app.add_exception_handler(SignInRequired, review.redirect_to_sign_in)
    for router in ROUTERS:
        app.include_router(router)
    # Added last = outermost: RequestContext sees (and renders) every failure, idempotency's included.
    app.add_middleware(IdempotencyKeys, store=store, tokens=token_registry)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)
    return app
