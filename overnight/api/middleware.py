"""ASGI middleware: request context (id, logging, body limit, last-resort errors) and Idempotency-Key replay.

Pure ASGI rather than `BaseHTTPMiddleware`, so Server-Sent Events stream through untouched.
Must not import SQL.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overnight.api.auth import TokenRegistry
from overnight.api.errors import error_body, error_headers
from overnight.domain.hashing import sha256_hex
from overnight.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InvalidInput,
    OvernightError,
    PayloadTooLarge,
)
from overnight.logging import get_logger
from overnight.store import Store
from overnight.store.base import HeldKey

log = get_logger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


# Receipts hold model outputs, runs hold evidence: no cache keeps an answer, and none is content-sniffed.
_EVERY_ANSWER = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))


class RequestContext:
    """Gives every request an id (the caller's `x-request-id` when well-formed), echoes it on every response
    with `cache-control: no-store` and `nosniff`, logs one `request_finished` line, enforces the body limit, and
    renders any error that escaped the app."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        sent = headers.get("x-request-id", "")
        request_id = sent if _REQUEST_ID.match(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started, status = time.perf_counter(), {"code": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.update(code=message["status"], started=True)
                sent_headers = list(message.get("headers", []))
                named = {name.lower() for name, _ in sent_headers}
                message["headers"] = [*sent_headers, (b"x-request-id", request_id.encode()),
                                      *((name, value) for name, value in _EVERY_ANSWER if name not in named)]
            await send(message)

        try:
            self._check_declared_length(headers)
            await self.app(scope, self._limited(receive), send_with_id)
        except Exception as exc:
            if status["started"]:
                raise
            await self._send_error(exc, request_id, send_with_id)
        finally:
            log.info("request_finished", method=scope["method"], path=scope["path"], status=status["code"],
                     duration_ms=round((time.perf_counter() - started) * 1000, 2))
            structlog.contextvars.clear_contextvars()

    def _check_declared_length(self, headers: Headers) -> None:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {self.max_body_bytes} "
                                  "(OVERNIGHT_MAX_BODY_BYTES)", details={"limit": self.max_body_bytes})

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise PayloadTooLarge(f"request body passed the limit of {self.max_body_bytes} bytes "
                                      "(OVERNIGHT_MAX_BODY_BYTES)", details={"limit": self.max_body_bytes})
            return message

        return receive_limited

    async def _send_error(self, exc: Exception, request_id: str, send: Send) -> None:
        if isinstance(exc, OvernightError):
            error = exc
        else:
            log.error("request_crashed", exc_info=exc)
            error = OvernightError("internal error; the server log has the details under this request_id")
        body = error_body(code=error.code, message=error.message, status=error.status, request_id=request_id,
                          details=error.details)
        headers = [(name.encode(), value.encode()) for name, value in error_headers(error).items()]
        await send({"type": "http.response.start", "status": error.status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})


class IdempotencyKeys:
    """`Idempotency-Key` on any mutating request: the first answer (below 500) is stored per (actor, key) and
    replayed for retries; the same key with a different request is refused, as is a retry that arrives while
    the first attempt is still running (`Retry-After`: when its claim's lease lapses). The claim is leased, not
    held for good: the server renews it while the request runs, so a claim whose server died mid-request is taken
    over by a retry `lease_s` later and the request runs again, as after a 5xx. A route may keep its answer in
    its own transaction (a promote, a rollback: `HeldKey` on the request's state, then `answered`); nothing more
    is kept for it. Requests without a valid token pass through (the route answers 401)."""

    def __init__(self, app: ASGIApp, *, store: Store, tokens: TokenRegistry, lease_s: int) -> None:
        self.app = app
        self.store = store
        self.tokens = tokens
        self.lease_s = lease_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _MUTATING:
            await self.app(scope, receive, send)  # lifespan scopes carry no headers at all
            return
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        principal = self.tokens.find(headers.get("authorization")) if key is not None else None
        if key is None or principal is None:
            await self.app(scope, receive, send)
            return
        if not 1 <= len(key) <= 256 or not key.isprintable():
            raise InvalidInput("Idempotency-Key must be 1 to 256 printable characters",
                               details={"errors": [{"field": "header.idempotency-key"}]})
        body = await _read_body(receive)
        fingerprint = sha256_hex(b"\n".join([scope["method"].encode(), scope["path"].encode(),
                                             scope.get("query_string", b""), body]))
        claim = await run_in_threadpool(self.store.claim_idempotency_key, actor=principal.name, key=key,
                                        fingerprint=fingerprint, lease_ms=self.lease_s * 1000)
        if claim.outcome == "mismatch":
            raise IdempotencyKeyReused("this Idempotency-Key was already used for a different request")
        if claim.outcome == "in_progress":
            raise _in_use(claim.retry_after_ms or 0)
        if claim.outcome == "replay":
            await _replay(send, claim.status_code or 200, (claim.response_body or "").encode())
            return
        await self._run_and_record(scope, body, receive, send,
                                   HeldKey(actor=principal.name, key=key, holder=claim.holder))

    async def _run_and_record(self, scope: Scope, body: bytes, receive: Receive, send: Send, claim: HeldKey) -> None:
        """Run the request, renewing the claim's lease meanwhile; record its answer *before* the client sees the
        end of it, so a retry that follows the response at once is a replay, never an `in_progress`."""
        renewing = asyncio.create_task(self._renew(claim))
        answer: dict[str, Any] = {"start": None, "chunks": [], "replayed": False}
        scope.setdefault("state", {})["held_key"] = claim  # for a route that keeps its answer itself

        async def replay_body() -> Message:
            """The body read here, once; then the connection's own messages, so a disconnect is still seen."""
            if answer["replayed"]:
                return await receive()
            answer["replayed"] = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def record_then_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["start"] = message
                return
            if message["type"] == "http.response.body":
                answer["chunks"].append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                renewing.cancel()
                if not claim.answered:  # a promote's or rollback's is kept with its move already
                    await self._settle(claim, answer["start"]["status"], b"".join(answer["chunks"]))
                await send(answer["start"])
                await send({"type": "http.response.body", "body": b"".join(answer["chunks"])})
                return
            await send(message)

        try:
            await self.app(scope, replay_body, record_then_send)
        except BaseException:
            renewing.cancel()
            await run_in_threadpool(self.store.release_idempotency_key, **claim.ids)
            raise
        finally:
            renewing.cancel()

    async def _renew(self, claim: HeldKey) -> None:
        """Renew the claim's lease every quarter of it while the request runs (a compile runs for hours): only a
        claim whose server died stops being renewed, and only such a claim is taken over by a retry."""
        while True:
            await asyncio.sleep(self.lease_s / 4)
            try:
                held = await run_in_threadpool(self.store.touch_idempotency_key, **claim.ids)
            except OvernightError as exc:  # the store is out: try again at the next renewal
                log.warning("idempotency_lease_not_renewed", key=claim.key, error=exc.code)
                continue
            if not held:
                log.warning("idempotency_claim_lost", key=claim.key, lease_s=self.lease_s)
                return

    async def _settle(self, claim: HeldKey, status: int, body: bytes) -> None:
        if status >= 500:  # a failure is not an answer: let the retry run again
            await run_in_threadpool(self.store.release_idempotency_key, **claim.ids)
        elif not await run_in_threadpool(self.store.complete_idempotency_key, **claim.ids, status_code=status,
                                         response_body=body.decode("utf-8")):
            log.warning("idempotency_answer_not_kept", key=claim.key, status=status,
                        reason="the claim was taken over by a retry after its lease lapsed")


def _in_use(retry_after_ms: int) -> IdempotencyKeyInUse:
    """Refused while another request holds the key: `Retry-After` says when its lease lapses unless renewed."""
    seconds = max(1, -(-retry_after_ms // 1000))
    refused = IdempotencyKeyInUse("a request with this Idempotency-Key is still being processed; retry after "
                                  f"{seconds}s (a claim its server stopped renewing is freed then)",
                                  details={"retry_after_s": seconds})
    refused.retry_after_s = seconds
    return refused


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _replay(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"idempotent-replayed", b"true")]})
    await send({"type": "http.response.body", "body": body})
