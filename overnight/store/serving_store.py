"""The store's serving verbs: canaries, receipts, the champion alias. Mixed into `SqlStore`; every verb is one
transaction. Must not import FastAPI or httpx."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from overnight.domain.canary import CanaryConfig, CanaryEntry, CanaryRecord, ServingRoute
from overnight.domain.compiling import CompileReport
from overnight.domain.promotion import AliasMove, rollback_target
from overnight.domain.receipts import Receipt
from overnight.domain.runs import EventBounds, EventIn, FinishRun
from overnight.errors import CanaryActive, CanaryNotFound, IdempotencyKeyInUse, NothingToRollBack
from overnight.store import aliases_sql, canary_sql, idempotency_sql, runs_sql
from overnight.store.base import KeptAnswer
from overnight.store.engine import Transactions
from overnight.store.schema import canaries, compile_reports, ops_runs


class ServingVerbs:
    _tx: Transactions
    bounds: EventBounds
    clock: Callable[[], int]

    # canaries -----------------------------------------------------------------------------------------------

    def start_canary(self, *, canary: CanaryRecord, salt: str) -> CanaryRecord:
        """Open a canary; `canary_active` when the signature already has one (a database fact on both stores)."""
        try:
            with self._tx.write() as conn:
                if canary_sql.find(conn, canary.signature_id, active_only=True) is None:
                    canary_sql.insert_canary(conn, canary, salt=salt)
                    canary_sql.add_history(
                        conn, canary, kind="opened", step=0, verdict=None, actor=canary.actor,
                        evidence={"config": canary.config.model_dump(mode="json"), "control_id": canary.control_id,
                                  "candidate_id": canary.candidate_id, "report_id": canary.report_id},
                        now=canary.started_at, bounds=self.bounds,
                        message=(f"canary {canary.canary_id} opened: {canary.candidate_id[:12]} vs "
                                 f"{canary.control_id[:12]}, steps {'/'.join(f'{s:g}%' for s in canary.config.steps)}"
                                 f", pass look at {canary.config.targets[-1]} candidate requests"))
                    return canary_sql.load(conn, canary.canary_id)
        except IntegrityError:
            pass  # another replica opened one between our check and our insert
        with self._tx.read() as conn:
            active = canary_sql.find(conn, canary.signature_id, active_only=True)
        raise CanaryActive(f"{canary.signature_id} already has an active canary"
                           + (f" ({active.canary_id}, candidate {active.candidate_id[:12]})" if active else "")
                           + "; stop it first", details={"canary_id": active.canary_id if active else None})

    def get_canary(self, *, canary_id: str) -> CanaryRecord:
        with self._tx.read() as conn:
            return canary_sql.load(conn, canary_id)

    def find_canary(self, *, signature_id: str, active_only: bool = False,
                    candidate_id: str | None = None) -> CanaryRecord | None:
        with self._tx.read() as conn:
            if candidate_id is not None:
                return canary_sql.latest_for_candidate(conn, signature_id, candidate_id)
            return canary_sql.find(conn, signature_id, active_only=active_only)

    def canary_history(self, *, canary_id: str) -> list[CanaryEntry]:
        with self._tx.read() as conn:
            return canary_sql.history(conn, canary_id)

    def stop_canary(self, *, signature_id: str, actor: str, reason: str,
                    canary_id: str | None = None) -> CanaryRecord:
        """End the signature's active canary as `stopped`; with `canary_id`, only if that one is it."""
        with self._tx.write() as conn:
            active = canary_sql.find(conn, signature_id, active_only=True)
            if canary_id is not None and (active is None or active.canary_id != canary_id):
                instead = f"{active.canary_id} is" if active else "none is"
                raise CanaryNotFound(f"canary {canary_id} is not active on {signature_id} ({instead}): nothing stopped",
                                     details={"canary_id": canary_id,
                                              "active_canary_id": active.canary_id if active else None})
            if active is None:
                raise CanaryNotFound(f"{signature_id} has no active canary to stop")
            self._close(conn, active, status="stopped", actor=actor, reason=reason)
            return canary_sql.load(conn, active.canary_id)

    def _stop_runs_canaries(self, conn: Any, run_id: str, *, actor: str, reason: str,
                            sparing: Collection[str] = ()) -> None:
        """Stop the run's active canaries, but those on the `sparing` signatures: a run no runner follows any more."""
        for row in conn.execute(select(canaries.c.canary_id).where(
                canaries.c.run_id == run_id, canaries.c.status == "active",
                canaries.c.signature_id.not_in(list(sparing)))).all():
            self._close(conn, canary_sql.load(conn, row.canary_id), status="stopped", actor=actor, reason=reason)

    def _close(self, conn: Any, canary: CanaryRecord, *, status: str, actor: str, reason: str) -> None:
        now = self.clock()
        if canary_sql.end(conn, canary, status=status, reason=reason, now=now):
            canary_sql.add_history(conn, canary, kind=status, step=canary.step, verdict=None, actor=actor,
                                   evidence={"reason": reason, "previous_status": canary.status,
                                             "arms": {a: c.summary() for a, c in canary.arms.items()}},
                                   now=now, bounds=self.bounds, message=f"canary {canary.canary_id} {status}: {reason}")

    def expire_runs(self, *, actor: str) -> list[str]:
        """Finish `failed` every running run whose lease has lapsed (its runner is gone) and stop its active
        canaries: what a server does when it starts, so a runner that died with the API leaves nothing running."""
        now = self.clock()
        with self._tx.read() as conn:
            stale = [row.run_id for row in conn.execute(select(ops_runs.c.run_id).where(
                ops_runs.c.status == "running", ops_runs.c.lease_expires_at < now))]
        for run_id in stale:
            reason = f"the run's lease lapsed with no heartbeat: its runner is gone (found by {actor})"
            with self._tx.write() as conn:
                self._stop_runs_canaries(conn, run_id, actor=actor, reason=reason)
                runs_sql.finish_run(conn, run_id=run_id, actor=actor, now=now, finish=FinishRun(
                    status="failed", summary={"status": "failed", "verdict": reason}))
        return stale

    # serving ------------------------------------------------------------------------------------------------

    def serving_route(self, *, signature_id: str) -> ServingRoute:
        """The champion and the active canary, in one statement (read on every predict)."""
        with self._tx.statement() as conn:
            row = conn.execute(canary_sql.SERVING_ROUTE, {"signature_id": signature_id}).mappings().one()
        if row["canary_id"] is None:
            return ServingRoute(champion_id=row["champion_id"])
        steps = CanaryConfig.model_validate_json(row["config_json"]).steps
        return ServingRoute(champion_id=row["champion_id"], canary_id=row["canary_id"], salt=row["salt"],
                            rollout_pct=steps[row["step"]], step=row["step"], control_id=row["control_id"],
                            candidate_id=row["candidate_id"])

    def record_receipt(self, *, receipt: Receipt) -> None:
        """Write the receipt, bump its arm, and assess the canary, in one transaction."""
        with self._tx.write() as conn:
            now = self.clock()
            canary_sql.insert_receipt(conn, receipt, now)
            if receipt.canary_id is None:
                return
            canary_sql.bump(conn, receipt)  # takes the arm's row lock before the step is read (PostgreSQL)
            current = canary_sql.state(conn, receipt.canary_id)
            if receipt.step is not None and receipt.step != current.step:
                canary_sql.carry(conn, receipt)
            # only a candidate sample, or any request past the deadline, can change an active canary's verdict
            if current.status == "active" and (receipt.arm == "candidate" or now >= current.deadline_at):
                canary = canary_sql.load(conn, receipt.canary_id)
                assessment = canary_sql.assess(conn, canary, now)
                if assessment.outcome == "advance" and receipt.arm == "candidate":  # lock order: candidate first
                    canary = canary_sql.load(conn, receipt.canary_id, lock_arms=True)
                    assessment = canary_sql.assess(conn, canary, now)
                canary_sql.apply(conn, canary, assessment, now=now, bounds=self.bounds)

    def get_receipt(self, *, receipt_id: str) -> Receipt:
        with self._tx.read() as conn:
            return canary_sql.get_receipt(conn, receipt_id)

    def list_receipts(self, *, signature_id: str | None = None, canary_id: str | None = None,
                      after: str | None = None, limit: int = 100, ok: bool | None = None) -> list[Receipt]:
        with self._tx.read() as conn:
            return canary_sql.list_receipts(conn, signature_id=signature_id, canary_id=canary_id, after=after,
                                            limit=limit, ok=ok)

    def canary_error_codes(self, *, canary_id: str) -> dict[str, dict[str, int]]:
        with self._tx.read() as conn:
            return canary_sql.error_codes(conn, canary_id)

    def canary_step_keys(self, *, canary: CanaryRecord) -> dict[str, int]:
        with self._tx.read() as conn:
            return canary_sql.step_keys(conn, canary)

    def canary_outcomes(self, *, canary_id: str, limit: int) -> list[tuple[str, bool, bool | None]]:
        with self._tx.read() as conn:
            return canary_sql.outcomes(conn, canary_id, limit=limit)

    # the champion -------------------------------------------------------------------------------------------

    def alias_history(self, *, signature_id: str, limit: int | None = None,
                      run_id: str | None = None) -> list[AliasMove]:
        with self._tx.read() as conn:
            return aliases_sql.history(conn, signature_id, limit=limit, run_id=run_id)

    def moves_on_runs(self, *, run_ids: Collection[str]) -> list[AliasMove]:
        with self._tx.read() as conn:
            return aliases_sql.on_runs(conn, run_ids)

    def promote(self, *, signature_id: str, seen: str | None, to_id: str, actor: str, reason: str,
                run_id: str | None, evidence: dict[str, Any], canary_id: str | None,
                answer: KeptAnswer | None = None) -> AliasMove:
        """Move the champion and end the canary (the passed one becomes `promoted`; an active one is stopped);
        with `answer`, keep the request's answer in the same transaction."""
        with self._tx.write() as conn:
            moved = aliases_sql.move(conn, signature_id=signature_id, seen=seen, to_id=to_id, action="promote",
                                     actor=actor, reason=reason, run_id=run_id, evidence=evidence, now=self.clock())
            _keep(conn, answer, moved)
            self._on_run(conn, moved)
            if canary_id is not None:
                passed = canary_sql.load(conn, canary_id)
                if passed.status == "passed":
                    self._close(conn, passed, status="promoted", actor=actor, reason=reason)
            active = canary_sql.find(conn, signature_id, active_only=True)
            if active is not None:
                self._close(conn, active, status="stopped", actor=actor,
                            reason=f"champion promoted to {to_id[:12]}: {reason}")
            return moved

    def rollback(self, *, signature_id: str, to_id: str | None, explicit: bool, actor: str, reason: str,
                 run_id: str | None, answer: KeptAnswer | None = None) -> AliasMove:
        """One step back through the history (or to `to_id` when `explicit`), ending any active canary; with
        `answer`, keep the request's answer in the same transaction."""
        with self._tx.write() as conn:
            seen = aliases_sql.current(conn, signature_id)
            if not explicit:
                try:
                    to_id = rollback_target(aliases_sql.history(conn, signature_id))
                except ValueError as exc:
                    raise NothingToRollBack(f"{signature_id}: {exc}") from None
            if to_id == seen:
                raise NothingToRollBack(f"{signature_id}: the champion already is {to_id or 'the default program'}")
            moved = aliases_sql.move(conn, signature_id=signature_id, seen=seen, to_id=to_id, action="rollback",
                                     actor=actor, reason=reason, run_id=run_id,
                                     evidence={"explicit_target": explicit}, now=self.clock())
            _keep(conn, answer, moved)
            self._on_run(conn, moved)
            active = canary_sql.find(conn, signature_id, active_only=True)
            if active is not None:
                self._close(conn, active, status="stopped", actor=actor, reason=f"rolled back: {reason}")
            return moved

    def _on_run(self, conn: Any, moved: AliasMove) -> None:
        if moved.run_id is None:
            return
        runs_sql.note_on_run(conn, run_id=moved.run_id, bounds=self.bounds, now=moved.created_at, event=EventIn(
            kind="alias.moved", phase="decide" if moved.action == "promote" else "rollback", message=(
                f"{moved.signature_id}: champion {moved.action} {(moved.from_id or 'default')[:12]} -> "
                f"{(moved.to_id or 'default')[:12]} by {moved.actor}" + (" (forced)" if moved.forced else "")
                + f": {moved.reason}"),
            data=moved.model_dump(mode="json"), client_event_id=f"alias.moved.{moved.id}"))

    def list_compile_reports(self, *, signature_id: str, dataset_hash: str | None = None,
                             limit: int | None = None) -> list[CompileReport]:
        """Completed reports (on one dataset when it is named), newest first."""
        query = (select(compile_reports.c.report_json)
                 .where(compile_reports.c.signature_id == signature_id, compile_reports.c.status == "completed")
                 .order_by(compile_reports.c.created_at.desc(), compile_reports.c.report_id).limit(limit))
        if dataset_hash is not None:
            query = query.where(compile_reports.c.dataset_hash == dataset_hash)
        with self._tx.read() as conn:
            return [CompileReport.model_validate_json(row.report_json) for row in conn.execute(query)]


def _keep(conn: Any, answer: KeptAnswer | None, moved: AliasMove) -> None:
    """Keep the request's answer with its move, or refuse the move when a retry has taken the request's claim."""
    if answer is None:
        return
    if not idempotency_sql.answer(conn, **answer.held.ids, status_code=200, response_body=answer.render(moved)):
        raise IdempotencyKeyInUse("this request's claim on its Idempotency-Key was taken over by a retry after its "
                                  "lease lapsed: the retry makes the move, not this request")
