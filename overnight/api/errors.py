"""The one error shape, for every failure on every route:

    {"ok": false, "code": "snake_case", "error": "human sentence", "status": 4xx/5xx, "request_id": "…"}

plus `details` where there is evidence to give (the offending fields, the lock holder, the limits).
Must not import SQL.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from overnight.errors import InvalidInput, MethodNotAllowed, NotFound, OvernightError

_HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 422: "validation_error", 429: "rate_limited"}


class ErrorBody(BaseModel):
    """The one error shape, as the OpenAPI schema documents it for every route."""

    ok: bool = Field(description="always false")
    code: str = Field(description="stable snake_case code (runbook: Error codes)")
    error: str = Field(description="a human sentence")
    status: int
    request_id: str
    details: dict[str, Any] | None = None


# Documented on every API route, so a client (and the schema fuzzer) knows every failure's shape. 422 replaces
# FastAPI's own validation schema: our handler answers validation errors in the one shape too.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "Invalid input: `validation_error` naming each field, or a domain "
                                             "check such as `dataset_invalid`"},
    "4XX": {"model": ErrorBody, "description": "Refused: see `code` (unauthorized, forbidden, not found, "
                                               "conflict, payload too large…)"},
    "5XX": {"model": ErrorBody, "description": "The store or the LM failed, or the server is busy: see "
                                               "`code` (store_unavailable, lm_call_failed, server_busy…)"},
}


def error_body(*, code: str, message: str, status: int, request_id: str, details: dict[str, Any] | None) -> bytes:
    body: dict[str, Any] = {"ok": False, "code": code, "error": message, "status": status, "request_id": request_id}
    if details:
        body["details"] = details
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def error_headers(error: OvernightError) -> dict[str, str]:
    """`WWW-Authenticate` on a 401; `Retry-After` (seconds) on an error worth retrying (store_unavailable,
    server_busy), which HTTP clients and load balancers honour."""
    headers = {"www-authenticate": "Bearer"} if error.status == 401 else {}
    if error.retry_after_s is not None:
        headers["retry-after"] = str(error.retry_after_s)
    return headers


def render(error: OvernightError, request_id: str) -> JSONResponse:
    content = json.loads(error_body(code=error.code, message=error.message, status=error.status,
                                    request_id=request_id, details=error.details))
    return JSONResponse(content, status_code=error.status, headers=error_headers(error))


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


async def _on_overnight_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OvernightError)  # noqa: S101 - registered for this class only
    return render(exc, _request_id(request))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this class only
    problems = [
        {"field": ".".join(str(part) for part in err.get("loc", ())), "message": err.get("msg", ""),
         "type": err.get("type", "")}
        for err in exc.errors()  # `input` is left out on purpose: it may hold what the caller sent
    ]
    return render(InvalidInput.naming(problems, lead="invalid request: "), _request_id(request))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this class only
    if isinstance(exc.__cause__, OvernightError):  # e.g. the body limit, hit while FastAPI parsed the body
        return render(exc.__cause__, _request_id(request))
    if exc.status_code == 404:
        return render(NotFound(f"no route {request.method} {request.url.path}"), _request_id(request))
    if exc.status_code == 405:
        return render(MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"),
                      _request_id(request))
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    body = error_body(code=code, message=str(exc.detail), status=exc.status_code,
                      request_id=_request_id(request), details=None)
    return JSONResponse(json.loads(body), status_code=exc.status_code)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OvernightError, _on_overnight_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
