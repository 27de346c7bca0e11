"""Ops runs and their event stream: the models and the pure rules (leases, finishing, event bounds).

The store applies these rules inside its transactions; the API only parses and renders. `now` is always a
parameter. Must not import I/O modules, the clock, SQL, HTTP or DSPy.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from overnight.domain.hashing import canonical_json

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
EventKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,63}$")]
Level = Literal["debug", "info", "warning", "error"]

# Event kinds the server writes itself; clients may not post them.
SERVER_KINDS = frozenset({"run.started", "run.finished", "lease_taken_over", "events_truncated", "gate_evaluated",
                          "canary.opened", "canary.stopped", "canary.promoted", "alias.moved"})


class RunStatus(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    abandoned = "abandoned"  # its lease went stale and another run took the signatures over


FINISH_STATUSES = (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled)


class Run(BaseModel):
    """One ops run: who ran it, for which signatures, how it ended, and its lease."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    status: RunStatus
    actor: str
    commit_sha: str | None
    base_url: str | None
    signature_ids: list[str]
    lease_s: int
    lease_expires_at: int
    summary: dict[str, Any]
    links: dict[str, Any]
    event_count: int
    event_bytes: int
    truncated: bool
    started_at: int
    ended_at: int | None

    def decisions(self) -> dict[str, str | None]:
        """Each signature's decision from the run's summary (None while it runs or when it never got there)."""
        decided = self.summary.get("signatures", {})
        return {sig: (decided.get(sig) or {}).get("decision") for sig in self.signature_ids}

    def undecided_because(self) -> str | None:
        """Why no signature has a decision: the verdict of a run that ended before any did (its preflight, a verify
        command, a cancel, a lapsed lease). None while it runs, once one is decided, or when it left no verdict."""
        if self.status == RunStatus.running or any(self.decisions().values()):
            return None
        return str(self.summary.get("verdict") or "") or None

    def ended_before(self, at: int) -> bool:
        """Whether the run had ended by `at` (ms): a move recorded on it then answered it (an operator's `--run`)."""
        return self.ended_at is not None and at > self.ended_at

    def followed_to_the_end(self, last_seq: int) -> bool:
        """A follower that has read up to `last_seq` has everything: the run has finished (no event comes after
        run.finished) and that was its last event."""
        return self.status != RunStatus.running and self.event_count <= last_seq


class RunStart(BaseModel):
    """What a caller asks for when it starts a run."""

    model_config = ConfigDict(extra="forbid")

    run_id: Identifier | None = Field(default=None, description="Client-chosen id; a retry returns the same run")
    signature_ids: list[Identifier] = Field(min_length=1, max_length=64)
    commit_sha: Annotated[str, StringConstraints(max_length=64)] | None = None
    base_url: Annotated[str, StringConstraints(max_length=512)] | None = None
    lease_s: int | None = Field(default=None, ge=1, le=86_400, description="Lease length; default from settings")

    @field_validator("signature_ids")
    @classmethod
    def _unique_sorted(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class EventIn(BaseModel):
    """One event as a client posts it. The server adds `seq` and `ts`."""

    model_config = ConfigDict(extra="forbid")

    kind: EventKind = Field(description="What happened, e.g. compile.started or gate_evaluated")
    phase: EventKind = Field(description="The runner step it belongs to, e.g. compile")
    level: Level = "info"
    message: Annotated[str, StringConstraints(max_length=4000)] = ""
    data: dict[str, Any] = Field(default_factory=dict)
    client_event_id: Identifier | None = Field(
        default=None, description="Retrying with the same id returns the stored event instead of a copy"
    )

    def size_bytes(self) -> int:
        """The event's size as stored: the canonical JSON of everything but the id."""
        body = {"kind": self.kind, "phase": self.phase, "level": self.level, "message": self.message,
                "data": self.data}
        return len(canonical_json(body).encode("utf-8"))


class RunEvent(BaseModel):
    """One stored event. `seq` runs 1, 2, 3 … per run with no gaps."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    seq: int
    ts: int
    kind: str
    phase: str
    level: str
    message: str
    data: dict[str, Any]
    client_event_id: str | None


class FinishRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["succeeded", "failed", "cancelled"]
    summary: dict[str, Any] = Field(default_factory=dict)
    links: dict[str, Any] = Field(default_factory=dict)


class StartedRun(BaseModel):
    """The answer to a start: the run, whether this call created it, and any leases it took over."""

    run: Run
    created: bool
    took_over: list[dict[str, str]] = Field(default_factory=list)


class EventPage(BaseModel):
    events: list[RunEvent]
    next_after_seq: int | None


class AppendedEvent(BaseModel):
    event: RunEvent
    duplicate: bool


class EventBounds(BaseModel):
    """The per-run limits the store enforces."""

    max_events: int
    max_event_bytes: int
    max_run_bytes: int


def lease_is_stale(*, lease_expires_at: int, now: int) -> bool:
    """A lease not renewed by its expiry can be taken over."""
    return now >= lease_expires_at


def would_exceed(*, bounds: EventBounds, event_count: int, event_bytes: int, size: int) -> bool:
    """True when appending one more event of `size` bytes would pass the run's count or byte bound."""
    return event_count + 1 > bounds.max_events or event_bytes + size > bounds.max_run_bytes


def truncation_marker(*, bounds: EventBounds, event_count: int, event_bytes: int) -> EventIn:
    """The one `events_truncated` event a run gets when its bound is hit."""
    return EventIn(
        kind="events_truncated",
        phase="run",
        level="warning",
        message=f"event limit reached after {event_count} events ({event_bytes} bytes); later events refused",
        data={"max_events": bounds.max_events, "max_run_bytes": bounds.max_run_bytes,
              "event_count": event_count, "event_bytes": event_bytes},
    )


def finish_conflict(*, current: RunStatus, requested: str) -> str | None:
    """Why a finish cannot apply, or None. Finishing twice with the same status is a harmless retry."""
    if current == RunStatus.running or current.value == requested:
        return None
    return f"run already finished with status {current.value}; cannot finish it again as {requested}"


def is_valid_identifier(value: str) -> bool:
    return re.fullmatch(ID_PATTERN, value) is not None
