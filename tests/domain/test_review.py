"""The review's pure pieces: step spans from the runner's events, the canary series, the sentences."""

from __future__ import annotations

import pytest

from overnight.domain.canary import Rederived
from overnight.domain.gates import clopper_pearson_upper
from overnight.domain.review import (
    ArmRow,
    CanarySection,
    GateLine,
    MoveLine,
    SignatureReview,
    canary_series,
    phase_spans,
    promote_commands,
    run_sentence,
    signature_sentence,
    undo_commands,
)
from overnight.domain.runs import Run, RunEvent, RunStatus

A, B = "a" * 64, "b" * 64


def event(seq: int, ts: int, client_event_id: str | None, kind: str = "x.started") -> RunEvent:
    return RunEvent(run_id="r", seq=seq, ts=ts, kind=kind, phase="p", level="info", message="", data={},
                    client_event_id=client_event_id)


def test_phase_spans_pair_started_and_finished_in_start_order() -> None:
    events = [event(1, 1000, "run:preflight:finished"), event(2, 1100, "S.v1:compile:started"),
              event(3, 1200, "other-client-id"), event(4, 5100, "S.v1:compile:finished"),
              event(5, 5200, "S.v1:canary.start:started"), event(6, 5300, None),
              event(7, 5400, "S.v1:compile:finished")]  # a retried append: the first one counts
    spans = phase_spans(events, started_at=1000)
    assert [(s.scope, s.phase, s.offset_ms, s.duration_ms) for s in spans] == [
        ("run", "preflight", 0, 0), ("S.v1", "compile", 100, 4000), ("S.v1", "canary.start", 4200, None)]


def test_canary_series_thins_each_arm_and_always_ends_at_its_last_request() -> None:
    outcomes = [o for i in range(1000) for o in (("candidate", i % 50 != 7, i % 3 != 0), ("control", True, None))]
    series = {s.arm: s.points for s in canary_series(outcomes, totals={"control": 1000, "candidate": 1000},
                                                     alpha=0.05, points=100)}
    assert [p.n for p in series["candidate"]][:3] == [10, 20, 30]
    assert series["candidate"][-1].n == 1000
    assert len(series["candidate"]) == 100
    last = series["candidate"][-1]
    assert last.error_upper == pytest.approx(clopper_pearson_upper(20, 1000, 0.05))
    assert last.accuracy == pytest.approx(666 / 1000, abs=1e-3)
    assert all(p.accuracy is None for p in series["control"])  # unlabeled traffic has no accuracy
    assert series["control"][-1].error_upper == pytest.approx(clopper_pearson_upper(0, 1000, 0.05))


def canary(candidate_errors: int = 0) -> CanarySection:
    def arm(name: str, compiled_id: str, errors: int, accuracy: float) -> ArmRow:
        return ArmRow(arm=name, compiled_id=compiled_id, samples=153, errors=errors, error_rate=errors / 153,
                      error_upper=clopper_pearson_upper(errors, 153, 0.05), labeled=153, accuracy=accuracy,
                      latency_p95_ms=500, cost_per_call_usd=None)
    return CanarySection(canary_id="c", status="passed", end_reason=None, control_id=A, candidate_id=B,
                         steps=[50], targets=[153], max_error_rate=0.05, alpha=0.05, quality_margin=0.05,
                         arms=[arm("control", A, 0, 0.6), arm("candidate", B, candidate_errors, 0.9)], history=[],
                         series=[])


@pytest.mark.parametrize(("decision", "reason", "after", "has_canary", "says"), [
    ("promoted", "", B, True, "S.v1: promoted bbbbbbbbbbbb over aaaaaaaaaaaa — no paired holdout delta; canary "
                              "passed: 0 errors in 153 candidate requests (upper bound 0.019 < 0.05), accuracy "
                              "0.900 vs control 0.600"),
    ("rolled_back", "canary failed: too many errors", A, True,
     "S.v1: rolled back — canary failed: too many errors; 12 errors in 153 candidate requests (upper bound 0.124 >= "
     "0.05), accuracy 0.900 vs control 0.600; aaaaaaaaaaaa still serves"),
    ("no_improvement", "", A, False, "S.v1: no change — compile found nothing better than aaaaaaaaaaaa"),
    ("held", "canary passed; held for a person to promote (--no-promote)", A, True,
     "S.v1: held — no paired holdout delta; canary passed: 0 errors in 153 candidate requests (upper bound 0.019 < "
     "0.05), accuracy 0.900 vs control 0.600; aaaaaaaaaaaa serves until a person promotes bbbbbbbbbbbb"),
    ("inconclusive", "canary inconclusive: deadline", A, True,
     "S.v1: no change — canary inconclusive: deadline; aaaaaaaaaaaa still serves"),
    ("failed", "api_unreachable: gone", None, False, "S.v1: failed — api_unreachable: gone"),
])
def test_signature_sentences(decision: str, reason: str, after: str | None, has_canary: bool, says: str) -> None:
    section = canary(12 if decision == "rolled_back" else 0) if has_canary else None
    assert signature_sentence(signature_id="S.v1", decision=decision, reason=reason, champion_before=A,
                              champion_after=after, compile=None, canary=section) == says


def run(status: RunStatus = RunStatus.succeeded) -> Run:
    return Run(run_id="night-1", status=status, actor="a", commit_sha=None, base_url=None,
               signature_ids=["S.v1", "T.v1"], lease_s=60, lease_expires_at=0, summary={"verdict": "v"}, links={},
               event_count=1, event_bytes=1, truncated=False, started_at=0, ended_at=1)


def review(sig: str, decision: str, after: str | None, moves: list[MoveLine] | None = None) -> SignatureReview:
    return SignatureReview(signature_id=sig, decision=decision, reason="", champion_before=A, champion_after=after,
                           compile=None, canary=None, moves=moves or [], e2e=None, sentence="")


def move(action: str, from_id: str | None, to_id: str | None, *, after_run: bool = False) -> MoveLine:
    return MoveLine(id=1, action=action, from_id=from_id, to_id=to_id, actor="a", reason="r", forced=False,
                    offset_ms=0, after_run=after_run)


def test_the_closing_sentence_names_what_changed() -> None:
    assert run_sentence(run(), [review("S.v1", "promoted", B), review("T.v1", "no_improvement", A)]) == (
        "Run night-1 succeeded: S.v1 now serves bbbbbbbbbbbb; T.v1 no improvement.")
    assert run_sentence(run(), [review("S.v1", "rolled_back", A), review("T.v1", "inconclusive", A)]) == (
        "Run night-1 succeeded: nothing changed (S.v1 rolled back; T.v1 inconclusive).")
    running = [review("S.v1", "promoted", B), review("T.v1", "in_progress", None)]
    assert run_sentence(run(RunStatus.running), running) == (
        "Run night-1 is still running (1 of 2 signatures decided).")


def test_the_closing_sentence_says_what_an_operator_moved_since_the_run() -> None:
    """A morning rollback of what the run promoted, or promote of what it held (`--run`), ends "now serves"."""
    undone = review("S.v1", "promoted", B, [move("promote", A, B), move("rollback", B, A, after_run=True)])
    taken = review("T.v1", "held", A, [move("promote", A, B, after_run=True)])
    assert run_sentence(run(), [undone, taken]) == (
        f"Run night-1 succeeded: S.v1 served {B[:12]} until a rolled back to {A[:12]}; T.v1 held, then a promoted "
        f"{B[:12]}.")
    assert run_sentence(run(), [taken, review("S.v1", "no_improvement", A)]) == (
        f"Run night-1 succeeded: the run changed nothing (T.v1 held, then a promoted {B[:12]}; S.v1 no improvement).")


def test_the_undo_commands_put_back_the_champion_each_promotion_replaced() -> None:
    """`--to` the champion the run's promote moved away from (a later night's move does not change what "undo this
    run" means); one step back when no move was recorded; nothing for a signature the run did not promote."""
    signatures = [review("S.v1", "promoted", B, [move("promote", A, B)]),
                  review("T.v1", "promoted", B, [move("promote", None, B), move("rollback", B, None)]),
                  review("U.v1", "promoted", B), review("V.v1", "no_improvement", A, [move("rollback", B, A)])]
    run = "--run 'night 1'\"'\"'s' --reason 'undo night 1'\"'\"'s'"
    assert undo_commands("night 1's", signatures) == [f"overnight rollback -s S.v1 --to {A} {run}",
                                                      f"overnight rollback -s T.v1 --to default {run}",
                                                      f"overnight rollback -s U.v1 {run}"]


def test_a_missed_look_reads_as_one_in_the_history() -> None:
    line = GateLine(kind="look_missed", step=0, verdict="inconclusive", actor=None, message="m")
    assert (line.label, GateLine(kind="stopped", step=0, verdict=None, actor="a", message="").label) == (
        "look missed at", "stopped at")


@pytest.mark.parametrize(("statuses", "says"), [
    ([], None),  # opened and stopped by a person: no gate decision to derive again
    (["agrees"], "re-derived: the gate decision follows from the inputs recorded with it"),
    (["agrees", "agrees"], "re-derived: each of the 2 gate decisions follows from the inputs recorded with it"),
    (["no_inputs", "no_inputs"],
     "not re-derived: its gate decisions were recorded before decisions kept their inputs"),
    (["agrees", "differs", "differs"],
     "re-derived: 1 of 3 gate decisions follow from the inputs recorded with them; 2 DO NOT (marked above)"),
    (["method_changed", "no_inputs", "agrees"],
     "re-derived: 1 of 3 gate decisions follow from the inputs recorded with them; 1 were made by gate methods this "
     "version no longer runs (marked above); 1 were recorded before decisions kept their inputs"),
])
def test_the_canary_says_whether_its_gate_decisions_follow_from_their_inputs(statuses: list[str],
                                                                             says: str | None) -> None:
    history = [GateLine(kind="opened", step=0, verdict=None, actor="a", message="")]
    history += [GateLine(kind="gate_evaluated", step=0, verdict="pass", actor=None, message="",
                         rederived=Rederived(status=status)) for status in statuses]  # type: ignore[arg-type]
    assert canary().model_copy(update={"history": history}).rederived_sentence() == says


def test_a_held_pass_prints_the_promote_command_and_nothing_to_undo() -> None:
    held = review("S.v1", "held", A).model_copy(update={"canary": canary()})
    promoted = review("T.v1", "promoted", B, [move("promote", A, B)])
    assert promote_commands("night-1", [held, promoted]) == [
        f"overnight promote {B} -s S.v1 --run night-1 --reason 'promote what night-1 held'"]
    assert undo_commands("night-1", [held, promoted]) == ["overnight rollback -s T.v1 --to " + A
                                                          + " --run night-1 --reason 'undo night-1'"]
    assert promote_commands("night-1", [review("S.v1", "held", A)]) == []  # no canary: nothing was held
    assert promote_commands("night-1", [held], min_delta=0.1, margin=0) == [
        f"overnight promote {B} -s S.v1 --min-delta 0.1 --holdout-margin 0 --run night-1 --reason 'promote what "
        "night-1 held'"]


def test_once_an_operator_has_answered_the_run_its_commands_are_what_undoes_their_move() -> None:
    """A morning promote of what the run held (`--run`) turns its promote command into the rollback that undoes
    that promote; a rollback of what the run promoted leaves nothing to undo; the sentence says what moved since."""
    held = review("S.v1", "held", A, [move("promote", A, B, after_run=True)]).model_copy(update={"canary": canary()})
    undone = review("T.v1", "promoted", B, [move("promote", A, B), move("rollback", B, A, after_run=True)])
    assert promote_commands("night-1", [held, undone]) == []
    assert undo_commands("night-1", [held, undone]) == [
        f"overnight rollback -s S.v1 --to {A} --run night-1 --reason 'undo night-1'"]
    assert signature_sentence(signature_id="T.v1", decision="promoted", reason="", champion_before=A,
                              champion_after=B, compile=None, canary=None, moves=undone.moves).endswith(
        f"; since the run: a rolled back to {A[:12]}")
