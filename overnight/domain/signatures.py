"""A signature's contract: its input and output models, instructions, search space, reward and budget.

Pure: pydantic only. The DSPy Signature class that goes with a contract lives beside it in
`signatures/<name>.py`; `overnight.registry` pairs them. Must not import I/O modules, the clock or DSPy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from overnight.domain.hashing import content_hash

# An extra check that needs the input and the output together (e.g. "the tool chosen is one of those offered").
CrossCheck = Callable[[BaseModel, BaseModel], str | None]


class SearchSpace(BaseModel):
    """What compile may vary: instruction variants, few-shot demo counts, decode settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instructions: tuple[str, ...] = Field(min_length=2, max_length=6)
    demo_counts: tuple[int, ...] = Field(default=(0, 4, 8), min_length=1)
    decode: tuple[dict[str, Any], ...] = Field(default=({"temperature": 0.0},), min_length=1)

    @field_validator("instructions")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value) or not all(v.strip() for v in value):
            raise ValueError("instruction variants must be distinct and non-empty")
        return value

    @field_validator("demo_counts")
    @classmethod
    def _counts(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 0 or k > 32 for k in value) or len(set(value)) != len(value):
            raise ValueError("demo counts must be distinct and between 0 and 32")
        return value


class Budget(BaseModel):
    """What one call may cost in production; the canary gate checks the candidate against it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_latency_p95_ms: int = Field(gt=0)
    max_cost_per_call_usd: float = Field(ge=0)


class SignatureContract(BaseModel):
    """Everything overnight knows about one signature, except its DSPy class."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    signature_id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*\.v[0-9]+$")
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    search_space: SearchSpace
    reward_id: str = Field(pattern=r"^[a-z_]+@[0-9]+$")
    budget: Budget
    cross_check: CrossCheck | None = None

    @property
    def default_instructions(self) -> str:
        """The signature's default program uses the first instruction variant."""
        return self.search_space.instructions[0]

    def contract_hash(self) -> str:
        """Changes whenever what the signature accepts, returns or is scored by changes."""
        return content_hash({
            "signature_id": self.signature_id,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output_model.model_json_schema(),
            "reward_id": self.reward_id,
        })

    def check_example(self, raw_input: Any, raw_expected: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate an (input, expected output) pair; return both in canonical form.

        Raises `ExampleInvalid` naming the field and the reason.
        """
        parsed_input = _validate(self.input_model, raw_input, "input")
        return canonical(parsed_input), self.check_output(parsed_input, raw_expected, where="expected")

    def check_input(self, raw_input: Any) -> dict[str, Any]:
        """Validate an input alone; return it in canonical form. Raises `ExampleInvalid`."""
        return canonical(_validate(self.input_model, raw_input, "input"))

    def check_output(self, given: BaseModel, raw_output: Any, *, where: str = "output") -> dict[str, Any]:
        """Validate an output for an already validated input; return it in canonical form."""
        parsed_output = _validate(self.output_model, raw_output, where)
        if self.cross_check is not None:
            problem = self.cross_check(given, parsed_output)
            if problem is not None:
                raise ExampleInvalid((where, problem))
        return canonical(parsed_output)

    def public(self) -> dict[str, Any]:
        """The contract as JSON for the API and the review."""
        return {
            "signature_id": self.signature_id, "description": self.description,
            "contract_hash": self.contract_hash(), "reward_id": self.reward_id,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output_model.model_json_schema(),
            "search_space": self.search_space.model_dump(mode="json"),
            "budget": self.budget.model_dump(mode="json"),
        }


class ExampleInvalid(Exception):
    """What is wrong with an input or an output: the first problem as `field` and `reason`, and every problem
    found (in the model's order) as `problems`, so a caller can fix them all in one go."""

    def __init__(self, *problems: tuple[str, str]) -> None:
        super().__init__(f"{problems[0][0]}: {problems[0][1]}")  # the first, as an LM's invalid output is recorded
        self.problems = list(problems)

    @property
    def field(self) -> str:
        return self.problems[0][0]

    @property
    def reason(self) -> str:
        return self.problems[0][1]

    def every(self) -> str:
        """Every problem on one line: `field: reason; field: reason`."""
        return "; ".join(f"{field}: {reason}" for field, reason in self.problems)

    @classmethod
    def from_validation(cls, exc: ValidationError, *, where: str | None = None) -> ExampleInvalid:
        """pydantic's errors as problems, each field named by its dotted location (under `where`, when given)."""
        return cls(*((".".join([*([where] if where else []), *(str(p) for p in err["loc"])]), err["msg"])
                     for err in exc.errors()))


def canonical(model: BaseModel) -> dict[str, Any]:
    """A model as the JSON object hashes and exact-match rewards compare: no `None` fields."""
    return model.model_dump(mode="json", exclude_none=True)


def _validate(model: type[BaseModel], raw: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ExampleInvalid.from_validation(exc, where=where) from None
