"""`overnight show RUN_ID`: a `RunReview` as text a person reads over coffee (and `overnight compile`'s table).

The header, the timeline of steps with durations, then per signature: the compile table, the paired delta,
the canary per arm, every gate decision as a sentence, the alias moves, the e2e check and the signature's
sentence; last, the run's closing sentence. Deterministic for a given review (golden-tested): rows are sorted,
times are offsets from the run's start. Pure presentation; must not import SQL.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from overnight.domain.compiling import CompileReport
from overnight.domain.review import (
    CanarySection,
    CompileSection,
    PhaseSpan,
    RunReview,
    SignatureReview,
    compile_section,
    short,
)
from overnight.review.terminal import Rows, duration, e2e_line, when

_DECISION_STYLE = {"promoted": "bold green", "held": "bold yellow", "no_improvement": "cyan", "rolled_back": "bold red",
                   "inconclusive": "yellow", "failed": "bold red"}


def review_text(review: RunReview, *, events_below: bool = False) -> RenderableType:
    parts: list[RenderableType] = [_header(review), _timeline(review, events_below=events_below)]
    if review.holdout_bar:
        parts.append(Text(f"holdout bar: {review.holdout_bar}"))
    if review.pruned:
        parts.append(Text(f"prune: {review.pruned}"))
    for sig in review.signatures:
        parts += _signature(sig)
    parts.append(Text(review.sentence, style="bold"))
    for heading, commands in (("to undo:", review.undo), ("to promote what it held:", review.promote)):
        if commands:  # each command whole on its own line (print with crop=False): cut or wrapped, a pasted one fails
            parts.append(Text(heading, style="bold"))
            parts += [Text(f"  {command}", no_wrap=True, overflow="ignore") for command in commands]
    return Group(*parts)


def seconds(ms: int | None) -> str:
    if ms is None:
        return "unfinished"
    return duration(0, ms)


def took(span: PhaseSpan) -> str:
    """A step's duration, or that it never finished, or that it failed after so long (its `.failed` event says
    why)."""
    return f"failed after {seconds(span.duration_ms)}" if span.failed else seconds(span.duration_ms)


def _header(review: RunReview) -> Text:
    exit_code = "" if review.exit_code is None else f" (exit {review.exit_code})"
    return Text.assemble(
        (review.run_id, "bold"), f"  {review.status}{exit_code}  by {review.actor}",
        f"  commit {review.commit_sha}" if review.commit_sha else "", "\n",
        f"started {when(review.started_at)}, took {duration(review.started_at, review.ended_at)}, "
        f"{review.event_count} events{' (truncated)' if review.truncated else ''}",
        f"\nverdict: {review.verdict}" if review.verdict else "",
    )


def _timeline(review: RunReview, *, events_below: bool) -> RenderableType:
    if not review.phases:  # a run driven by hand, or one that stopped before its first step
        where = "below" if events_below else f"overnight show {review.run_id} --events"
        return Text(f"timeline: no runner steps (its events: {where})", no_wrap=True, overflow="ignore")
    table = Rows("timeline", ("for", "step", "began", "took"), right=("began", "took"), title_justify="left")
    for span in review.phases:
        table.add_row(span.scope, span.phase, f"+{seconds(span.offset_ms)}", took(span))
    return table


def _signature(sig: SignatureReview) -> list[RenderableType]:
    parts: list[RenderableType] = [
        Text.assemble("\n", (sig.signature_id, "bold"), ": ",
                      (sig.decision.replace("_", " "), _DECISION_STYLE.get(sig.decision, "")),
                      f"  (champion {short(sig.champion_before)} -> {short(sig.champion_after)})")]
    if sig.compile is not None:
        parts += [compile_candidates(sig.compile), Text(delta_sentence(sig.compile))]
    if sig.canary is not None:
        parts += [canary_arms(sig.canary), *([Text(errors_line(sig.canary))] if sig.canary.error_codes else []),
                  gate_sentences(sig.canary)]
    for move in sig.moves:
        why = "the gates above passed" if move.action == "promote" and not move.forced else move.reason
        parts.append(Text(f"alias move #{move.id} at +{seconds(move.offset_ms)}: {move.action} "
                          f"{short(move.from_id)} -> {short(move.to_id)} by {move.actor}"
                          f"{' (FORCED)' if move.forced else ''}{' (after the run)' if move.after_run else ''}: {why}"))
    if sig.e2e is not None:
        parts.append(Text(e2e_line(sig.e2e)))
    parts.append(Text(sig.sentence))
    return parts


def _score(score: float | None, n: int) -> str:
    return "-" if score is None else f"{score:.3f} (n={n})"


def compile_candidates(section: CompileSection) -> Rows:
    status = f"{section.status}: {section.stopped_by}" if section.stopped_by else section.status
    table = Rows(f"compile {section.report_id} ({status}{', cached' if section.cached else ''}): "
                 f"{len(section.candidates)} candidates, {section.lm_calls} LM calls"
                 f"{f', {section.reused} scores read back from earlier compiles' if section.reused else ''} "
                 f"(full grid {section.full_grid_lm_calls}), dataset {section.dataset_hash[:12]}",
                 ("compiled_id", "instr", "demos", "train", "holdout", "out at rung", "LM calls", "role"),
                 title_justify="left")
    for c in section.candidates:
        table.add_row(c.compiled_id[:12], "-" if c.instruction is None else str(c.instruction),
                      "-" if c.demos is None else str(c.demos), _score(c.train_score, c.train_n),
                      _score(c.holdout_score, c.holdout_n),
                      "-" if c.eliminated_at_rung is None else str(c.eliminated_at_rung), str(c.lm_calls),
                      ", ".join(c.roles))
    return table


def compile_table(report: CompileReport) -> RenderableType:
    """`overnight compile`'s output: the review's candidate table and verdict for one report."""
    section = compile_section(report)
    return Group(compile_candidates(section), Text(f"{delta_sentence(section)}; {report.tokens} tokens"))


def delta_sentence(section: CompileSection) -> str:
    if section.status != "completed":
        return (f"stopped at {section.stopped_by} before candidates were compared on holdout: best so far "
                f"{section.best_compiled_id[:12]} on train, incumbent {section.incumbent_compiled_id[:12]}; run it "
                "again to resume from these scores")
    delta, said = section.paired_delta, "no paired holdout delta"
    if delta is not None:
        picked = f", Bonferroni-adjusted for the best of {delta.compared} finalists" if delta.compared > 1 else ""
        said = (f"paired holdout delta {delta.delta:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}] "
                f"({delta.confidence:.0%} bootstrap{picked}) over {delta.n} examples, {delta.discordant_wins} won / "
                f"{delta.discordant_losses} lost, McNemar p={delta.mcnemar_p:.3g}")
    leak = f"; leakage excluded: {', '.join(section.leakage)}" if section.leakage else ""
    return (f"{'ahead on holdout' if section.improved else 'no improvement'}: best {section.best_compiled_id[:12]} vs "
            f"incumbent {section.incumbent_compiled_id[:12]}: {said}{leak}")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def canary_arms(section: CanarySection) -> Rows:
    table = Rows(f"canary {section.canary_id} {section.status}: steps "
                 f"{'/'.join(f'{s:g}%' for s in section.steps)}, pass look at {section.targets[-1]} "
                 f"candidate requests, errors under {section.max_error_rate:.1%}",
                 ("arm", "compiled_id", "requests", "errors", "error rate", "upper bound", "accuracy", "p95 ms",
                  "cost/call"), title_justify="left")
    for arm in section.arms:
        table.add_row(arm.arm, arm.compiled_id[:12], str(arm.samples), str(arm.errors), _rate(arm.error_rate),
                      _rate(arm.error_upper),
                      "-" if arm.accuracy is None else f"{arm.accuracy:.3f} (n={arm.labeled})",
                      arm.p95(),
                      "-" if arm.cost_per_call_usd is None else f"${arm.cost_per_call_usd:.6f}")
    return table


def errors_line(section: CanarySection, *, where: bool = False) -> str:
    """`errors by code: candidate: timeout 10, parse_failure 2`; with `where`, how to list each failed request."""
    listed = f" (each: GET /api/v1/receipts?canary={section.canary_id}&ok=false)" if where and section.error_codes \
        else ""
    return f"errors by code: {section.errors_by_code()}{listed}"


def gate_sentences(section: CanarySection) -> Text:
    """Each history entry as a line, then the gates it evaluated (the combined verdict is not repeated)."""
    lines = []
    for entry in section.history:
        rollout = section.steps[min(entry.step, len(section.steps) - 1)]
        verdict = f" {entry.verdict}" if entry.verdict else ""
        by = f" by {entry.actor}" if entry.actor else ""
        gates = [g for g in entry.gates if g.get("message") != entry.message]
        said = "" if gates else f": {entry.message}"
        if entry.kind == "promoted":
            said = ": the champion moved (the alias move below)"
        lines.append(f"  {entry.label} {rollout:g}% (step {entry.step}){verdict}{by}{said}")
        lines += [f"    - {g.get('reason_code')}: {g.get('verdict')} — {g.get('message')}" for g in gates]
        if entry.rederived is not None and entry.rederived.status in ("differs", "method_changed"):
            lines.append(f"    ! re-derived: {entry.rederived.status.replace('_', ' ')} — {entry.rederived.detail}")
    if (rederived := section.rederived_sentence()) is not None:
        lines.append(f"  {rederived}")
    return Text("gates:\n" + "\n".join(lines))
