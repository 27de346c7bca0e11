"""The pure run rules, as tables of inputs → answers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from overnight.domain.runs import (
    EventBounds,
    EventIn,
    RunStart,
    RunStatus,
    finish_conflict,
    lease_is_stale,
    truncation_marker,
    would_exceed,
)

BOUNDS = EventBounds(max_events=10, max_event_bytes=1000, max_run_bytes=5000)


@pytest.mark.parametrize(("expires", "now", "stale"), [(1000, 999, False), (1000, 1000, True), (1000, 5000, True)])
def test_lease_is_stale_from_its_expiry(expires: int, now: int, stale: bool) -> None:
    assert lease_is_stale(lease_expires_at=expires, now=now) is stale


@pytest.mark.parametrize(("count", "total_bytes", "size", "exceeds"), [
    (0, 0, 100, False),
    (9, 0, 100, False),   # the 10th event fits
    (10, 0, 1, True),     # the 11th does not
    (5, 4900, 100, False),
    (5, 4901, 100, True),
])
def test_would_exceed_counts_and_bytes(count: int, total_bytes: int, size: int, exceeds: bool) -> None:
    assert would_exceed(bounds=BOUNDS, event_count=count, event_bytes=total_bytes, size=size) is exceeds


@pytest.mark.parametrize(("current", "requested", "conflict"), [
    (RunStatus.running, "succeeded", False),
    (RunStatus.running, "failed", False),
    (RunStatus.succeeded, "succeeded", False),  # a retried finish
    (RunStatus.succeeded, "failed", True),
    (RunStatus.failed, "succeeded", True),
    (RunStatus.abandoned, "succeeded", True),
])
def test_finish_conflicts(current: RunStatus, requested: str, conflict: bool) -> None:
    assert (finish_conflict(current=current, requested=requested) is not None) is conflict


def test_truncation_marker_carries_the_evidence() -> None:
    marker = truncation_marker(bounds=BOUNDS, event_count=10, event_bytes=4200)
    assert marker.kind == "events_truncated"
    assert marker.data == {"max_events": 10, "max_run_bytes": 5000, "event_count": 10, "event_bytes": 4200}


def test_event_size_is_its_canonical_json() -> None:
    event = EventIn(kind="a.b", phase="a", message="é", data={"z": 1, "a": [1, 2]})
    assert event.size_bytes() == len(
        '{"data":{"a":[1,2],"z":1},"kind":"a.b","level":"info","message":"é","phase":"a"}'.encode()
    )


def test_run_start_sorts_and_dedupes_signatures() -> None:
    assert RunStart(signature_ids=["b", "a", "b"]).signature_ids == ["a", "b"]


@pytest.mark.parametrize("body", [
    {"signature_ids": []},
    {"signature_ids": ["has space"]},
    {"signature_ids": ["a"], "run_id": "../etc"},
    {"signature_ids": ["a"], "lease_s": 0},
    {"signature_ids": ["a"], "unknown": 1},
])
def test_run_start_rejects_bad_input(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RunStart.model_validate(body)
