"""The overnight runner: one headless loop, talking to the API only through `overnight.client`.

    preflight → run.start → verify → per signature: dataset.import → compile → canary.start → traffic →
    decide → e2e → run.finish

Each step appends `<phase>.started` and `<phase>.finished` events whose `client_event_id`s are fixed by (run,
signature, phase), so a resumed run (`--resume RUN_ID`, or a new run that took over a stale lease) skips every
step already finished — reading its result back from the `finished` event — and never duplicates an event.
Every exit path stops the canaries this run started and finishes the run. Exit codes (DESIGN §8): 0 promoted or
no change, 3 rolled back, 4 inconclusive, 1 failed, 2 usage or configuration. Must not import the store or DSPy.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, computed_field

from overnight.client import OvernightClient
from overnight.domain.access import API_FEATURES
from overnight.domain.canary import CanaryRecord, CanaryView
from overnight.domain.compiling import rung_sentence
from overnight.domain.gates import (
    HOLDOUT_MARGIN,
    MIN_DELTA,
    RUNNER_STEPS,
    SRM_THRESHOLD_P,
    HoldoutMargin,
    MinDelta,
    steps_said,
)
from overnight.domain.promotion import DEFAULT_TARGET, AliasMove, holdout_delta_gate, taken_back
from overnight.domain.receipts import PruneResult
from overnight.domain.review import NOTHING_BETTER, on_api, promote_command, rollback_command, short
from overnight.domain.runs import EventIn, RunStatus
from overnight.domain.stats import PairedDelta
from overnight.errors import (
    ApiUnreachable,
    CanaryActive,
    CanaryNotFound,
    ConfigError,
    EventTooLarge,
    InvalidInput,
    LMCallFailed,
    OvernightError,
    RunNotRunning,
    VerifyFailed,
)
from overnight.review.terminal import when

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ROLLED_BACK, EXIT_INCONCLUSIVE = 0, 1, 2, 3, 4
EXIT_BY_DECISION = {"promoted": EXIT_OK, "held": EXIT_OK, "no_improvement": EXIT_OK,
                    "rolled_back": EXIT_ROLLED_BACK, "inconclusive": EXIT_INCONCLUSIVE, "failed": EXIT_FAILED}
# Predicts the e2e check may send per request it judges, when another canary's candidate takes some of them.
E2E_TRIES = 8
SEVERITY = (EXIT_FAILED, EXIT_ROLLED_BACK, EXIT_INCONCLUSIVE, EXIT_OK)
# The options a resumed night keeps from its start (recorded on its preflight.finished event) when they are stricter
# than the resume's: option -> (the stricter of two values, the option as said).
KEPT_ON_RESUME: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any], str]]] = {
    "promote": (lambda a, b: a and b, lambda _: "--no-promote (a passed canary is held for a person)"),
    "min_delta": (max, lambda value: f"--min-delta {value:g}"),
    "holdout_margin": (min, lambda value: f"--holdout-margin {value:g}"),
}
PROGRESS_EVERY_S = 30.0  # a driven canary says where it is at least this often, and at each step
Say = Callable[[str], None]


class Terminated(BaseException):
    """SIGTERM or SIGINT reached the runner (see `nightly.stop_on_signals`): like KeyboardInterrupt, not an
    `Exception`, so no step's error handling swallows it; the runner stops its canaries and finishes the run
    `cancelled`, and the process exits 128 + the signal's number, as a shell reports a job a signal ended."""

    def __init__(self, signum: int) -> None:
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"terminated by {self.name}")


class RunOptions(BaseModel):
    signatures: list[str] = Field(min_length=1)
    datasets: dict[str, Path] = Field(default_factory=dict)
    verify: list[str] = Field(default_factory=list)
    deadline_s: int = 7200
    resume: str | None = None
    dry_run: bool = False
    steps: list[float] = Field(default=list(RUNNER_STEPS))
    srm_threshold_p: float = SRM_THRESHOLD_P  # the server's plan validates it
    concurrency: int = 4
    batch: int = 40
    max_requests: int = 5000
    e2e_requests: int = 5
    keep_days: int | None = Field(default=None, ge=1)  # prune receipts outside canaries and keys older than this
    promote: bool = True  # False (--no-promote): a passed canary is held for a person to promote
    # The holdout bar, before a canary opens and at the promotion: delta >= min_delta, lower bound >= -holdout_margin
    min_delta: MinDelta = MIN_DELTA
    holdout_margin: HoldoutMargin = HOLDOUT_MARGIN
    lease_s: int = 120
    seed: int = 0
    base_url: str | None = None  # the API the operator named (None: the embedded one, gone when the run ends)


class SignatureResult(BaseModel):
    signature_id: str
    decision: str = "failed"
    reason: str = ""
    dataset_hash: str | None = None
    report_id: str | None = None
    best_compiled_id: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    canary_id: str | None = None
    canary_status: str | None = None
    requests_sent: int = 0  # by the runner while the canary was active
    requests_on_arms: int = 0  # of them, those the canary counted (the rest: served by the champion after it decided)
    # On the arms before this runner drove the canary: one a resumed (or taken-over) run's killed runner drove first,
    # whose requests sent are not known; `requests_sent` counts this runner's alone.
    requests_before: int = 0
    alias_history_ids: list[int] = Field(default_factory=list)
    e2e: dict[str, Any] | None = None
    undo: str | None = None  # after a promotion that stands: the command that puts back the champion it replaced
    promote: str | None = None  # after a pass held for a person (--no-promote): the command that promotes it


class Summary(BaseModel):
    run_id: str | None
    status: str
    exit_code: int
    verdict: str
    base_url: str | None  # the API the run went through; None for the embedded one, gone once the run ended
    signatures: dict[str, SignatureResult] = Field(default_factory=dict)
    pruned: PruneResult | None = None  # with --keep-days: what the last step deleted
    review: str | None = None

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented way: serialized with the fields
    @property
    def undo(self) -> list[str]:
        """Each signature's `undo`: the commands that put back what this run promoted."""
        return [result.undo for result in self.signatures.values() if result.undo]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def promote(self) -> list[str]:
        """Each signature's `promote`: the commands that promote what this run's passed canaries held."""
        return [result.promote for result in self.signatures.values() if result.promote]


class Runner:
    def __init__(self, client: OvernightClient, options: RunOptions, *, say: Say,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.options, self.say, self.clock = client, options, say, clock
        self.run_id: str | None = None
        self._new_run_id: str | None = None  # chosen once: a start the signal cut short is retried as the same run
        self.recordable = False  # set by the preflight once a failure of it can go on the record
        self._resumable: str | None = None  # the running run a --resume names, once the preflight has found it
        self.finishing = False  # from the run's finish on, its record is final: a signal no longer cancels it
        self.started_at = clock()
        self.done: dict[str, dict[str, Any]] = {}  # client_event_id of a finished step -> its data
        self.adoptable: set[str] = set()  # runs whose canaries this run may continue (resumed or taken over)
        self.our_canaries: dict[str, str] = {}  # signature -> canary_id this run started or adopted
        self.attempt = uuid.uuid4().hex[:8]  # this process's, in the keys a resume asks anew (`_fresh_key`)
        self._holdouts: dict[str, list[dict[str, Any]]] = {}  # read once per signature (traffic, then e2e)

    # the loop ---------------------------------------------------------------------------------------------

    def run(self) -> Summary:
        results: dict[str, SignatureResult] = {}
        try:
            return self._run(results)
        except Terminated as stop:  # wherever it landed before the finish: preflight, start, a step, a cleanup
            reason = str(stop)
            if self.run_id is None and self.recordable:
                reason = f"{reason} {'as the run started' if self._new_run_id else 'in the preflight'}"
                self._take_run_to_record()
            self.say(f"run cancelled: {reason}")
            self._cleanup(reason, cancelled=True)
            summary = self._summary(stop.exit_code, f"cancelled: {reason}", results, status="cancelled")
            self._finish(summary)
            return summary
        finally:
            self.finishing = True  # also a preflight failure or a dry run, which finish nothing

    def _run(self, results: dict[str, SignatureResult]) -> Summary:
        try:
            self.preflight()
        except OvernightError as exc:
            return self._preflight_failed(exc)
        if self.options.dry_run:
            return self._summary(EXIT_OK, "dry run: preflight passed; nothing was changed", {})
        try:
            self.start()
        except OvernightError as exc:  # run_locked, run_not_running (a resume of a finished run), unreachable
            self.say(f"{exc.code}: {exc.message}")
            return self._summary(EXIT_FAILED, f"{exc.code}: {exc.message}", {})
        try:
            self.step("run", "verify", self.verify)
            for sig in self.options.signatures:
                results[sig] = self.signature(sig)
            pruned = self.step("run", "prune", self.prune) if self.options.keep_days else None
        except Terminated:
            raise
        except BaseException as exc:
            reason = f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"
            self.say(f"run failed: {reason}")
            self._cleanup(reason)
            summary = self._summary(EXIT_FAILED, f"failed: {reason}", results)
            self._finish(summary)
            if not isinstance(exc, Exception):
                raise
            return summary
        code = next(c for c in SEVERITY if c in {EXIT_BY_DECISION[r.decision] for r in results.values()} | {0})
        summary = self._summary(code, "; ".join(f"{s}: {r.decision}" for s, r in results.items()), results)
        summary.pruned = None if pruned is None else PruneResult.model_validate(pruned)
        self._finish(summary)
        return summary

    def preflight(self) -> None:
        """Fail fast (exit 2). First what recording a failure needs: API reachable and migrated, an admin token, an
        API not older than this runner, a run to resume that is still running. Then what the night needs: verify
        programs there, valid datasets, an LM that answers (last: on the local model it is the slow one)."""
        self.client.ready()
        identity = self.client.whoami()
        if identity.role != "admin":
            raise ConfigError(f"token {identity.name!r} has role {identity.role}; the runner needs an admin token")
        self._api_is_not_older(identity.features)
        if self.options.resume:
            resumed = self.client.get_run(self.options.resume)  # run_not_found
            if resumed.status != RunStatus.running:
                raise RunNotRunning(f"run {resumed.run_id} is {resumed.status}: only a running run can be resumed; "
                                    "start a new run instead")
            self._resumable = resumed.run_id  # a preflight failure from here on is told to it
        self.recordable = not (self.options.dry_run or self.options.resume)
        for command in self.options.verify:
            program = shlex.split(command)[0]  # split once already: `nightly.verify_commands`
            if shutil.which(program) is None:
                where = ("is not an executable file" if os.sep in program else
                         "is not a program on PATH (cron's PATH is short: give the program's full path)")
                raise ConfigError(f"--verify {command!r}: {program} {where}")
        for sig, path in self.options.datasets.items():
            try:
                body = path.read_bytes()
            except OSError as exc:  # missing, a directory, unreadable: named as the OS says it
                raise ConfigError(f"dataset file {path} for {sig} cannot be read: {exc.strerror or exc}") from None
            self.client.validate_examples(sig, body)
        for sig in self.options.signatures:
            if sig not in self.options.datasets:
                self._has_rows(sig)
        for sig in self.options.signatures:
            check = self.client.lm_check(sig, timeout_s=600)
            if not check.ok:
                raise ConfigError(f"the LM {check.lm_id} did not answer {sig}'s sample input: "
                                  f"{check.error_code}: {check.error}")
            self.say(f"preflight: {sig} answered by {check.lm_id} in {check.latency_ms} ms")
            if check.backend == "local":
                # One in-process model answers one call at a time: more traffic in flight only queues, and the
                # queueing would be measured as the candidate's latency.
                self.options = self.options.model_copy(update={"concurrency": 1, "batch": 10})

    def _api_is_not_older(self, features: list[str] | None) -> None:
        """An API older than this runner cannot do all the night asks of it: found out mid-night, the run would
        fail (and could leave its canary running). An API says what it has in its whoami; one from before it said
        is probed for what it might lack."""
        if features is None:
            lacks = self._probed_lacks()
        else:
            lacks = [needed for feature, needed in API_FEATURES.items() if feature not in features]
        if lacks:
            raise ConfigError(f"the API at {self.client.base_url} is older than this runner (it has no "
                              f"{'; nor '.join(lacks)}): upgrade the servers first")

    def _probed_lacks(self) -> list[str]:
        """What an API that does not say what it has lacks: each probe asks what an older API answers differently,
        and neither changes anything (a canary that does not exist; a compile refused for its body)."""
        lacks = []
        try:
            self.client.canary_by_id("can-0-preflight")
        except CanaryNotFound:
            pass  # the route is there; no such canary
        except OvernightError as exc:
            if exc.code != "not_found":
                raise
            lacks.append(API_FEATURES["canary_by_id"])
        try:
            self.client.request("POST", f"/api/v1/signatures/{self.options.signatures[0]}/compile",
                                json={"max_seconds": -1}, effect=False)
        except InvalidInput as exc:
            if any(problem.get("field") == "body.max_seconds" and problem.get("type") == "extra_forbidden"
                   for problem in exc.details.get("errors", [])):
                lacks.append(API_FEATURES["compile_max_seconds"])
        return lacks

    def _has_rows(self, sig: str) -> None:
        """With no dataset file, the night compiles what the store holds: it needs train and holdout rows, and
        without them would start a run only to fail it at compile."""
        missing = [split for split in ("train", "holdout")
                   if not self.client.examples(sig, split=split, limit=1).examples]
        if missing:
            raise ConfigError(f"{sig} has no {' and no '.join(missing)} rows in the store, and no dataset file was "
                              f"given: pass --dataset {sig}=FILE (or put datasets/{sig.lower()}.jsonl in the current "
                              f"directory), or `overnight import FILE -s {sig}` first")

    def _preflight_failed(self, exc: OvernightError) -> Summary:
        """Exit 2, and a failure the API can hear of — the LM down at 2 a.m., a dataset file gone or gone bad — on the
        record: a run started only to hold a `preflight.failed` event and finished `failed`, so the morning's
        `overnight runs` shows the night that did not happen and why, not a gap. A dry run records nothing, and a
        resume no run of its own (its run is still there to resume: a `resume.refused` warning on it says why), nor
        can an API that cannot be reached or used; a live run holding a signature (`run_locked`) leaves it
        unrecorded too."""
        verdict = f"preflight failed: {exc.code}: {exc.message}"
        if self._resumable and not self.options.dry_run:
            self._tell_the_resumed_run(self._resumable, verdict)
        if not self.recordable:
            return self._summary(EXIT_USAGE, verdict, {})
        try:
            self._begin()
        except OvernightError as unrecorded:
            self.say(f"the preflight failure is not recorded: {unrecorded.code}: {unrecorded.message}")
            return self._summary(EXIT_USAGE, verdict, {})
        self._failed("run", "preflight", exc)
        self._cleanup(verdict)
        summary = self._summary(EXIT_USAGE, verdict, {})
        self._finish(summary)
        return summary

    def _tell_the_resumed_run(self, run_id: str, verdict: str) -> None:
        """A resume refused by its preflight changes nothing, but leaves a warning on the run it would have resumed,
        so whoever reviews that run sees the attempt and why it failed, not only a lease gone stale."""
        message = f"a resume of this run was refused: {verdict}; nothing changed, and it can be resumed again"
        try:
            self.client.append_event(run_id, EventIn(
                kind="resume.refused", phase="preflight", level="warning", message=message[:4000],
                data={"verdict": verdict[:4000]}, client_event_id=f"run:resume:refused:{uuid.uuid4().hex[:12]}"))
        except OvernightError as unrecorded:
            self.say(f"the refused resume is not recorded on {run_id}: {unrecorded.code}: {unrecorded.message}")

    def _take_run_to_record(self) -> None:
        """A night cancelled before its run was taken, past the checks recording needs (cron's `timeout` while the
        preflight waits on a slow LM): take the run now, to be finished `cancelled`, so the morning sees the night
        that did not happen and why rather than a gap. A start the signal cut short is the same run, asked again."""
        try:
            self._begin()
        except OvernightError as exc:
            self.say(f"the cancel is not recorded: {exc.code}: {exc.message}")

    def start(self) -> None:
        self._begin()
        self.event("preflight.finished", "preflight", "preflight passed",
                   {"signatures": self.options.signatures, **self.options.model_dump(include=set(KEPT_ON_RESUME))},
                   "run:preflight:finished")

    def _begin(self) -> None:
        """Take the run: the one to resume, or a new one (which takes over runs whose lease went stale)."""
        if self.options.resume:
            run = self.client.get_run(self.options.resume)
            self.run_id = run.run_id
            self.client.heartbeat(run.run_id)  # refuses (run_not_running) a run that finished or was taken over
            self.adoptable.add(run.run_id)
            self.done = {e.client_event_id: e.data for e in self.client.all_events(run.run_id)
                         if e.client_event_id and e.client_event_id.endswith(":finished")}
            self.say(f"resuming {run.run_id}: {len(self.done)} steps already finished")
            self._keep_what_it_was_started_with(run.run_id)
        else:
            if self._new_run_id is None:
                self._new_run_id = f"night-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
            run_id = self._new_run_id
            started = self.client.start_run(signature_ids=self.options.signatures, run_id=run_id,
                                            lease_s=self.options.lease_s, key=f"start-{run_id}")
            self.run_id = started.run.run_id
            self.adoptable.update(t["from_run_id"] for t in started.took_over if t.get("from_run_id"))
            self.say(f"run {self.run_id} started" + (f", took over {sorted(self.adoptable)}" if self.adoptable else ""))

    def _keep_what_it_was_started_with(self, run_id: str) -> None:
        """What the night's owner asked for holds, whoever resumes it: a night started with --no-promote does not
        promote a pass on its own, and one started with a stricter holdout bar keeps it (a resume may be stricter)."""
        started = self.done.get("run:preflight:finished", {})
        kept, said = {}, []
        for option, (stricter, saying) in KEPT_ON_RESUME.items():
            given = getattr(self.options, option)
            if option in started and stricter(started[option], given) != given:
                kept[option] = stricter(started[option], given)
                said.append(saying(kept[option]))
        if kept:
            self.options = self.options.model_copy(update=kept)
            self.say(f"{run_id} was started with {', '.join(said)}: kept")

    def signature(self, sig: str) -> SignatureResult:
        result = SignatureResult(signature_id=sig)
        if sig in self.options.datasets:
            imported = self.step(sig, "dataset.import", lambda: self.import_dataset(sig))
            result.dataset_hash = imported["dataset_hash"]
        report = self.step(sig, "compile", lambda: self.compile(sig))
        stored = report.get("status", "completed") == "completed"  # a compile stopped at the deadline stores none
        result.report_id = report["report_id"] if stored else None
        result.best_compiled_id = report["best_compiled_id"]
        result.dataset_hash = report["dataset_hash"]
        result.champion_before = report["incumbent_compiled_id"]
        replaced = result.champion_before  # what a promotion by this run moved away from
        if held := self._held_back(sig, report):
            result.decision, result.reason = held
            result.champion_after = result.champion_before
        else:
            canary = self.step(sig, "canary.start", lambda: self.start_canary(sig, report))
            result.canary_id = canary["canary_id"]
            self.our_canaries[sig] = canary["canary_id"]
            traffic = self.step(sig, "traffic", lambda: self.traffic(sig, canary["canary_id"]))
            result.canary_status, result.requests_sent = traffic["status"], traffic["requests_sent"]
            result.requests_before = traffic.get("requests_before", 0)
            result.requests_on_arms = sum(arm["samples"] for arm in traffic["arms"].values())
            decided = self.step(sig, "decide", lambda: self.decide(sig, report, traffic))
            result.decision, result.reason = decided["decision"], decided["reason"]
            result.alias_history_ids = decided["alias_history_ids"]
            result.champion_after = decided["champion_after"]
            replaced = decided.get("champion_replaced", replaced)
            if result.decision == "promoted":
                result.undo = rollback_command(sig, str(self.run_id), to=replaced or DEFAULT_TARGET,
                                               base_url=self.options.base_url)
            elif result.decision == "held":
                result.promote = promote_command(sig, str(self.run_id), candidate=report["best_compiled_id"],
                                                 base_url=self.options.base_url, min_delta=self.options.min_delta,
                                                 margin=self.options.holdout_margin)
        result.e2e = self.step(sig, "e2e", lambda: self.e2e(sig, result.champion_after or ""))
        if result.e2e["ok"]:
            return result
        problem = result.e2e["problem"]
        if result.decision != "promoted":
            result.decision, result.reason = "failed", f"e2e smoke check failed: {problem}"
            result.promote = None  # serving is broken: nothing to promote onto until a person has looked
            return result
        # No one reads the result until morning: the run takes back its own promotion of a program that just failed.
        undone = self.step(sig, "rollback", lambda: self.undo_promotion(sig, result.champion_after, replaced, problem))
        result.decision = "failed"
        result.reason = f"e2e smoke check failed after promotion: {problem}; {undone['said']}"
        result.champion_after = undone["champion_after"]
        result.undo = None  # undone, or someone else's move since
        result.alias_history_ids += undone["alias_history_ids"]
        return result

    def _held_back(self, sig: str, report: dict[str, Any]) -> tuple[str, str] | None:
        """(decision, reason) when the signature opens no canary tonight: recorded as the canary.start step's, so
        the review reads them there, and a resumed run keeps what was decided then."""
        held = self._why_no_canary(sig, report)
        if held is None:
            return None
        skipped, decision, reason = held
        done = self.step(sig, "canary.start", lambda: {"skipped": skipped, "decision": decision, "reason": reason,
                                                       "elapsed_s": round(self._elapsed())})
        return done.get("decision", decision), done.get("reason", reason)

    def _why_no_canary(self, sig: str, report: dict[str, Any]) -> tuple[str, str, str] | None:
        if report.get("status", "completed") != "completed":
            return "deadline", "inconclusive", (
                f"compile stopped at the run's deadline ({self.options.deadline_s} s) after {report['lm_calls']} LM "
                "calls, before it could compare candidates on holdout; the champion stays, and the next compile "
                "resumes from the scores this one kept")
        if not report["improved"]:
            return "no_improvement", "no_improvement", NOTHING_BETTER
        started = self.done.get(f"{sig}:canary.start:finished")  # resumed: as decided then
        skipped = (started or {}).get("skipped")
        if started is not None and not skipped:
            return None  # resumed with its canary open: the traffic step carries it on, and stops it at the deadline
        refused = self._candidate_refused(sig, report, started, skipped)
        if refused is not None:
            return refused
        if skipped == "deadline" or self._past_deadline():
            # Opened now, the canary would be stopped at the traffic step's first look, after real requests had
            # gone to the candidate for nothing.
            return "deadline", "inconclusive", (
                f"the run's deadline ({self.options.deadline_s} s) passed before its canary could start "
                f"(at +{round(self._elapsed())} s); the champion stays")
        return None

    def _candidate_refused(self, sig: str, report: dict[str, Any], started: dict[str, Any] | None,
                           skipped: str | None) -> tuple[str, str, str] | None:
        """Why compile's best gets no canary tonight though it is better: a program someone took off serving, or
        one the promotion would refuse on its holdout delta. Resumed, a refusal recorded then stands."""
        if started is not None and skipped == "taken_back":
            return "taken_back", started["decision"], started["reason"]
        back = self._taken_back(sig, report["best_compiled_id"]) if started is None else None
        if back is not None:
            return "taken_back", "no_improvement", back
        recorded = report.get("paired_delta")  # improved: there is one (a resumed run's older record may lack it)
        delta = PairedDelta.model_validate(recorded) if recorded else None
        if delta is not None and (started is None or skipped == "holdout_delta_not_met"):
            shown = holdout_delta_gate(delta, min_delta=self.options.min_delta, margin=self.options.holdout_margin)
            if shown.verdict != "pass":
                # A canary would send users' requests to a candidate the promotion refuses whatever it shows.
                wide = delta.delta >= self.options.min_delta  # ahead enough, but the interval reaches too low
                return "holdout_delta_not_met", "inconclusive", (
                    f"compile's best {short(report['best_compiled_id'])}: {shown.message}; the promotion would "
                    "refuse it, so no canary was opened" + (" (more holdout rows narrow the interval)" if wide else ""))
        return None

    def _taken_back(self, sig: str, best: str) -> str | None:
        """Why no canary, when compile's best is a program rolled back off serving and not put back since: someone
        decided against it for a reason the gates cannot see, and the same data and LM make it the best again."""
        move = taken_back(self.client.alias_history(sig, limit=1000).history, best)
        if move is None:
            return None
        said = move.reason if len(move.reason) <= 200 else move.reason[:199] + "…"
        return (f"compile's best {short(best)} was rolled back by {move.actor} at {when(move.created_at)} "
                f"({said!r}), so no canary was opened: a night does not try again a program taken off serving "
                f"until someone promotes it (overnight promote {short(best)} -s {sig} --force --reason …)")

    # steps ------------------------------------------------------------------------------------------------

    def step(self, scope: str, phase: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run one step once: skipped (its recorded result returned) when its `finished` event exists."""
        finished_id = f"{scope}:{phase}:finished"
        if finished_id in self.done:
            self.say(f"{scope}: {phase} already finished (resumed)")
            return self.done[finished_id]
        self.event(f"{phase}.started", phase, f"{scope}: {phase}", {"signature": scope}, f"{scope}:{phase}:started")
        try:
            with self._pulse():
                data = work()
        except Exception as exc:
            self._failed(scope, phase, exc)
            raise
        self.event(f"{phase}.finished", phase, f"{scope}: {phase} finished", {"signature": scope, **data},
                   finished_id)
        self.done[finished_id] = {"signature": scope, **data}
        return self.done[finished_id]

    def _failed(self, scope: str, phase: str, exc: Exception) -> None:
        """A step that raised leaves a `<phase>.failed` event (level error) with the error's code, message and
        details — a verify command's output, a dataset's bad lines —, so the review shows which step failed and
        why. Best effort: the failure may be the API's own, and the run's finish records the reason either way."""
        if isinstance(exc, ApiUnreachable):
            return  # nothing to record it with; the client has already spent its retries
        code = getattr(exc, "code", type(exc).__name__)
        data = {"signature": scope, "code": code, "error": str(exc)}
        details = getattr(exc, "details", None) or {}

        def record(body: dict[str, Any], key: str | None = None) -> None:
            self.event(f"{phase}.failed", phase, f"{scope}: {phase} failed: {code}: {exc}"[:4000], body,
                       f"{scope}:{phase}:failed", level="error", key=key)

        try:
            record({**data, "details": details} if details else data)
        except EventTooLarge:  # details past OVERNIGHT_MAX_EVENT_BYTES: the error without them (a key of its own:
            with contextlib.suppress(OvernightError):  # the first one replays the refusal)
                record(data, key=self._fresh_key(f"event:{scope}:{phase}:failed-brief"))
        except OvernightError:  # the API failing too: the run's finish (or its lapsed lease) records the end
            pass

    def verify(self) -> dict[str, Any]:
        checks: list[dict[str, Any]] = []
        for command in self.options.verify:
            begun = self.clock()
            try:
                exit_code, output = run_check(shlex.split(command),
                                              timeout_s=max(1.0, self.options.deadline_s - self._elapsed()))
            except OSError as exc:  # found at preflight, but not executable or gone since
                raise VerifyFailed(f"verify command could not be run: {command}: {exc.strerror or exc}",
                                   details={"checks": checks}) from None
            checks.append({"command": command, "exit_code": exit_code, "seconds": round(self.clock() - begun, 2),
                           "output_tail": output[-2000:]})
            self.say(f"verify: {command} -> " + ("stopped at the deadline" if exit_code is None
                                                  else f"exit {exit_code}"))
            if exit_code is None:
                raise VerifyFailed(f"verify command did not finish within the run's deadline "
                                   f"({self.options.deadline_s} s), stopped: {command}", details={"checks": checks})
            if exit_code != 0:
                last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
                raise VerifyFailed(f"verify command exited {exit_code}: {command}"
                                   + (f"; its output ends: {last[:300]}" if last else ""), details={"checks": checks})
        return {"checks": checks}

    def prune(self) -> dict[str, Any]:
        assert self.options.keep_days is not None  # noqa: S101 - the step runs only with --keep-days
        pruned = self.client.prune(self.options.keep_days, key=self._fresh_key("prune"))
        self.say(f"prune: {pruned.sentence()}")
        return pruned.model_dump()

    def import_dataset(self, sig: str) -> dict[str, Any]:
        imported = self.client.import_examples(sig, self.options.datasets[sig].read_bytes(), run_id=self.run_id,
                                               key=self._fresh_key(f"{sig}:import"))
        self.say(f"{sig}: dataset {imported.dataset_hash[:12]} ({imported.counted()})")
        return {"dataset_hash": imported.dataset_hash, "inserted": imported.inserted, "updated": imported.updated,
                "unchanged": imported.unchanged}

    def compile(self, sig: str) -> dict[str, Any]:
        # The compile starts no LM call past the run's deadline (none at all once it has passed: a stored report is
        # still found); the client waits that long and then as long as an LM call in flight may take (a remote
        # call's timeout is at most an hour).
        left = max(0, math.ceil(self.options.deadline_s - self._elapsed()))
        with self._rungs_said(sig):
            report = self.client.compile(sig, run_id=self.run_id, seed=self.options.seed, max_seconds=left,
                                         key=self._fresh_key(f"{sig}:compile"), timeout_s=left + 3600)
        delta = report.paired_delta
        best = f"best {report.best_compiled_id[:12]} " + (
            f"delta {delta.delta:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}]" if delta else "(no holdout delta)")
        if report.status != "completed":
            self.say(f"{sig}: compile stopped at the run's deadline after {report.lm_calls} LM calls "
                     f"({report.evaluations} scores, {report.reused} of them read back); no canary")
        elif report.cached:  # the stored report of this very job and dataset: its LM calls were paid when it was made
            self.say(f"{sig}: compile cached: report {report.report_id} of the same job and dataset, no LM call; "
                     f"{best}")
        else:
            self.say(f"{sig}: compiled {len(report.candidates)} candidates with {report.lm_calls} LM calls" + (
                f" ({report.reused} scores read back from earlier compiles)" if report.reused else "") + f"; {best}")
        return {"report_id": report.report_id, "best_compiled_id": report.best_compiled_id,
                "incumbent_compiled_id": report.incumbent_compiled_id, "improved": report.improved,
                "dataset_hash": report.dataset_hash, "lm_calls": 0 if report.cached else report.lm_calls,
                "cached": report.cached, "status": report.status, "stopped_by": report.stopped_by,
                "paired_delta": delta.model_dump(mode="json") if delta else None}

    def start_canary(self, sig: str, report: dict[str, Any]) -> dict[str, Any]:
        canary = self._canary_left(sig, report["best_compiled_id"]) if self.adoptable else None
        if canary is None:
            remaining = max(60, int(self.options.deadline_s - self._elapsed()))
            body = {"candidate_id": report["best_compiled_id"], "steps": self.options.steps, "run_id": self.run_id,
                    "report_id": report["report_id"], "deadline_s": remaining,
                    "srm_threshold_p": self.options.srm_threshold_p}
            try:
                canary = self.client.start_canary(sig, body, key=self._fresh_key(f"{sig}:canary"))
            except CanaryActive:  # opened meanwhile by a run this one continues: carried on; anyone else's stands
                canary = self._canary_left(sig, report["best_compiled_id"])
                if canary is None:
                    raise
        self.say(f"{sig}: canary {canary.canary_id} on steps {steps_said(canary.config.steps)}, pass look at "
                 f"{canary.config.targets[-1]} candidate requests")
        return {"canary_id": canary.canary_id, "targets": list(canary.config.targets),
                "steps": list(canary.config.steps), "candidate_id": canary.candidate_id,
                "control_id": canary.control_id}

    def _canary_left(self, sig: str, candidate_id: str) -> CanaryRecord | None:
        """Resumed or taken over: the canary for this candidate that the earlier process opened before it died
        (its answer never recorded as the step's), carried on as it is, ended or not — one canary per candidate a
        night, never a second chance at the gates."""
        try:
            found = self.client.canary(sig).canary
        except CanaryNotFound:
            return None
        if found.run_id not in self.adoptable | {self.run_id} or found.candidate_id != candidate_id:
            return None
        self.say(f"{sig}: continuing canary {found.canary_id} of run {found.run_id} ({found.status})")
        return found

    def traffic(self, sig: str, canary_id: str) -> dict[str, Any]:
        """Drive labeled holdout inputs until the canary decides, cannot pass any more, or time runs out."""
        # A canary a killed runner drove first (resumed, or taken over) has requests of its on the arms already.
        before = sum(arm.samples for arm in self.client.canary_by_id(canary_id).canary.arms.values())
        sent = self._drive(sig, canary_id, self._holdout(sig))
        view = self.client.canary_by_id(canary_id)  # the arms once the requests in flight at the end are counted
        canary = view.canary
        counted = {arm: c.samples for arm, c in canary.arms.items()}
        arms = f"({counted.get('control', 0)} control, {counted.get('candidate', 0)} candidate)"
        on_arms = (f"{sum(counted.values())} requests on its arms {arms}, {before} of them before this runner "
                   f"carried it on ({sent} sent since)" if before
                   else f"{sum(counted.values())} of {sent} requests sent were on its arms {arms}")
        self.say(f"{sig}: canary {canary.status}: {on_arms}: {canary.end_reason}")
        stopped_by = next((h.actor for h in reversed(view.history) if h.kind == "stopped"), None) \
            if canary.status == "stopped" else None
        return {"canary_id": canary_id, "status": canary.status, "end_reason": canary.end_reason,
                "stopped_by": stopped_by, "requests_sent": sent, "requests_before": before,
                "arms": {a: c.summary() for a, c in canary.arms.items()}}

    def _drive(self, sig: str, canary_id: str, rows: list[dict[str, Any]]) -> int:
        """The traffic loop: predicts topped up to the runner's concurrency, each look at the canary deciding
        whether to go on; the requests sent, once those in flight have ended. Each predict runs on a daemon thread
        of its own: a cancel or a failure goes on the record, and the process exits, without waiting for those in
        flight (an API sitting on them would hold a pool's threads, which Python joins at exit, past a
        scheduler's grace period)."""
        sent, started = 0, uuid.uuid4().hex[:8]  # request keys are fresh per (re)start of this step
        in_flight: set[Future[None]] = set()
        told = (0, self.clock())  # (step, when) of the last progress line: the canary's opening line said step 0
        while True:
            view = self.client.canary_by_id(canary_id)  # ours, even if another canary has replaced it since
            if view.canary.status != "active":
                break
            if view.canary.step != told[0] or self.clock() - told[1] >= PROGRESS_EVERY_S:
                self.say(f"{sig}: {canary_progress(view.canary, sent)}")
                told = (view.canary.step, self.clock())
            reason = self._stop_reason(view, sent)
            if reason:
                with contextlib.suppress(CanaryNotFound):  # it ended since our look: that end stands
                    self.client.stop_canary(sig, reason=reason, canary_id=canary_id,
                                            key=self._fresh_key(f"{sig}:stop"))
                break
            for i in range(sent, sent + self.options.batch):  # topped up as each call ends: no batch barrier
                in_flight = _settle(in_flight, below=self.options.concurrency)
                in_flight.add(_on_a_daemon(self._exercise, sig, rows[i % len(rows)], f"{self.run_id}:{started}:{i}"))
            sent += self.options.batch
        _settle(in_flight, below=1)
        return sent

    def _elapsed(self) -> float:
        return self.clock() - self.started_at

    def _past_deadline(self) -> bool:
        return self._elapsed() > self.options.deadline_s

    def _stop_reason(self, view: CanaryView, sent: int) -> str | None:
        evaluation = view.evaluation or {}
        if evaluation.get("can_still_pass") is False and evaluation.get("outcome") == "continue":
            missed = next((h for h in reversed(view.history) if h.kind == "look_missed"), None)
            why = missed.evidence.get("message") if missed else evaluation.get("message")
            return f"the candidate can no longer pass: {why}"
        if self._past_deadline():
            return f"the run's deadline ({self.options.deadline_s} s) passed before the gates decided"
        if sent >= self.options.max_requests:
            return f"sent {sent} requests (the runner's limit) before the gates decided"
        return None

    def _exercise(self, sig: str, row: dict[str, Any], key: str) -> None:
        with contextlib.suppress(LMCallFailed):  # counted on its arm by the server: a measurement, not a failure
            self.client.predict(sig, row["input"], request_key=key, expected=row["expected"])

    def _holdout(self, sig: str) -> list[dict[str, Any]]:
        if sig not in self._holdouts:
            self._holdouts[sig] = self._read_holdout(sig)
        return self._holdouts[sig]

    def _read_holdout(self, sig: str) -> list[dict[str, Any]]:
        rows, after = [], None
        while True:
            page = self.client.examples(sig, split="holdout", after=after)
            rows += [{"input": r.input, "expected": r.expected} for r in page.examples]
            if page.next_after is None:
                break
            after = page.next_after
        if not rows:
            raise OvernightError(f"{sig} has no holdout rows to drive the canary with")
        return rows

    def decide(self, sig: str, report: dict[str, Any], traffic: dict[str, Any]) -> dict[str, Any]:
        status = traffic["status"]
        champion = self.client.alias_history(sig).champion_id or report["incumbent_compiled_id"]
        if status != "passed":
            decision = "rolled_back" if status == "failed" else "inconclusive"
            by = f" by {traffic['stopped_by']}" if traffic.get("stopped_by") else ""  # an operator, or this runner
            return {"decision": decision, "reason": f"canary {status}{by}: {traffic['end_reason']}",
                    "alias_history_ids": [], "champion_after": champion}
        if not self.options.promote:  # the canary has ended: the champion serves everything until a person decides
            self.say(f"{sig}: canary passed; {report['best_compiled_id'][:12]} held for a person to promote "
                     "(--no-promote)")
            return {"decision": "held", "reason": "canary passed; held for a person to promote (--no-promote)",
                    "alias_history_ids": [], "champion_after": champion}
        candidate = report["best_compiled_id"]
        try:
            move = self.client.promote(sig, {"candidate_id": candidate, "run_id": self.run_id,
                                             "report_id": report["report_id"], "min_delta": self.options.min_delta,
                                             "margin": self.options.holdout_margin},
                                       key=f"{self.run_id}:{sig}:promote").move
        except OvernightError as exc:
            if exc.code != "promotion_refused":
                move = self._move_made(sig, "promote", candidate, exc)
            else:
                return {"decision": "inconclusive", "reason": f"promotion refused: {exc.message}",
                        "alias_history_ids": [], "champion_after": champion}
        self.our_canaries.pop(sig, None)
        self.say(f"{sig}: promoted {candidate[:12]}")
        return {"decision": "promoted", "reason": move.reason, "alias_history_ids": [move.id],
                "champion_after": move.to_id, "champion_replaced": move.from_id}

    def _move_made(self, sig: str, action: str, to_id: str | None, failure: OvernightError) -> AliasMove:
        """This run's promote or rollback, made but its answer lost: a server of an earlier version (this one keeps
        the answer in the move's transaction) died after the move and before it kept the answer for the key, so the
        retry (or the resume's, once the dead claim's lease lapsed) ran it again and was refused, the move being
        done (409: already the champion, nothing to roll back). The last move, `action` to `to_id` by this run, is
        the answer; any other failure is raised as it came."""
        last = self.client.alias_history(sig, limit=1).history if failure.status == 409 else []
        if not last or (last[-1].action, last[-1].to_id, last[-1].run_id) != (action, to_id, self.run_id):
            raise failure
        self.say(f"{sig}: the {action} to {short(to_id)} was made before its answer was lost (alias move "
                 f"{last[-1].id}); {failure.code} when asked again")
        return last[-1]

    def undo_promotion(self, sig: str, promoted: str | None, replaced: str | None, problem: str) -> dict[str, Any]:
        """Put back the champion this run's promotion replaced, unless someone has moved the alias since (theirs is
        the newer decision: left alone, and said)."""
        now = self.client.alias_history(sig).champion_id
        if now != promoted:
            said = f"not rolled back: the champion has moved since, to {short(now)}"
            self.say(f"{sig}: e2e failed after promotion; {said}")
            return {"said": said, "champion_after": now, "alias_history_ids": []}
        try:
            move = self.client.rollback(sig, {"to": replaced or DEFAULT_TARGET, "run_id": self.run_id,
                                              "reason": f"e2e smoke check failed after promotion: {problem}"[:2000]},
                                        key=f"{self.run_id}:{sig}:rollback").move
        except OvernightError as exc:
            move = self._move_made(sig, "rollback", replaced, exc)
        said = f"rolled back to {short(move.to_id)}"
        self.say(f"{sig}: e2e failed after promotion; {said}")
        return {"said": said, "champion_after": move.to_id, "alias_history_ids": [move.id]}

    def e2e(self, sig: str, expected: str) -> dict[str, Any]:
        """A smoke check of serving after the decision: every predict reaches the expected program, and it answers.
        An LM failure on some of them is reported, not failed on: its receipt names the program that served it,
        and the canary, not five calls, measured the error rate.

        A predict routed to the candidate of a canary this run did not start (an operator's, opened since) is that
        canary at work, not a wrong program: it is counted apart, and another request key is tried in its place
        (up to `E2E_TRIES` per request the check makes)."""
        rows, served, answered = self._holdout(sig), [], 0
        problems, lm_failures, elsewhere = Counter[str](), Counter[str](), Counter[str]()
        asked, ours = self.options.e2e_requests, self.our_canaries.get(sig)
        judged = 0
        for i in range(asked * E2E_TRIES):
            if judged == asked:
                break
            failure, program, arm, canary = None, None, None, None
            try:
                answer = self.client.predict(sig, rows[i % len(rows)]["input"], request_key=f"e2e-{self.run_id}-{i}")
                program, arm, canary = answer.compiled_id, answer.arm, answer.canary_id
            except LMCallFailed as exc:  # its receipt names the program that served it
                failure = f"{exc.code}: {exc.message}"
                program, arm, canary = (exc.details.get(k) for k in ("compiled_id", "arm", "canary_id"))
            except OvernightError as exc:
                problems[f"{exc.code}: {exc.message}"] += 1
                judged += 1
                continue
            if arm == "candidate" and canary is not None and canary != ours:
                elsewhere[str(canary)] += 1
                continue
            judged += 1
            if failure:
                lm_failures[failure] += 1
            else:
                answered += 1
            if program:
                served.append(str(program))
        wrong = [s for s in served if s != expected]
        if not answered and not problems:
            problems.update(lm_failures)  # it never answered: not a flaky call, a program that does not work
        problem = "; ".join(f"{n} of {judged} failed: {said}" for said, n in problems.items()) or (
            f"{len(wrong)} of {judged} served by {wrong[0][:12]}, not {expected[:12]}" if wrong else "") or (
            "" if judged else f"no request reached the champion: all {sum(elsewhere.values())} went to another "
                              f"canary's candidate ({', '.join(elsewhere)})")
        return {"ok": not problem, "requests": judged, "expected_compiled_id": expected,
                "served": sorted(set(served)), "problem": problem,
                "lm_failures": [f"{n} of {judged}: {said}" for said, n in lm_failures.items()],
                "elsewhere": dict(elsewhere)}

    # bookkeeping ------------------------------------------------------------------------------------------

    def event(self, kind: str, phase: str, message: str, data: dict[str, Any], client_event_id: str, *,
              level: str = "info", key: str | None = None) -> None:
        if self.run_id is not None:
            self.client.append_event(self.run_id, EventIn(kind=kind, phase=phase, level=level, message=message,
                                                          data=data, client_event_id=client_event_id),
                                     key=key or self._fresh_key(f"event:{client_event_id}"))

    def _fresh_key(self, what: str) -> str:
        """The Idempotency-Key of a request that this process's retries replay and a resume asks anew. What it asks
        is safe to ask again (an import is by content, a compile by job, an event by its client_event_id; a canary
        or a stop the resume finds as it is), or carries the resume's own deadline; and the killed process's claim
        on its key would hold the resume up for a lease (its embedded API died with it, renewing nothing) or
        refuse it (a body with another deadline). A promote, a rollback and the run's start and finish keep one
        key for the run: their answer is what a resume needs (replayed, or, its claim dead, asked again once the
        lease lapses)."""
        return f"{self.run_id}:{what}:{self.attempt}"

    @contextlib.contextmanager
    def _pulse(self) -> Iterator[None]:
        """Keep the run's lease from a background thread while a step works: one step can block for minutes (a
        compile on the local model is one long request) and an unrenewed lease lets another runner take the run
        over. A lost lease (`run_not_running`: finished or taken over) is raised when the step ends."""
        stop, lost = threading.Event(), list[OvernightError]()

        def beat() -> None:
            while not stop.wait(self.options.lease_s / 3):
                try:
                    self.client.heartbeat(str(self.run_id))
                except OvernightError as exc:  # the client already retried transport errors and 5xx
                    if exc.code == "run_not_running":
                        lost.append(exc)
                        return

        pulse = threading.Thread(target=beat, name="overnight-lease", daemon=True)
        if self.run_id is not None:
            pulse.start()
        try:
            yield
        finally:
            stop.set()  # a step that failed or was cancelled does not wait on a heartbeat in flight (a daemon thread)
        if pulse.is_alive():
            pulse.join()
        if lost:
            raise lost[0]

    @contextlib.contextmanager
    def _rungs_said(self, sig: str, *, every_s: float = 2.0) -> Iterator[None]:
        """Say each rung the server records on this run while the compile's one long request works (on the local
        model it is minutes of silence otherwise), from a background thread, and the rest once it has answered, so
        a terminal or cron's log sees the night move. Best effort: a read that fails says nothing."""
        run_id = self.run_id
        try:
            start = self.client.get_run(run_id).event_count if run_id is not None else None
        except OvernightError:
            start = None
        if run_id is None or start is None:
            yield
            return
        last, stop = start, threading.Event()

        def relay() -> None:
            nonlocal last
            with contextlib.suppress(OvernightError):
                while page := self.client.events(run_id, after_seq=last, limit=200).events:
                    for event in page:
                        last = event.seq
                        if event.kind == "compile.rung":
                            self.say(rung_sentence(sig, event.data, so_far=True))

        def poll() -> None:
            while not stop.wait(every_s):
                relay()

        poller = threading.Thread(target=poll, name="overnight-relay", daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()  # a step that failed or was cancelled does not wait on the relay's read (a daemon thread)
        poller.join()
        relay()  # what came after the last poll: said before the step's own line

    def _cleanup(self, reason: str, *, cancelled: bool = False) -> None:
        """Stop every canary this run answers for that is still active: those it started or continued, and those
        of a run it resumed or took over that it had not reached yet (no later run can continue those). Best
        effort, each on its own."""
        for sig, canary_id in list(self._answered_for().items()):
            try:
                if self.client.canary_by_id(canary_id).canary.status == "active":
                    why = f"runner {'cancelled' if cancelled else 'failed'}: {reason}"
                    self.client.stop_canary(sig, reason=why[:2000], canary_id=canary_id)
                    self.say(f"{sig}: stopped canary {canary_id}")
            except OvernightError as exc:
                self.say(f"{sig}: could not stop canary {canary_id}: {exc.code}: {exc.message}")

    def _answered_for(self) -> dict[str, str]:
        """Signature -> canary id: this run's own, and any other active one its resumed or taken-over runs left."""
        ours = dict(self.our_canaries)
        for sig in self.options.signatures if self.adoptable else ():  # a resumed run's id is in it too
            if sig in ours:
                continue
            try:
                found = self.client.canary(sig).canary
            except OvernightError:  # no canary ever (canary_not_found), or the API failing: nothing to stop
                continue
            if found.status == "active" and found.run_id in self.adoptable:
                ours[sig] = found.canary_id
        return ours

    def _finish(self, summary: Summary) -> None:
        self.finishing = True
        if self.run_id is None:
            return
        links = {sig: {"dataset_hash": r.dataset_hash, "compile_report": r.report_id, "canary": r.canary_id,
                       "alias_history": r.alias_history_ids, "e2e": r.e2e} for sig, r in summary.signatures.items()}
        try:
            self.client.finish_run(self.run_id, status=summary.status, summary=summary.model_dump(mode="json"),
                                   links=links, key=f"{self.run_id}:finish:{summary.status}")
        except OvernightError as exc:
            self.say(f"could not finish run {self.run_id}: {exc.code}: {exc.message}")

    def _summary(self, code: int, verdict: str, results: dict[str, SignatureResult], *,
                 status: str | None = None) -> Summary:
        status = status or ("failed" if code in (EXIT_FAILED, EXIT_USAGE) else "succeeded")
        return Summary(run_id=self.run_id, status=status,
                       exit_code=code, verdict=verdict, base_url=self.options.base_url, signatures=results,
                       review=on_api(f"overnight show {self.run_id}", self.options.base_url) if self.run_id else None)


def canary_progress(canary: CanaryRecord, sent: int) -> str:
    """Where a driven canary is, in one line: its step, the candidate's requests to the step's look, the errors."""
    arm = canary.arms["candidate"]
    return (f"canary at {canary.rollout_pct:g}% (step {canary.step + 1} of {len(canary.config.targets)}): "
            f"{arm.samples}/{canary.config.targets[canary.step]} candidate requests to its next look, {arm.errors} "
            f"errors; {sent} sent")


def _on_a_daemon(call: Callable[..., None], *args: Any) -> Future[None]:
    """`call(*args)` on a daemon thread of its own, its outcome in the future returned."""
    future: Future[None] = Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            call(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever settles the future, as an executor would
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=run, name="overnight-traffic", daemon=True).start()
    return future


def _settle(in_flight: set[Future[None]], *, below: int) -> set[Future[None]]:
    """Wait until fewer than `below` calls are in flight; a call that raised (not an LM error: those are
    measurements) re-raises here."""
    while len(in_flight) >= below:
        done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
        for call in done:
            call.result()
    return in_flight


def run_check(argv: list[str], *, timeout_s: float) -> tuple[int | None, str]:
    """Run one verify command with stdin closed and both output streams in one, in a session of its own: past
    `timeout_s`, or when the runner is stopped meanwhile (SIGTERM), the command and whatever it started are
    stopped (SIGTERM to its process group, SIGKILL 5 s later). (exit code, output); None: it did not finish."""
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # noqa: S603 - the operator's own
                          stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True) as child:
        try:
            output, _ = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop_group(child)
            return None, _rest(child)
        except BaseException:
            _stop_group(child)
            raise
        return child.returncode, output


def _stop_group(child: subprocess.Popen[str]) -> None:
    """SIGTERM to the command's process group; 5 s for the command to end; then SIGKILL to what is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


def _rest(child: subprocess.Popen[str]) -> str:
    """What a stopped command had written; not waited on past 5 s (a process it started may still hold the pipe)."""
    try:
        return child.communicate(timeout=5)[0] or ""
    except subprocess.TimeoutExpired:
        return ""
