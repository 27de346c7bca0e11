"""Terminal rendering for `overnight runs`, `overnight show`, `overnight status` and the compile command.

Pure presentation: takes domain models, returns Rich renderables or plain dicts. Must not import SQL.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from overnight.domain.runs import Run, RunEvent

if TYPE_CHECKING:
    from overnight.domain.review import RunList
    from overnight.review.assemble import SignatureStatus

_STATUS_STYLE = {"running": "cyan", "succeeded": "green", "failed": "red", "cancelled": "yellow",
                 "abandoned": "magenta"}


_NO_LIMIT = 100_000  # columns: room for any table's every cell at its full width


class Rows:
    """Rows under column names, shown as a table when the terminal has room for every cell, else as one record per
    row: its first cell on a line, then a `column  value` line for each other cell that has one. An 80-column
    terminal (an SSH session's default, a split pane) cut a too-wide table's cells to "contr…", "(n=3…" and
    "night-20…": the numbers and ids a reviewer came for. Piped output is wide (the CLI's console).

    Room for every cell: each at its full width, except the one `wrap` column (prose, such as an event's message),
    which may wrap between its words; the others never wrap."""

    def __init__(self, title: str, columns: Sequence[str], *, right: Collection[str] = (), wrap: str | None = None,
                 title_justify: Literal["left", "center"] = "center") -> None:
        if wrap is not None and wrap not in columns:
            raise ValueError(f"wrap={wrap!r} is not one of the columns ({', '.join(columns)})")
        self.title, self.columns, self.right, self.wrap = title, tuple(columns), right, wrap
        self.title_justify = title_justify
        self.rows: list[tuple[str | Text, ...]] = []

    def add_row(self, *cells: str | Text) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns ({', '.join(self.columns)})")
        self.rows.append(cells)

    def table(self) -> Table:
        table = Table(title=self.title, title_justify=self.title_justify, expand=False)
        for column in self.columns:
            table.add_column(column, justify="right" if column in self.right else "left",
                             no_wrap=column != self.wrap)
        for row in self.rows:
            table.add_row(*row)
        return table

    def records(self) -> Group:
        parts: list[RenderableType] = [Text(self.title, style="table.title")]
        for first, *rest in self.rows:
            fields = Table.grid(padding=(0, 2))
            fields.add_column(no_wrap=True)
            fields.add_column(overflow="fold")
            for column, cell in zip(self.columns[1:], rest, strict=True):
                if str(cell):
                    fields.add_row(column, cell)
            heading = Text(first, style="bold") if isinstance(first, str) else first
            parts += [heading, Padding(fields, (0, 0, 0, 2), expand=False)]
        return Group(*parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self.table()
        unbounded = options.update_width(_NO_LIMIT)  # a table measured within the width is made to fit it
        needed = Measurement.get(console, unbounded, table).maximum - self._slack(console, unbounded)
        yield table if needed <= options.max_width else self.records()

    def _slack(self, console: Console, options: ConsoleOptions) -> int:
        """How much narrower the `wrap` column can be than its widest cell without cutting a word; rich narrows
        only that column (the others do not wrap) before it would cut any."""
        if self.wrap is None:
            return 0
        at = self.columns.index(self.wrap)
        sizes = [Measurement.get(console, options, Text(cell) if isinstance(cell, str) else cell)
                 for cell in (self.wrap, *(row[at] for row in self.rows))]
        return max(m.maximum for m in sizes) - max(m.minimum for m in sizes)


def when(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(start: int, end: int | None) -> str:
    """Under a minute to the tenth of a second (as a step's time is said), else to the nearest second."""
    if end is None:
        return "running"
    tenths = round(max(0, end - start) / 100)
    if tenths < 600:
        return f"{tenths / 10:.1f}s"
    hours, rest = divmod(round(tenths / 10), 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


def verdicts(run: Run, since: Mapping[str, str]) -> str:
    """Each signature's decision, then what was moved since the run ended (`RunList.since`), if anything."""
    why = run.undecided_because()
    return "; ".join(f"{sig}: {decision or '-'}" + (f", then {since[sig]}" if since.get(sig) else "")
                     for sig, decision in run.decisions().items()) + (f" ({why})" if why else "")


def runs_table(listed: RunList) -> Rows:
    table = Rows("recent runs", ("run", "status", "exit", "started", "duration", "verdict per signature", "actor",
                                 "events"), wrap="verdict per signature")
    for run in listed.runs:
        exit_code = run.summary.get("exit_code")
        table.add_row(run.run_id, Text(run.status.value, style=_STATUS_STYLE.get(run.status.value, "")),
                      "-" if exit_code is None else str(exit_code), when(run.started_at),
                      duration(run.started_at, run.ended_at), verdicts(run, listed.since(run)), run.actor,
                      str(run.event_count))
    return table


def runs_document(listed: RunList) -> list[dict[str, Any]]:
    """The `runs --json` rows: the table's columns (what was moved since as the moves), plus the whole run record."""
    return [{"run_id": r.run_id, "status": r.status.value, "exit_code": r.summary.get("exit_code"),
             "started_at": r.started_at, "ended_at": r.ended_at,
             "decisions": r.decisions(),
             "moved_since": [m.model_dump(mode="json") for m in listed.moved_since.get(r.run_id, [])],
             "run": r.model_dump(mode="json")} for r in listed.runs]


def run_timeline(run: Run, events: list[RunEvent]) -> RenderableType:
    header = Text.assemble(
        (run.run_id, "bold"), "  ", (run.status.value, _STATUS_STYLE.get(run.status.value, "")),
        f"  by {run.actor}  for {', '.join(run.signature_ids)}\n",
        f"started {when(run.started_at)}  ended {when(run.ended_at)}  ({duration(run.started_at, run.ended_at)})",
        f"  commit {run.commit_sha}" if run.commit_sha else "",
    )
    table = Rows(f"timeline ({len(events)} events)", ("seq", "+time", "phase", "kind", "level", "message"),
                 wrap="message")
    for event in events:
        table.add_row(str(event.seq), f"+{(event.ts - run.started_at) / 1000:.1f}s", event.phase, event.kind,
                      event.level, event.message)
    return Group(header, table)


def e2e_line(e2e: dict[str, Any]) -> str:
    """`e2e: ok — 5 requests served by 7bedaebd3fa9` and what `e2e_words` adds."""
    return f"e2e: {'ok' if e2e.get('ok') else 'FAILED'} — {e2e_words(e2e)}"


def e2e_words(e2e: dict[str, Any]) -> str:
    """`5 requests served by 7bedaebd3fa9`, and the LM failures it saw or the problem that failed it, and the
    requests another canary's candidate took, which it did not judge (the terminal's and the review page's words)."""
    served = ", ".join(s[:12] for s in e2e.get("served", [])) or "nothing"
    words = f"{e2e.get('requests')} requests served by {served}"
    if e2e.get("problem"):
        words += f": {e2e['problem']}"
    elif e2e.get("lm_failures"):
        words += "; the LM failed " + "; ".join(e2e["lm_failures"])
    return words + "".join(f"; {n} more went to canary {canary}'s candidate (not this run's)"
                           for canary, n in e2e.get("elsewhere", {}).items())


def _evidence(result: Any) -> list[str]:
    """What a signature's night left to look up: only the steps it reached, then the champion it ended with."""
    found = []
    if result.dataset_hash:
        found.append(f"dataset {result.dataset_hash[:12]}")
    if result.report_id:
        found.append(f"compile report {result.report_id}")
    if result.canary_id and result.canary_status is None:  # the night stopped before its traffic step finished
        found.append(f"canary {result.canary_id}")
    elif result.canary_id:
        sent = (f"{result.requests_on_arms} requests on its arms, {result.requests_before} before this runner "
                f"carried it on, {result.requests_sent} sent since" if result.requests_before
                else f"{result.requests_on_arms} of {result.requests_sent} requests sent on its arms")
        found.append(f"canary {result.canary_id} ({result.canary_status}, {sent})")
    elif result.report_id:
        found.append("no canary")
    return [*found, f"champion {(result.champion_after or 'default')[:12]}"]


def summary_text(summary: Any) -> str:
    """The runner's closing summary as a few plain lines (the JSON form is `--json`)."""
    lines = [f"run {summary.run_id or '(none)'}: {summary.status}, exit {summary.exit_code}: {summary.verdict}"]
    for sig, result in summary.signatures.items():
        lines.append(f"  {sig}: {result.decision} — {result.reason}")
        lines.append("    " + ", ".join(_evidence(result)))
        if result.e2e is not None:
            lines.append(f"    {e2e_line(result.e2e)}")
    if summary.pruned:
        lines.append(f"  prune: {summary.pruned.sentence()}")
    if summary.review:
        lines.append(f"review it: {summary.review}")
    if summary.undo:
        lines += ["to undo:", *(f"  {command}" for command in summary.undo)]
    if summary.promote:
        lines += ["to promote what it held:", *(f"  {command}" for command in summary.promote)]
    return "\n".join(lines)


def status_table(rows: list[SignatureStatus]) -> Rows:
    """`overnight status`: one row per signature (`SignatureStatus`): what serves it, since which move, its canary,
    its last run."""
    table = Rows("what serves now", ("signature", "champion", "since", "last move", "canary", "last run"))
    for row in rows:
        table.add_row(row.signature_id, row.champion_words(), row.since_words(), row.move_words(), row.canary_words(),
                      row.run_words())
    return table
