"""The one client for the admin API: it owns the `httpx.Client`, sends the bearer token and an `x-request-id` on
every call, an `Idempotency-Key` on every POST with an effect (the same key on each retry, so a retry never doubles
an effect; a check or a validation changes nothing, and carries none, so the server stores no answer for it),
retries (tenacity) only transport errors, 429, 5xx and `idempotency_key_in_use` — honouring `Retry-After` — and
maps every failure into our error tree in exactly one place (`_raise_for`). Tests pass `transport=`.

A predict that failed because the LM failed (`lm_call_failed`, 502) is a measurement, not an outage: it is never
retried. Must not import the store or DSPy.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from overnight.domain.access import Identity
from overnight.domain.canary import CanaryRecord, CanaryView
from overnight.domain.compiling import Artifact, CompiledIds, CompileReport
from overnight.domain.datasets import DatasetCheck, ExamplePage, ImportResult
from overnight.domain.lm import LMCheck
from overnight.domain.promotion import AliasHistory, AliasMoveOut
from overnight.domain.receipts import Prediction, PruneResult
from overnight.domain.review import RunList, RunReview
from overnight.domain.runs import AppendedEvent, EventIn, EventPage, Run, RunEvent, StartedRun
from overnight.errors import ApiUnreachable, OvernightError, all_error_classes

M = TypeVar("M", bound=BaseModel)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NOT_RETRIED_CODES = frozenset({"lm_call_failed"})  # an LM failure on predict is counted, not an outage
# Our own key still claimed by an attempt whose answer we never got (it timed out, or its server died and the claim
# lapses at the `Retry-After` the server sends): asking again with the same key is what the server asks for.
RETRIED_CONFLICTS = frozenset({"idempotency_key_in_use"})
ERRORS_BY_CODE = {cls.code: cls for cls in all_error_classes()}
_BODY_TYPES = {"jsonl": "application/x-ndjson", "json": "application/json"}  # a dataset body, by its format


class _Retryable(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class OvernightClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 30.0, attempts: int = 6,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport,
                                  headers={"authorization": f"Bearer {token}"})
        self.attempts, self.backoff_s, self.max_backoff_s, self._sleep = attempts, backoff_s, max_backoff_s, sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OvernightClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # the one place requests are sent, retried and mapped ---------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                content: bytes | None = None, headers: dict[str, str] | None = None,
                idempotency_key: str | None = None, timeout_s: float | None = None,
                effect: bool = True) -> httpx.Response:
        sent = {"x-request-id": uuid.uuid4().hex, **(headers or {})}
        if method == "POST" and effect:
            sent["idempotency-key"] = idempotency_key or f"auto-{uuid.uuid4().hex}"
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=self._wait, sleep=self._sleep,
                            retry=retry_if_exception(lambda e: isinstance(e, httpx.TransportError | _Retryable)),
                            reraise=True)
        try:
            response: httpx.Response = retrying(self._send, method, path, json=json, params=params,
                                                content=content, headers=sent, timeout_s=timeout_s)
        except _Retryable as exc:
            response = exc.response
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"the API at {self.base_url} did not answer {method} {path} after {self.attempts} "
                                 f"attempts: {type(exc).__name__}: {exc}") from None
        if response.is_error:
            raise _raise_for(response)
        return response

    def _send(self, method: str, path: str, *, json: Any, params: dict[str, Any] | None, content: bytes | None,
              headers: dict[str, str], timeout_s: float | None) -> httpx.Response:
        response = self._http.request(method, path, json=json, params=params, content=content, headers=headers,
                                      timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT)
        if _worth_retrying(response):
            raise _Retryable(response)
        return response

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff, and no sooner than the server's Retry-After (seconds, at most 60) when it sent one."""
        backoff = float(min(self.max_backoff_s, self.backoff_s * 2 ** (state.attempt_number - 1)))
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Retryable):
            after = failure.response.headers.get("retry-after", "")
            if after.replace(".", "", 1).isdigit():
                return max(backoff, min(float(after), 60.0))
        return backoff

    def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self.request(method, path, **kwargs).json())

    # identity and preflight -------------------------------------------------------------------------------

    def ready(self) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", "/readyz").json()
        return body

    def whoami(self) -> Identity:
        return self._model(Identity, "GET", "/api/v1/whoami")

    def lm_check(self, signature_id: str, *, timeout_s: float | None = None) -> LMCheck:
        return self._model(LMCheck, "POST", "/api/v1/lm:check", params={"signature": signature_id},
                           timeout_s=timeout_s, effect=False)

    # runs and events --------------------------------------------------------------------------------------

    def start_run(self, *, signature_ids: list[str], run_id: str | None = None, lease_s: int | None = None,
                  commit_sha: str | None = None, key: str | None = None) -> StartedRun:
        body = {"signature_ids": signature_ids, "run_id": run_id, "lease_s": lease_s, "commit_sha": commit_sha,
                "base_url": self.base_url}
        return self._model(StartedRun, "POST", "/api/v1/runs", json={k: v for k, v in body.items() if v is not None},
                           idempotency_key=key)

    def get_run(self, run_id: str) -> Run:
        return self._model(Run, "GET", f"/api/v1/runs/{run_id}")

    def runs(self, *, limit: int = 50, status: str | None = None, signature_id: str | None = None,
             since_s: int | None = None) -> RunList:
        """Recent runs, newest first, and what was moved since each; `since_s`: started at most that many seconds
        ago (by the server's clock)."""
        asked = {"limit": limit, "status": status, "signature": signature_id, "since_s": since_s}
        return self._model(RunList, "GET", "/api/v1/runs", params={k: v for k, v in asked.items() if v is not None})

    def latest_run(self) -> Run | None:
        return next(iter(self.runs(limit=1).runs), None)

    def review(self, run_id: str) -> RunReview:
        return self._model(RunReview, "GET", f"/api/v1/runs/{run_id}/review")

    def heartbeat(self, run_id: str) -> Run:
        return self._model(Run, "POST", f"/api/v1/runs/{run_id}/heartbeat")

    def finish_run(self, run_id: str, *, status: str, summary: dict[str, Any], links: dict[str, Any],
                   key: str | None = None) -> Run:
        return self._model(Run, "POST", f"/api/v1/runs/{run_id}/finish", idempotency_key=key,
                           json={"status": status, "summary": summary, "links": links})

    def append_event(self, run_id: str, event: EventIn, *, key: str | None = None) -> AppendedEvent:
        """Append one event; its Idempotency-Key is derived from its client_event_id unless `key` is given (another
        body for the same event after the first was refused: the refusal is what the first key replays)."""
        key = key or (f"event-{run_id}-{event.client_event_id}" if event.client_event_id else None)
        return self._model(AppendedEvent, "POST", f"/api/v1/runs/{run_id}/events", idempotency_key=key,
                           json=event.model_dump(mode="json", exclude_none=True))

    def events(self, run_id: str, *, after_seq: int = 0, limit: int = 1000) -> EventPage:
        return self._model(EventPage, "GET", f"/api/v1/runs/{run_id}/events",
                           params={"after_seq": after_seq, "limit": limit})

    def all_events(self, run_id: str) -> list[RunEvent]:
        found: list[RunEvent] = []
        while True:
            page = self.events(run_id, after_seq=found[-1].seq if found else 0)
            found.extend(page.events)
            if page.next_after_seq is None:
                return found

    def follow_events(self, run_id: str, *, after_seq: int = 0) -> Iterator[RunEvent]:
        """Every event after `after_seq`, live, over Server-Sent Events, until the run has finished and all its
        events were sent. A dropped stream reconnects with `Last-Event-ID`: no gap, no duplicate."""
        last, failures = after_seq, 0
        while True:
            try:
                with self._http.stream("GET", f"/api/v1/runs/{run_id}/events", params={"follow": "true"},
                                       headers={"last-event-id": str(last), "x-request-id": uuid.uuid4().hex},
                                       timeout=httpx.Timeout(30.0, read=None)) as response:
                    if response.is_error:
                        response.read()
                        raise _raise_for(response)
                    for kind, data in _sse_messages(response.iter_lines()):
                        if kind == "end":
                            return
                        event = RunEvent.model_validate_json(data)
                        if event.seq > last:
                            last, failures = event.seq, 0
                            yield event
            except httpx.TransportError as exc:
                failures += 1
                if failures >= self.attempts:
                    raise ApiUnreachable(f"lost the event stream of {run_id} at seq {last}: {exc}") from None
                self._sleep(min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1)))

    # datasets and compile ---------------------------------------------------------------------------------

    def import_examples(self, signature_id: str, body: bytes, *, run_id: str | None = None, replace: bool = False,
                        dry_run: bool = False, fmt: Literal["jsonl", "json"] = "jsonl",
                        key: str | None = None) -> ImportResult:
        """Import a JSONL body (`fmt="json"`: a JSON list of rows). A dry run sends no idempotency key: it writes
        nothing, not even the key's record."""
        params = {"run_id": run_id, "replace": replace or None, "dry_run": dry_run or None}
        return self._model(ImportResult, "POST", f"/api/v1/signatures/{signature_id}/examples:import",
                           content=body, headers={"content-type": _BODY_TYPES[fmt]}, idempotency_key=key,
                           params={k: v for k, v in params.items() if v is not None} or None, effect=not dry_run)

    def validate_examples(self, signature_id: str, jsonl: bytes) -> DatasetCheck:
        return self._model(DatasetCheck, "POST", f"/api/v1/signatures/{signature_id}/examples:validate",
                           content=jsonl, headers={"content-type": "application/x-ndjson"}, effect=False)

    def examples(self, signature_id: str, *, split: str | None = None, after: str | None = None,
                 limit: int = 1000) -> ExamplePage:
        params = {k: v for k, v in {"split": split, "after": after, "limit": limit}.items() if v is not None}
        return self._model(ExamplePage, "GET", f"/api/v1/signatures/{signature_id}/examples", params=params)

    def compile(self, signature_id: str, *, run_id: str | None = None, seed: int = 0,
                max_lm_calls: int | None = None, max_tokens: int | None = None, max_seconds: int | None = None,
                search: str | None = None, optimizer: str | None = None, key: str | None = None,
                timeout_s: float = 3600.0) -> CompileReport:
        body = {"seed": seed, "run_id": run_id, "max_lm_calls": max_lm_calls, "max_tokens": max_tokens,
                "max_seconds": max_seconds, "search": search, "optimizer": optimizer}
        return self._model(CompileReport, "POST", f"/api/v1/signatures/{signature_id}/compile", idempotency_key=key,
                           json={k: v for k, v in body.items() if v is not None}, timeout_s=timeout_s)

    def artifact(self, compiled_id: str) -> Artifact:
        return self._model(Artifact, "GET", f"/api/v1/artifacts/{compiled_id}")

    def compiled_ids_starting(self, *, prefix: str, limit: int = 2) -> list[str]:
        """As the store's: the compiled_ids that start with `prefix`, in order."""
        return self._model(CompiledIds, "GET", "/api/v1/artifacts", params={"prefix": prefix, "limit": limit}
                           ).compiled_ids

    def default_beside(self, compiled_id: str) -> str:
        """The default program compiled beside `compiled_id` (artifact_not_found when no compile report names it)."""
        return self._model(Artifact, "GET", f"/api/v1/artifacts/{compiled_id}/default").compiled_id

    # canary, serving, the champion ------------------------------------------------------------------------

    def start_canary(self, signature_id: str, body: dict[str, Any], *, key: str | None = None) -> CanaryRecord:
        return self._model(CanaryRecord, "POST", f"/api/v1/signatures/{signature_id}/canary:start", json=body,
                           idempotency_key=key)

    def stop_canary(self, signature_id: str, *, reason: str, canary_id: str | None = None,
                    key: str | None = None) -> CanaryRecord:
        """End the signature's active canary; with `canary_id`, only that one (else `CanaryNotFound`)."""
        body = {"reason": reason} | ({"canary_id": canary_id} if canary_id else {})
        return self._model(CanaryRecord, "POST", f"/api/v1/signatures/{signature_id}/canary:stop", json=body,
                           idempotency_key=key)

    def canary(self, signature_id: str) -> CanaryView:
        """The signature's active (else most recent) canary."""
        return self._model(CanaryView, "GET", f"/api/v1/signatures/{signature_id}/canary")

    def canary_by_id(self, canary_id: str) -> CanaryView:
        """One canary, active or ended, whichever canary the signature has now."""
        return self._model(CanaryView, "GET", f"/api/v1/canaries/{canary_id}")

    def predict(self, signature_id: str, raw_input: dict[str, Any], *, request_key: str | None = None,
                expected: dict[str, Any] | None = None) -> Prediction:
        body = {"input": raw_input, "request_key": request_key, "expected": expected}
        return self._model(Prediction, "POST", f"/api/v1/signatures/{signature_id}/predict",
                           json={k: v for k, v in body.items() if v is not None})

    def promote(self, signature_id: str, body: dict[str, Any], *, key: str | None = None) -> AliasMoveOut:
        return self._model(AliasMoveOut, "POST", f"/api/v1/signatures/{signature_id}/promote", json=body,
                           idempotency_key=key)

    def rollback(self, signature_id: str, body: dict[str, Any], *, key: str | None = None) -> AliasMoveOut:
        return self._model(AliasMoveOut, "POST", f"/api/v1/signatures/{signature_id}/rollback", json=body,
                           idempotency_key=key)

    def prune(self, keep_days: int, *, dry_run: bool = False, key: str | None = None) -> PruneResult:
        return self._model(PruneResult, "POST", "/api/v1/store:prune", json={"keep_days": keep_days,
                                                                             "dry_run": dry_run},
                           idempotency_key=key, timeout_s=600)  # a first prune of a large store takes a while

    def status(self) -> dict[str, Any]:
        """`GET /api/v1/status` as JSON (its model lives with the review, which the client does not load)."""
        body: dict[str, Any] = self.request("GET", "/api/v1/status").json()
        return body

    def alias_history(self, signature_id: str, *, limit: int = 100) -> AliasHistory:
        """The champion's last `limit` moves (at most 1000), oldest first."""
        return self._model(AliasHistory, "GET", f"/api/v1/signatures/{signature_id}/aliases/history",
                           params={"limit": limit})

    def get_compile_report(self, report_id: str) -> CompileReport:
        return self._model(CompileReport, "GET", f"/api/v1/compile-reports/{report_id}")


def _worth_retrying(response: httpx.Response) -> bool:
    if response.status_code in RETRY_STATUSES:
        return _code(response) not in NOT_RETRIED_CODES
    return response.status_code == 409 and _code(response) in RETRIED_CONFLICTS


def _code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def _raise_for(response: httpx.Response) -> OvernightError:
    """An error response as the error it names (the one error shape); anything else by its status."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    code = body.get("code")
    cls = ERRORS_BY_CODE.get(code or "", OvernightError)
    message = body.get("error") or f"HTTP {response.status_code} from {response.request.method} {response.request.url}"
    error = cls(message, details={**(body.get("details") or {}), "status": response.status_code,
                                  "request_id": body.get("request_id") or response.headers.get("x-request-id")})
    if cls is OvernightError and code:
        error.details["code"] = code
    return error


def _sse_messages(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) per Server-Sent Events message; comments and `retry:` lines are skipped."""
    kind, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
