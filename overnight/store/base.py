"""The one `Store` interface: verbs named after the domain, keyword-only arguments.

`SqlStore` (SQLite and PostgreSQL) implements it; later issues add verbs here first. Must not import FastAPI or
httpx.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from overnight.domain.canary import CanaryEntry, CanaryRecord, ServingRoute
from overnight.domain.compiling import Artifact, CompileReport, ExampleResult
from overnight.domain.datasets import ExampleRow, ImportResult, SnapshotDetail, StoredExample
from overnight.domain.promotion import AliasMove
from overnight.domain.receipts import PruneResult, Receipt
from overnight.domain.runs import AppendedEvent, EventIn, FinishRun, Run, RunEvent, RunStart, StartedRun
from overnight.store.migrate import SchemaState


class IdempotencyClaim(BaseModel):
    """The answer to claiming an Idempotency-Key: go ahead (as `holder`, renewing the lease while the request
    runs), replay the stored answer, or refuse (`in_progress`: the holder's lease has `retry_after_ms` left)."""

    outcome: Literal["claimed", "replay", "in_progress", "mismatch"]
    holder: str = ""  # set when claimed
    taken_over: bool = False  # claimed from a holder that stopped renewing its lease (its server died)
    retry_after_ms: int | None = None
    status_code: int | None = None
    response_body: str | None = None


@dataclass
class HeldKey:
    """The claim a request holds on its Idempotency-Key (the middleware puts it on the request's state). A route
    whose effect is one transaction keeps its answer in that transaction (`KeptAnswer`), so the server's death
    cannot part the two: the effect made and its answer lost, a retry would make it again. `answered` then tells
    the middleware the answer is kept."""

    actor: str
    key: str
    holder: str
    answered: bool = False

    @property
    def ids(self) -> dict[str, str]:
        """The claim's identity, as the store's idempotency verbs take it."""
        return {"actor": self.actor, "key": self.key, "holder": self.holder}


@dataclass(frozen=True)
class KeptAnswer:
    """Keep the answer to `held` (status 200, `render(move)`) with the champion's move, in its transaction. A claim
    taken over meanwhile by a retry refuses the move (`idempotency_key_in_use`): the retry makes it, not both."""

    held: HeldKey
    render: Callable[[AliasMove], str]


class Store(Protocol):
    kind: str
    clock: Callable[[], int]  # ms since the epoch; tests inject a stepping clock

    def ping(self) -> SchemaState: ...

    def close(self) -> None: ...

    # ops runs
    def start_run(self, *, request: RunStart, actor: str, default_lease_s: int) -> StartedRun: ...

    def get_run(self, *, run_id: str) -> Run: ...

    def list_runs(
        self, *, limit: int, status: str | None = None, signature_id: str | None = None, since: int | None = None
    ) -> list[Run]: ...

    def heartbeat(self, *, run_id: str) -> Run: ...

    def finish_run(self, *, run_id: str, finish: FinishRun, actor: str) -> Run: ...

    # the event stream
    def append_event(self, *, run_id: str, event: EventIn) -> AppendedEvent: ...

    def list_events(self, *, run_id: str, after_seq: int, limit: int,
                    kinds_ending: tuple[str, ...] = ()) -> list[RunEvent]: ...

    # datasets
    def import_examples(
        self, *, signature_id: str, rows: list[ExampleRow], run_id: str | None = None, replace: bool = False,
        dry_run: bool = False,
    ) -> ImportResult: ...

    def list_examples(self, *, signature_id: str, split: str | None = None, after: str | None = None,
                      limit: int = 100) -> list[StoredExample]: ...

    def get_snapshot(self, *, signature_id: str, dataset_hash: str) -> SnapshotDetail: ...

    def all_examples(self, *, signature_id: str) -> list[StoredExample]: ...

    # compile
    def put_artifact(self, *, artifact: Artifact) -> None: ...

    def get_artifact(self, *, compiled_id: str) -> Artifact: ...

    def compiled_ids_starting(self, *, prefix: str, limit: int = 2) -> list[str]: ...

    def get_results(self, *, compiled_id: str, lm_id: str) -> dict[str, ExampleResult]: ...

    def put_result(self, *, result: ExampleResult) -> None: ...

    def find_compile_report(self, *, signature_id: str, job_hash: str, dataset_hash: str) -> CompileReport | None: ...

    def get_compile_report(self, *, report_id: str) -> CompileReport: ...

    def save_compile_report(self, *, report: CompileReport) -> CompileReport: ...

    def champion(self, *, signature_id: str) -> str | None: ...

    def list_compile_reports(self, *, signature_id: str, dataset_hash: str | None = None,
                             limit: int | None = None) -> list[CompileReport]: ...

    def expire_runs(self, *, actor: str) -> list[str]: ...

    # canaries and serving
    def start_canary(self, *, canary: CanaryRecord, salt: str) -> CanaryRecord: ...

    def get_canary(self, *, canary_id: str) -> CanaryRecord: ...

    def find_canary(self, *, signature_id: str, active_only: bool = False,
                    candidate_id: str | None = None) -> CanaryRecord | None: ...

    def canary_history(self, *, canary_id: str) -> list[CanaryEntry]: ...

    def stop_canary(self, *, signature_id: str, actor: str, reason: str,
                    canary_id: str | None = None) -> CanaryRecord: ...

    def serving_route(self, *, signature_id: str) -> ServingRoute: ...

    def record_receipt(self, *, receipt: Receipt) -> None: ...

    def get_receipt(self, *, receipt_id: str) -> Receipt: ...

    def list_receipts(self, *, signature_id: str | None = None, canary_id: str | None = None,
                      after: str | None = None, limit: int = 100, ok: bool | None = None) -> list[Receipt]: ...

    def canary_error_codes(self, *, canary_id: str) -> dict[str, dict[str, int]]:
        """The canary's failed receipts counted by arm and error code, the most frequent code first."""
        ...

    def canary_step_keys(self, *, canary: CanaryRecord) -> dict[str, int]:
        """The distinct request keys each arm got under the canary's current step (what its split counts)."""
        ...

    def canary_outcomes(self, *, canary_id: str, limit: int) -> list[tuple[str, bool, bool | None]]:
        """(arm, ok, correct) of the canary's first `limit` receipts, in the order written."""
        ...

    # the champion
    def alias_history(self, *, signature_id: str, limit: int | None = None,
                      run_id: str | None = None) -> list[AliasMove]:
        """The champion's moves, oldest first: the last `limit`, or only those made by `run_id`."""
        ...

    def moves_on_runs(self, *, run_ids: Collection[str]) -> list[AliasMove]:
        """The champion's moves recorded on these runs (their own, and an operator's answering one), oldest first."""
        ...

    def promote(self, *, signature_id: str, seen: str | None, to_id: str, actor: str, reason: str,
                run_id: str | None, evidence: dict[str, Any], canary_id: str | None,
                answer: KeptAnswer | None = None) -> AliasMove: ...

    def rollback(self, *, signature_id: str, to_id: str | None, explicit: bool, actor: str, reason: str,
                 run_id: str | None, answer: KeptAnswer | None = None) -> AliasMove: ...

    # idempotency keys
    def claim_idempotency_key(self, *, actor: str, key: str, fingerprint: str, lease_ms: int) -> IdempotencyClaim:
        """Claim the key for a request (or take over a claim not renewed for `lease_ms`), or say why not."""
        ...

    def touch_idempotency_key(self, *, actor: str, key: str, holder: str) -> bool:
        """Renew the holder's lease; False when the claim is no longer the holder's to renew."""
        ...

    def complete_idempotency_key(self, *, actor: str, key: str, holder: str, status_code: int,
                                 response_body: str) -> bool:
        """Store the answer for replays; False (nothing stored) when the claim was taken over meanwhile."""
        ...

    def release_idempotency_key(self, *, actor: str, key: str, holder: str) -> None: ...

    # retention
    def prune(self, *, keep_days: int, dry_run: bool = False) -> PruneResult:
        """Delete receipts served outside any canary and idempotency keys older than `keep_days` (see
        `PruneRequest`); or, with `dry_run`, count them."""
        ...
