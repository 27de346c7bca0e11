"""The `overnight` command: Typer commands that parse, call one function, and print.

Errors become `code: message` on stderr and a documented exit code (runbook.md), never a traceback:
2 for usage and configuration errors, 1 for everything else. Must not import SQL.
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import Progress

from overnight.config import Settings, load_settings
from overnight.domain.datasets import ImportResult, RowProblem
from overnight.domain.gates import (
    ALPHA,
    EXPECTED_ERROR_RATE,
    HOLDOUT_MARGIN,
    MAX_ERROR_RATE,
    MIN_DELTA,
    POWER,
    RUNNER_STEPS,
    SRM_THRESHOLD_P,
    steps_said,
)
from overnight.domain.runs import Run, RunEvent, RunStatus
from overnight.errors import (
    ArtifactNotFound,
    ConfigError,
    OvernightError,
    RunNotFound,
    StoreUnavailable,
)
from overnight.logging import configure_logging, get_logger
from overnight.review.terminal import (
    run_timeline,
    runs_document,
    runs_table,
    summary_text,
    when,
)

if TYPE_CHECKING:
    from overnight.domain.compiling import Artifact, CompileReport
    from overnight.domain.review import RunList

PIPED_WIDTH = 160
app = typer.Typer(no_args_is_help=True, add_completion=False, help="Improve DSPy programs overnight, safely.")
db_app = typer.Typer(no_args_is_help=True,
                     help="The store: its schema (`db upgrade`), backups (`db backup`) and retention (`db prune`).")
runs_app = typer.Typer(help="Recent runs (a table), or `runs tail`.")
lm_app = typer.Typer(no_args_is_help=True, help="The LM backend.")
canary_app = typer.Typer(help="A signature's canary as it is now (arms, gates), or `canary stop`.")
app.add_typer(db_app, name="db")
app.add_typer(lm_app, name="lm")
app.add_typer(runs_app, name="runs")
app.add_typer(canary_app, name="canary")


class _Answer(Console):
    """stdout. When its reader goes away (`overnight show … | head`), rich ends the command with exit 1, the code
    for a failure, to a `pipefail` shell or an agent; it ends as SIGPIPE ends `cat` instead: silently, 141 (Python
    ignores SIGPIPE itself, or a closed socket would kill a client mid-retry)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is left buffered goes nowhere
        raise SystemExit(EXIT_SIGPIPE)


# Piped (an agent reading it, a cron log), rich would assume 80 columns and cut the review's table cells short
# ("candi…", "$0.0…"): give it room unless COLUMNS says how wide to be.
out = _Answer(width=None if (sys.stdout and sys.stdout.isatty()) or os.environ.get("COLUMNS") else PIPED_WIDTH,
              highlight=False)  # no stdout at all (fd 1 closed): rich writes nowhere
err = Console(stderr=True, soft_wrap=True, highlight=False)  # one error, one line: agents parse `code: message`

# `--base-url` on the commands a host with a token and not the store runs (cron's beside replicated servers, a
# laptop on a newer version than the servers' schema): reading through the API, or acting through it.
READERS, ADMINS = ("admin", "read"), ("admin",)  # the token roles that may read, and act, through the API
ReadThrough = Annotated[str | None, typer.Option(
    "--base-url", help="Read it from this API (a read token) instead of the store at OVERNIGHT_DB_URL")]
ActThrough = Annotated[str | None, typer.Option(
    "--base-url", help="Through this API (an admin token, whose name is recorded as the actor) instead of the store "
                       "at OVERNIGHT_DB_URL")]
# The holdout gate's bar, asked by a night (`run`, which opens no canary for a candidate below it) and by a promote.
MinDeltaOption = Annotated[float, typer.Option(
    min=-1, max=1, help="The holdout gate: promote only a candidate whose paired holdout delta is at least this "
                        "(a run opens no canary for one below it)")]
HoldoutMarginOption = Annotated[float, typer.Option(
    min=0, max=1, help="... and whose delta's lower bound is at least minus this (0: the holdout must rule out "
                       "worse)")]
# The run an operator's promote or rollback answers (the night that held a candidate, or whose promotion it undoes):
# recorded with the move, so that run's review shows it.
OfRun = Annotated[str | None, typer.Option(
    "--run", help="The run this move answers (the night that held the candidate, or whose promotion it undoes): "
                  "its review shows the move")]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNFINISHED = 4  # as `overnight run`'s inconclusive: nothing wrong, nothing decided (a compile's budget ran out)
RUN_STEPS = ",".join(f"{step:g}" for step in RUNNER_STEPS)  # `overnight run`'s --steps, and `overnight plan`'s
EXIT_SIGPIPE = 128 + 13  # stdout's reader went away (`overnight show | head`): what a shell's pipefail sees of `cat`


@contextmanager
def _errors_as_exit_codes(*, as_json: bool = False) -> Iterator[None]:
    """An OvernightError as its code and sentence on stderr, exit 1 (2 for configuration); with `as_json`, also as
    the API's error object on stdout (`ok`, `code`, `error`, `details`), so an agent reads the evidence a refusal
    carries (a refused promotion's gates) from the stream it parses."""
    try:
        yield
    except OvernightError as exc:
        # A store outage worth retrying is worded for this reader: this process opened the store, so there is no
        # server log to see, and the driver's sentence is here. Any other error's message says what to do.
        outage = exc.outage if isinstance(exc, StoreUnavailable) else None
        message = (f"{outage}; check OVERNIGHT_DB_URL and that the database is up, then retry" if outage
                   else exc.message)
        if as_json:
            out.print(json.dumps({"ok": False, "code": exc.code, "error": message, "details": exc.details or None}),
                      markup=False, soft_wrap=True)  # one line: `runs tail --json` prints lines
        err.print(f"{exc.code}: {message}", markup=False)
        if outage and (driver := getattr(exc.__cause__, "orig", None)) is not None:
            said = (str(driver).strip().splitlines() or [type(driver).__name__])[0]
            err.print(f"  the database said: {said}", markup=False)
        if exc.details.get("problem_count", 0) > 1:  # the first is in the sentence; then each, one a line
            for problem in exc.details.get("errors", [])[:20]:
                err.print(f"  {RowProblem.model_validate(problem).sentence()}", markup=False)
        raise typer.Exit(EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED) from None


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(fmt=settings.log_format, level="warning", secrets=settings.secret_values())  # masked too
    return settings


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default OVERNIGHT_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default OVERNIGHT_PORT)")] = None,
) -> None:
    """Run the admin API (uvicorn). Migrates the store first."""
    import uvicorn  # noqa: PLC0415 - only this command needs the server

    from overnight.api.app import create_app  # noqa: PLC0415
    from overnight.api.auth import TokenRegistry  # noqa: PLC0415
    from overnight.lm.backends import backend_at_start  # noqa: PLC0415
    from overnight.registry import Registry  # noqa: PLC0415
    from overnight.store import build_store  # noqa: PLC0415

    with _errors_as_exit_codes():
        settings = _settings()
        configure_logging(fmt=settings.log_format, level=settings.log_level, secrets=settings.secret_values())
        tokens = TokenRegistry.from_spec(settings.tokens.get_secret_value(), dev=settings.dev)  # before any I/O
        registry = Registry()
        registry.ids()  # a broken signature module stops the start before the store is touched
        backend, lm_problem = backend_at_start(settings)  # an unusable OVERNIGHT_LM stops the start here too
        if lm_problem:
            get_logger("overnight.serve").warning("lm_unavailable", problem=lm_problem,
                                                  consequence="predicts answer config_error until it is fixed; "
                                                              "the admin API and the review pages are served")
        address = (host or settings.host, port if port is not None else settings.port)
        listening = _bound(*address)  # before the store is migrated or a run expired: a taken port changes nothing
        store = build_store(settings)
        for run_id in store.expire_runs(actor="overnight-serve"):
            get_logger("overnight.serve").warning("run_expired", run_id=run_id,
                                                  reason="lease lapsed: finished failed, its canaries stopped")
        api = create_app(settings, store, tokens=tokens, registry=registry, backend=backend)
        config = uvicorn.Config(api, host=address[0], port=address[1], log_config=None, access_log=False,
                                timeout_graceful_shutdown=5)
        url = f"http://{address[0]}:{listening.getsockname()[1]}"  # the port the OS gave, for --port 0
        get_logger("overnight.serve").info("listening", url=url, review=f"{url}/review")
        uvicorn.Server(config).run(sockets=[listening])


def _bound(host: str, port: int) -> socket.socket:
    """The server's socket, bound as uvicorn binds it. Left to uvicorn, a taken address ended `serve` with exit 3
    (the runner's "rolled back") after the store was migrated and stale runs expired."""
    # IPPROTO_TCP, as uvicorn's own binding has it: the event loop turns Nagle off only on a socket that says it
    # is TCP, and with Nagle on every answer on a kept-alive connection waited ~40 ms for the delayed ACK
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        taken = " (another overnight serve, or another program, has it): stop it, or choose another with --port " \
                "or OVERNIGHT_PORT" if exc.errno == errno.EADDRINUSE else ": check --host/--port or OVERNIGHT_HOST/PORT"
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{taken}") from None
    sock.set_inheritable(True)
    return sock


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to OVERNIGHT_DB_URL and print the revision."""
    from overnight.store import engine_for  # noqa: PLC0415
    from overnight.store.migrate import SchemaState, head_revision, upgrade  # noqa: PLC0415

    with _errors_as_exit_codes():
        engine = engine_for(_settings())
        revision = upgrade(engine)
        said = f"store {engine.dialect.name} at schema revision {revision}"
        if SchemaState(revision).newer:
            said += (f", newer than this version's {head_revision()}; a newer overnight upgraded it and said code of "
                     "this version may serve it: nothing to apply")
        out.print(said, markup=False, soft_wrap=True)


@db_app.command("backup")
def db_backup(
    path: Annotated[Path, typer.Argument(help="A new file for the copy (never overwritten)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Copy the SQLite store to a new file, consistently, while servers write to it.

    The copy holds whole transactions only, is checked with SQLite's integrity_check before it is given its name,
    and is a store every command can read (OVERNIGHT_DB_URL=sqlite:///PATH). For PostgreSQL, use pg_dump."""
    from overnight.store.backup import backup_sqlite  # noqa: PLC0415

    with _errors_as_exit_codes(as_json=as_json):
        result = backup_sqlite(_settings(), path)
        if as_json:
            out.print_json(result.model_dump_json())
        else:
            out.print(result.sentence(), markup=False, soft_wrap=True)


@db_app.command("prune")
def db_prune(
    keep_days: Annotated[int, typer.Option(help="Keep this many days (at least 1); older rows are deleted")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Delete what grows with traffic and is older than --keep-days; never the record.

    Deletes receipts served outside any canary and idempotency keys, in small transactions (a server may keep
    serving). Canary receipts, runs, events, alias and canary history, artifacts, compile reports and datasets are
    the record: never pruned."""
    from overnight.domain.receipts import PruneRequest  # noqa: PLC0415

    request = _request(PruneRequest, keep_days=keep_days, dry_run=dry_run)

    def work(store: Any) -> None:
        result = store.prune(keep_days=request.keep_days, dry_run=request.dry_run)
        if as_json:
            out.print_json(result.model_dump_json())
            return
        out.print(f"{result.sentence()} (created before {when(result.cutoff)})", markup=False, soft_wrap=True)

    _with_store(work, existing=True, read_only=dry_run, as_json=as_json)  # a dry run counts: the schema stays too


def _with_store(work: Callable[[Any], None], *, existing: bool = False, read_only: bool = False,
                as_json: bool = False, dry_run: bool = False, or_api: tuple[str, ...] = ()) -> None:
    """Run `work` on the store; `existing=True` for commands on what is recorded (no store is made for them),
    `read_only=True` for those that only read it (nor is its schema upgraded); `dry_run=True` for a dry run, which
    neither makes nor upgrades one (`store_for_dry_run`). `or_api`: the token roles with which the command can go
    through an API instead (`--base-url`), said when there is no store here."""
    from overnight.store import build_store, store_for_dry_run  # noqa: PLC0415

    with _errors_as_exit_codes(as_json=as_json), ExitStack() as stack:
        if dry_run:
            store, note = stack.enter_context(store_for_dry_run(_settings()))
            if note:
                err.print(note, markup=False, soft_wrap=True)
        else:
            try:
                store = build_store(_settings(), existing=existing, read_only=read_only)
            except ConfigError as exc:
                if not (or_api and "no_store" in exc.details):
                    raise
                token = "an admin" if or_api == ADMINS else "a read"
                raise ConfigError(f"{exc.message}; or, from a host without the store, add --base-url URL to go "
                                  f"through a running API, with OVERNIGHT_TOKEN {token} token",
                                  details=exc.details) from None
            stack.callback(store.close)
        work(store)


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="Only runs started this long ago or less, e.g. 24h, 90m")] = None,
    status: Annotated[RunStatus | None, typer.Option(help="Only runs with this status")] = None,
    signature: Annotated[str | None, typer.Option(help="Only runs for this signature")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many runs")] = 20,
    base_url: ReadThrough = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """A table of recent runs, newest first: status, exit code, duration and the verdict per signature."""
    if ctx.invoked_subcommand is not None:
        return
    from overnight.nightly import seconds  # noqa: PLC0415
    from overnight.review.assemble import run_list  # noqa: PLC0415

    with _errors_as_exit_codes(as_json=as_json):
        within_s = None if since is None else seconds(since, option="--since")

    def printed(found: RunList, where: str) -> None:
        if as_json:
            out.print_json(json.dumps(runs_document(found)))
        elif not found.runs:  # not an empty table: say which store was read, and with which filters
            asked = " ".join(f"--{name} {value}" for name, value in (
                ("since", since), ("status", status.value if status else None), ("signature", signature)) if value)
            out.print(f"no runs {f'match {asked} ' if asked else ''}{where}", markup=False, soft_wrap=True)
        else:
            out.print(runs_table(found))

    if base_url is not None:
        with _through_api(base_url, roles=READERS, as_json=as_json) as client:
            printed(client.runs(limit=limit, status=status.value if status else None, signature_id=signature,
                                since_s=within_s), f"on the API at {base_url}")
        return

    def work(store: Any) -> None:
        after = None if within_s is None else store.clock() - within_s * 1000
        found = run_list(store, limit=limit, status=status, signature_id=signature, since=after)
        printed(found, f"in {store.shown()}{_unknown(signature)}")

    _with_store(work, read_only=True, as_json=as_json, or_api=READERS)


def _unknown(signature: str | None) -> str:
    """A filter that matched nothing because of a typo says so (a retired signature's runs are still listed)."""
    if signature is None:
        return ""
    from overnight.registry import Registry  # noqa: PLC0415 - only when nothing matched

    known = Registry().ids()
    return "" if signature in known else f" ({signature} is not a signature here; these are: {', '.join(known)})"


@runs_app.command("tail")
def runs_tail(
    run_id: Annotated[str, typer.Argument(help="The run to follow")],
    base_url: Annotated[str | None, typer.Option(help="Follow it on this API (Server-Sent Events) instead of in the "
                                                      "store at OVERNIGHT_DB_URL")] = None,
    from_start: Annotated[bool, typer.Option("--all", help="Print the run's earlier events first")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line")] = False,
) -> None:
    """Follow a run's events live until it finishes: in order, no gap, no duplicate.

    From the store at OVERNIGHT_DB_URL, as `runs` and `show` read it (a run on the embedded API included), or with
    --base-url from a running API over Server-Sent Events."""

    def printed(events: Iterator[RunEvent]) -> None:
        for event in events:
            if as_json:
                out.print(event.model_dump_json(), markup=False, soft_wrap=True)
            else:
                out.print(f"{event.seq:>6}  {when(event.ts)}  {event.phase:<16} {event.kind:<24} "
                          f"{event.level:<7} {event.message}", markup=False, soft_wrap=True)

    if base_url is None:
        def work(store: Any) -> None:
            try:
                run: Run = store.get_run(run_id=run_id)
            except RunNotFound:
                raise RunNotFound(f"no run {run_id!r} in {store.shown()}: to follow a run on a server that uses "
                                  "another store, give --base-url") from None
            if not from_start:
                _said_if_finished(run)
            printed(_followed(store, run_id, after_seq=0 if from_start else run.event_count,
                              poll_s=_settings().sse_poll_ms / 1000))

        _with_store(work, read_only=True, as_json=as_json, or_api=READERS)
        return
    with _through_api(base_url, roles=READERS, as_json=as_json) as client:
        start = 0
        if not from_start:
            run = client.get_run(run_id)
            _said_if_finished(run)
            start = run.event_count
        printed(client.follow_events(run_id, after_seq=start))


@contextmanager
def _through_api(base_url: str, *, roles: tuple[str, ...], as_json: bool) -> Iterator[Any]:
    """A client for the API at `base_url` (`--base-url`), with the token OVERNIGHT_TOKEN (or the first entry of
    OVERNIGHT_TOKENS with one of `roles`), its errors said as `_with_store`'s are: for the commands a host without
    the store runs against the servers."""
    from overnight.client import OvernightClient  # noqa: PLC0415
    from overnight.nightly import api_token  # noqa: PLC0415

    with _errors_as_exit_codes(as_json=as_json):
        settings = _settings()
        with OvernightClient(base_url, api_token(settings, roles=roles, url=base_url),
                             attempts=settings.client_attempts) as client:
            yield client


def _said_if_finished(run: Run) -> None:
    """A run that has already finished has nothing to follow: say so (on stderr), rather than print nothing."""
    if run.status != "running":
        err.print(f"{run.run_id} has finished ({run.status.value}) with {run.event_count} events: nothing more to "
                  f"follow; --all prints them, `overnight show {run.run_id}` reviews the run", markup=False,
                  soft_wrap=True)


def _followed(store: Any, run_id: str, *, after_seq: int, poll_s: float) -> Iterator[RunEvent]:
    """A run's events after `after_seq`, read from the store as they are appended, until it has finished and every
    event was read. A run's events commit in `seq` order (one writer per run), so reading after the last one seen
    leaves no gap."""
    last = after_seq
    while True:
        if events := store.list_events(run_id=run_id, after_seq=last, limit=500):
            yield from events
            last = events[-1].seq
            continue
        run = store.get_run(run_id=run_id)
        if run.followed_to_the_end(last):
            return
        time.sleep(poll_s)


@app.command()
def status(
    base_url: ReadThrough = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """What serves each signature now: its champion, since which move and by whom, its canary, its last run.

    Read from the store at OVERNIGHT_DB_URL, as every server sees it: the first thing to look at after an alert.
    --json: the same object as GET /api/v1/status."""
    from overnight.registry import Registry  # noqa: PLC0415
    from overnight.review.assemble import ServingStatus, serving_status  # noqa: PLC0415
    from overnight.review.terminal import status_table  # noqa: PLC0415

    def printed(found: Any) -> None:
        if as_json:
            out.print_json(found.model_dump_json())
        else:
            out.print(status_table(found.signatures))

    if base_url is not None:
        with _through_api(base_url, roles=READERS, as_json=as_json) as client:
            printed(ServingStatus.model_validate(client.status()))
        return
    _with_store(lambda store: printed(serving_status(store, Registry().ids())), read_only=True, as_json=as_json,
                or_api=READERS)


@app.command()
def show(
    run_id: Annotated[str | None, typer.Argument(help="The run to show (default: the latest)")] = None,
    events: Annotated[bool, typer.Option("--events", help="Also print every event of the run")] = False,
    base_url: ReadThrough = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """What a run did and why, and the command that undoes it.

    Its steps with durations, the compile table and paired delta, the canary per arm with every gate decision, the
    alias moves, the e2e check, one closing sentence, and the rollback command for each promotion."""
    from overnight.domain.review import on_api  # noqa: PLC0415
    from overnight.review.assemble import run_review  # noqa: PLC0415
    from overnight.review.show import review_text  # noqa: PLC0415

    def printed(review: Any, timeline: list[RunEvent], run: Callable[[], Run]) -> None:
        if as_json:
            document = review.model_dump(mode="json")
            if events:
                document["events"] = [e.model_dump(mode="json") for e in timeline]
            out.print_json(json.dumps(document))
            return
        out.print(review_text(review, events_below=events), crop=False)  # a long undo command prints whole
        if events:
            out.print(run_timeline(run(), timeline))

    if base_url is not None:
        with _through_api(base_url, roles=READERS, as_json=as_json) as client:
            shown = _latest_on(client, base_url) if run_id is None else run_id
            review = client.review(shown)  # its undo commands, as this reader runs them: through the API
            printed(review.model_copy(update={"undo": [on_api(c, base_url) for c in review.undo],
                                              "promote": [on_api(c, base_url) for c in review.promote]}),
                    client.all_events(shown) if events else [], lambda: client.get_run(shown))
        return

    def work(store: Any) -> None:
        shown = _latest_run(store) if run_id is None else run_id  # "" (an unset $RUN_ID) is no run, not the latest
        timeline: list[RunEvent] = []
        while events and (batch := store.list_events(run_id=shown, limit=1000,
                                                     after_seq=timeline[-1].seq if timeline else 0)):
            timeline.extend(batch)
        printed(run_review(store, shown), timeline, lambda: store.get_run(run_id=shown))

    _with_store(work, read_only=True, as_json=as_json, or_api=READERS)


def _latest_on(client: Any, base_url: str) -> str:
    latest: Run | None = client.latest_run()
    if latest is None:
        raise RunNotFound(f"no runs on the API at {base_url}")
    return latest.run_id


def _latest_run(store: Any) -> str:
    found: list[Run] = store.list_runs(limit=1)
    if not found:
        raise RunNotFound(f"no runs in {store.shown()}")
    return found[0].run_id


@app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="A compiled_id, or its first 6+ characters, or `default` (the old program)")],
    b: Annotated[str, typer.Argument(help="Another compiled_id or prefix, or `default` (the new program)")],
    base_url: ReadThrough = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """What changed from one program to another.

    The instructions as a text diff, demos added and removed, decode changes, and whether the LM differs.
    `default` is the signature's default program, as compiled beside the other one."""
    from overnight.domain.diff import diff_artifacts  # noqa: PLC0415

    def printed(before: Artifact, after: Artifact) -> None:
        changed = diff_artifacts(before, after)
        if as_json:
            out.print_json(changed.model_dump_json())
            return
        lines = [] if changed.same_signature else [
            f"two signatures' programs: {before.compiled_id[:12]} is {before.signature_id}'s, "
            f"{after.compiled_id[:12]} is {after.signature_id}'s"]
        lines += [*changed.instructions_diff] or ["instructions: unchanged"]
        lines += [f"+ demo {json.dumps(d, sort_keys=True)}" for d in changed.demos_added]
        lines += [f"- demo {json.dumps(d, sort_keys=True)}" for d in changed.demos_removed]
        lines += [f"decode {k}: {old!r} -> {new!r}" for k, (old, new) in changed.decode_changes.items()]
        lines += ["the LM differs"] if changed.lm_id_changed else []
        for line in lines:
            out.print(line, markup=False, soft_wrap=True)

    def diffed(source: Any, artifact: Callable[[str], Artifact], default_beside: Callable[[str], str]) -> None:
        """From the store, or from the API (`--base-url`): the same resolution of ids, the same lines."""
        ids = {"a": _compiled_id(source, a, "a"), "b": _compiled_id(source, b, "b")}
        for where, other in (("a", "b"), ("b", "a")):
            if ids[where] == "default":
                if ids[other] == "default":
                    raise _usage_error(where, "'default' is the default program beside a compiled one: give the "
                                              "other program's compiled_id")
                ids[where] = default_beside(ids[other])
        printed(*(artifact(ids[where]) for where in ("a", "b")))

    if base_url is not None:
        with _through_api(base_url, roles=READERS, as_json=as_json) as client:
            diffed(client, client.artifact, client.default_beside)
        return

    def work(store: Any) -> None:
        from overnight.review.assemble import default_beside  # noqa: PLC0415

        diffed(store, lambda compiled_id: store.get_artifact(compiled_id=compiled_id),
               lambda compiled_id: default_beside(store, compiled_id))

    _with_store(work, read_only=True, as_json=as_json, or_api=READERS)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="JSONL (or .json list)")],
    signature: Annotated[str, typer.Option("--signature", "-s", help="e.g. SelectTool.v1")],
    run_id: Annotated[str | None, typer.Option(help="Record dataset.imported on this run")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="The file is the whole dataset: remove the current rows "
                                          "it leaves out (old snapshots keep them)")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what it would do; write nothing")] = False,
    base_url: ActThrough = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Import a dataset file for a signature: upsert by example_id, snapshot the result. All or nothing.

    Rows a later file leaves out are kept, unless --replace: then the file is the signature's dataset."""
    from overnight.domain.datasets import parse_dataset  # noqa: PLC0415 - keeps `overnight --help` fast
    from overnight.registry import Registry  # noqa: PLC0415

    fmt: Literal["jsonl", "json"] = "json" if file.suffix == ".json" else "jsonl"

    def printed(result: ImportResult) -> None:
        if as_json:
            out.print_json(result.model_dump_json())
            return
        out.print(("dry run, nothing written: " if dry_run else "") + f"{signature}: {result.counted()}",
                  markup=False, soft_wrap=True)
        out.print(f"dataset {result.dataset_hash} ({'new snapshot' if result.new_snapshot else 'snapshot exists'}:"
                  f" {result.snapshot.example_count} examples, {result.snapshot.split_counts})", markup=False,
                  soft_wrap=True)

    if base_url is not None:  # the server's signatures judge the file, as they will judge its predicts
        with _through_api(base_url, roles=ADMINS, as_json=as_json) as client:
            printed(client.import_examples(signature, file.read_bytes(), run_id=run_id, replace=replace,
                                           dry_run=dry_run, fmt=fmt))
        return

    with _errors_as_exit_codes(as_json=as_json):  # before the store: a refused file or signature makes none
        contract = Registry().contract(signature)
        rows = parse_dataset(contract, file.read_bytes(), fmt=fmt)

    def work(store: Any) -> None:
        printed(store.import_examples(signature_id=signature, rows=rows, run_id=run_id, replace=replace,
                                      dry_run=dry_run))

    _with_store(work, as_json=as_json, dry_run=dry_run)


@app.command("compile")
def compile_(
    signature: Annotated[str, typer.Option("--signature", "-s", help="e.g. SelectTool.v1")],
    seed: Annotated[int, typer.Option(help="Seed for demo selection, train order and the bootstrap")] = 0,
    max_lm_calls: Annotated[int | None, typer.Option(help="Stop cleanly after this many LM calls")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Stop cleanly after this many tokens")] = None,
    max_time: Annotated[str | None, typer.Option(
        help="Start no LM call after this long, e.g. 90m (calls in flight finish); a rerun resumes")] = None,
    search: Annotated[str, typer.Option(help="halving (default), or grid: all candidates on all train")] = "halving",
    optimizer: Annotated[str, typer.Option(help="grid@1 (seeded demos) or labeled_fewshot@1 (DSPy)")] = "grid@1",
    base_url: Annotated[str | None, typer.Option(
        "--base-url", help="Compile on this API, with its LM (an admin token), instead of here on the store at "
                           "OVERNIGHT_DB_URL")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Compile a signature's current dataset with the configured LM (OVERNIGHT_LM) and print the report."""
    from overnight.compile.service import compile_signature  # noqa: PLC0415 - imports DSPy
    from overnight.domain.compiling import rung_sentence  # noqa: PLC0415
    from overnight.lm.backends import build_backend  # noqa: PLC0415
    from overnight.nightly import seconds  # noqa: PLC0415
    from overnight.registry import Registry  # noqa: PLC0415

    if search not in ("halving", "grid"):
        err.print("usage_error: --search must be halving or grid")
        raise typer.Exit(EXIT_USAGE)
    with _errors_as_exit_codes(as_json=as_json):
        max_seconds = None if max_time is None else seconds(max_time, option="--max-time")
        if base_url is None:
            entry = Registry().get(signature)

    def printed(report: CompileReport) -> None:
        if as_json:
            out.print_json(report.model_dump_json())
        else:
            from overnight.review.show import compile_table  # noqa: PLC0415

            out.print(compile_table(report))
        if report.status != "completed":  # no report stored: what would use it (canary start, promote) refuses
            raise typer.Exit(EXIT_UNFINISHED)

    if base_url is not None:  # one request that answers when the compile ends: no progress to show meanwhile
        if err.is_terminal and not as_json:
            err.print(f"compiling {signature} on the API at {base_url} with its LM; the report prints when it ends",
                      markup=False, soft_wrap=True)
        with _through_api(base_url, roles=ADMINS, as_json=as_json) as client:
            report = client.compile(signature, seed=seed, max_lm_calls=max_lm_calls, max_tokens=max_tokens,
                                    max_seconds=max_seconds, search=search, optimizer=optimizer,
                                    timeout_s=(max_seconds or 0) + 3600)
        printed(report)
        return

    def work(store: Any) -> None:
        settings = _settings()
        with Progress(console=err, transient=True, disable=as_json or not err.is_terminal) as bar:
            task = bar.add_task(f"compiling {signature}", total=None)

            def progress(_kind: str, data: dict[str, Any]) -> None:
                bar.update(task, description=rung_sentence(signature, data))
                if not err.is_terminal and not as_json:  # a log or an agent: one plain line per rung
                    err.print(rung_sentence(signature, data, so_far=True), markup=False)

            report = compile_signature(store, entry, build_backend(settings), seed=seed, max_lm_calls=max_lm_calls,
                                       max_tokens=max_tokens, max_seconds=max_seconds,
                                       search=search,  # type: ignore[arg-type]
                                       optimizer_id=optimizer, concurrency=settings.compile_concurrency,
                                       progress=progress)
        printed(report)

    # it compiles an imported dataset: a new store has none
    _with_store(work, existing=True, as_json=as_json, or_api=ADMINS)


def _actor(given: str | None) -> str:
    import getpass  # noqa: PLC0415

    return given or f"cli:{getpass.getuser()}"


def _print_move(moved: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(moved.model_dump_json())
        return
    move = moved.move
    out.print(f"{move.signature_id}: champion {move.action} {move.from_id or 'default'} -> {move.to_id or 'default'}"
              f" by {move.actor}{' (forced)' if moved.forced else ''}: {move.reason}", markup=False, soft_wrap=True)
    for gate in moved.gates:
        out.print(f"  {gate.verdict:>12}  {gate.message}", markup=False, soft_wrap=True)


@app.command()
def promote(
    candidate: Annotated[str, typer.Argument(help="The compiled_id to make champion, or its first 6+ characters")],
    signature: Annotated[str, typer.Option("--signature", "-s", help="e.g. SelectTool.v1")],
    force: Annotated[bool, typer.Option(help="Move even though a gate fails (needs --reason; audited)")] = False,
    reason: Annotated[str, typer.Option(help="Why; written into the alias history")] = "",
    actor: Annotated[str | None, typer.Option(help="Who (default cli:$USER)")] = None,
    min_delta: MinDeltaOption = MIN_DELTA,
    holdout_margin: HoldoutMarginOption = HOLDOUT_MARGIN,
    run: OfRun = None,
    base_url: ActThrough = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Promote a candidate: every gate must pass (compile report, holdout delta, passed canary), or --force."""
    from overnight.domain.promotion import PromoteRequest  # noqa: PLC0415
    from overnight.lm.backends import build_backend  # noqa: PLC0415 - imports DSPy
    from overnight.registry import Registry  # noqa: PLC0415
    from overnight.serving.aliases import promote as promote_candidate  # noqa: PLC0415
    from overnight.serving.programs import ProgramCache  # noqa: PLC0415

    if base_url is not None:  # the gates and the LM id are the server's: what serves is judged where it serves
        _no_actor_through_api(actor)
        with _through_api(base_url, roles=ADMINS, as_json=as_json) as client:
            body = _request(PromoteRequest, candidate_id=_compiled_id(client, candidate, "candidate_id"), force=force,
                            reason=reason, min_delta=min_delta, margin=holdout_margin, run_id=run)
            _print_move(client.promote(signature, body.model_dump(mode="json", exclude_none=True)), as_json)
        return

    def work(store: Any) -> None:
        body = _request(PromoteRequest, candidate_id=_compiled_id(store, candidate, "candidate_id"), force=force,
                        reason=reason, min_delta=min_delta, margin=holdout_margin, run_id=run)
        moved = promote_candidate(store, Registry().get(signature), ProgramCache(), body,
                                  lm_id=build_backend(_settings()).lm_id, actor=_actor(actor))
        _print_move(moved, as_json)

    _with_store(work, existing=True, as_json=as_json, or_api=ADMINS)


@app.command()
def rollback(
    signature: Annotated[str, typer.Option("--signature", "-s", help="e.g. SelectTool.v1")],
    reason: Annotated[str, typer.Option(help="Why; written into the alias history")],
    to: Annotated[str | None, typer.Option(
        help="A compiled_id of this signature (or its first 6+ characters), or `default`")] = None,
    actor: Annotated[str | None, typer.Option(help="Who (default cli:$USER)")] = None,
    run: OfRun = None,
    base_url: ActThrough = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Move the champion one step back through its history (or --to an id), ending any canary. Instant."""
    from overnight.domain.promotion import RollbackRequest  # noqa: PLC0415
    from overnight.registry import Registry  # noqa: PLC0415
    from overnight.serving.aliases import rollback as roll_back  # noqa: PLC0415

    if base_url is not None:
        _no_actor_through_api(actor)
        with _through_api(base_url, roles=ADMINS, as_json=as_json) as client:
            body = _request(RollbackRequest, to=to if to is None else _compiled_id(client, to, "to"), reason=reason,
                            run_id=run)
            _print_move(client.rollback(signature, body.model_dump(mode="json", exclude_none=True)), as_json)
        return

    def work(store: Any) -> None:
        body = _request(RollbackRequest, to=to if to is None else _compiled_id(store, to, "to"), reason=reason,
                        run_id=run)
        _print_move(roll_back(store, Registry().get(signature), body, actor=_actor(actor)), as_json)

    _with_store(work, existing=True, as_json=as_json, or_api=ADMINS)


@canary_app.callback(invoke_without_command=True)
def canary(
    ctx: typer.Context,
    signature: Annotated[str | None, typer.Option("--signature", "-s", help="e.g. SelectTool.v1")] = None,
    base_url: ReadThrough = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The signature's active (or last) canary: its arms, what the gates say now, and its history.

    Read from the store at OVERNIGHT_DB_URL, as the server's own predicts update it."""
    if ctx.invoked_subcommand is not None:
        return
    if signature is None:
        raise _usage_error("--signature", "name the signature whose canary to show, e.g. -s SelectTool.v1")
    from overnight.domain.review import canary_section  # noqa: PLC0415
    from overnight.registry import Registry  # noqa: PLC0415
    from overnight.review.show import canary_arms, errors_line, gate_sentences  # noqa: PLC0415
    from overnight.serving.canary import canary_view  # noqa: PLC0415

    def printed(view: Any) -> None:
        if as_json:
            out.print_json(view.model_dump_json())
            return
        record = view.canary
        out.print(f"{signature}: canary {record.canary_id} {record.status} at {view.rollout_pct:g}% of traffic, "
                  f"started {when(record.started_at)} by {record.actor}"
                  + (f" for run {record.run_id}" if record.run_id else "")
                  + (f", ended {when(record.ended_at)}: {record.end_reason}" if record.ended_at else ""),
                  markup=False, soft_wrap=True)
        section = canary_section(record, view.history, [], view.error_codes)
        out.print(canary_arms(section))
        out.print(errors_line(section, where=True), markup=False, soft_wrap=True)
        if view.evaluation is not None:
            out.print(f"gates now: {view.evaluation['message']}", markup=False, soft_wrap=True)
        out.print(gate_sentences(section), markup=False, soft_wrap=True)

    if base_url is not None:
        with _through_api(base_url, roles=READERS, as_json=as_json) as client:
            printed(client.canary(signature))
        return

    def work(store: Any) -> None:
        Registry().get(signature)
        printed(canary_view(store, signature))

    _with_store(work, read_only=True, as_json=as_json, or_api=READERS)


@canary_app.command("stop")
def canary_stop(
    signature: Annotated[str, typer.Option("--signature", "-s", help="e.g. SelectTool.v1")],
    reason: Annotated[str, typer.Option(help="Why; written into the canary's history")],
    canary_id: Annotated[str | None, typer.Option("--id", help=(
        "Stop only this canary (the one you looked at): refused when another has replaced it"))] = None,
    actor: Annotated[str | None, typer.Option(help="Who (default cli:$USER)")] = None,
    base_url: ActThrough = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """End the signature's active canary now; the champion stays. Instant.

    Every server routes all traffic to the champion from its next request. A runner driving the canary sees it
    ended and finishes that signature `inconclusive` (exit 4) with your reason. To also move the champion back, use
    `overnight rollback`, which ends any canary itself."""
    from overnight.domain.canary import CanaryStop  # noqa: PLC0415
    from overnight.domain.review import short  # noqa: PLC0415
    from overnight.registry import Registry  # noqa: PLC0415

    body = _request(CanaryStop, reason=reason, canary_id=canary_id)

    def printed(stopped: Any, who: str, champion: str | None) -> None:
        if as_json:
            out.print_json(stopped.model_dump_json())
            return
        out.print(f"{signature}: canary {stopped.canary_id} stopped by {who}: {body.reason}; "
                  f"{short(champion)} serves every request", markup=False, soft_wrap=True)

    if base_url is not None:
        _no_actor_through_api(actor)
        with _through_api(base_url, roles=ADMINS, as_json=as_json) as client:
            stopped = client.stop_canary(signature, reason=body.reason, canary_id=body.canary_id)
            printed(stopped, client.whoami().name, client.alias_history(signature).champion_id)
        return

    def work(store: Any) -> None:
        Registry().get(signature)
        who = _actor(actor)
        stopped = store.stop_canary(signature_id=signature, actor=who, reason=body.reason, canary_id=body.canary_id)
        printed(stopped, who, store.serving_route(signature_id=signature).champion_id)

    _with_store(work, existing=True, as_json=as_json, or_api=ADMINS)


def _no_actor_through_api(actor: str | None) -> None:
    if actor is not None:
        raise _usage_error("--actor", "through --base-url the API records the name of the token that asks")


def _request(model: Any, **values: Any) -> Any:
    """Validate CLI options with the API's own request model: the same rules, the same messages; exit 2."""
    from pydantic import ValidationError  # noqa: PLC0415

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _usage_error(".".join(str(p) for p in first["loc"]) or "options", first["msg"]) from None


def _usage_error(where: str, problem: str) -> typer.Exit:
    err.print(f"validation_error: {where}: {problem}", markup=False)
    return typer.Exit(EXIT_USAGE)


_HEX = frozenset("0123456789abcdef")


def _whole_id(given: str) -> bool:
    """A whole compiled_id, or `default` (rollback's target for the default program)."""
    wanted = given.lower()
    return wanted == "default" or (len(wanted) == 64 and set(wanted) <= _HEX)


def _compiled_id(source: Any, given: str, where: str) -> str:
    """A compiled_id as the review prints it (its first 12 characters), or any prefix of 6 or more that starts
    exactly one stored artifact, made whole, as git does for commits, by the store or the API (`source`); a whole id
    (and rollback's `default`) passes as given, for the request model and the store to judge. One not shaped as an
    id is refused before anything is asked."""
    wanted = given.lower()
    if _whole_id(wanted):
        return wanted
    if not (6 <= len(wanted) < 64 and set(wanted) <= _HEX):
        raise _usage_error(where, f"{given!r} is not a compiled_id: give its 64 hex characters, or the first 6 or "
                                  "more (as `overnight show` prints 12)")
    found: list[str] = source.compiled_ids_starting(prefix=wanted, limit=2)
    if not found:
        raise ArtifactNotFound(f"no artifact whose compiled_id starts with {given!r}")
    if len(found) > 1:
        raise _usage_error(where, f"{given!r} is the start of more than one compiled_id "
                                  f"({found[0][:16]}…, {found[1][:16]}…): give more of it")
    return found[0]


@lm_app.command("check")
def lm_check(
    signature: Annotated[str, typer.Option("--signature", "-s", help="Whose sample input")] = "SelectTool.v1",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Build the configured LM (OVERNIGHT_LM), make one call, print the backend, lm_id, latency and answer."""
    from overnight.lm.backends import build_backend  # noqa: PLC0415 - imports DSPy, only for LM commands
    from overnight.lm.invoke import check  # noqa: PLC0415
    from overnight.registry import Registry  # noqa: PLC0415

    with _errors_as_exit_codes(as_json=as_json):
        settings = _settings()
        result = check(Registry().get(signature), build_backend(settings))
        report = result.model_dump()
        if as_json:
            out.print_json(json.dumps(report))
        else:
            for key in ("backend", "model", "lm_id", "signature", "ok", "output", "error_code", "error",
                        "latency_ms", "tokens_in", "tokens_out"):
                out.print(f"{key:>11}: {report[key]}", markup=False, soft_wrap=True)
        if not result.ok:
            raise typer.Exit(EXIT_FAILED)


@app.command("fake-llm")
def fake_llm(
    spec: Annotated[str, typer.Option(help="Simulator spec, e.g. seed=7,acc=0.8,err=0.02,latency_ms=50")] = "",
    host: Annotated[str, typer.Option(help="Bind address (loopback)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8765,
    dataset: Annotated[list[Path] | None, typer.Option(help="Labeled JSONL file(s) that say what is correct")] = None,
    signature: Annotated[list[str] | None, typer.Option(help="The signature of each --dataset, in order")] = None,
) -> None:
    """Serve the seeded simulator as an OpenAI-compatible /v1/chat/completions (for tests and benchmarks)."""
    import uvicorn  # noqa: PLC0415

    from overnight.lm.fake_server import create_fake_llm_app, load_oracle  # noqa: PLC0415
    from overnight.lm.sim import SimSpec  # noqa: PLC0415
    from overnight.registry import Registry  # noqa: PLC0415

    with _errors_as_exit_codes():
        files, sigs = dataset or [], signature or []
        if len(files) != len(sigs):
            raise ConfigError("give one --signature for each --dataset, in the same order")
        registry = Registry()
        oracle = load_oracle(registry, [(sig, path.read_bytes()) for sig, path in zip(sigs, files, strict=True)])
        configure_logging(fmt="auto", level="warning")
        uvicorn.run(create_fake_llm_app(SimSpec.parse(spec), registry=registry, oracle=oracle), host=host, port=port,
                    log_config=None, access_log=False)


@app.command()
def plan(  # the defaults are a default canary's (CanaryPlanRequest's)
    max_error_rate: Annotated[float, typer.Option(min=0.0001, max=0.5, help="The error rate to stay under")] = (
        MAX_ERROR_RATE),
    expected: Annotated[float, typer.Option(min=0.0, max=0.5, help="The error rate you expect from the candidate")] = (
        EXPECTED_ERROR_RATE),
    alpha: Annotated[float, typer.Option(min=0.001, max=0.2, help="False pass / false abort rate")] = ALPHA,
    power: Annotated[float, typer.Option(min=0.5, max=0.999, help="Chance to pass a candidate at --expected")] = POWER,
    steps: Annotated[str, typer.Option(help="Rollout percentages, as `overnight run --steps`")] = RUN_STEPS,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Print the samples a canary needs before it starts.

    The planned pass look and the early-abort thresholds; with no options, of a canary started with the defaults,
    as `overnight run` starts them."""
    from overnight.domain.gates import canary_plan, unplannable  # noqa: PLC0415
    from overnight.nightly import percentages  # noqa: PLC0415

    with _errors_as_exit_codes(as_json=as_json):
        planned = canary_plan(max_error_rate=max_error_rate, expected_error_rate=expected, alpha=alpha, power=power,
                              steps=percentages(steps))
        if planned is None:
            raise ConfigError(unplannable(max_error_rate=max_error_rate, expected_error_rate=expected, alpha=alpha,
                                          power=power, expected_is="the expected error rate (--expected)",
                                          max_is="the maximum (--max-error-rate)"))
        if as_json:
            out.print_json(planned.model_dump_json())
            return
        out.print(f"pass look at {planned.min_samples} candidate requests: pass with at most "
                  f"{planned.max_errors_at_look} errors ({power:.0%} chance at a true rate of {expected:g}; "
                  f"at most {alpha:g} at {max_error_rate:g})", markup=False, soft_wrap=True)
        staged = [f"{target} candidate requests by the end of step {i + 1}"
                  for i, target in enumerate(planned.step_targets[:-1])] + [f"{planned.min_samples} at the look"]
        out.print(f"on steps {steps_said(planned.steps)}: {', '.join(staged)}: about {planned.requests_in_all} "
                  "requests in all through the canary (the rest of each step's traffic goes to control)",
                  markup=False, soft_wrap=True)
        out.print(f"a clean candidate needs at least {planned.zero_failure_samples} requests to pass at all",
                  markup=False)
        for n, k in planned.abort_after_errors.items():
            out.print(f"abort early at {k} errors within the first {n} requests", markup=False)


@app.command()
def run(
    base_url: Annotated[str | None, typer.Option(help="A running API (default: one in-process on loopback)")] = None,
    signature: Annotated[list[str] | None, typer.Option("--signature", "-s", help="Repeatable")] = None,
    dataset: Annotated[list[str] | None, typer.Option(help="FILE, or SIG=FILE per signature (repeatable)")] = None,
    verify: Annotated[list[str] | None, typer.Option(
        help="A command that must exit 0 first, run without a shell (`sh -c '…'` for pipes), stopped at the deadline "
             "(repeatable)")] = None,
    deadline: Annotated[str, typer.Option(
        help="The night's time, e.g. 90m, 2h, 3600s: verify, compile and the gates stop at it")] = "2h",
    resume: Annotated[str | None, typer.Option(help="Continue this run from its last finished step")] = None,
    steps: Annotated[str, typer.Option(help="Canary rollout percentages, e.g. 5,25,50")] = RUN_STEPS,
    srm_threshold: Annotated[float, typer.Option(help=(
        "A step's split with a p-value below this is a sample-ratio mismatch: the canary fails"))] = SRM_THRESHOLD_P,
    dry_run: Annotated[bool, typer.Option(help="Preflight only: change nothing")] = False,
    keep_days: Annotated[int | None, typer.Option(min=1, help="Last step: prune receipts outside any canary and "
                                                              "idempotency keys older than this many days")] = None,
    no_promote: Annotated[bool, typer.Option("--no-promote", help=(
        "Stop at a passed canary and promote nothing (decision held, exit 0); the summary and the review print the "
        "promote command for a person"))] = False,
    min_delta: MinDeltaOption = MIN_DELTA,
    holdout_margin: HoldoutMarginOption = HOLDOUT_MARGIN,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """The nightly loop: import → compile → canary → decide → e2e, every step an event.

    Exit 0 promoted, held (--no-promote) or no change, 3 rolled back, 4 inconclusive, 1 failed, 2 usage or
    configuration, 128 + the signal's number when stopped by SIGTERM or SIGINT (the run is then recorded cancelled)."""
    from overnight.nightly import nightly  # noqa: PLC0415 - the embedded server pulls in the app

    with _errors_as_exit_codes(as_json=as_json):
        settings = _settings()
        configure_logging(fmt=settings.log_format, level=settings.log_level, secrets=settings.secret_values())
        summary = nightly(settings, base_url=base_url, signatures=signature or ["SelectTool.v1"],
                          datasets=dataset or [], verify=verify or [], deadline=deadline, resume=resume,
                          steps=steps, srm_threshold=srm_threshold, dry_run=dry_run, say=_say, keep_days=keep_days,
                          promote=not no_promote, min_delta=min_delta, holdout_margin=holdout_margin)
        if as_json:
            out.print_json(summary.model_dump_json())
        else:
            out.print(summary_text(summary), markup=False, soft_wrap=True)
    raise typer.Exit(summary.exit_code)


def _say(message: str) -> None:
    if err.is_terminal:
        err.print(message, markup=False, soft_wrap=True)
    else:
        get_logger("overnight.runner").info("runner_progress", message=message)


def _help_as_paragraphs(*groups: typer.Typer) -> None:
    """Typer's rich help keeps a docstring's line breaks, so a paragraph wrapped at 120 columns in the source broke
    mid-sentence in an 80-column terminal. Each command's help is its docstring with every paragraph on one line,
    for the terminal to wrap."""
    for group in groups:
        for command in group.registered_commands:
            if command.help is None and command.callback is not None and command.callback.__doc__:
                paragraphs = inspect.cleandoc(command.callback.__doc__).split("\n\n")
                command.help = "\n\n".join(" ".join(paragraph.split("\n")) for paragraph in paragraphs)


_help_as_paragraphs(app, db_app, runs_app, lm_app, canary_app)


def _standard_streams_on_devnull() -> None:
    """Reopen on /dev/null, as a daemon does, the fds 0-2 a daemonizer closed (`>&-` in a crontab, an init script):
    else the next file or socket opened takes the lowest free number (the API's listening socket became fd 1), and
    whatever writes to "stdout" (a C library, a child that inherits it) writes into it. Python has already made
    sys.stdout (sys.stderr) None for them: what has nowhere to go is still not said."""
    while (fd := os.open(os.devnull, os.O_RDWR)) <= 2:  # each takes the lowest closed one, until none is
        continue
    os.close(fd)


def main() -> None:
    _standard_streams_on_devnull()
    # Every command logs to stderr (warnings and errors; `serve` and `run` reconfigure at OVERNIGHT_LOG_LEVEL):
    # stdout is only the answer, which an agent may parse as JSON. structlog's default would print to stdout.
    configure_logging(fmt="auto", level="warning")
    app()
