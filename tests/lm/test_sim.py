"""The seeded simulator, driven through real DSPy programs: declared rates hold, and the same seed repeats."""

from __future__ import annotations

from collections import Counter
from typing import Any

import dspy
import pytest

from overnight.config import Settings
from overnight.errors import ConfigError
from overnight.lm.backends import build_backend
from overnight.lm.invoke import default_program, invoke
from overnight.lm.sim import SimSpec
from overnight.registry import Registry

ENTRY = Registry().get("SelectTool.v1")
TOOLS = [{"name": n, "description": f"does {n}"} for n in ("web_search", "send_email", "set_reminder")]


def cases(count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Distinct inputs, each with a valid expected answer."""
    answers = [{"action": "none"}, *({"action": "tool", "tool_name": t["name"]} for t in TOOLS)]
    return [({"message": f"request number {n}", "agent_name": "Nova", "user_handle": f"@u{n % 7}", "tools": TOOLS},
             answers[n % len(answers)]) for n in range(count)]


def run(spec: str, count: int, program: Any = None) -> list[Any]:
    backend = build_backend(Settings(lm=f"sim:{spec}"))
    program = program or default_program(ENTRY)
    return [invoke(program, backend, ENTRY, given, expected) for given, expected in cases(count)]


def test_2000_calls_match_the_declared_accuracy_and_error_rate() -> None:
    results = run("seed=11,acc=0.7,err=0.1", 2000)
    answered = [r for r in results if r.ok]
    errors = Counter(r.error_code for r in results if not r.ok)
    correct = sum(r.output == expected for r, (_, expected) in zip(results, cases(2000), strict=True) if r.ok)
    error_rate, accuracy = 1 - len(answered) / 2000, correct / len(answered)
    print(f"\nsim 2000 calls: error rate {error_rate:.3f} (declared 0.10), accuracy {accuracy:.3f} (declared 0.70), "
          f"errors {dict(errors)}")
    assert abs(error_rate - 0.10) <= 0.02
    assert abs(accuracy - 0.70) <= 0.02
    assert set(errors) == {"lm_error", "timeout", "parse_failure"}  # raise, timeout and garbage each occur
    assert all(r.tokens_in > 0 and r.tokens_out > 0 for r in answered)


def test_the_same_seed_gives_the_same_answers_and_another_seed_does_not() -> None:
    first = [(r.ok, r.output, r.error_code) for r in run("seed=5,acc=0.6,err=0.1", 200)]
    again = [(r.ok, r.output, r.error_code) for r in run("seed=5,acc=0.6,err=0.1", 200)]
    other = [(r.ok, r.output, r.error_code) for r in run("seed=6,acc=0.6,err=0.1", 200)]
    assert first == again
    assert first != other


def test_instruction_variants_and_demo_counts_have_their_declared_accuracy() -> None:
    spec = "seed=2,instr=0.4/0.9/0.6,demos=0:0/4:0.05"
    measured = {}
    for variant, instructions in enumerate(ENTRY.contract.search_space.instructions):
        for demos in (0, 4):
            program = dspy.Predict(ENTRY.dspy_signature.with_instructions(instructions))
            program.demos = [{**given, **ENTRY.to_fields(expected)} for given, expected in cases(demos)]
            results = run(spec, 600, program)
            hits = sum(r.output == e for r, (_, e) in zip(results, cases(600), strict=True) if r.ok)
            measured[(variant, demos)] = hits / 600
    print(f"\nper (variant, demos) accuracy: {measured}")
    for (variant, demos), accuracy in measured.items():
        declared = (0.4, 0.9, 0.6)[variant] + (0.05 if demos == 4 else 0)
        assert abs(accuracy - declared) <= 0.05, (variant, demos)


def test_declared_latency_is_spent() -> None:
    results = run("seed=1,latency_ms=40", 5)
    assert all(r.latency_ms >= 40 for r in results)


@pytest.mark.parametrize(("spec", "problem"), [
    ("acc=2", "acc"), ("err=-1", "err"), ("errors=explode", "errors"), ("nonsense", "key=value"),
    ("demos=4", "demos"), ("speed=3", "speed"),
])
def test_bad_specs_name_the_problem(spec: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        SimSpec.parse(spec)


def test_lm_id_names_the_simulator_and_every_setting() -> None:
    backend = build_backend(Settings(lm="sim:err=0.1,seed=3"))
    assert backend.lm_id == backend.lm_id.strip()
    assert backend.lm_id.startswith("sim:seed=3,acc=0.8,err=0.1,")
    assert backend.lm_id.endswith("|temperature=0,max_tokens=256")
    assert build_backend(Settings(lm="sim:seed=3,err=0.1")).lm_id == backend.lm_id
