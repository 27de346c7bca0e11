"""The adapter every call runs under: the prompt is exactly DSPy's JSONAdapter's, for every signature, every
instruction variant, with and without demos, call after call — only built once per signature."""

from __future__ import annotations

import gc
from typing import Any

import dspy
import pytest

from overnight.compile.programs import build_candidate, candidate_from_artifact
from overnight.domain.candidates import CandidateParams
from overnight.lm.adapter import JSONAdapter
from overnight.registry import RegisteredSignature, Registry

REGISTRY = Registry()


def messages(adapter: Any, program: Any, entry: RegisteredSignature) -> list[dict[str, Any]]:
    given = entry.contract.input_model.model_validate(entry.sample_input)
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
