"""The registry and the shipped signature modules: contracts, search spaces, and the DSPy bridge."""

from __future__ import annotations

import uuid
from pathlib import Path

import dspy
import pytest
from dspy.utils import DummyLM

from overnight.domain.datasets import parse_dataset
from overnight.domain.rewards import exact_json_match
from overnight.errors import ConfigError, SignatureNotFound
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


# A signature module as an operator would write one for their own prompt, and the mistakes they could make in it:
# each must stop discovery with one `config_error` naming the module and what is wrong, before any LM call.
SENTIMENT = '''
from typing import Any, Literal, get_args
import dspy
from pydantic import BaseModel, ConfigDict, Field
from overnight.domain.signatures import Budget, SearchSpace, SignatureContract
from overnight.registry import RegisteredSignature

Label = Literal["positive", "negative", "neutral"]

class SentimentInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    review: str = Field(min_length=1, max_length=2000)

class SentimentOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sentiment: Label

INSTRUCTIONS = ("Say the review's sentiment.", "Is this review positive, negative or neutral?")
CONTRACT = SignatureContract(
    signature_id="Sentiment.v1", description="A review's sentiment.",
    input_model=SentimentInput, output_model=SentimentOutput,
    search_space=SearchSpace(instructions=INSTRUCTIONS, demo_counts=(0, 2)),
    reward_id="exact_json_match@1", budget=Budget(max_latency_p95_ms=10_000, max_cost_per_call_usd=0.002),
)

class _Fields(dspy.Signature):
    review: str = dspy.InputField(desc="the review")
    sentiment: Label = dspy.OutputField()

def to_output(fields: dict[str, Any]) -> dict[str, Any]:
    return {"sentiment": fields.get("sentiment")}

def to_fields(output: dict[str, Any]) -> dict[str, Any]:
    return dict(output)

def alternatives(given: SentimentInput) -> list[dict[str, Any]]:
    return [{"sentiment": s} for s in get_args(Label)]

SIGNATURE = RegisteredSignature(
    contract=CONTRACT,
    dspy_signature=_Fields.with_instructions(CONTRACT.default_instructions),
    to_output=to_output, to_fields=to_fields, alternatives=alternatives,
    sample_input={"review": "Great product, works as described"},
)
'''


def _package(root: Path, modules: dict[str, str]) -> str:
    """A throwaway signatures package under `root` (on sys.path), named uniquely so that imports never collide."""
    name = f"signatures_{uuid.uuid4().hex[:8]}"
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for module, source in modules.items():
        (root / name / f"{module}.py").write_text(source)
    return name


def _edited(*swaps: tuple[str, str]) -> str:
    source = SENTIMENT
    for old, new in swaps:
        assert old in source, old
        source = source.replace(old, new)
    return source


def test_an_operators_own_signature_module_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(_package(tmp_path, {"sentiment_v1": SENTIMENT}))
    assert registry.ids() == ["Sentiment.v1"]


@pytest.mark.parametrize(("swaps", "said"), [
    ([("demo_counts=(0, 2)", "demo_counts=(0, 2, 2)")],
     r"cannot be imported \(line 22\): ValidationError: 1 validation error for SearchSpace: demo_counts: "
     r"Value error, demo counts must be distinct"),
    ([("import dspy\n", "import dspy\nfrom nowhere import nothing\n")],
     r"cannot be imported \(line 4\): ModuleNotFoundError: No module named 'nowhere'"),
    ([("class _Fields(dspy.Signature):", "class _Fields(dspy.Signature)")],
     r"cannot be imported \(line 26\): SyntaxError: expected ':'"),
    ([("    review: str = dspy.InputField", "    text: str = dspy.InputField")],
     r"the DSPy signature's input fields \(text\) are not the input model's \(review\)"),
    ([("    sentiment: Label = dspy.OutputField", "    label: Label = dspy.OutputField")],
     r"to_fields\(\) gives the fields \(sentiment\), not the DSPy signature's output fields \(label\)"),
    ([("dspy_signature=_Fields.with_instructions(CONTRACT.default_instructions)", "dspy_signature=_Fields")],
     r"the DSPy signature's instructions are not the contract's first instruction variant: "
     r"use _Fields\.with_instructions\(CONTRACT\.default_instructions\)"),
    ([("dspy_signature=_Fields.with_instructions(CONTRACT.default_instructions)", "dspy_signature=SentimentInput")],
     r"dspy_signature is <class '\S+SentimentInput'>, not a dspy\.Signature class"),
    ([('sample_input={"review": "Great product, works as described"}', 'sample_input={"text": "Great"}')],
     r"sample_input is not a valid input: input\.review: Field required; input\.text: Extra inputs"),
    ([('return [{"sentiment": s} for s in get_args(Label)]', "return []")],
     r"alternatives\(sample_input\) is empty: it must list every valid output"),
    ([('return [{"sentiment": s} for s in get_args(Label)]', 'return [{"sentiment": "mixed"}]')],
     r"alternatives\(sample_input\) gives an invalid output \{'sentiment': 'mixed'\}: output\.sentiment: Input should"),
    ([('return {"sentiment": fields.get("sentiment")}', 'return {"sentiment": "positive"}')],
     r"to_output\(to_fields\(\{'sentiment': 'negative'\}\)\) gives \{'sentiment': 'positive'\}: "
     r"a correct answer would be scored wrong"),
    ([('return {"sentiment": fields.get("sentiment")}', 'return fields["label"]')],
     r"to_output\(to_fields\(\{'sentiment': 'positive'\}\)\) raises KeyError: 'label'"),
    ([("SIGNATURE = RegisteredSignature(", "SIGNATURES = RegisteredSignature(")],
     r"does not export SIGNATURE = RegisteredSignature\(\.\.\.\)"),
])
def test_a_mistake_in_a_signature_module_stops_discovery_naming_the_module_and_the_mistake(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swaps: list[tuple[str, str]], said: str) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    package = _package(tmp_path, {"sentiment_v1": _edited(*swaps)})
    where = rf"^{package}\.sentiment_v1 \(/\S+/{package}/sentiment_v1\.py\): "
    with pytest.raises(ConfigError, match=where + f".*{said}") as exc:
        Registry(package).ids()
    assert "\n" not in exc.value.message.split(": ", 1)[0]


def test_every_mistake_in_a_module_is_said_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    package = _package(tmp_path, {"sentiment_v1": _edited(
        ("    review: str = dspy.InputField", "    text: str = dspy.InputField"),
        ("dspy_signature=_Fields.with_instructions(CONTRACT.default_instructions)", "dspy_signature=_Fields"))})
    with pytest.raises(ConfigError) as exc:
        Registry(package).ids()
    assert "input fields (text)" in exc.value.message
    assert "first instruction variant" in exc.value.message


def test_a_broken_module_does_not_hide_behind_a_good_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Discovery is all or nothing: a server that served the good signatures and 404'd the broken one would look
    like an unknown signature to the night's runner, not like the operator's mistake."""
    monkeypatch.syspath_prepend(str(tmp_path))
    package = _package(tmp_path, {"a_good_v1": SENTIMENT.replace("Sentiment.v1", "Good.v1"),
                                  "sentiment_v1": _edited(("demo_counts=(0, 2)", "demo_counts=(0, 2, 2)"))})
    with pytest.raises(ConfigError, match=r"sentiment_v1"):
        Registry(package).ids()
