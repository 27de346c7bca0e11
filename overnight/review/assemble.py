"""Reads one run's records from the store and builds its `RunReview`; also a signature's overview page, and what
serves each signature now (`overnight status`).

The decision for a signature comes from the run's summary when the run finished, otherwise from its step
events (so a running or crashed run is reviewable too). Reads only; never writes. Must not import SQL,
FastAPI or HTTP.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, computed_field

from overnight.domain.canary import CanaryRecord
from overnight.domain.compiling import CompileReport
from overnight.domain.gates import HOLDOUT_MARGIN, MIN_DELTA, holdout_bar_options
from overnight.domain.promotion import AliasMove
from overnight.domain.receipts import PruneResult
from overnight.domain.review import (
    NOTHING_BETTER,
    ArmSeries,
    CanarySection,
    CompileSection,
    RunList,
    RunReview,
    SignatureReview,
    canary_section,
    canary_series,
    compile_section,
    move_lines,
    phase_spans,
    promote_commands,
    run_sentence,
    said_moves,
    signature_sentence,
    undo_commands,
)
from overnight.domain.runs import Run, RunEvent
from overnight.errors import ArtifactNotFound, NotFound
from overnight.review.terminal import when
from overnight.store import Store

PAGE = 1000
SERIES_RECEIPTS = 50_000  # receipts read for a canary chart; past this the chart stops, the counters don't


def run_review(store: Store, run_id: str) -> RunReview:
    run = store.get_run(run_id=run_id)
    steps = _step_events(store, run_id)
    signatures = [_signature(store, run, sig, steps) for sig in run.signature_ids]
    summary = run.summary
    pruned = next((PruneResult.model_validate(e.data) for e in steps if e.client_event_id == "run:prune:finished"),
                  None)
    started = next((e.data for e in steps if e.client_event_id == "run:preflight:finished"), {})
    min_delta, margin = started.get("min_delta", MIN_DELTA), started.get("holdout_margin", HOLDOUT_MARGIN)
    return RunReview(
        run_id=run.run_id, status=run.status.value, actor=run.actor, commit_sha=run.commit_sha,
        exit_code=summary.get("exit_code"), verdict=summary.get("verdict"), started_at=run.started_at,
        ended_at=run.ended_at, event_count=run.event_count, truncated=run.truncated,
        phases=phase_spans(steps, started_at=run.started_at), signatures=signatures,
        sentence=run_sentence(run, signatures), undo=undo_commands(run.run_id, signatures),
        promote=promote_commands(run.run_id, signatures, min_delta=min_delta, margin=margin),
        pruned=None if pruned is None else pruned.sentence(),
        holdout_bar=holdout_bar_options(min_delta, margin) or None)


def run_list(store: Store, *, limit: int, status: str | None = None, signature_id: str | None = None,
             since: int | None = None) -> RunList:
    """Recent runs, newest first (`Store.list_runs`' filters), with what operators answering them have moved since
    each ended: one more read for all of them."""
    runs = store.list_runs(limit=limit, status=status, signature_id=signature_id, since=since)
    by_id = {run.run_id: run for run in runs}
    moved: dict[str, list[AliasMove]] = {}
    for move in store.moves_on_runs(run_ids=list(by_id)):
        if move.run_id is not None and by_id[move.run_id].ended_before(move.created_at):
            moved.setdefault(move.run_id, []).append(move)
    return RunList(runs=runs, moved_since=moved)


def _step_events(store: Store, run_id: str) -> list[RunEvent]:
    found: list[RunEvent] = []
    while batch := store.list_events(run_id=run_id, after_seq=found[-1].seq if found else 0, limit=PAGE,
                                     kinds_ending=(".started", ".finished", ".failed")):
        found.extend(batch)
    return found


def _signature(store: Store, run: Run, sig: str, steps: list[RunEvent]) -> SignatureReview:
    prefix, suffix = f"{sig}:", ":finished"
    done = {e.client_event_id[len(prefix):-len(suffix)]: e.data for e in steps
            if e.client_event_id and e.client_event_id.startswith(prefix) and e.client_event_id.endswith(suffix)}
    result: dict[str, Any] = run.summary.get("signatures", {}).get(sig) or {}
    compiled = done.get("compile", {})
    report_id = result.get("report_id") or compiled.get("report_id")
    canary_id = result.get("canary_id") or done.get("canary.start", {}).get("canary_id")
    decision, reason = _decision(run, result, done)
    compile = _compile(store, report_id)
    canary = _canary(store, canary_id)
    champion_before = result.get("champion_before") or compiled.get("incumbent_compiled_id")
    champion_after = result.get("champion_after") or done.get("decide", {}).get("champion_after")
    moves = move_lines(store.alias_history(signature_id=sig, run_id=run.run_id), run)
    return SignatureReview(
        signature_id=sig, decision=decision, reason=reason, champion_before=champion_before,
        champion_after=champion_after, compile=compile, canary=canary, moves=moves,
        e2e=result.get("e2e") or done.get("e2e"),
        sentence=signature_sentence(signature_id=sig, decision=decision, reason=reason,
                                    champion_before=champion_before, champion_after=champion_after,
                                    compile=compile, canary=canary, moves=moves))


def _decision(run: Run, result: dict[str, Any], done: dict[str, dict[str, Any]]) -> tuple[str, str]:
    if result.get("decision"):
        return str(result["decision"]), str(result.get("reason", ""))
    if "decide" in done:
        return str(done["decide"]["decision"]), str(done["decide"].get("reason", ""))
    held = done.get("canary.start", {})
    if held.get("decision"):  # no canary: the runner recorded why on the skipped step
        return str(held["decision"]), str(held.get("reason", ""))
    if held.get("skipped") == "no_improvement":  # recorded by a runner from before that
        return "no_improvement", NOTHING_BETTER
    if run.status == "running":
        return "in_progress", f"last finished step: {next(reversed(done), 'none')}"
    return "not_decided", f"the run ended {run.status} ({run.summary.get('verdict', 'no summary')})"


def _compile(store: Store, report_id: str | None) -> CompileSection | None:
    report = _maybe(lambda: store.get_compile_report(report_id=report_id)) if report_id else None
    return compile_section(report) if isinstance(report, CompileReport) else None


def _canary(store: Store, canary_id: str | None) -> CanarySection | None:
    canary = _maybe(lambda: store.get_canary(canary_id=canary_id)) if canary_id else None
    if not isinstance(canary, CanaryRecord):
        return None
    return canary_section(canary, store.canary_history(canary_id=canary.canary_id), _series(store, canary),
                          store.canary_error_codes(canary_id=canary.canary_id))


def _series(store: Store, canary: CanaryRecord) -> list[ArmSeries]:
    outcomes = store.canary_outcomes(canary_id=canary.canary_id, limit=SERIES_RECEIPTS)
    totals = {arm: canary.arms[arm].samples for arm in ("control", "candidate")}
    return canary_series(outcomes, totals=totals, alpha=canary.config.alpha)


def _maybe(read: Any) -> Any:
    """A linked record that is gone (or never written, for a crashed run) leaves its section empty."""
    try:
        return read()
    except NotFound:
        return None


class SignatureOverview(BaseModel):
    """The signature page: who serves now, how it got there, and what the last compiles found."""

    signature_id: str
    champion_id: str | None
    moves: list[AliasMove]
    reports: list[CompileSection]
    runs: RunList
    canary: CanarySection | None


def signature_overview(store: Store, sig: str, *, moves: int = 50, reports: int = 10) -> SignatureOverview:
    latest = store.find_canary(signature_id=sig)
    return SignatureOverview(
        signature_id=sig, champion_id=store.champion(signature_id=sig),
        moves=list(reversed(store.alias_history(signature_id=sig, limit=moves))),  # newest first
        reports=[compile_section(r) for r in store.list_compile_reports(signature_id=sig, limit=reports)],
        runs=run_list(store, limit=10, signature_id=sig),
        canary=_canary(store, latest.canary_id) if latest else None)


class CanaryBrief(BaseModel):
    """A signature's latest canary in a line: `overnight status`."""

    canary_id: str
    status: str
    rollout_pct: float
    candidate_id: str
    candidate_samples: int
    next_target: int | None = Field(description="candidate requests at its next look (active canaries)")
    end_reason: str | None


class RunBrief(BaseModel):
    run_id: str
    status: str
    decision: str | None = Field(description="this signature's, from the run's summary; None until decided")
    moved_since: list[AliasMove] = Field(default_factory=list, description=(
        "this signature's champion moves recorded on the run after it ended (a morning's promote or rollback "
        "answering it, `--run`), oldest first"))


class SignatureStatus(BaseModel):
    """What serves a signature now, and what last changed it."""

    signature_id: str
    last_move: AliasMove | None = Field(description="the champion's last move; None: it never moved")
    canary: CanaryBrief | None = Field(description="the active canary, else the last one")
    last_run: RunBrief | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def champion_id(self) -> str | None:
        """Where the last move went (the alias and its history change in one transaction); None: the default."""
        return self.last_move.to_id if self.last_move else None

    # The cells of `overnight status` and of the review's front page, worded once.
    def champion_words(self) -> str:
        return self.champion_id[:12] if self.champion_id else "default program"

    def since_words(self) -> str:
        return when(self.last_move.created_at) if self.last_move else "-"

    def move_words(self) -> str:
        move = self.last_move
        return "-" if move is None else f"{move.action} by {move.actor}" + (f" ({move.run_id})" if move.run_id else "")

    def canary_words(self) -> str:
        canary = self.canary
        if canary is None:
            return "none"
        if canary.status != "active":
            return f"none active (last {canary.canary_id}: {canary.status})"
        return (f"{canary.canary_id} active at {canary.rollout_pct:g}%: {canary.candidate_samples}/"
                f"{canary.next_target} candidate requests to its next look")

    def run_words(self) -> str:
        run = self.last_run
        if run is None:
            return "-"
        since = said_moves(run.moved_since)
        return f"{run.run_id} {run.status}" + (f": {run.decision}" if run.decision else "") + (
            f", then {since}" if since else "")


def signature_status(store: Store, sig: str) -> SignatureStatus:
    # One read for the champion and its "since" (`champion_id` is the last move's target): a move made meanwhile
    # cannot pair one champion with another's move.
    moves = store.alias_history(signature_id=sig, limit=1)
    canary = store.find_canary(signature_id=sig)
    listed = run_list(store, limit=1, signature_id=sig)
    return SignatureStatus(
        signature_id=sig, last_move=moves[-1] if moves else None,
        canary=None if canary is None else CanaryBrief(
            canary_id=canary.canary_id, status=canary.status, rollout_pct=canary.rollout_pct,
            candidate_id=canary.candidate_id, candidate_samples=canary.arms["candidate"].samples,
            next_target=canary.config.targets[canary.step] if canary.status == "active" else None,
            end_reason=canary.end_reason),
        last_run=next((RunBrief(run_id=run.run_id, status=run.status.value, decision=run.decisions().get(sig),
                                moved_since=listed.moves(run, sig)) for run in listed.runs), None))


class ServingStatus(BaseModel):
    """Every registered signature's `SignatureStatus`: `overnight status --json` and `GET /api/v1/status`."""

    signatures: list[SignatureStatus]


def serving_status(store: Store, signature_ids: list[str]) -> ServingStatus:
    return ServingStatus(signatures=[signature_status(store, sig) for sig in signature_ids])


def default_beside(store: Store, compiled_id: str) -> str:
    """The default program (first instructions, no demos) of the newest compile report that names `compiled_id`:
    what that program was compiled and measured against (`overnight diff default ID`)."""
    signature_id = store.get_artifact(compiled_id=compiled_id).signature_id
    for report in store.list_compile_reports(signature_id=signature_id):
        if any(c.compiled_id == compiled_id for c in report.candidates):
            default = next((c.compiled_id for c in report.candidates if c.is_default), None)
            if default is not None:
                return str(default)
    raise ArtifactNotFound(f"no compile report of {signature_id} names {compiled_id[:12]}, so no default program was "
                           "compiled beside it: give the default's compiled_id (`overnight show RUN_ID` lists it in "
                           "the compile table, role default)")
