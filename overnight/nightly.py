"""`overnight run` wiring: parse the options, find the API (a given `--base-url`, or the app started in-process
on a free loopback port with the embedded defaults and stopped at the end), and hand a client to the runner.

The embedded API accepts the tokens in OVERNIGHT_TOKENS plus one admin token minted for this process only, which
the runner uses; a remote API needs OVERNIGHT_TOKEN (an admin secret). Must not import SQL.
"""

from __future__ import annotations

import logging
import re
import secrets
import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from overnight.client import OvernightClient
from overnight.config import Settings
from overnight.domain.gates import HOLDOUT_MARGIN, MIN_DELTA, SRM_THRESHOLD_MAX, SRM_THRESHOLD_P
from overnight.errors import ConfigError
from overnight.runner import Runner, RunOptions, Say, Summary, Terminated

DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")


def nightly(settings: Settings, *, base_url: str | None, signatures: list[str], datasets: list[str],
            verify: list[str], deadline: str, resume: str | None, steps: str, srm_threshold: float, dry_run: bool,
            say: Say, keep_days: int | None = None, promote: bool = True, min_delta: float = MIN_DELTA,
            holdout_margin: float = HOLDOUT_MARGIN) -> Summary:
    options = RunOptions(signatures=once_each(signatures), datasets=dataset_files(signatures, datasets),
                         verify=verify_commands(verify),
                         deadline_s=seconds(deadline), resume=resume, dry_run=dry_run, steps=percentages(steps),
                         srm_threshold_p=split_threshold(srm_threshold), lease_s=settings.lease_s,
                         keep_days=keep_days, base_url=base_url, promote=promote, min_delta=min_delta,
                         holdout_margin=holdout_margin)
    quiet_transport_logs(settings)
    runner: Runner | None = None
    try:
        with stop_on_signals(ignore=lambda: runner is not None and runner.finishing), \
                api(settings, base_url, dry_run=dry_run) as (url, token, store_note), \
                OvernightClient(url, token, timeout_s=120, attempts=settings.client_attempts) as client:
            if store_note:
                say(store_note)
            say(f"API at {url}" + ("" if base_url else " (embedded, stops at the end)"))
            runner = Runner(client, options, say=say)
            summary = runner.run()
            if store_note:  # an agent reading only the summary learns it too: the real run will make the store
                summary.verdict = f"{summary.verdict}; {store_note}"
            return summary
    except Terminated as stop:  # before the runner began: no run was started, nothing to stop
        return Summary(run_id=None, status="cancelled", exit_code=stop.exit_code,
                       verdict=f"cancelled: {stop} before a run was started", base_url=base_url)


@contextmanager
def stop_on_signals(*, ignore: Callable[[], bool]) -> Iterator[None]:
    """SIGTERM (cron's `timeout`, systemd, Kubernetes) and SIGINT (Ctrl-C) raise `Terminated` in the main thread,
    once: the runner then stops its canaries and finishes the run `cancelled`. Ignored are a second signal while
    it does so, and any once `ignore()` says the run is being finished (its record is final: the process is about
    to print the summary and exit; a scheduler that will not wait sends SIGKILL). Off the main thread (a test
    calling `nightly`) signals cannot be caught, and nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if not caught and not ignore():
            caught.append(signum)
            raise Terminated(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handled in previous.items():
            signal.signal(signum, handled)


def quiet_transport_logs(settings: Settings) -> None:
    """One line per request from httpx and from the embedded API would drown the runner's own progress."""
    if settings.log_level != "debug":
        for name in ("httpx", "overnight.api.middleware", "uvicorn.error"):
            logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def api(settings: Settings, base_url: str | None, *, dry_run: bool) -> Iterator[tuple[str, str, str | None]]:
    """The API's URL, an admin token for it, and what to say about its store. The embedded API of a dry run reads
    the store as it is: not made, not upgraded (`store_for_dry_run`)."""
    if base_url is not None:
        yield base_url, api_token(settings, roles=("admin",), url=base_url), None
        return
    from overnight.api.app import create_app  # noqa: PLC0415 - only the embedded default needs the app
    from overnight.api.auth import TokenRegistry, parse_token_spec  # noqa: PLC0415
    from overnight.api.embedded import embedded_server  # noqa: PLC0415
    from overnight.registry import Registry  # noqa: PLC0415
    from overnight.store import build_store, store_for_dry_run  # noqa: PLC0415

    registry = Registry()
    registry.ids()  # a broken signature module stops the run before the store is touched
    minted = secrets.token_urlsafe(32)
    spec = settings.tokens.get_secret_value()
    entries = parse_token_spec(spec, dev=settings.dev) if spec.strip() else []
    tokens = TokenRegistry([*entries, ("overnight-run", "admin", minted)])
    with ExitStack() as stack:
        note = None
        if dry_run:
            store, note = stack.enter_context(store_for_dry_run(settings))
        else:
            store = build_store(settings)
            stack.callback(store.close)
        app = create_app(settings, store, tokens=tokens, registry=registry)
        yield stack.enter_context(embedded_server(app)), minted, note


def api_token(settings: Settings, *, roles: tuple[str, ...], url: str) -> str:
    """The secret to send to a remote API: OVERNIGHT_TOKEN, else the first OVERNIGHT_TOKENS entry with a role."""
    if settings.token is not None:
        return settings.token.get_secret_value()
    from overnight.api.auth import parse_token_spec  # noqa: PLC0415

    spec = settings.tokens.get_secret_value()
    found = [secret for _, role, secret in (parse_token_spec(spec, dev=settings.dev) if spec.strip() else [])
             if role in roles]
    if not found:
        raise ConfigError(f"the API at {url} needs a token with the {' or '.join(roles)} role: set OVERNIGHT_TOKEN "
                          f"to its secret")
    return found[0]


def once_each(signatures: list[str]) -> list[str]:
    """A signature named twice is a slip in the command line (which one was meant?), not a request to run it twice."""
    for i, sig in enumerate(signatures):
        if sig in signatures[:i]:
            raise ConfigError(f"--signature {sig} is given twice: name each signature once")
    return signatures


def verify_commands(commands: list[str]) -> list[str]:
    """Each `--verify` is split into words as a shell would (quotes and backslashes; no pipes, redirections or
    variables: `sh -c '…'` for those), now, so a slip in one is a usage error before anything starts."""
    for command in commands:
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"--verify {command!r}: {str(exc).lower()} (it is split into words as a shell would)"
                              ) from None
        if not words:
            raise ConfigError(f"--verify {command!r}: give a command, e.g. --verify 'pytest -q tests/prompts'")
    return commands


def dataset_files(signatures: list[str], given: list[str]) -> dict[str, Path]:
    """`SIG=FILE` pairs, a bare FILE for a single signature, or by default `datasets/<sig>.jsonl` when present."""
    found: dict[str, Path] = {}
    for item in given:
        sig, sep, path = item.partition("=")
        if not sep:
            if len(signatures) != 1:
                raise ConfigError(f"--dataset {item}: with several signatures, write SIG=FILE")
            sig, path = signatures[0], item
        if sig not in signatures:
            raise ConfigError(f"--dataset {item}: {sig} is not one of the --signature values")
        if sig in found:
            raise ConfigError(f"--dataset {item}: {sig} already has a dataset ({found[sig]}): give one file per "
                              "signature")
        found[sig] = Path(path)
    for sig in signatures:
        default = Path("datasets") / f"{sig.lower()}.jsonl"
        if sig not in found and default.is_file():
            found[sig] = default
    return found


def seconds(text: str, *, option: str = "--deadline") -> int:
    match = DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"{option} {text!r}: give a positive duration such as 90m, 2h, 7d or 3600s")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}[match.group(2)]


def split_threshold(value: float) -> float:
    if not 0 < value <= SRM_THRESHOLD_MAX:
        raise ConfigError(f"--srm-threshold {value:g}: give a p-value in (0, {SRM_THRESHOLD_MAX:g}], "
                          f"e.g. {SRM_THRESHOLD_P:g}")
    return value


def percentages(text: str) -> list[float]:
    try:
        steps = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--steps {text!r}: give rollout percentages such as 5,25,50") from None
    if not steps or any(not 0 < s < 100 for s in steps) or steps != sorted(set(steps)):
        raise ConfigError(f"--steps {text!r}: increasing percentages between 0 and 100, e.g. 5,25,50")
    return steps
