"""A candidate meets traffic over real HTTP: canary start, steps, the gates' verdict, promote and rollback."""

from __future__ import annotations

from overnight.domain.canary import arm_for, bucket_of
from tests.factories import READ_TOKEN, SERVE_TOKEN, LiveServer
from tests.serving.helpers import FAIR_SPLIT, SIG, compiled, drive, drive_until_decided, holdout, predict


def test_a_better_candidate_passes_every_step_and_is_promoted(api: LiveServer) -> None:
    with api.client() as admin, api.client(token=SERVE_TOKEN) as app:
        report = compiled(admin)
        best = report["best_compiled_id"]
        run_id = admin.post("/api/v1/runs", json={"signature_ids": [SIG]}).json()["run"]["run_id"]
        started = admin.post(f"/api/v1/signatures/{SIG}/canary:start",
                             json={"candidate_id": best, "steps": [25, 50], "run_id": run_id, **FAIR_SPLIT})
        assert started.status_code == 200, started.text
        assert started.json()["config"]["targets"] == [77, 153]
        view = drive_until_decided(app, admin, prefix="good")
        promoted = admin.post(f"/api/v1/signatures/{SIG}/promote", json={"candidate_id": best, "run_id": run_id})
        history = admin.get(f"/api/v1/signatures/{SIG}/aliases/history").json()
        after = drive(app, 5, prefix="after")
        events = admin.get(f"/api/v1/runs/{run_id}/events").json()["events"]
    canary = view["canary"]
    assert canary["status"] == "passed", view["history"][-1]
    # The verdict was taken at exactly the planned look; requests already routed when it closed still count.
    assert view["history"][-1]["evidence"]["arms"]["candidate"]["samples"] == 153
    assert canary["arms"]["candidate"]["samples"] >= 153
    assert [h["kind"] for h in view["history"]] == ["opened", "step_advanced", "gate_evaluated"]
    assert view["history"][-1]["verdict"] == "pass"
    assert "canary error upper bound" in canary["end_reason"]
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["forced"] is False
    assert history["champion_id"] == best
    assert [(h["action"], h["from_id"], h["to_id"]) for h in history["history"]] == [("promote", None, best)]
    assert {r.json()["compiled_id"] for r in after} == {best}
    assert {r.json()["arm"] for r in after} == {"champion"}
    kinds = [e["kind"] for e in events]
    assert kinds.count("gate_evaluated") == 2
    assert "canary.opened" in kinds
    assert "canary.promoted" in kinds
    assert "alias.moved" in kinds


def test_sticky_users_of_uneven_traffic_pass_the_split_their_requests_alone_would_fail(api: LiveServer) -> None:
    """An app sends its user's id as the request key, which keeps each user on one arm: at 20%, 4 users on the
    candidate ask 10 times each and 16 on control 2 or 3 times. 40 vs 40 requests read as a broken assignment; 4
    of 20 users is the 20% planned, and the step advances (at the default split threshold, as in production)."""
    rows = holdout()
    with api.client() as admin, api.client(token=SERVE_TOKEN) as app:
        best = compiled(admin)["best_compiled_id"]
        started = admin.post(f"/api/v1/signatures/{SIG}/canary:start",
                             json={"candidate_id": best, "steps": [20, 50], "min_samples": [40, 80]})
        assert started.status_code == 200, started.text
        salt = api.store.serving_route(signature_id=SIG).salt
        assert salt is not None
        users = [f"user-{i}" for i in range(200)]
        on = {arm: [u for u in users if arm_for(bucket_of(salt=salt, signature_id=SIG, request_key=u), 20) == arm]
              for arm in ("candidate", "control")}
        asks = [(user, 3 if i < 8 else 2) for i, user in enumerate(on["control"][:16])]
        asks += [(user, 10) for user in on["candidate"][:4]]  # the 40th candidate request ends the step
        answers = [predict(app, rows[n % len(rows)], user) for user, times in asks for n in range(times)]
        view = admin.get(f"/api/v1/signatures/{SIG}/canary").json()
    assert {a.status_code for a in answers} == {200}
    assert [a.json()["arm"] for a in answers] == ["control"] * 40 + ["candidate"] * 40
    assert (view["canary"]["status"], view["canary"]["step"]) == ("active", 1), view["history"][-1]
    split = next(g for g in view["history"][-1]["evidence"]["gates"] if g["reason_code"] == "split_as_planned")
    assert split["message"].startswith(
        "4 candidate vs 16 control request keys (40 vs 40 requests) at the 20% step: p = "), split["message"]


def test_starting_a_canary_is_refused_clearly_and_changes_nothing(api: LiveServer) -> None:
    with api.client() as admin:
        early = admin.post(f"/api/v1/signatures/{SIG}/canary:start", json={"candidate_id": "a" * 64})
        report = compiled(admin)
        best = report["best_compiled_id"]
        default = report["incumbent_compiled_id"]
        as_champion = admin.post(f"/api/v1/signatures/{SIG}/canary:start", json={"candidate_id": default})
        bad_steps = admin.post(f"/api/v1/signatures/{SIG}/canary:start",
                               json={"candidate_id": best, "steps": [50, 25]})
        bad_rate = admin.post(f"/api/v1/signatures/{SIG}/canary:start",
                              json={"candidate_id": best, "expected_error_rate": 0.2})
        too_close = admin.post(f"/api/v1/signatures/{SIG}/canary:start",
                               json={"candidate_id": best, "expected_error_rate": 0.0009, "max_error_rate": 0.001})
        bad_split = admin.post(f"/api/v1/signatures/{SIG}/canary:start",
                               json={"candidate_id": best, "srm_threshold_p": 0.5})
        no_canary = admin.get(f"/api/v1/signatures/{SIG}/canary")
        first = admin.post(f"/api/v1/signatures/{SIG}/canary:start", json={"candidate_id": best})
        second = admin.post(f"/api/v1/signatures/{SIG}/canary:start", json={"candidate_id": best})
        stopped = admin.post(f"/api/v1/signatures/{SIG}/canary:stop", json={"reason": "testing"})
        stop_again = admin.post(f"/api/v1/signatures/{SIG}/canary:stop", json={"reason": "testing"})
        third = admin.post(f"/api/v1/signatures/{SIG}/canary:start", json={"candidate_id": best})
    with api.client(token=SERVE_TOKEN) as app:
        forbidden = app.post(f"/api/v1/signatures/{SIG}/canary:start", json={"candidate_id": best})
    assert early.status_code == 404
    assert early.json()["code"] == "artifact_not_found"
    assert as_champion.status_code == 409
    assert bad_steps.status_code == 422
    assert "steps" in bad_steps.json()["error"]
    assert bad_rate.status_code == 422
    assert "expected_error_rate" in bad_rate.json()["error"]
    assert too_close.status_code == 422
    assert too_close.json()["error"] == (
        "a candidate erring at 0.0009 cannot be shown to be under 0.001 in 20,000 requests or fewer (alpha 0.05, power "
        "0.9): expected_error_rate is too close to max_error_rate; a wider gap between them plans a smaller canary")
    assert bad_split.status_code == 422
    assert "srm_threshold_p" in bad_split.json()["error"]
    assert no_canary.status_code == 404
    assert no_canary.json()["code"] == "canary_not_found"
    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json()["code"] == "canary_active"
    assert stopped.json()["status"] == "stopped"
    assert stop_again.status_code == 404
    assert third.status_code == 200
    assert third.json()["canary_id"] != first.json()["canary_id"]
    assert forbidden.status_code == 403


def test_a_canary_is_read_and_stopped_by_its_id_after_another_replaced_it(api: LiveServer) -> None:
    """Who started a canary follows that one: by id it reads the same view after a newer canary took the signature,
    and a stop naming it cannot end the newer one."""
    with api.client() as admin, api.client(token=READ_TOKEN) as reader:
        best = compiled(admin)["best_compiled_id"]
        first = admin.post(f"/api/v1/signatures/{SIG}/canary:start", json={"candidate_id": best}).json()
        admin.post(f"/api/v1/signatures/{SIG}/canary:stop", json={"reason": "replaced"}).raise_for_status()
        second = admin.post(f"/api/v1/signatures/{SIG}/canary:start", json={"candidate_id": best}).json()
        by_id = reader.get(f"/api/v1/canaries/{first['canary_id']}")
        latest = reader.get(f"/api/v1/signatures/{SIG}/canary").json()
        unknown = reader.get("/api/v1/canaries/can-1-00000000")
        malformed = reader.get("/api/v1/canaries/not a canary!")
        stale_stop = admin.post(f"/api/v1/signatures/{SIG}/canary:stop",
                                json={"reason": "deadline", "canary_id": first["canary_id"]})
        still = reader.get(f"/api/v1/canaries/{second['canary_id']}").json()
        own_stop = admin.post(f"/api/v1/signatures/{SIG}/canary:stop",
                              json={"reason": "deadline", "canary_id": second["canary_id"]})
    assert by_id.status_code == 200, by_id.text
    view = by_id.json()
    assert (view["canary"]["canary_id"], view["canary"]["status"]) == (first["canary_id"], "stopped")
    assert view["evaluation"] is None  # an ended canary has no live gates
    assert [h["kind"] for h in view["history"]] == ["opened", "stopped"]
    assert set(view) == set(latest)  # the same shape as the signature's latest
    assert latest["canary"]["canary_id"] == second["canary_id"]
    assert (unknown.status_code, unknown.json()["code"]) == (404, "canary_not_found")
    assert malformed.status_code == 422
    assert (stale_stop.status_code, stale_stop.json()["code"]) == (404, "canary_not_found")
    assert stale_stop.json()["error"] == (f"canary {first['canary_id']} is not active on {SIG} "
                                          f"({second['canary_id']} is): nothing stopped")
    assert still["canary"]["status"] == "active"
    assert own_stop.status_code == 200, own_stop.text
    assert own_stop.json()["status"] == "stopped"


def test_a_canary_past_its_deadline_ends_inconclusive_on_the_next_request(api: LiveServer) -> None:
    assert api.clock is not None
    with api.client() as admin, api.client(token=SERVE_TOKEN) as app:
        report = compiled(admin)
        admin.post(f"/api/v1/signatures/{SIG}/canary:start", json={
            "candidate_id": report["best_compiled_id"], "steps": [50], "deadline_s": 600}).raise_for_status()
        drive(app, 10, prefix="early")
        api.clock.advance(seconds=601)
        waiting = admin.get(f"/api/v1/signatures/{SIG}/canary").json()
        drive(app, 1, prefix="late")
        view = admin.get(f"/api/v1/signatures/{SIG}/canary").json()
    assert waiting["canary"]["status"] == "active"  # reads never change state ...
    assert waiting["evaluation"]["reason_code"] == "deadline_passed"  # ... but say what the next request will do
    assert view["canary"]["status"] == "inconclusive"
    assert view["history"][-1]["evidence"]["reason_code"] == "deadline_passed"
    assert "deadline passed" in view["canary"]["end_reason"]


def test_a_missed_look_leaves_its_reason_in_the_history_and_the_canary_watching(api: LiveServer) -> None:
    """Unlabeled traffic can't show quality: the look is missed, which the history says once, with every gate."""
    with api.client() as admin, api.client(token=SERVE_TOKEN) as app:
        report = compiled(admin)
        admin.post(f"/api/v1/signatures/{SIG}/canary:start", json={
            "candidate_id": report["best_compiled_id"], "steps": [50], "min_samples": [10],
            "max_error_rate": 0.3, **FAIR_SPLIT}).raise_for_status()
        rows, sent = holdout(), 0
        while admin.get(f"/api/v1/signatures/{SIG}/canary").json()["canary"]["arms"]["candidate"]["samples"] < 14:
            predict(app, rows[sent % len(rows)], f"unlabeled-{sent}", labeled=False)
            sent += 1
        view = admin.get(f"/api/v1/signatures/{SIG}/canary").json()
    missed = [h for h in view["history"] if h["kind"] == "look_missed"]
    assert view["canary"]["status"] == "active"
    assert view["evaluation"]["can_still_pass"] is False
    assert len(missed) == 1
    assert missed[0]["verdict"] == "inconclusive"
    assert missed[0]["evidence"]["arms"]["candidate"]["samples"] == 10
    assert "was missed (not_enough_labels)" in missed[0]["evidence"]["message"]
    assert {g["reason_code"] for g in missed[0]["evidence"]["gates"]} >= {"not_enough_labels", "split_as_planned"}
