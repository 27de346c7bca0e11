"""The one `Store` interface: verbs named after the domain, keyword-only arguments.

`SqlStore` (SQLite and PostgreSQL) implements it; later issues add verbs here first. Must not import FastAPI or
httpx.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel

from overnight.domain.compiling import Artifact, CompileReport, ExampleResult
from overnight.domain.datasets import ExampleRow, ImportResult, SnapshotDetail, StoredExample
from overnight.domain.runs import AppendedEvent, EventIn, FinishRun, Run, RunEvent, RunStart, StartedRun


class IdempotencyClaim(BaseModel):
    """The answer to claiming an Idempotency-Key: go ahead, replay the stored answer, or refuse."""

    outcome: Literal["claimed", "replay", "in_progress", "mismatch"]
    status_code: int | None = None
    response_body: str | None = None


class Store(Protocol):
    kind: str

    def ping(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    # ops runs
    def start_run(self, *, request: RunStart, actor: str, default_lease_s: int) -> StartedRun: ...

    def get_run(self, *, run_id: str) -> Run: ...

    def list_runs(
        self, *, limit: int, status: str | None = None, signature_id: str | None = None
    ) -> list[Run]: ...

    def heartbeat(self, *, run_id: str) -> Run: ...

    def finish_run(self, *, run_id: str, finish: FinishRun, actor: str) -> Run: ...

    # the event stream
    def append_event(self, *, run_id: str, event: EventIn) -> AppendedEvent: ...

    def list_events(self, *, run_id: str, after_seq: int, limit: int) -> list[RunEvent]: ...

    # datasets
    def import_examples(
        self, *, signature_id: str, rows: list[ExampleRow], run_id: str | None = None
    ) -> ImportResult: ...

    def list_examples(self, *, signature_id: str, split: str | None = None, after: str | None = None,
                      limit: int = 100) -> list[StoredExample]: ...

    def get_snapshot(self, *, signature_id: str, dataset_hash: str) -> SnapshotDetail: ...

    def all_examples(self, *, signature_id: str) -> list[StoredExample]: ...

    # compile
    def put_artifact(self, *, artifact: Artifact) -> None: ...

    def get_artifact(self, *, compiled_id: str) -> Artifact: ...

    def get_results(self, *, compiled_id: str, lm_id: str) -> dict[str, ExampleResult]: ...

    def put_result(self, *, result: ExampleResult) -> None: ...

    def find_compile_report(self, *, signature_id: str, job_hash: str, dataset_hash: str) -> CompileReport | None: ...

    def get_compile_report(self, *, report_id: str) -> CompileReport: ...

    def save_compile_report(self, *, report: CompileReport) -> CompileReport: ...

    def champion(self, *, signature_id: str) -> str | None: ...

    # idempotency keys
    def claim_idempotency_key(self, *, actor: str, key: str, fingerprint: str) -> IdempotencyClaim: ...

    def complete_idempotency_key(self, *, actor: str, key: str, status_code: int, response_body: str) -> None: ...

    def release_idempotency_key(self, *, actor: str, key: str) -> None: ...
