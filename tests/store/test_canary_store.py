"""The canary's store verbs on both stores: what a step's split test counts, and what a missed look records.

A step's split test counts only what was routed under that step. A request is routed when it arrives and
recorded after its LM call; if the canary advanced in between, the receipt was routed at the old rollout.
Counting it in the new step's split would bias that step towards control by up to the number of requests in
flight, and the split test would roll back good candidates."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event

from overnight.domain.canary import (
    ArmCounters,
    CanaryPlanRequest,
    CanaryRecord,
    ServingRoute,
    latency_bucket,
    rederive,
    resolve_plan,
)
from overnight.domain.compiling import Artifact
from overnight.domain.gates import SRM_METHOD
from overnight.domain.receipts import Receipt
from overnight.domain.runs import RunStart
from overnight.domain.signatures import Budget
from overnight.store import SqlStore
from tests.factories import SteppingClock

SIG, CANARY = "SelectTool.v1", "can-steps"
CONTROL, CANDIDATE = "c" * 64, "d" * 64


def open_canary(store: SqlStore, clock: SteppingClock, *, run_id: str | None = None, **plan: object) -> None:
    request = CanaryPlanRequest.model_validate({"steps": [20.0, 50.0], "min_samples": [4, 10], "max_error_rate": 0.5,
                                                "quality_margin": None, **plan})
    config = resolve_plan(request, budget=Budget(max_latency_p95_ms=10_000, max_cost_per_call_usd=0.01), now=clock())
    store.start_canary(canary=CanaryRecord(
        canary_id=CANARY, signature_id=SIG, control_id=CONTROL, candidate_id=CANDIDATE, config=config, step=0,
        step_base={"control": 0, "candidate": 0}, status="active", end_reason=None, run_id=run_id, report_id=None,
        actor="ops-agent", started_at=clock(), ended_at=None,
        arms={"control": ArmCounters(), "candidate": ArmCounters()}), salt="s")


def record(store: SqlStore, arm: str, *, routed_at: int, count: int, prefix: str, right: int | None = None,
           keys: int | None = None) -> None:
    """`count` receipts on `arm`; with `right`, labeled and the first `right` of them correct; with `keys`, from
    that many request keys in turn (else each its own)."""
    for i in range(count):
        store.record_receipt(receipt=Receipt(
            receipt_id=f"{prefix}-{arm}-{i}", signature_id=SIG, compiled_id=CANDIDATE if arm == "candidate"
            else CONTROL, canary_id=CANARY, arm=arm, step=routed_at,
            request_key=f"{prefix}-{arm}-{i % keys if keys else i}",
            input_hash="i" * 64, output={"tool": "x"}, ok=True, error_code=None,
            correct=None if right is None else i < right, latency_ms=10,
            tokens_in=1, tokens_out=1, cost_usd=None, lm_id="sim:test", request_id=f"req-{prefix}-{arm}-{i}"))


def test_receipts_routed_before_an_advance_are_left_out_of_the_next_steps_split(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    store = open_store()
    open_canary(store, clock)
    record(store, "control", routed_at=0, count=16, prefix="a")
    record(store, "candidate", routed_at=0, count=4, prefix="a")  # the 4th reaches step 1's target: advance
    assert store.get_canary(canary_id=CANARY).step == 1
    record(store, "control", routed_at=0, count=30, prefix="late")  # in flight at 20% when the step moved on
    record(store, "control", routed_at=1, count=6, prefix="b")
    record(store, "candidate", routed_at=1, count=6, prefix="b")  # the look: 6 vs 6 at 50% in this step
    canary = store.get_canary(canary_id=CANARY)
    look = store.canary_history(canary_id=CANARY)[-1]
    split = next(g for g in look.evidence["gates"] if g["evidence"].get("method") == SRM_METHOD)
    assert canary.status == "passed", canary.end_reason
    assert canary.step_base == {"control": 16, "candidate": 4}
    assert canary.arms["control"].samples == 52  # every receipt still counts on its arm
    assert canary.arms["control"].carried == 30
    assert (split["evidence"]["control_samples"], split["evidence"]["candidate_samples"]) == (6, 6)
    assert store.get_receipt(receipt_id="late-control-0").step == 0


def test_a_lopsided_split_routed_under_the_step_itself_still_fails(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    """The control for the test above: the same counts, but routed under step 1, are a broken split."""
    store = open_store()
    open_canary(store, clock)
    record(store, "control", routed_at=0, count=16, prefix="a")
    record(store, "candidate", routed_at=0, count=4, prefix="a")
    record(store, "control", routed_at=1, count=36, prefix="b")
    record(store, "candidate", routed_at=1, count=6, prefix="b")
    canary = store.get_canary(canary_id=CANARY)
    assert canary.status == "failed"
    assert "the assignment is broken" in (canary.end_reason or "")


def test_a_step_with_sticky_callers_is_split_by_their_request_keys_not_their_requests(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    """An app that sends its user's id as the request key keeps each user on one arm: at 20%, 4 users on the
    candidate who ask 10 times each and 16 on control who ask 2 or 3 times are 40 vs 40 requests, which read as a
    broken split, though 4 of 20 users is the 20% planned. The split counts the keys each arm got under the step."""
    store = open_store()
    open_canary(store, clock, min_samples=[40, 80])
    record(store, "control", routed_at=0, count=40, prefix="a", keys=16)
    record(store, "candidate", routed_at=0, count=40, prefix="a", keys=4)  # the 40th reaches step 1's target
    canary = store.get_canary(canary_id=CANARY)
    assert canary.step == 1, canary.end_reason
    advanced = store.canary_history(canary_id=CANARY)[-1]
    split = next(g for g in advanced.evidence["gates"] if g["evidence"].get("method") == SRM_METHOD)
    assert split["message"].startswith(
        "4 candidate vs 16 control request keys (40 vs 40 requests) at the 20% step: p = "), split["message"]
    assert (split["evidence"]["candidate_keys"], split["evidence"]["control_keys"]) == (4, 16)
    assert advanced.evidence["inputs"]["keys"] == {"control": 16, "candidate": 4}
    assert rederive(canary.config, kind=advanced.kind, verdict=advanced.verdict,
                    evidence=advanced.evidence).status == "agrees"


def test_a_missed_look_is_recorded_once_with_every_gate_and_on_the_runs_stream(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    store = open_store()
    run = store.start_run(request=RunStart(signature_ids=[SIG]), actor="ops-agent", default_lease_s=60).run
    open_canary(store, clock, run_id=run.run_id, steps=[50.0], min_samples=[6], quality_margin=0.05,
                min_labeled=2)
    record(store, "control", routed_at=0, count=6, prefix="a", right=3)
    record(store, "candidate", routed_at=0, count=6, prefix="a", right=3)  # the look: 3/6 vs 3/6 proves nothing
    record(store, "candidate", routed_at=0, count=3, prefix="b", right=3)
    canary = store.get_canary(canary_id=CANARY)
    history = store.canary_history(canary_id=CANARY)
    events = [e for e in store.list_events(run_id=run.run_id, after_seq=0, limit=100) if e.kind == "gate_evaluated"]
    assert canary.status == "active"  # the e-process keeps watching; the runner stops it
    assert [(h.kind, h.verdict) for h in history] == [("opened", None), ("look_missed", "inconclusive")]
    missed = history[-1].evidence
    assert missed["message"].startswith("the pass look at 6 candidate requests was missed (quality_not_shown)")
    assert missed["arms"]["candidate"]["samples"] == 6
    assert [g["reason_code"] for g in missed["gates"]] == [
        "error_rate_within_bound", "quality_not_shown", "within_budget", "split_as_planned"]
    assert len(events) == 1
    assert events[0].level == "warning"
    assert events[0].data["kind"] == "look_missed"


def test_canary_outcomes_are_each_receipts_arm_ok_and_correct_in_the_order_written(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    store = open_store()
    open_canary(store, clock)
    record(store, "control", routed_at=0, count=3, prefix="a", right=1)
    record(store, "candidate", routed_at=0, count=2, prefix="b")
    assert store.canary_outcomes(canary_id=CANARY, limit=10) == [
        ("control", True, True), ("control", True, False), ("control", True, False),
        ("candidate", True, None), ("candidate", True, None)]
    assert len(store.canary_outcomes(canary_id=CANARY, limit=4)) == 4
    assert store.canary_outcomes(canary_id="can-unknown", limit=10) == []


def test_a_canarys_errors_are_counted_by_arm_and_code_and_its_failed_receipts_listed(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    """What an operator asks of a canary whose errors climb: which kind, on which arm, and which requests."""
    store = open_store()
    open_canary(store, clock, max_error_rate=0.9)
    record(store, "control", routed_at=0, count=3, prefix="ok")
    failures = [("candidate", "timeout"), ("candidate", "timeout"), ("candidate", "parse_failure"),
                ("control", "lm_error")]
    for i, (arm, code) in enumerate(failures):
        store.record_receipt(receipt=Receipt(
            receipt_id=f"bad-{i}", signature_id=SIG, compiled_id=CANDIDATE if arm == "candidate" else CONTROL,
            canary_id=CANARY, arm=arm, step=0, request_key=f"bad-{i}", input_hash="i" * 64, output=None, ok=False,
            error_code=code, correct=None, latency_ms=10, tokens_in=0, tokens_out=0, cost_usd=None, lm_id="sim:test",
            request_id=f"req-bad-{i}"))
    assert store.canary_error_codes(canary_id=CANARY) == {
        "candidate": {"timeout": 2, "parse_failure": 1}, "control": {"lm_error": 1}}
    assert list(store.canary_error_codes(canary_id=CANARY)["candidate"]) == ["timeout", "parse_failure"]  # most first
    assert store.canary_error_codes(canary_id="can-unknown") == {}
    failed = store.list_receipts(canary_id=CANARY, ok=False)
    assert [r.receipt_id for r in failed] == ["bad-0", "bad-1", "bad-2", "bad-3"]
    assert len(store.list_receipts(canary_id=CANARY, ok=True)) == 3


def test_each_receipt_bumps_every_counter_of_its_own_arm_by_exactly_its_values(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    store = open_store()
    open_canary(store, clock)
    written = [  # arm, ok, correct, latency, tokens in/out, cost
        ("candidate", True, True, 40, 100, 7, 0.25), ("candidate", False, None, 3_000, 90, 0, None),
        ("candidate", True, False, 45, 110, 9, 0.5), ("control", True, None, 12, 80, 5, None)]
    for i, (arm, ok, correct, latency, tokens_in, tokens_out, cost) in enumerate(written):
        store.record_receipt(receipt=Receipt(
            receipt_id=f"rc-{i}", signature_id=SIG, compiled_id=CANDIDATE if arm == "candidate" else CONTROL,
            canary_id=CANARY, arm=arm, step=0, request_key=f"k-{i}", input_hash="i" * 64,
            output={"tool": "x"} if ok else None, ok=ok, error_code=None if ok else "timeout", correct=correct,
            latency_ms=latency, tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost, lm_id="sim:test",
            request_id=f"req-{i}"))
    arms = store.get_canary(canary_id=CANARY).arms
    candidate, control = arms["candidate"], arms["control"]
    assert (candidate.samples, candidate.errors, candidate.labeled, candidate.correct) == (3, 1, 2, 1)
    assert (candidate.latency_sum_ms, candidate.tokens_in, candidate.tokens_out) == (3_085, 300, 16)
    assert (candidate.cost_usd, candidate.costed) == (0.75, 2)
    assert candidate.latency_buckets == {latency_bucket(40): 2, latency_bucket(3_000): 1}
    assert (control.samples, control.errors, control.labeled, control.correct, control.latency_sum_ms) == (
        1, 0, 0, 0, 12)
    assert (control.tokens_in, control.tokens_out, control.cost_usd, control.costed) == (80, 5, 0.0, 0)
    assert control.latency_buckets == {latency_bucket(12): 1}


def test_alias_history_can_be_read_for_one_run(open_store: Callable[..., SqlStore]) -> None:
    store = open_store()
    for compiled_id in (CONTROL, CANDIDATE):
        store.put_artifact(artifact=Artifact(compiled_id=compiled_id, signature_id=SIG, lm_id="sim:test",
                                             state={}, params={}))
    first = store.promote(signature_id=SIG, seen=None, to_id=CONTROL, actor="ops-agent", reason="night 1",
                          run_id="run-1", evidence={}, canary_id=None)
    second = store.promote(signature_id=SIG, seen=CONTROL, to_id=CANDIDATE, actor="ops-agent", reason="night 2",
                           run_id="run-2", evidence={}, canary_id=None)
    assert [m.id for m in store.alias_history(signature_id=SIG, run_id="run-2")] == [second.id]
    assert [m.id for m in store.alias_history(signature_id=SIG)] == [first.id, second.id]
    assert store.alias_history(signature_id=SIG, run_id="run-3") == []


def test_the_serving_route_is_read_in_one_statement_with_or_without_a_champion_and_a_canary(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    """Read on every predict: the champion and the active canary come back from one statement in every state,
    and on SQLite with no BEGIN/COMMIT around it (one statement is its own snapshot)."""
    store = open_store()
    executed: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: executed.append(args[2]))

    def route() -> ServingRoute:
        executed.clear()
        found = store.serving_route(signature_id=SIG)
        assert len(executed) == 1, executed
        return found

    assert route() == ServingRoute(champion_id=None)
    store.put_artifact(artifact=Artifact(compiled_id=CONTROL, signature_id=SIG, lm_id="sim:test", state={},
                                         params={}))
    store.promote(signature_id=SIG, seen=None, to_id=CONTROL, actor="ops-agent", reason="night 1", run_id=None,
                  evidence={}, canary_id=None)
    assert route() == ServingRoute(champion_id=CONTROL)
    open_canary(store, clock)
    assert route() == ServingRoute(champion_id=CONTROL, canary_id=CANARY, salt="s", rollout_pct=20.0, step=0,
                                   control_id=CONTROL, candidate_id=CANDIDATE)
    store.stop_canary(signature_id=SIG, actor="ops-agent", reason="done")
    assert route() == ServingRoute(champion_id=CONTROL)
    assert store.serving_route(signature_id="Other.v1") == ServingRoute(champion_id=None)
    with store.engine.connect() as conn:  # the pooled connection the route read used is out of autocommit again
        raw = conn.connection.dbapi_connection
        assert store.kind == "sqlite" or getattr(raw, "autocommit", None) is False


def test_a_takeover_stops_the_abandoned_runs_canary_on_a_signature_it_did_not_take(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    """A takeover frees every lock of the stale run, so its canary on a signature the new run did not take had no
    runner left, and no later run could continue it (only a run that takes over a stale run adopts its canaries):
    the next night for that signature was refused `canary_active`. The takeover stops it, saying why; a canary on a
    signature the new run took stays, for it to continue."""
    store = open_store()
    store.start_run(request=RunStart(signature_ids=[SIG, "SupportTriage.v1"], run_id="night-old"), actor="ops-agent",
                    default_lease_s=60)
    open_canary(store, clock, run_id="night-old")  # on SIG
    clock.advance(seconds=61)  # the old run's runner is gone: its lease lapses
    store.start_run(request=RunStart(signature_ids=["SupportTriage.v1"], run_id="night-other"), actor="ops-agent",
                    default_lease_s=60)
    canary = store.get_canary(canary_id=CANARY)
    assert (canary.status, canary.end_reason) == (
        "stopped", "run night-old was abandoned (its lease went stale) and run night-other took over SupportTriage.v1 "
                   "only: no runner is left to follow this canary")
    assert store.canary_history(canary_id=CANARY)[-1].kind == "stopped"


def test_a_takeover_leaves_the_canary_on_a_signature_it_took_for_the_new_run_to_continue(
        open_store: Callable[..., SqlStore], clock: SteppingClock) -> None:
    store = open_store()
    store.start_run(request=RunStart(signature_ids=[SIG], run_id="night-old"), actor="ops-agent", default_lease_s=60)
    open_canary(store, clock, run_id="night-old")
    clock.advance(seconds=61)
    store.start_run(request=RunStart(signature_ids=[SIG], run_id="night-new"), actor="ops-agent", default_lease_s=60)
    assert store.get_canary(canary_id=CANARY).status == "active"
