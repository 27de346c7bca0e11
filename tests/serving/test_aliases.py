"""Promote and rollback over real HTTP: refusals carry the gates' evidence, force is audited, rollback walks
back through the history, and an alias move is seen at once by another server process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from overnight.client import OvernightClient
from overnight.store import SqlStore
from tests.factories import ADMIN_TOKEN, READ_TOKEN, LiveServer, live_server, serve_process
from tests.serving.helpers import SIG, TRUTH, candidate_with, compiled, holdout, predict


def test_promote_without_a_passed_canary_is_refused_with_evidence_then_forced(api: LiveServer) -> None:
    with api.client() as admin:
        report = compiled(admin)
        best = report["best_compiled_id"]
        refused = admin.post(f"/api/v1/signatures/{SIG}/promote", json={"candidate_id": best})
        history_after_refusal = admin.get(f"/api/v1/signatures/{SIG}/aliases/history").json()
        no_reason = admin.post(f"/api/v1/signatures/{SIG}/promote", json={"candidate_id": best, "force": True})
        forced = admin.post(f"/api/v1/signatures/{SIG}/promote",
                            json={"candidate_id": best, "force": True, "reason": "hotfix for ticket 42"})
        history = admin.get(f"/api/v1/signatures/{SIG}/aliases/history").json()
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "promotion_refused"
    gates = {g["reason_code"]: g for g in body["details"]["gates"]}
    assert gates["no_passed_canary"]["verdict"] == "fail"
    assert gates["compile_report_current"]["verdict"] == "pass"
    assert gates["holdout_delta_met"]["evidence"]["n"] > 0
    assert history_after_refusal["history"] == []
    assert history_after_refusal["champion_id"] is None
    assert no_reason.status_code == 422
    assert "reason" in no_reason.json()["error"]
    assert forced.status_code == 200, forced.text
    row = history["history"][-1]
    assert history["champion_id"] == best
    assert (row["action"], row["actor"], row["reason"]) == ("promote", "ops-agent", "hotfix for ticket 42")
    assert row["evidence"]["forced"] is True
    assert row["evidence"]["gates_passed"] is False


def _served(client: Any, key: str) -> str:
    response = predict(client, holdout()[0], key, labeled=False)
    assert response.status_code == 200, response.text
    served: str = response.json()["compiled_id"]
    return served


def test_promote_a_then_b_then_two_rollbacks_walk_back_to_the_default_on_every_replica(
    db_url: str, tmp_path: Path,
) -> None:
    env = {"OVERNIGHT_LM": TRUTH}
    with serve_process(db_url, tmp_path / "one.log", **env) as one, \
            serve_process(db_url, tmp_path / "two.log", **env) as two, one.client() as admin, two.client() as other:
        report = compiled(admin)
        default = report["incumbent_compiled_id"]
        a = candidate_with(report, instruction_index=1, demo_count=4)
        b = candidate_with(report, instruction_index=2, demo_count=0)
        served = [_served(other, "k")]
        for target in (a, b):
            moved = admin.post(f"/api/v1/signatures/{SIG}/promote",
                               json={"candidate_id": target, "force": True, "reason": f"trying {target[:8]}"})
            assert moved.status_code == 200, moved.text
            served.append(_served(other, "k"))
        for _ in range(2):
            back = admin.post(f"/api/v1/signatures/{SIG}/rollback", json={"reason": "walk back"})
            assert back.status_code == 200, back.text
            served.append(_served(other, "k"))  # the very next request on the other process
        nothing = admin.post(f"/api/v1/signatures/{SIG}/rollback", json={"reason": "again"})
        history = other.get(f"/api/v1/signatures/{SIG}/aliases/history").json()
    assert served == [default, a, b, a, default]
    assert [(h["action"], h["from_id"], h["to_id"]) for h in history["history"]] == [
        ("promote", None, a), ("promote", a, b), ("rollback", b, a), ("rollback", a, None)]
    assert history["champion_id"] is None
    assert nothing.status_code == 409
    assert nothing.json()["code"] == "nothing_to_roll_back"


def test_rollback_to_a_named_id_and_its_refusals(api: LiveServer) -> None:
    with api.client() as admin, api.client(token=READ_TOKEN) as reader:
        report = compiled(admin)
        a = candidate_with(report, instruction_index=1, demo_count=4)
        b = candidate_with(report, instruction_index=2, demo_count=0)
        c = candidate_with(report, instruction_index=0, demo_count=4)
        for target in (a, b, c):
            admin.post(f"/api/v1/signatures/{SIG}/promote",
                       json={"candidate_id": target, "force": True, "reason": "setup"}).raise_for_status()
        canary = admin.post(f"/api/v1/signatures/{SIG}/canary:start",
                            json={"candidate_id": report["best_compiled_id"]})
        no_reason = admin.post(f"/api/v1/signatures/{SIG}/rollback", json={})
        unknown = admin.post(f"/api/v1/signatures/{SIG}/rollback", json={"to": "f" * 64, "reason": "x"})
        as_reader = reader.post(f"/api/v1/signatures/{SIG}/rollback", json={"reason": "x"})
        to_a = admin.post(f"/api/v1/signatures/{SIG}/rollback", json={"to": a, "reason": "c and b misbehave"})
        view = admin.get(f"/api/v1/signatures/{SIG}/canary").json()
        one_back = admin.post(f"/api/v1/signatures/{SIG}/rollback", json={"reason": "and a too"})
        to_default = admin.post(f"/api/v1/signatures/{SIG}/rollback", json={"to": "default", "reason": "x"})
    assert no_reason.status_code == 422
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "artifact_not_found"
    assert as_reader.status_code == 403
    assert canary.status_code == 200, canary.text
    assert to_a.status_code == 200
    assert to_a.json()["move"]["to_id"] == a
    assert view["canary"]["status"] == "stopped"  # a rollback ends the active canary
    assert "rolled back" in view["canary"]["end_reason"]
    assert one_back.json()["move"]["to_id"] is None  # a was pushed on top of the default: one step back is default
    assert to_default.status_code == 409
    assert to_default.json()["code"] == "nothing_to_roll_back"


def _dies_once_after_its_move(store: SqlStore, move: str) -> threading.Event:
    """The server dies once, just after its `move` committed: nothing it does after that reaches the store (its
    claim on the request's Idempotency-Key is left as a dead server leaves it), and the client gets no answer."""
    dead = threading.Event()
    moving, releasing = getattr(store, move), store.release_idempotency_key

    def then_die(**kwargs: Any) -> Any:
        moved = moving(**kwargs)
        if not dead.is_set():
            dead.set()
            raise ConnectionError("the server died")
        return moved

    def release(**kwargs: Any) -> None:
        if not dead.is_set():
            releasing(**kwargs)

    setattr(store, move, then_die)
    store.release_idempotency_key = release  # type: ignore[method-assign]
    return dead


@pytest.mark.parametrize("move", ["promote", "rollback"])
def test_a_move_whose_server_died_before_answering_is_answered_by_the_retry_not_made_again(
        db_url: str, move: str) -> None:
    """The champion moved, then the server died before the client had its answer; the client asks again with the
    same Idempotency-Key once the dead server's claim has lapsed. The move's answer was kept with the move, in its
    transaction, so the retry gets it: the move is not made again (a second one-step-back rollback would walk back
    a champion too far) nor refused as done (`conflict: … already is the champion`)."""
    with live_server(db_url, lm=TRUTH, idempotency_lease_s=1) as server, server.client() as admin:
        report = compiled(admin)
        a = candidate_with(report, instruction_index=1, demo_count=4)
        b = candidate_with(report, instruction_index=2, demo_count=0)
        for target in (a, b)[: 2 if move == "rollback" else 1]:
            admin.post(f"/api/v1/signatures/{SIG}/promote",
                       json={"candidate_id": target, "force": True, "reason": "setup"}).raise_for_status()
        dead = _dies_once_after_its_move(server.store, move)
        with OvernightClient(server.base_url, ADMIN_TOKEN, backoff_s=0.1) as client:
            if move == "promote":
                answered = client.promote(SIG, {"candidate_id": b, "force": True, "reason": "try b"})
            else:
                answered = client.rollback(SIG, {"reason": "b misbehaves"})
        history = admin.get(f"/api/v1/signatures/{SIG}/aliases/history").json()
    assert dead.is_set()
    made = [(h["action"], h["from_id"], h["to_id"]) for h in history["history"]]
    last = ("promote", a, b) if move == "promote" else ("rollback", b, a)
    assert made == [("promote", None, a), *([("promote", a, b)] if move == "rollback" else []), last]
    assert (answered.move.id, answered.move.action) == (history["history"][-1]["id"], move)
    assert history["champion_id"] == last[2]
