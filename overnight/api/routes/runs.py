"""Ops runs and their event stream: `/api/v1/runs…`. Every mutation needs the admin role."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import field_validator
from starlette.concurrency import run_in_threadpool

from overnight.api.deps import Admin, Reader, RegistryDep, SettingsDep, StoreDep
from overnight.domain.hashing import canonical_json
from overnight.domain.review import RunList, RunReview
from overnight.domain.runs import (
    ID_PATTERN,
    SERVER_KINDS,
    AppendedEvent,
    EventIn,
    EventPage,
    FinishRun,
    Run,
    RunEvent,
    RunStart,
    RunStatus,
    StartedRun,
)
from overnight.review.assemble import run_list, run_review
from overnight.store import Store

router = APIRouter(prefix="/api/v1", tags=["runs"])
RunId = Annotated[str, Path(pattern=ID_PATTERN, description="The run's id")]
SSE_KEEPALIVE_S = 15.0


class ClientEvent(EventIn):
    """An event as a client may post it: the server's own lifecycle kinds are reserved."""

    @field_validator("kind")
    @classmethod
    def _not_reserved(cls, kind: str) -> str:
        if kind in SERVER_KINDS:
            raise ValueError(f"{kind!r} is written by the server only")
        return kind


@router.post("/runs", status_code=201, responses={
    200: {"model": StartedRun, "description": "A run with this `run_id` exists already: that run, `created: false`"}})
def start_run(body: RunStart, principal: Admin, store: StoreDep, settings: SettingsDep, registry: RegistryDep,
              response: Response) -> StartedRun:
    """Start a run holding its signatures' lease; 404 `signature_not_found` for a signature the registry does not
    have (a lease on it would hold nothing), 409 `run_locked` when a live run holds one."""
    for signature_id in body.signature_ids:
        registry.get(signature_id)
    started = store.start_run(request=body, actor=principal.name, default_lease_s=settings.lease_s)
    response.status_code = 201 if started.created else 200
    return started


@router.get("/runs")
def list_runs(_: Reader, store: StoreDep, status: RunStatus | None = None,
              signature: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
              since_s: Annotated[int | None, Query(ge=1, le=10 * 365 * 86_400, description=(
                  "only runs started at most this many seconds ago, by the server's clock"))] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50) -> RunList:
    """Recent runs, newest first (`overnight runs --json` gives each with the table's columns), and the champion
    moves recorded on each after it ended: a morning's promote or rollback answering it (`--run`)."""
    after = None if since_s is None else store.clock() - since_s * 1000
    return run_list(store, limit=limit, status=status, signature_id=signature, since=after)


@router.get("/runs/{run_id}")
def get_run(run_id: RunId, _: Reader, store: StoreDep) -> Run:
    return store.get_run(run_id=run_id)


@router.get("/runs/{run_id}/review")
def get_run_review(run_id: RunId, _: Reader, store: StoreDep) -> RunReview:
    """What the run did and why, as `overnight show --json` prints it (and `/review/runs/{run_id}` shows it): the
    steps, each signature's compile, canary, gate sentences, alias moves and e2e, the closing sentence, and the
    rollback commands that undo its promotions. Works on a running or crashed run too."""
    return run_review(store, run_id)


@router.post("/runs/{run_id}/heartbeat")
def heartbeat(run_id: RunId, _: Admin, store: StoreDep) -> Run:
    return store.heartbeat(run_id=run_id)


@router.post("/runs/{run_id}/finish")
def finish_run(run_id: RunId, body: FinishRun, principal: Admin, store: StoreDep) -> Run:
    return store.finish_run(run_id=run_id, finish=body, actor=principal.name)


@router.post("/runs/{run_id}/events", status_code=201, responses={
    200: {"model": AppendedEvent, "description": "This `client_event_id` was appended before: that event, "
                                                 "`duplicate: true`, nothing appended"}})
def append_event(run_id: RunId, body: ClientEvent, _: Admin, store: StoreDep, response: Response) -> AppendedEvent:
    appended = store.append_event(run_id=run_id, event=body)
    response.status_code = 200 if appended.duplicate else 201
    return appended


@router.get("/runs/{run_id}/events", response_model=None)
def list_events(
    run_id: RunId, _: Reader, store: StoreDep, settings: SettingsDep, request: Request,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    follow: bool = False,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventPage | StreamingResponse:
    """A page of events after `after_seq`; with `follow=true`, a Server-Sent Events stream that sends every
    event as it is appended (resumable with `Last-Event-ID`) and ends once the run has finished."""
    if follow:
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after_seq
        store.get_run(run_id=run_id)  # 404 before the stream starts, not inside it
        stream = follow_events(store, run_id, start, settings.sse_poll_ms / 1000, request)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})
    events = store.list_events(run_id=run_id, after_seq=after_seq, limit=limit)
    return EventPage(events=events, next_after_seq=events[-1].seq if len(events) == limit else None)


async def follow_events(store: Store, run_id: str, after_seq: int, poll_s: float, request: Request, *,
                        named: bool = True) -> AsyncIterator[str]:
    """Server-Sent Events of a run from `after_seq` until it has finished and every event was sent. `named`
    sends each as `event: <kind>`; a browser's `onmessage` sees only unnamed ones."""
    last, idle = after_seq, 0.0
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        events = await run_in_threadpool(store.list_events, run_id=run_id, after_seq=last, limit=500)
        for event in events:
            last = event.seq
            yield _sse(event, named=named)
        if events:
            idle = 0.0
            continue
        run = await run_in_threadpool(store.get_run, run_id=run_id)
        if run.followed_to_the_end(last):
            yield "event: end\ndata: {}\n\n"
            return
        await asyncio.sleep(poll_s)
        idle += poll_s
        if idle >= SSE_KEEPALIVE_S:
            idle = 0.0
            yield ": keepalive\n\n"


def _sse(event: RunEvent, *, named: bool) -> str:
    payload: dict[str, Any] = event.model_dump()
    kind = f"event: {event.kind}\n" if named else ""
    return f"id: {event.seq}\n{kind}data: {canonical_json(payload)}\n\n"
