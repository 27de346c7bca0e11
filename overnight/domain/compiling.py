"""Compile records: artifacts, per-example results, and the report. Must not import I/O modules or DSPy."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from overnight.domain.hashing import content_hash
from overnight.domain.runs import ID_PATTERN
from overnight.domain.stats import PairedDelta

BudgetLimit = Literal["max_lm_calls", "max_tokens", "max_seconds"]  # what stops a compile cleanly


def compiled_id_for(*, contract_hash: str, state: dict[str, Any], lm_id: str, decode: dict[str, Any]) -> str:
    """compiled_id = sha256(canonical{signature contract, program state, lm id, decode})."""
    return content_hash({"contract_hash": contract_hash, "state": state, "lm_id": lm_id, "decode": decode})


class CompiledIds(BaseModel):
    """The compiled_ids that start with a prefix, in order (`GET /api/v1/artifacts?prefix=`): one resolves it."""

    compiled_ids: list[str]


class Artifact(BaseModel):
    """A compiled program: DSPy state-only JSON (never pickle) and the parameters that made it. Write-once."""

    model_config = ConfigDict(frozen=True)

    compiled_id: str
    signature_id: str
    state: dict[str, Any]
    params: dict[str, Any]
    lm_id: str
    created_at: int = 0


class ExampleResult(BaseModel):
    """One candidate on one example with one LM: persisted as soon as it is computed, so compiles resume."""

    model_config = ConfigDict(frozen=True)

    compiled_id: str
    row_hash: str
    lm_id: str
    ok: bool
    output: dict[str, Any] | None
    correct: bool | None
    error_code: str | None
    latency_ms: int
    tokens_in: int
    tokens_out: int

    @property
    def reward(self) -> float:
        return 1.0 if self.correct else 0.0


class CandidateReport(BaseModel):
    compiled_id: str
    params: dict[str, Any]
    is_default: bool
    is_incumbent: bool
    train_n: int = 0
    train_score: float | None = None
    eliminated_at_rung: int | None = None
    holdout_n: int = 0
    holdout_score: float | None = None
    holdout_results: dict[str, float] = Field(default_factory=dict)  # example_id -> reward, finalists only
    lm_calls: int = Field(default=0, description="LM calls its scores cost (paid now or by an earlier compile)")
    tokens: int = 0


class CompileReport(BaseModel):
    report_id: str
    signature_id: str
    job_hash: str
    dataset_hash: str
    job_spec: dict[str, Any]
    status: Literal["completed", "budget_exhausted"]
    cached: bool = False
    best_compiled_id: str
    incumbent_compiled_id: str
    improved: bool
    candidates: list[CandidateReport]
    rungs: list[dict[str, int]]
    paired_delta: PairedDelta | None
    leakage: list[str] = Field(default_factory=list, description="holdout example ids excluded: input = a demo's")
    lm_calls: int = Field(description="LM calls this compile paid for")
    evaluations: int = Field(description="(candidate, example) scores it used; a fresh compile pays them all")
    reused: int = Field(default=0, description="of those, scores read back from an earlier compile, paid then")
    tokens: int
    full_grid_lm_calls: int
    budget: dict[str, int | None]
    stopped_by: BudgetLimit | None = Field(
        default=None, description="with budget_exhausted: the limit the job reached first")
    created_at: int = 0

    def limit_reached(self) -> str | None:
        """The limit that stopped the job and its value, e.g. `max_seconds 60`; None when it completed."""
        return f"{self.stopped_by} {self.budget.get(self.stopped_by)}" if self.stopped_by else None


def rung_sentence(signature_id: str, rung: dict[str, Any], *, so_far: bool = False) -> str:
    """A finished rung of the search (the compile's `compile.rung` progress data), as the run's event, `overnight
    compile` and the runner say it; `so_far`: with the evaluations paid for so far."""
    said = (f"{signature_id}: rung {rung['rung']}, {rung['candidates']} candidates on {rung['train_examples']} "
            "train examples")
    return f"{said} ({rung['evaluations_so_far']} evaluations so far)" if so_far else said


def report_id_for(*, signature_id: str, job_hash: str, dataset_hash: str) -> str:
    return "cr-" + content_hash([signature_id, job_hash, dataset_hash])[:24]


class CompileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = Field(default=0, ge=0, le=2**31)
    max_lm_calls: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_seconds: int | None = Field(default=None, ge=0, le=7 * 86_400, description=(
        "start no LM call after this long (calls in flight finish); 0: none at all, a stored report only"))
    search: Literal["halving", "grid"] = "halving"
    optimizer: Literal["grid@1", "labeled_fewshot@1"] = "grid@1"
    run_id: str | None = Field(default=None, pattern=ID_PATTERN, description="record compile events on this run")
