"""The morning review as data: what a run did for each signature, and why each decision was taken.

Built from the run's own records (step events, compile report, canary counters and history, alias moves, e2e)
by `overnight.review.assemble`; rendered by `overnight show` and by the `/review` pages, so the terminal and
the browser say the same thing. Pure: no I/O, no clock. Must not import SQL, HTTP, FastAPI or DSPy.
"""

from __future__ import annotations

import math
import shlex
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from overnight.domain.canary import CanaryConfig, CanaryEntry, CanaryRecord, Rederived, rederive
from overnight.domain.compiling import CompileReport
from overnight.domain.gates import HOLDOUT_MARGIN, MIN_DELTA, clopper_pearson_upper, holdout_bar_options, p95_bound
from overnight.domain.promotion import DEFAULT_TARGET, AliasMove
from overnight.domain.runs import Run, RunEvent
from overnight.domain.stats import PairedDelta

UNDECIDED = ("in_progress", "not_decided")
SERIES_POINTS = 120  # points per arm in a canary chart: enough to see the shape, small enough to inline


class PhaseSpan(BaseModel):
    """One runner step: when it began (from the run's start) and how long it took."""

    scope: str = Field(description="'run' or the signature the step was for")
    phase: str
    offset_ms: int
    duration_ms: int | None = Field(description="None: it started and never finished")
    failed: bool = Field(default=False, description="It raised: its `<phase>.failed` event has the error, and "
                                                    "duration_ms is how long it ran until then")


class CandidateRow(BaseModel):
    compiled_id: str
    instruction: int | None
    demos: int | None
    train_score: float | None
    train_n: int
    holdout_score: float | None
    holdout_n: int
    eliminated_at_rung: int | None
    lm_calls: int
    roles: list[str]


class CompileSection(BaseModel):
    report_id: str
    status: str
    stopped_by: str | None = Field(default=None, description="budget_exhausted: the limit reached, e.g. max_seconds 60")
    cached: bool
    improved: bool
    best_compiled_id: str
    incumbent_compiled_id: str
    dataset_hash: str
    lm_calls: int
    reused: int = Field(description="scores read back from an earlier compile: paid then, not by this one")
    full_grid_lm_calls: int
    tokens: int
    paired_delta: PairedDelta | None
    leakage: list[str]
    candidates: list[CandidateRow]


class ArmRow(BaseModel):
    arm: str
    compiled_id: str
    samples: int
    errors: int
    error_rate: float | None
    error_upper: float | None = Field(description="one-sided Clopper-Pearson upper bound at the canary's alpha")
    labeled: int
    accuracy: float | None
    latency_p95_ms: float | None
    cost_per_call_usd: float | None

    def p95(self) -> str:
        """The table cell: `≤ 10000` (the histogram bucket's upper edge), `-` before any latency."""
        return "-" if self.latency_p95_ms is None else p95_bound(self.latency_p95_ms)


class GateLine(BaseModel):
    """One entry of the canary's history as a sentence: opened, a step advanced, the verdict, stopped."""

    kind: str
    step: int
    verdict: str | None
    actor: str | None
    message: str
    gates: list[dict[str, Any]] = Field(default_factory=list, description="each gate's decision at this point")
    rederived: Rederived | None = Field(default=None, description=(
        "a gate decision run again on the inputs recorded with it: does the record follow from them?"))

    @property
    def label(self) -> str:
        """How the entry starts in the review, before the rollout it happened at."""
        return HISTORY_LABELS.get(self.kind, f"{self.kind} at")


HISTORY_LABELS = {"opened": "opened at", "step_advanced": "advanced to", "look_missed": "look missed at",
                  "gate_evaluated": "verdict at"}


class SeriesPoint(BaseModel):
    n: int = Field(description="the arm's requests so far")
    error_upper: float
    accuracy: float | None


class ArmSeries(BaseModel):
    arm: str
    points: list[SeriesPoint]


class CanarySection(BaseModel):
    canary_id: str
    status: str
    end_reason: str | None
    control_id: str
    candidate_id: str
    steps: list[float]
    targets: list[int]
    max_error_rate: float
    alpha: float
    quality_margin: float | None
    arms: list[ArmRow]
    history: list[GateLine]
    series: list[ArmSeries]
    error_codes: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="failed requests by arm and error code, the most frequent first")

    def rederived_sentence(self) -> str | None:
        """`each of the 3 gate decisions follows from the inputs recorded with it`, or how many do not and why; None
        when the canary made no gate decision."""
        checked: Counter[str] = Counter(entry.rederived.status for entry in self.history if entry.rederived is not None)
        n = checked.total()
        if not n:
            return None
        if checked["agrees"] == n:
            which = "the gate decision follows" if n == 1 else f"each of the {n} gate decisions follows"
            return f"re-derived: {which} from the inputs recorded with it"
        if checked["no_inputs"] == n:
            return "not re-derived: its gate decisions were recorded before decisions kept their inputs"
        said = [f"{checked['agrees']} of {n} gate decisions follow from the inputs recorded with them"]
        for status, why in (("differs", "DO NOT (marked above)"),
                            ("method_changed", "were made by gate methods this version no longer runs (marked above)"),
                            ("no_inputs", "were recorded before decisions kept their inputs")):
            if checked[status]:
                said.append(f"{checked[status]} {why}")
        return "re-derived: " + "; ".join(said)

    def errors_by_code(self) -> str:
        """`candidate: timeout 10, parse_failure 2; control: lm_error 1`, or `none`."""
        return "; ".join(f"{arm}: " + ", ".join(f"{code} {n}" for code, n in codes.items())
                         for arm, codes in self.error_codes.items()) or "none"


class MoveLine(BaseModel):
    id: int
    action: str
    from_id: str | None
    to_id: str | None
    actor: str
    reason: str
    forced: bool
    offset_ms: int
    after_run: bool = False  # made after the run ended, recorded on it: an operator's promote or rollback answering it


class SignatureReview(BaseModel):
    signature_id: str
    decision: str
    reason: str
    champion_before: str | None
    champion_after: str | None
    compile: CompileSection | None
    canary: CanarySection | None
    moves: list[MoveLine]
    e2e: dict[str, Any] | None
    sentence: str


class RunReview(BaseModel):
    run_id: str
    status: str
    actor: str
    commit_sha: str | None
    exit_code: int | None
    verdict: str | None
    started_at: int
    ended_at: int | None
    event_count: int
    truncated: bool
    phases: list[PhaseSpan]
    signatures: list[SignatureReview]
    sentence: str
    undo: list[str] = Field(default_factory=list)  # one command per signature the run promoted, each run as shown
    promote: list[str] = Field(default_factory=list)  # one per signature whose passed canary it held (--no-promote)
    pruned: str | None = None  # what the run's prune step deleted (`overnight run --keep-days`), as a sentence
    holdout_bar: str | None = None  # the bar the run asked of its candidates, when not the default (its options)


def promote_commands(run_id: str, signatures: list[SignatureReview], *, min_delta: float = MIN_DELTA,
                     margin: float = HOLDOUT_MARGIN) -> list[str]:
    """For each signature whose passed canary the run held for a person, and that no one has moved since, the
    `overnight promote` of its candidate, asking the holdout bar the run asked."""
    return [promote_command(sig.signature_id, run_id, candidate=sig.canary.candidate_id, min_delta=min_delta,
                            margin=margin)
            for sig in signatures if sig.decision == "held" and sig.canary is not None
            and not any(m.after_run for m in sig.moves)]


def undo_commands(run_id: str, signatures: list[SignatureReview]) -> list[str]:
    """For each signature the run promoted, the `overnight rollback` that puts back the champion the run replaced;
    once an operator has answered the run (`--run`), what undoes their last move when it was a promote (of what the
    run held), and nothing when it was a rollback (the run's promotion is undone)."""
    commands = []
    for sig in signatures:
        since = [m for m in sig.moves if m.after_run]
        if since:
            if since[-1].action == "promote":
                commands.append(rollback_command(sig.signature_id, run_id, to=since[-1].from_id or DEFAULT_TARGET))
            continue
        if sig.decision != "promoted":
            continue
        promote = next((m for m in sig.moves if m.action == "promote"), None)
        commands.append(rollback_command(sig.signature_id, run_id, to=None if promote is None else
                                         promote.from_id or DEFAULT_TARGET))
    return commands


def rollback_command(signature_id: str, run_id: str, *, to: str | None, base_url: str | None = None) -> str:
    """The `overnight rollback` that undoes `run_id`'s promotion, ready to paste: `--to` the champion it replaced
    (so a later night's promotion does not make "one step back" undo the wrong one), or one step back when that is
    not known (None); through the API at `base_url` when the run went through one (`on_api`). Its `--run` records the
    rollback on the run, whose review then has nothing more to undo."""
    target = "" if to is None else f" --to {to}"
    return on_api(f"overnight rollback -s {shlex.quote(signature_id)}{target} --run {shlex.quote(run_id)} --reason "
                  f"{shlex.quote(f'undo {run_id}')}", base_url)


def promote_command(signature_id: str, run_id: str, *, candidate: str, base_url: str | None = None,
                    min_delta: float = MIN_DELTA, margin: float = HOLDOUT_MARGIN) -> str:
    """The `overnight promote` of the candidate `run_id`'s passed canary held for a person (`overnight run
    --no-promote`), ready to paste: the gates are checked again when it runs (the canary still passed, against the
    champion that still serves; the compile report still current), the holdout's against the bar the run asked; its
    `--run` records the promote on the run, whose review then offers the rollback that undoes it."""
    bar = holdout_bar_options(min_delta, margin)
    return on_api(f"overnight promote {candidate} -s {shlex.quote(signature_id)}{f' {bar}' if bar else ''} --run "
                  f"{shlex.quote(run_id)} --reason {shlex.quote(f'promote what {run_id} held')}", base_url)


def on_api(command: str, base_url: str | None) -> str:
    """An `overnight` command as it is run against the API at `base_url` (None: against the store itself), for a
    reader who has the API and a token but not the store — cron's host running `overnight run --base-url`."""
    return command if base_url is None else f"{command} --base-url {shlex.quote(base_url)}"


# phases ---------------------------------------------------------------------------------------------------

def phase_spans(events: Iterable[RunEvent], *, started_at: int) -> list[PhaseSpan]:
    """Pair each step's `…:started` / `…:finished` (or `…:failed`) events (the runner's fixed client ids), in start
    order."""
    begun: dict[tuple[str, str], int] = {}
    ended: dict[tuple[str, str], int] = {}
    failed: set[tuple[str, str]] = set()
    for event in events:
        scope, _, rest = (event.client_event_id or "").partition(":")
        phase, _, mark = rest.rpartition(":")
        if not scope or not phase or mark not in ("started", "finished", "failed"):
            continue
        (begun if mark == "started" else ended).setdefault((scope, phase), event.ts)
        if mark == "failed":
            failed.add((scope, phase))
    for key, ts in ended.items():
        begun.setdefault(key, ts)  # a step recorded only as finished (preflight) took no measured time
    return [PhaseSpan(scope=scope, phase=phase, offset_ms=ts - started_at,
                      duration_ms=ended[(scope, phase)] - ts if (scope, phase) in ended else None,
                      failed=(scope, phase) in failed)
            for (scope, phase), ts in sorted(begun.items(), key=lambda item: (item[1], item[0]))]


# compile --------------------------------------------------------------------------------------------------

def compile_section(report: CompileReport) -> CompileSection:
    rows = [CandidateRow(
        compiled_id=c.compiled_id, instruction=c.params.get("instruction_index"), demos=c.params.get("demo_count"),
        train_score=c.train_score, train_n=c.train_n, holdout_score=c.holdout_score, holdout_n=c.holdout_n,
        eliminated_at_rung=c.eliminated_at_rung, lm_calls=c.lm_calls,
        roles=[name for name, on in (("best", c.compiled_id == report.best_compiled_id),
                                     ("incumbent", c.is_incumbent), ("default", c.is_default)) if on],
    ) for c in report.candidates]
    rows.sort(key=lambda r: (-_or(r.holdout_score), -_or(r.train_score), r.compiled_id))
    return CompileSection(
        report_id=report.report_id, status=report.status, cached=report.cached, improved=report.improved,
        stopped_by=report.limit_reached(),
        best_compiled_id=report.best_compiled_id, incumbent_compiled_id=report.incumbent_compiled_id,
        dataset_hash=report.dataset_hash, lm_calls=report.lm_calls, reused=report.reused,
        full_grid_lm_calls=report.full_grid_lm_calls,
        tokens=report.tokens, paired_delta=report.paired_delta, leakage=report.leakage, candidates=rows)


def _or(score: float | None) -> float:
    return -1.0 if score is None else score


# canary ---------------------------------------------------------------------------------------------------

def canary_section(canary: CanaryRecord, history: list[CanaryEntry], series: list[ArmSeries],
                   error_codes: dict[str, dict[str, int]] | None = None) -> CanarySection:
    config = canary.config
    arms = []
    for arm, compiled_id in (("control", canary.control_id), ("candidate", canary.candidate_id)):
        counters = canary.arms[arm]
        summary = counters.summary()
        arms.append(ArmRow(
            arm=arm, compiled_id=compiled_id, samples=counters.samples, errors=counters.errors,
            error_rate=summary["error_rate"], labeled=counters.labeled, accuracy=summary["accuracy"],
            error_upper=(clopper_pearson_upper(counters.errors, counters.samples, config.alpha)
                         if counters.samples else None),
            latency_p95_ms=summary["latency_p95_ms"], cost_per_call_usd=summary["cost_per_call_usd"]))
    return CanarySection(
        canary_id=canary.canary_id, status=canary.status, end_reason=canary.end_reason,
        control_id=canary.control_id, candidate_id=canary.candidate_id, steps=list(config.steps),
        targets=list(config.targets), max_error_rate=config.max_error_rate, alpha=config.alpha,
        quality_margin=config.quality_margin, arms=arms, history=[_gate_line(e, config) for e in history],
        series=series, error_codes=error_codes or {})


def _gate_line(entry: CanaryEntry, plan: CanaryConfig) -> GateLine:
    evidence = entry.evidence
    message = str(evidence.get("message") or evidence.get("reason") or "")
    if entry.kind == "opened":
        config = evidence.get("config", {})
        message = (f"steps {'/'.join(f'{s:g}%' for s in config.get('steps', []))}, pass look at "
                   f"{(config.get('targets') or ['?'])[-1]} candidate requests, errors must stay under "
                   f"{config.get('max_error_rate', 0):.1%}")
    return GateLine(kind=entry.kind, step=entry.step, verdict=entry.verdict, actor=entry.actor, message=message,
                    gates=list(evidence.get("gates", [])),
                    rederived=rederive(plan, kind=entry.kind, verdict=entry.verdict, evidence=evidence))


def canary_series(outcomes: Iterable[tuple[str, bool, bool | None]], *, totals: dict[str, int], alpha: float,
                  points: int = SERIES_POINTS) -> list[ArmSeries]:
    """Each arm's error-rate upper bound and accuracy as its requests accumulate, in receipt order, thinned
    to about `points` per arm (the last request is always a point, so the chart ends where the counters do)."""
    counts = {arm: [0, 0, 0, 0] for arm in totals}  # n, errors, labeled, correct
    series: dict[str, list[SeriesPoint]] = {arm: [] for arm in totals}
    stride = {arm: max(1, math.ceil(total / points)) for arm, total in totals.items()}
    for arm, ok, correct in outcomes:
        if arm not in counts:
            continue
        c = counts[arm]
        c[0] += 1
        c[1] += 0 if ok else 1
        c[2] += 0 if correct is None else 1
        c[3] += 1 if correct else 0
        if c[0] % stride[arm] == 0 or c[0] == totals[arm]:
            series[arm].append(SeriesPoint(n=c[0], error_upper=clopper_pearson_upper(c[1], c[0], alpha),
                                           accuracy=c[3] / c[2] if c[2] else None))
    return [ArmSeries(arm=arm, points=found) for arm, found in series.items()]


# alias moves ----------------------------------------------------------------------------------------------

def move_lines(moves: Iterable[AliasMove], run: Run) -> list[MoveLine]:
    """The alias moves recorded on a run, in order: its own, then an operator's that answered it (`--run`)."""
    return [MoveLine(id=m.id, action=m.action, from_id=m.from_id, to_id=m.to_id, actor=m.actor, reason=m.reason,
                     forced=m.forced, offset_ms=m.created_at - run.started_at, after_run=run.ended_before(m.created_at))
            for m in sorted(moves, key=lambda m: m.id) if m.run_id == run.run_id]


class RunList(BaseModel):
    """Recent runs, newest first, and what operators answering them (`--run`) have moved since each ended."""

    runs: list[Run]
    moved_since: dict[str, list[AliasMove]] = Field(default_factory=dict, description=(
        "by run_id, oldest first: the champion moves recorded on a run after it ended (a morning's promote or "
        "rollback answering it, `--run`); a run with none is left out"))

    def moves(self, run: Run, signature_id: str) -> list[AliasMove]:
        """The signature's moves recorded on the run after it ended, oldest first."""
        return [m for m in self.moved_since.get(run.run_id, []) if m.signature_id == signature_id]

    def since(self, run: Run) -> dict[str, str]:
        """Each of the run's signatures: what was moved since the run ended, in words ('' for nothing)."""
        return {sig: said_moves(self.moves(run, sig)) for sig in run.signature_ids}


# sentences ------------------------------------------------------------------------------------------------

NOTHING_BETTER = "compile found nothing better than the champion"  # a no_improvement's reason, most nights


def short(compiled_id: str | None) -> str:
    return compiled_id[:12] if compiled_id else "the default program"


MOVED = {"promote": "promoted", "rollback": "rolled back to", "manual_set": "set the champion to"}


def said_moves(moves: Iterable[AliasMove | MoveLine]) -> str:
    """Moves in order, in words ('' for none): "cli:alice promoted …, then cli:bob rolled back to …"."""
    return ", then ".join(f"{m.actor} {MOVED.get(m.action, m.action)} {short(m.to_id)}" for m in moves)


def moved_since(moves: Iterable[MoveLine]) -> str:
    """What operators answering the run (`--run`) have moved since it ended, in order ('' for nothing)."""
    return said_moves(m for m in moves if m.after_run)


def signature_sentence(*, signature_id: str, decision: str, reason: str, champion_before: str | None,
                       champion_after: str | None, compile: CompileSection | None,
                       canary: CanarySection | None, moves: Iterable[MoveLine] = ()) -> str:
    """Why this signature ended where it did, in one sentence a person can check against the tables; then what an
    operator answering the run has moved since."""
    since = moved_since(moves)
    return _ended(signature_id=signature_id, decision=decision, reason=reason, champion_before=champion_before,
                  champion_after=champion_after, compile=compile, canary=canary) + (
        f"; since the run: {since}" if since else "")


def _ended(*, signature_id: str, decision: str, reason: str, champion_before: str | None,
           champion_after: str | None, compile: CompileSection | None, canary: CanarySection | None) -> str:
    delta = compile.paired_delta if compile else None
    holdout = (f"holdout {delta.delta:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}] over {delta.n} paired examples"
               if delta else "no paired holdout delta")
    if decision == "promoted":
        return (f"{signature_id}: promoted {short(champion_after)} over {short(champion_before)} — {holdout}; "
                f"canary passed: {canary_numbers(canary)}")
    if decision == "held":
        candidate = canary.candidate_id if canary else compile.best_compiled_id if compile else None
        return (f"{signature_id}: held — {holdout}; canary passed: {canary_numbers(canary)}; {short(champion_after)} "
                f"serves until a person promotes {short(candidate)}")
    if decision == "no_improvement" and reason in ("", NOTHING_BETTER):
        best = f" (best {short(compile.best_compiled_id)}, {holdout})" if compile else ""
        return f"{signature_id}: no change — compile found nothing better than {short(champion_before)}{best}"
    if decision == "rolled_back":
        return (f"{signature_id}: rolled back — {reason}; {canary_numbers(canary)}; "
                f"{short(champion_after)} still serves")
    if decision in ("inconclusive", "no_improvement"):  # a no_improvement's other reason: better, not to be tried
        return f"{signature_id}: no change — {reason}; {short(champion_after)} still serves"
    return f"{signature_id}: {decision.replace('_', ' ')} — {reason}"


def canary_numbers(canary: CanarySection | None) -> str:
    """The candidate's errors with their bound against the threshold, and accuracy against control."""
    if canary is None:
        return "no canary"
    arms = {a.arm: a for a in canary.arms}
    cand, ctrl = arms["candidate"], arms["control"]
    bound = "" if cand.error_upper is None else (
        f" (upper bound {cand.error_upper:.3f} {'<' if cand.error_upper < canary.max_error_rate else '>='} "
        f"{canary.max_error_rate:g})")
    accuracy = ("" if cand.accuracy is None or ctrl.accuracy is None
                else f", accuracy {cand.accuracy:.3f} vs control {ctrl.accuracy:.3f}")
    return f"{cand.errors} errors in {cand.samples} candidate requests{bound}{accuracy}"


def run_sentence(run: Run, signatures: list[SignatureReview]) -> str:
    """The closing sentence: what changed, and what operators answering the run (`--run`) have moved since (the
    commands that undo it are `undo_commands`)."""
    if run.status == "running":
        decided = sum(s.decision not in UNDECIDED for s in signatures)
        return f"Run {run.run_id} is still running ({decided} of {len(run.signature_ids)} signatures decided)."
    parts = [_part(s) for s in sorted(signatures, key=lambda s: s.decision != "promoted")]  # promoted first
    if any(s.decision == "promoted" for s in signatures):
        return f"Run {run.run_id} {run.status}: {'; '.join(parts)}."
    said = "; ".join(parts) if parts else str(run.summary.get("verdict") or "no signature was decided")
    nothing = "the run changed nothing" if any(m.after_run for s in signatures for m in s.moves) else "nothing changed"
    return f"Run {run.run_id} {run.status}: {nothing} ({said})."


def _part(sig: SignatureReview) -> str:
    """One signature's part of the closing sentence: what serves after the run, then what was moved since."""
    since = moved_since(sig.moves)
    if sig.decision == "promoted":
        return (f"{sig.signature_id} served {short(sig.champion_after)} until {since}" if since
                else f"{sig.signature_id} now serves {short(sig.champion_after)}")
    return f"{sig.signature_id} {sig.decision.replace('_', ' ')}" + (f", then {since}" if since else "")
