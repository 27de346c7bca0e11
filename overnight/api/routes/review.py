"""The read-only review pages under `/review` (role `read`; admin too), server-rendered with Jinja2.

Runs list, run page (the same content as `overnight show`, with inline SVG charts and the events paged), a
signature page, an artifact diff page, and the sign-in form that sets the session cookie. No page has a
control: the only POSTs are signing in and out, which touch the session and nothing else. A running run's
page follows its events over Server-Sent Events (a few lines of plain JavaScript, no framework).
Must not import SQL.
"""

from __future__ import annotations

import secrets
from functools import cache
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from overnight.api.auth import SESSION_COOKIE, Principal, ReviewSession, SignInRequired, TokenRegistry
from overnight.api.deps import RegistryDep, SettingsDep, StoreDep
from overnight.api.routes.runs import follow_events
from overnight.domain.diff import diff_artifacts
from overnight.domain.review import on_api, short
from overnight.domain.runs import ID_PATTERN, RunStatus
from overnight.review.assemble import run_list, run_review, serving_status, signature_overview
from overnight.review.charts import canary_chart, candidate_chart
from overnight.review.show import delta_sentence, seconds, took
from overnight.review.terminal import duration, e2e_words, verdicts, when

router = APIRouter(prefix="/review", tags=["review"], include_in_schema=False)
REVIEWER = ReviewSession("read")
Viewer = Annotated[Principal, Depends(REVIEWER)]
RunId = Annotated[str, Path(pattern=ID_PATTERN)]
CompiledId = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
EVENTS_PER_PAGE = 200
SESSION_MS = 12 * 3600 * 1000


@cache
def _templates() -> Environment:
    env = Environment(loader=PackageLoader("overnight.api", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, short=short, seconds=seconds, took=took, delta_sentence=delta_sentence, svg=_chart)
    # The commands a page prints to run through the API name it `URL`: the address this request came in on is
    # the Host header's, and behind a proxy that ends TLS its scheme would be http — an admin token pasted with it
    # would go out in the clear.
    env.globals.update(duration=duration, verdicts=verdicts, e2e_words=e2e_words,
                       through_api=lambda command: on_api(command, "URL"))
    return env


def _chart(svg: str | None) -> Markup:
    """A chart from `overnight.review.charts`, which escapes every text it draws, inserted as it is."""
    return Markup(svg or "")  # noqa: S704


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page, with a policy that lets the browser run only the script the template wrote (tagged with this
    response's nonce): behind the escaping, text recorded from callers or data can never become a script."""
    nonce = secrets.token_urlsafe(16)
    return HTMLResponse(_templates().get_template(name).render(csp_nonce=nonce, **context), status_code=status,
                        headers={"content-security-policy": _POLICY.format(nonce=nonce),
                                 "referrer-policy": "no-referrer"})  # no-store and nosniff: every answer has them


# Inline SVG and the base template's <style> need no source; EventSource is `connect-src`; the forms post here.
_POLICY = ("default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self' data:; "
           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@router.get("", response_class=HTMLResponse)
def runs_page(viewer: Viewer, store: StoreDep, registry: RegistryDep, status: RunStatus | None = None,
              since_h: Annotated[int | None, Query(ge=1, le=24 * 366)] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50) -> HTMLResponse:
    since = None if since_h is None else store.clock() - since_h * 3600 * 1000
    return page("runs.html", viewer=viewer, listed=run_list(store, limit=limit, status=status, since=since),
                status_filter=status, since_h=since_h, limit=limit, serving=serving_status(store, registry.ids()))


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: RunId, viewer: Viewer, store: StoreDep,
             after: Annotated[int, Query(ge=0, description="events after this seq")] = 0) -> HTMLResponse:
    review = run_review(store, run_id)
    events = store.list_events(run_id=run_id, after_seq=after, limit=EVENTS_PER_PAGE)
    charts = {s.signature_id: {"candidates": candidate_chart(s.compile) if s.compile else None,
                               "canary": canary_chart(s.canary) if s.canary else None} for s in review.signatures}
    more = events and events[-1].seq < review.event_count
    return page("run.html", viewer=viewer, review=review, charts=charts, events=events, after=after,
                next_after=events[-1].seq if more else None, per_page=EVENTS_PER_PAGE)


@router.get("/runs/{run_id}/stream")
def run_stream(run_id: RunId, _: Viewer, store: StoreDep, settings: SettingsDep, request: Request,
               after: Annotated[int, Query(ge=0)] = 0) -> StreamingResponse:
    """The run page's live feed: the same Server-Sent Events as the API's `?follow=true`, on the session."""
    store.get_run(run_id=run_id)
    return StreamingResponse(follow_events(store, run_id, after, settings.sse_poll_ms / 1000, request, named=False),
                             media_type="text/event-stream", headers={"cache-control": "no-store"})


@router.get("/signatures/{signature_id}", response_class=HTMLResponse)
def signature_page(signature_id: Annotated[str, Path(pattern=ID_PATTERN)], viewer: Viewer,
                   store: StoreDep) -> HTMLResponse:
    overview = signature_overview(store, signature_id)
    return page("signature.html", viewer=viewer, sig=overview,
                chart=canary_chart(overview.canary) if overview.canary else None)


@router.get("/artifacts/{compiled_id}/diff/{other_id}", response_class=HTMLResponse)
def diff_page(compiled_id: CompiledId, other_id: CompiledId, viewer: Viewer, store: StoreDep) -> HTMLResponse:
    changed = diff_artifacts(store.get_artifact(compiled_id=compiled_id), store.get_artifact(compiled_id=other_id))
    return page("diff.html", viewer=viewer, a=compiled_id, b=other_id, diff=changed)


# the session ----------------------------------------------------------------------------------------------

@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(next: str = "/review") -> HTMLResponse:  # the conventional name of the target
    return page("sign_in.html", next=_local(next), problem=None, viewer=None)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request, store: StoreDep) -> Response:
    """Take a read or admin token from the form and set the session cookie; the token is never stored."""
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    wanted = _local(form.get("next", "/review"))
    tokens: TokenRegistry = request.app.state.tokens
    principal = tokens.find(f"Bearer {form.get('token', '').strip()}")
    if principal is None:
        return page("sign_in.html", 401, next=wanted, problem="That token is not valid.", viewer=None)
    if principal.role not in REVIEWER.roles:  # the role the pages themselves require
        return page("sign_in.html", 403, next=wanted, viewer=None,
                    problem=f"Token {principal.name!r} has role {principal.role}; the review needs read or admin.")
    expires_at = store.clock() + SESSION_MS
    response = RedirectResponse(wanted, status_code=303)
    response.set_cookie(SESSION_COOKIE, tokens.issue_session(principal, expires_at=expires_at),
                        max_age=SESSION_MS // 1000, path="/review", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.post("/sign-out")
def sign_out(request: Request) -> Response:
    response = RedirectResponse("/review/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/review", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


def _local(target: str) -> str:
    """Only a review page may be the target after sign-in (no open redirect, no climbing out of /review)."""
    parts = urlsplit(target)
    inside = parts.path == "/review" or parts.path.startswith("/review/")
    safe = not (parts.scheme or parts.netloc) and ".." not in parts.path and "\\" not in target and "//" not in target
    return target if inside and safe else "/review"


async def redirect_to_sign_in(_: Request, exc: Exception) -> Response:
    wanted = exc.wanted if isinstance(exc, SignInRequired) else "/review"
    return RedirectResponse(f"/review/sign-in?next={quote(wanted, safe='')}", status_code=303)
