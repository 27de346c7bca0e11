"""Receipts: the server's record of one served prediction. Written only by the predict path — no endpoint
accepts receipts or counter values from clients. Must not import I/O modules, the clock or DSPy."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Receipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    receipt_id: str
    signature_id: str
    compiled_id: str
    canary_id: str | None
    arm: str  # control | candidate during a canary, champion otherwise
    step: int | None = None  # the canary step the request was routed under
    request_key: str
    input_hash: str
    output: dict[str, Any] | None
    ok: bool
    error_code: str | None
    correct: bool | None
    latency_ms: int
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    lm_id: str
    request_id: str
    created_at: int = 0


class PredictRequest(BaseModel):
    input: dict[str, Any]
    request_key: str | None = Field(default=None, min_length=1, max_length=256,
                                    description="sticky routing: the same key always gets the same arm")
    expected: dict[str, Any] | None = Field(default=None, description="exerciser traffic: scored as `correct`")


class Prediction(BaseModel):
    output: dict[str, Any]
    receipt_id: str
    compiled_id: str
    arm: str
    canary_id: str | None
    correct: bool | None
    latency_ms: int
    lm_id: str


class PruneRequest(BaseModel):
    """What `POST /api/v1/store:prune` and `overnight db prune` delete: receipts served outside any canary made
    more than `keep_days` ago, and idempotency keys whose request last ran that long ago. Canary receipts (the
    evidence behind a decision, and its chart), runs and their events, alias and canary history, artifacts,
    compile reports and datasets are the record and are never pruned."""

    model_config = ConfigDict(extra="forbid")

    keep_days: int = Field(ge=1, le=36_500, description="keep this many days (at least 1): older rows go")
    dry_run: bool = Field(default=False, description="count what would be deleted and delete nothing")


class PruneResult(BaseModel):
    keep_days: int
    cutoff: int = Field(description="ms UTC: rows created before this were deleted (or, in a dry run, would be)")
    receipts: int = Field(description="receipts served outside any canary")
    idempotency_keys: int
    dry_run: bool = False

    def sentence(self) -> str:
        """What went, in one line: for `db prune`, the runner's progress and summary, and the review."""
        def counted(n: int, noun: str) -> str:
            return f"{n} {noun}{'' if n == 1 else 's'}"

        return (f"{'would delete' if self.dry_run else 'deleted'} {counted(self.receipts, 'receipt')} served outside "
                f"any canary and {counted(self.idempotency_keys, 'idempotency key')} older than "
                f"{counted(self.keep_days, 'day')}")
