"""The one error tree of overnight.

Every failure a caller can see is an `OvernightError` with a stable snake_case `code` and an HTTP `status`.
The API renders all of them in one shape (`overnight.api.errors`); the CLI prints `code: message` and exits
with the documented code. Must not import anything but the standard library.

    OvernightError (internal_error, 500)
    ├── ConfigError (config_error, 500; CLI exit 2)
    ├── NotImplementedYet (not_implemented, 501)
    ├── StoreUnavailable (store_unavailable, 503, Retry-After: 1)
    ├── ServerBusy (server_busy, 503, Retry-After: 1; every predict slot stayed taken)
    ├── ClientGone (client_closed_request, 499; the caller left while its predict waited: only logged)
    ├── ApiUnreachable (api_unreachable, 503; the client could not reach the API)
    ├── Unauthorized (unauthorized, 401)
    ├── Forbidden (forbidden, 403)
    ├── NotFound (not_found, 404)
    │   ├── RunNotFound (run_not_found)
    │   ├── SignatureNotFound (signature_not_found)
    │   ├── SnapshotNotFound (snapshot_not_found)
    │   ├── ArtifactNotFound (artifact_not_found)
    │   ├── CompileReportNotFound (compile_report_not_found)
    │   ├── CanaryNotFound (canary_not_found)
    │   └── ReceiptNotFound (receipt_not_found)
    ├── MethodNotAllowed (method_not_allowed, 405)
    ├── Conflict (conflict, 409)
    │   ├── RunLocked (run_locked)
    │   ├── RunNotRunning (run_not_running)
    │   ├── RunAlreadyFinished (run_already_finished)
    │   ├── RunIdConflict (run_id_conflict)
    │   ├── EventLimitReached (event_limit_reached)
    │   ├── DatasetNotReady (dataset_not_ready)
    │   ├── IdempotencyKeyInUse (idempotency_key_in_use)
    │   ├── IdempotencyKeyReused (idempotency_key_reused)
    │   ├── CanaryActive (canary_active)
    │   ├── CompileEvidenceMissing (compile_evidence_missing)
    │   ├── PromotionRefused (promotion_refused)
    │   ├── NothingToRollBack (nothing_to_roll_back)
    │   └── AliasMoved (alias_moved)
    ├── LMCallFailed (lm_call_failed, 502)
    ├── PayloadTooLarge (payload_too_large, 413)
    │   └── EventTooLarge (event_too_large)
    └── InvalidInput (validation_error, 422)
        └── DatasetInvalid (dataset_invalid)
"""

from __future__ import annotations

from typing import Any, ClassVar


class OvernightError(Exception):
    """Base of every error overnight raises on purpose."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    retry_after_s: int | None = None  # sent as `Retry-After` when set: worth retrying, not before this

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


class ConfigError(OvernightError):
    code = "config_error"


class NotImplementedYet(OvernightError):
    code = "not_implemented"
    status = 501


class StoreUnavailable(OvernightError):
    """The store cannot answer. Either an outage worth retrying (`outage` names what failed; each reader is told
    what to do: an API client to retry and see the server log, the CLI's operator — whose process opened the store —
    to check OVERNIGHT_DB_URL and the database), or a state whose message says itself what to do (a damaged or
    replaced SQLite file, a schema behind the code), where `outage` is None."""

    code = "store_unavailable"
    status = 503
    retry_after_s = 1

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.outage: str | None = None

    @classmethod
    def retry_later(cls, outage: str) -> StoreUnavailable:
        """An outage worth retrying, worded for an API client (the message the API answers)."""
        exc = cls(f"{outage}; retry later, and see the server log")
        exc.outage = outage
        return exc


class ServerBusy(OvernightError):
    """Every predict slot of this server process stayed taken past the queue timeout: shed, retry later."""

    code = "server_busy"
    status = 503
    retry_after_s = 1


class ClientGone(OvernightError):
    """The caller disconnected while its predict waited for a slot, so it was dropped. Nobody receives the answer;
    the status (nginx's 499, "client closed request") is for the server's request log."""

    code = "client_closed_request"
    status = 499


class ApiUnreachable(OvernightError):
    """Raised by the client, never by the server: no answer from the API after the retries."""

    code = "api_unreachable"
    status = 503


class VerifyFailed(OvernightError):
    """Raised by the runner, never by the server: a `--verify` command exited non-zero, could not be run, or
    outlived the run's deadline."""

    code = "verify_failed"


class Unauthorized(OvernightError):
    code = "unauthorized"
    status = 401


class Forbidden(OvernightError):
    code = "forbidden"
    status = 403


class NotFound(OvernightError):
    code = "not_found"
    status = 404


class RunNotFound(NotFound):
    code = "run_not_found"


class SignatureNotFound(NotFound):
    code = "signature_not_found"


class SnapshotNotFound(NotFound):
    code = "snapshot_not_found"


class ArtifactNotFound(NotFound):
    code = "artifact_not_found"


class CompileReportNotFound(NotFound):
    code = "compile_report_not_found"


class CanaryNotFound(NotFound):
    code = "canary_not_found"


class ReceiptNotFound(NotFound):
    code = "receipt_not_found"


class MethodNotAllowed(OvernightError):
    code = "method_not_allowed"
    status = 405


class Conflict(OvernightError):
    code = "conflict"
    status = 409


class RunLocked(Conflict):
    code = "run_locked"


class RunNotRunning(Conflict):
    code = "run_not_running"


class RunAlreadyFinished(Conflict):
    code = "run_already_finished"


class RunIdConflict(Conflict):
    code = "run_id_conflict"


class EventLimitReached(Conflict):
    code = "event_limit_reached"


class DatasetNotReady(Conflict):
    code = "dataset_not_ready"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class CanaryActive(Conflict):
    code = "canary_active"


class CompileEvidenceMissing(Conflict):
    code = "compile_evidence_missing"


class PromotionRefused(Conflict):
    """A promotion whose gates failed; `details` carries every gate's decision."""

    code = "promotion_refused"


class NothingToRollBack(Conflict):
    code = "nothing_to_roll_back"


class AliasMoved(Conflict):
    """The champion changed between reading it and moving it (another replica or caller won the race)."""

    code = "alias_moved"


class LMCallFailed(OvernightError):
    """The LM failed on a predict; the receipt is written and the failure counted on its arm."""

    code = "lm_call_failed"
    status = 502


class PayloadTooLarge(OvernightError):
    code = "payload_too_large"
    status = 413


class EventTooLarge(PayloadTooLarge):
    code = "event_too_large"


class InvalidInput(OvernightError):
    code = "validation_error"
    status = 422

    @classmethod
    def naming(cls, problems: list[dict[str, str]], *, lead: str = "", **details: object) -> InvalidInput:
        """One error for several problems (each a `field` and a `message`): the first five in the message,
        `field: message; …`, and every one in `details.errors`, so a caller can fix them all in one go."""
        listed = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        return cls(f"{lead}{listed}", details={**details, "errors": problems})


class DatasetInvalid(InvalidInput):
    code = "dataset_invalid"


def all_error_classes() -> list[type[OvernightError]]:
    """Every error class in the tree, for the runbook test and the API docs."""
    found: list[type[OvernightError]] = []
    pending: list[type[OvernightError]] = [OvernightError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
