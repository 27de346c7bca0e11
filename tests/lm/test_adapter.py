"""The adapter every call runs under: the prompt is exactly DSPy's JSONAdapter's, for every signature, every
instruction variant, with and without demos, call after call — only built once per signature."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import dspy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from overnight.compile.programs import build_candidate, candidate_from_artifact
from overnight.domain.candidates import CandidateParams
from overnight.domain.datasets import parse_dataset
from overnight.lm.adapter import JSONAdapter
from overnight.registry import RegisteredSignature, Registry

REGISTRY = Registry()
DATASETS = Path(__file__).resolve().parents[2] / "datasets"


def messages(adapter: Any, program: Any, entry: RegisteredSignature,
             raw_input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The messages `adapter` sends for one input (the signature's sample input unless given)."""
    given = entry.contract.input_model.model_validate(entry.sample_input if raw_input is None else raw_input)
    inputs = {name: getattr(given, name) for name in type(given).model_fields}
    result: list[dict[str, Any]] = adapter.format(program.signature, program.demos, inputs)
    return result


def programs(entry: RegisteredSignature) -> list[Any]:
    """One program per instruction variant: without demos, and with the sample input as two demos."""
    space = entry.contract.search_space
    demo = {**entry.sample_input, **entry.allowed_fields(entry.contract.input_model.model_validate(
        entry.sample_input))[0]}
    found = []
    for index in range(len(space.instructions)):
        params = CandidateParams(instruction_index=index, demo_count=0, decode_index=0, demo_ids=(),
                                 decode=dict(space.decode[0]))
        program = build_candidate(entry, params, {}, lm_id="sim:test").program
        with_demos = candidate_from_artifact(entry, build_candidate(entry, params, {}, lm_id="sim:test").artifact)
        with_demos.program.demos = [demo, demo]
        found += [program, with_demos.program]
    return found


@pytest.mark.parametrize("signature_id", REGISTRY.ids())
def test_the_prompt_is_exactly_dspys_for_every_instruction_variant_with_and_without_demos(signature_id: str) -> None:
    entry = REGISTRY.get(signature_id)
    ours, theirs = JSONAdapter(), dspy.JSONAdapter()
    every = programs(entry)
    for _ in range(2):  # the second round is served from the remembered system messages
        for program in every:
            assert messages(ours, program, entry) == messages(theirs, program, entry)
    systems = {messages(ours, program, entry)[0]["content"] for program in every}
    assert len(systems) == len(entry.contract.search_space.instructions)  # each variant its own, none reused


def test_a_signature_given_new_instructions_gets_its_own_system_message_and_the_old_one_is_let_go() -> None:
    entry = REGISTRY.get("SelectTool.v1")
    adapter = JSONAdapter()
    first = entry.dspy_signature.with_instructions("Answer with the first tool.")
    second = first.with_instructions("Answer with no tool at all.")
    one, two = adapter.format_system_message(first), adapter.format_system_message(second)
    assert "Answer with the first tool." in one
    assert "Answer with no tool at all." in two
    assert "first tool" not in two
    del first, second
    gc.collect()
    assert adapter.remembered() == 0


@pytest.mark.parametrize("signature_id", REGISTRY.ids())
def test_every_dataset_input_is_formatted_exactly_as_dspy_formats_it(signature_id: str) -> None:
    entry = REGISTRY.get(signature_id)
    ours, theirs = JSONAdapter(), dspy.JSONAdapter()
    program = programs(entry)[1]  # with demos: their user messages are formatted too
    rows = parse_dataset(entry.contract, (DATASETS / f"{signature_id.lower()}.jsonl").read_bytes(), fmt="jsonl")
    assert len(rows) >= 20
    for row in rows:
        assert messages(ours, program, entry, row.input) == messages(theirs, program, entry, row.input)


class Nested(BaseModel):
    name: str
    score: float | None = None
    tags: list[str] = []


class Fields(dspy.Signature):
    """Every kind of input field a signature may declare."""

    text: str = dspy.InputField()
    texts: list[str] = dspy.InputField()
    number: int = dspy.InputField()
    mapping: dict[str, Any] = dspy.InputField()
    nested: list[Nested] = dspy.InputField()
    anything: Any = dspy.InputField()
    answer: str = dspy.OutputField()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=12)
NESTED = st.builds(Nested, name=st.text(), score=st.none() | st.floats(allow_nan=False),
                   tags=st.lists(st.text(), max_size=3))


def outcome(format_content: Any, inputs: dict[str, Any], **kwargs: Any) -> tuple[str, str]:
    """What formatting did: the text, or the error raised (DSPy's own list formatting refuses non-text)."""
    try:
        return "text", format_content(Fields, inputs, **kwargs)
    except Exception as exc:  # noqa: BLE001 - compared, not swallowed
        return "raised", type(exc).__name__


ADAPTER = JSONAdapter()  # one for every example: each value type's second value uses the kept adapter


@settings(max_examples=200, deadline=None)
@given(text=st.text() | JSON, texts=st.lists(st.text(), max_size=5) | JSON, number=st.integers() | JSON,
       mapping=st.dictionaries(st.text(), JSON, max_size=4), nested=st.lists(NESTED, max_size=3),
       anything=JSON | NESTED | st.sets(st.integers(), max_size=3) | st.just(object()))
def test_generated_values_of_every_kind_are_formatted_exactly_as_dspy_formats_them(
        text: Any, texts: Any, number: Any, mapping: Any, nested: Any, anything: Any) -> None:
    inputs = {"text": text, "texts": texts, "number": number, "mapping": mapping, "nested": nested,
              "anything": anything}
    theirs = dspy.JSONAdapter()
    for kwargs in ({"main_request": True}, {"prefix": "before", "suffix": "after"}):
        assert (outcome(ADAPTER.format_user_message_content, inputs, **kwargs)
                == outcome(theirs.format_user_message_content, inputs, **kwargs))


def test_only_builtin_types_adapters_are_kept_so_no_class_is_kept_alive_by_them() -> None:
    class Passing(BaseModel):
        note: str

    field = Fields.input_fields["anything"]
    assert ADAPTER.field_value(field, Passing(note="a")) == '{"note": "a"}'
    assert ADAPTER.field_value(field, [Passing(note="b")]) == '[{"note": "b"}]'
    gone = weakref.ref(Passing)
    del Passing
    gc.collect()
    assert gone() is None
