"""The registry and the shipped signature modules: contracts, search spaces, and the DSPy bridge."""

from __future__ import annotations

import dspy
import pytest
from dspy.utils import DummyLM

from overnight.domain.datasets import parse_dataset
from overnight.domain.rewards import exact_json_match
from overnight.errors import SignatureNotFound
from overnight.registry import Registry
from tests.signatures.test_shipped_datasets import DATASETS

REGISTRY = Registry()


def test_registry_discovers_both_signatures_and_refuses_unknown_ones() -> None:
    assert REGISTRY.ids() == ["SelectTool.v1", "SupportTriage.v1"]
    with pytest.raises(SignatureNotFound, match=r"unknown signature 'Nope\.v1'"):
        REGISTRY.get("Nope.v1")


@pytest.mark.parametrize("signature_id", REGISTRY.ids())
def test_contract_declares_what_compile_and_the_gates_need(signature_id: str) -> None:
    entry = REGISTRY.get(signature_id)
    contract = entry.contract
    assert 2 <= len(contract.search_space.instructions) <= 6
    assert 0 in contract.search_space.demo_counts
    assert contract.reward_id == "exact_json_match@1"
    assert contract.budget.max_latency_p95_ms > 0
    assert entry.dspy_signature.instructions == contract.default_instructions
    assert list(entry.dspy_signature.input_fields) == list(contract.input_model.model_fields)
    assert len(contract.contract_hash()) == 64


@pytest.mark.parametrize("signature_id", REGISTRY.ids())
def test_a_dspy_prediction_maps_back_to_a_valid_output(signature_id: str) -> None:
    """Run the real DSPy program (a scripted LM at the edge) on shipped holdout rows and score its answers."""
    entry = REGISTRY.get(signature_id)
    rows = [r for r in parse_dataset(entry.contract, DATASETS[signature_id].read_bytes(), fmt="jsonl")
            if r.split == "holdout"][:5]
    answers = [{**row.expected, **({"tool_name": ""} if row.expected.get("action") == "none" else {})}
               for row in rows]
    program = dspy.Predict(entry.dspy_signature)
    with dspy.context(lm=DummyLM(answers)):
        for row in rows:
            fields = dict(program(**entry.contract.input_model.model_validate(row.input).model_dump()))
            _, output = entry.contract.check_example(row.input, entry.to_output(fields))
            assert exact_json_match(row.expected, output) == 1.0
