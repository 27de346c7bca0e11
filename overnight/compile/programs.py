"""Candidate programs and their artifacts: a DSPy Predict with one instruction variant and seeded demos,
saved as state-only JSON; `compiled_id` is the hash of (contract, state, lm_id, decode). Must not import the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dspy

from overnight.domain.candidates import CandidateParams
from overnight.domain.compiling import Artifact, compiled_id_for
from overnight.domain.datasets import StoredExample
from overnight.registry import RegisteredSignature


@dataclass(frozen=True)
class Candidate:
    program: Any  # dspy.Predict
    artifact: Artifact
    params: CandidateParams | None  # None for an incumbent that did not come from this search space

    @property
    def compiled_id(self) -> str:
        return self.artifact.compiled_id

    @property
    def decode(self) -> dict[str, Any]:
        return dict(self.artifact.params.get("decode", {}))

    def demo_inputs(self) -> list[dict[str, Any]]:
        return list(self.artifact.params.get("demo_inputs", []))


def build_candidate(entry: RegisteredSignature, params: CandidateParams, train: dict[str, StoredExample], *,
                    lm_id: str) -> Candidate:
    instructions = entry.contract.search_space.instructions[params.instruction_index]
    program = dspy.Predict(entry.dspy_signature.with_instructions(instructions))
    demos = [train[example_id] for example_id in params.demo_ids]
    program.demos = [{**row.input, **entry.to_fields(row.expected)} for row in demos]
    state = program.dump_state()
    compiled_id = compiled_id_for(contract_hash=entry.contract.contract_hash(), state=state, lm_id=lm_id,
                                  decode=params.decode)
    recorded = {**params.model_dump(mode="json"), "demo_inputs": [row.input for row in demos]}
    artifact = Artifact(compiled_id=compiled_id, signature_id=entry.contract.signature_id, state=state,
                        params=recorded, lm_id=lm_id)
    return Candidate(program, artifact, params)


def candidate_from_artifact(entry: RegisteredSignature, artifact: Artifact) -> Candidate:
    """Load a stored artifact (e.g. the champion) back into a program."""
    program = dspy.Predict(entry.dspy_signature)
    program.load_state(artifact.state)
    return Candidate(program, artifact, None)
