"""Ops runs and their event stream over real HTTP: idempotency, finishing, leases, paging, SSE."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from tests.factories import READ_TOKEN, LiveServer, SteppingClock, auth

SIG = "SelectTool.v1"


def post_event(client: httpx.Client, run_id: str, **fields: Any) -> httpx.Response:
    body = {"kind": "compile.progress", "phase": "compile", **fields}
    return client.post(f"/api/v1/runs/{run_id}/events", json=body)


def start(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/runs", json={"signature_ids": [SIG], **fields})
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_same_start_twice_gives_one_run(api: LiveServer) -> None:
    with api.client() as client:
        first = client.post("/api/v1/runs", json={"run_id": "nightly-2026-11-22", "signature_ids": [SIG]})
        again = client.post("/api/v1/runs", json={"run_id": "nightly-2026-11-22", "signature_ids": [SIG]})
        runs = client.get("/api/v1/runs").json()["runs"]
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["created"] is False
    assert [r["run_id"] for r in runs] == ["nightly-2026-11-22"]


def test_idempotency_key_replays_the_first_answer(api: LiveServer) -> None:
    with api.client() as client:
        headers = {"idempotency-key": "start-7f3a"}
        first = client.post("/api/v1/runs", json={"signature_ids": [SIG]}, headers=headers)
        again = client.post("/api/v1/runs", json={"signature_ids": [SIG]}, headers=headers)
        reused = client.post("/api/v1/runs", json={"signature_ids": ["other.v1"]}, headers=headers)
        runs = client.get("/api/v1/runs").json()["runs"]
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert reused.status_code == 409
    assert reused.json()["code"] == "idempotency_key_reused"
    assert len(runs) == 1


def test_failed_request_with_an_idempotency_key_can_be_retried(api: LiveServer) -> None:
    with api.client() as client:
        holder = start(client)["run"]["run_id"]
        headers = {"idempotency-key": "retry-me"}
        locked = client.post("/api/v1/runs", json={"signature_ids": [SIG]}, headers=headers)
        assert locked.json()["code"] == "run_locked"
        client.post(f"/api/v1/runs/{holder}/finish", json={"status": "succeeded"})
        replayed = client.post("/api/v1/runs", json={"signature_ids": [SIG]}, headers=headers)
    # A 409 is an answer, so it is replayed; the key is spent, as with any payment API.
    assert replayed.status_code == 409
    assert replayed.headers["idempotent-replayed"] == "true"


def test_same_event_twice_gives_one_event(api: LiveServer) -> None:
    with api.client() as client:
        run_id = start(client)["run"]["run_id"]
        first = post_event(client, run_id, client_event_id="compile-1", data={"done": 3})
        again = post_event(client, run_id, client_event_id="compile-1", data={"done": 3})
        events = client.get(f"/api/v1/runs/{run_id}/events").json()["events"]
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["duplicate"] is True
    assert again.json()["event"] == first.json()["event"]
    assert [e["kind"] for e in events] == ["run.started", "compile.progress"]


def test_clients_cannot_forge_server_events(api: LiveServer) -> None:
    with api.client() as client:
        run_id = start(client)["run"]["run_id"]
        forged = post_event(client, run_id, kind="run.finished")
    assert forged.status_code == 422
    assert forged.json()["details"]["errors"][0]["field"] == "body.kind"


def test_oversize_event_is_413(api: LiveServer) -> None:
    with api.client() as client:
        run_id = start(client)["run"]["run_id"]
        response = post_event(client, run_id, data={"blob": "x" * 70_000})
        count = client.get(f"/api/v1/runs/{run_id}").json()["event_count"]
    assert response.status_code == 413
    assert response.json()["code"] == "event_too_large"
    assert count == 1


def test_finish_once_then_same_finish_is_harmless_and_a_different_one_conflicts(api: LiveServer) -> None:
    with api.client() as client:
        run_id = start(client)["run"]["run_id"]
        done = client.post(f"/api/v1/runs/{run_id}/finish", json={"status": "succeeded", "summary": {"promoted": 1}})
        again = client.post(f"/api/v1/runs/{run_id}/finish", json={"status": "succeeded"})
        other = client.post(f"/api/v1/runs/{run_id}/finish", json={"status": "failed"})
        late = post_event(client, run_id)
    assert done.status_code == again.status_code == 200
    assert done.json()["summary"] == {"promoted": 1}
    assert other.status_code == 409
    assert other.json()["code"] == "run_already_finished"
    assert late.json()["code"] == "run_not_running"


def test_stale_lease_is_taken_over_over_http(api: LiveServer) -> None:
    assert api.clock is not None
    with api.client() as client:
        old = start(client)["run"]["run_id"]
        locked = client.post("/api/v1/runs", json={"signature_ids": [SIG]})
        assert locked.status_code == 409
        assert locked.json()["code"] == "run_locked"
        assert locked.json()["details"]["holder_run_id"] == old
        api.clock.advance(seconds=30)
        client.post(f"/api/v1/runs/{old}/heartbeat").raise_for_status()
        api.clock.advance(seconds=59)
        assert client.post("/api/v1/runs", json={"signature_ids": [SIG]}).status_code == 409
        api.clock.advance(seconds=2)
        new = client.post("/api/v1/runs", json={"signature_ids": [SIG]})
        old_run = client.get(f"/api/v1/runs/{old}").json()
        old_kinds = [e["kind"] for e in client.get(f"/api/v1/runs/{old}/events").json()["events"]]
        heartbeat = client.post(f"/api/v1/runs/{old}/heartbeat")
    assert new.status_code == 201
    assert new.json()["took_over"][0]["from_run_id"] == old
    assert old_run["status"] == "abandoned"
    assert old_kinds == ["run.started", "lease_taken_over"]
    assert heartbeat.json()["code"] == "run_not_running"


def test_events_page_by_after_seq(api: LiveServer) -> None:
    with api.client() as client:
        run_id = start(client)["run"]["run_id"]
        for n in range(9):
            post_event(client, run_id, data={"n": n}).raise_for_status()
        seen, after = [], 0
        while True:
            page = client.get(f"/api/v1/runs/{run_id}/events", params={"after_seq": after, "limit": 4}).json()
            seen += [e["seq"] for e in page["events"]]
            if page["next_after_seq"] is None:
                break
            after = page["next_after_seq"]
    assert seen == list(range(1, 11))


def test_follow_streams_events_as_they_are_appended_and_ends_with_the_run(api: LiveServer) -> None:
    with api.client() as client:
        run_id = start(client)["run"]["run_id"]
    received: list[dict[str, Any]] = []
    opened = threading.Event()

    def follow() -> None:
        with api.client(token=None) as reader, reader.stream(
            "GET", f"/api/v1/runs/{run_id}/events", params={"follow": "true"},
            headers=auth(READ_TOKEN),
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            opened.set()
            event_name = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event_name = line[7:]
                elif line.startswith("data: "):
                    received.append({"event": event_name, **json.loads(line[6:])})
                    if event_name == "end":
                        return

    reader = threading.Thread(target=follow)
    reader.start()
    assert opened.wait(10)
    with api.client() as client:
        for n in range(25):
            post_event(client, run_id, data={"n": n}).raise_for_status()
        client.post(f"/api/v1/runs/{run_id}/finish", json={"status": "succeeded"}).raise_for_status()
    reader.join(30)
    assert not reader.is_alive()
    seqs = [r["seq"] for r in received if r["event"] != "end"]
    assert seqs == list(range(1, 28))
    assert received[-2]["kind"] == "run.finished"
    assert received[-1]["event"] == "end"


def test_follow_resumes_from_last_event_id(api: LiveServer) -> None:
    with api.client() as client:
        run_id = start(client)["run"]["run_id"]
        for n in range(5):
            post_event(client, run_id, data={"n": n}).raise_for_status()
        client.post(f"/api/v1/runs/{run_id}/finish", json={"status": "failed"}).raise_for_status()
        text = client.get(f"/api/v1/runs/{run_id}/events", params={"follow": "true"},
                          headers={"last-event-id": "4"}).text
    ids = [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]
    assert ids == [5, 6, 7]


def test_a_run_for_an_unknown_signature_is_refused_and_nothing_starts(api: LiveServer) -> None:
    """A run holds its signatures' lease: one for a signature that does not exist (a typo) would hold nothing and
    let the real one run beside it."""
    with api.client() as client:
        typo = client.post("/api/v1/runs", json={"run_id": "night-typo", "signature_ids": [SIG, "SelectTool.V1"]})
        runs = client.get("/api/v1/runs").json()["runs"]
    assert (typo.status_code, typo.json()["code"]) == (404, "signature_not_found")
    assert typo.json()["error"] == "unknown signature 'SelectTool.V1'; known: SelectTool.v1, SupportTriage.v1"
    assert runs == []


def test_runs_are_listed_newest_first_and_filtered_by_how_recently_they_started(api: LiveServer,
                                                                                 clock: SteppingClock) -> None:
    """`since_s` is counted back from the server's clock (as `overnight runs --since 1h --base-url` asks), so a
    reader's host with a skewed clock sees what a reader on the server would."""
    with api.client() as client:
        start(client, run_id="old-night")
        client.post("/api/v1/runs/old-night/finish", json={"status": "succeeded"})
        clock.advance(seconds=2 * 3600)
        start(client, run_id="last-night")
        recent = client.get("/api/v1/runs", params={"since_s": 3600}).json()["runs"]
        both = client.get("/api/v1/runs", params={"since_s": 3 * 3600}).json()["runs"]
        refused = client.get("/api/v1/runs", params={"since_s": 0})
    assert [r["run_id"] for r in recent] == ["last-night"]
    assert [r["run_id"] for r in both] == ["last-night", "old-night"]
    assert (refused.status_code, refused.json()["details"]["errors"][0]["field"]) == (422, "query.since_s")
