"""The compile job spec: the single source of truth for `job_hash`, used by compile and by the canary and
promote gates, so they can never disagree about which job a report belongs to.

job_hash = sha256(canonical_json(job spec)). Must not import I/O modules, the clock or DSPy.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from overnight.domain.hashing import content_hash
from overnight.domain.signatures import SignatureContract

DEFAULT_OPTIMIZER = "grid@1"


class JobSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    signature_id: str
    contract_hash: str
    search_space: dict[str, Any]
    metric_id: str
    optimizer_id: str = DEFAULT_OPTIMIZER
    lm_id: str
    decode: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    # The champion the candidates are compared against ("default": none). Not in DESIGN §5's list: without it,
    # the night after a promotion would get yesterday's cached report, compared against yesterday's champion.
    incumbent: str = "default"

    def job_hash(self) -> str:
        return content_hash(self.model_dump(mode="json"))


def job_spec(contract: SignatureContract, *, lm_id: str, seed: int = 0, optimizer_id: str = DEFAULT_OPTIMIZER,
             incumbent: str | None = None) -> JobSpec:
    return JobSpec(signature_id=contract.signature_id, contract_hash=contract.contract_hash(),
                   search_space=contract.search_space.model_dump(mode="json"), metric_id=contract.reward_id,
                   optimizer_id=optimizer_id, lm_id=lm_id, seed=seed, incumbent=incumbent or "default")
