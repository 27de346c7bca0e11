"""`create_app(settings, store)`: the FastAPI app. No import-time singletons; tests pass their own store.

Must not import SQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from overnight import __version__
from overnight.api.auth import Require, SignInRequired, TokenRegistry
from overnight.api.errors import ERROR_RESPONSES, install_error_handlers
from overnight.api.middleware import IdempotencyKeys, RequestContext
from overnight.api.predict_pool import PredictPool
from overnight.api.routes import canary, health, review, runs, serving, signatures
from overnight.api.routes import compile as compile_routes
from overnight.config import Settings
from overnight.lm.backends import Backend
from overnight.registry import Registry
from overnight.serving.programs import ProgramCache
from overnight.store import Store

ROUTERS = (health.router, runs.router, signatures.router, compile_routes.router, canary.router, serving.router,
           review.router)


# Routes anyone may call: the probes, the review sign-in form, and FastAPI's schema and docs pages.
PUBLIC_ROUTES = frozenset({("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/review/sign-in"),
                           ("POST", "/review/sign-in"), ("POST", "/review/sign-out"), ("GET", "/openapi.json"),
                           ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"),
                           ("HEAD", "/openapi.json"), ("HEAD", "/docs"), ("HEAD", "/docs/oauth2-redirect"),
                           ("HEAD", "/redoc")})


def route_inventory(app: FastAPI | None = None) -> list[tuple[str, str, frozenset[str]]]:
    """Every (method, path, roles allowed) served: of `app` (every route it really has, however added) or of
    our routers. Roles are empty for a route with no `Require` dependency."""
    routes = app.routes if app is not None else [r for router in ROUTERS for r in router.routes]
    found: list[tuple[str, str, frozenset[str]]] = []
    for prefix, route in _flatten(routes, ""):
        methods = sorted(getattr(route, "methods", None) or ())
        roles: frozenset[str] = frozenset()
        if isinstance(route, APIRoute):
            roles = next((d.call.roles for d in route.dependant.dependencies if isinstance(d.call, Require)),
                         frozenset())
        found.extend((method, prefix + getattr(route, "path", "?"), roles) for method in methods)
    return found


def _flatten(routes: list[BaseRoute], prefix: str) -> Iterator[tuple[str, BaseRoute]]:
    """FastAPI keeps an included router as one route holding the original router: walk into it."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _flatten(inner.routes, prefix + getattr(context, "prefix", ""))
        else:
            yield prefix, route


def undeclared_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Routes that would answer without a role check and are not meant to: each must declare `Require(...)`."""
    return sorted((method, path) for method, path, roles in route_inventory(app)
                  if not roles and (method, path) not in PUBLIC_ROUTES)


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
    # Predicts' own threads: each holds one while its LM call is in flight, so a slow LM must not be capped by (or
    # starve the admin routes of) the 40 threads anyio lends every other blocking call.
    app.state.predict_pool = PredictPool(settings.predict_concurrency, wait_s=settings.predict_queue_timeout_s)
    install_error_handlers(app)
    app.add_exception_handler(SignInRequired, review.redirect_to_sign_in)
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    # Added last = outermost: RequestContext sees (and renders) every failure, idempotency's included.
    app.add_middleware(IdempotencyKeys, store=store, tokens=token_registry, lease_s=settings.idempotency_lease_s)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)
    return app
