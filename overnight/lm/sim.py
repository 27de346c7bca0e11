"""The seeded simulator: an LM with declared accuracy, error rate and latency, for tests, benchmarks and gate
calibration. Never chosen silently: only `OVERNIGHT_LM=sim:<spec>` selects it, and its lm_id says `sim:`.

Spec (comma-separated `key=value`, every key optional):
    seed=7            the seed; answers are a pure function of (seed, artifact, input)
    acc=0.8           P(correct | answered): base accuracy
    err=0.02          P(error): the call raises, times out, or returns unparsable text
    errors=raise/timeout/garbage   which errors to draw from (uniformly); also `hang`: over HTTP (`overnight
                      fake-llm`) the call never answers, so only the caller's timeout ends it; in-process it is
                      a timeout
    latency_ms=0      how long each call takes
    instr=0.5/0.8/0.6 accuracy per instruction variant (by index in the signature's search space); overrides acc
    ierr=0/0.3        error rate per instruction variant; overrides err (a candidate that fails 30% of calls)
    demos=0:0/4:0.1/8:0.05   accuracy added per number of few-shot demos in the prompt
The artifact is identified by its prompt (instructions and demos), so two candidates differ in their draws.
Must not import the store, the API or DSPy.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from overnight.domain.hashing import canonical_json, sha256_hex
from overnight.errors import ConfigError
from overnight.registry import RegisteredSignature

Probability = Annotated[float, Field(ge=0, le=1)]
ErrorKind = Literal["raise", "timeout", "garbage", "hang"]
GARBAGE = "Hmm, I am not sure. Maybe the second one?"


class SimSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    acc: float = Field(default=0.8, ge=0, le=1)
    err: float = Field(default=0.0, ge=0, le=1)
    errors: tuple[ErrorKind, ...] = Field(default=("raise", "timeout", "garbage"), min_length=1)
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    instr: tuple[Probability, ...] = ()
    ierr: tuple[Probability, ...] = ()
    demos: dict[int, float] = Field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SimSpec:
        """Parse `seed=7,acc=0.8,…`; a bad spec is a `ConfigError` naming the key."""
        raw: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"sim spec: {part!r} is not key=value (e.g. sim:seed=7,acc=0.8,err=0.02)")
            raw[key.strip()] = _value(key.strip(), value.strip())
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"sim spec: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None

    def canonical(self) -> str:
        """The spec as it goes into the lm_id: every key, in a fixed order."""
        return ",".join([
            f"seed={self.seed}", f"acc={self.acc:g}", f"err={self.err:g}", f"errors={'/'.join(self.errors)}",
            f"latency_ms={self.latency_ms}", f"instr={'/'.join(f'{a:g}' for a in self.instr)}",
            *([f"ierr={'/'.join(f'{e:g}' for e in self.ierr)}"] if self.ierr else []),
            f"demos={'/'.join(f'{k}:{v:g}' for k, v in sorted(self.demos.items()))}",
        ])

    def error_rate(self, variant: int | None) -> float:
        return self.ierr[variant] if variant is not None and variant < len(self.ierr) else self.err

    def accuracy(self, *, variant: int | None, demo_count: int) -> float:
        base = self.instr[variant] if variant is not None and variant < len(self.instr) else self.acc
        return min(1.0, max(0.0, base + self.demos.get(demo_count, 0.0)))


def _value(key: str, value: str) -> Any:
    if key in ("errors", "instr", "ierr"):
        return [v for v in value.split("/") if v]
    if key == "demos":
        pairs = [item.split(":", 1) for item in value.split("/") if item]
        if any(len(p) != 2 for p in pairs):
            raise ConfigError("sim spec: demos must look like 0:0/4:0.1/8:0.05")
        return {p[0]: p[1] for p in pairs}
    return value


class SimOutcome(BaseModel):
    kind: Literal["answer", "raise", "timeout", "garbage", "hang"]
    fields: dict[str, Any] | None = None
    correct: bool | None = None


def unit(*parts: object) -> float:
    """A uniform draw in [0, 1) that is a pure function of `parts`."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def simulate(spec: SimSpec, *, artifact: str, given: dict[str, Any], variant: int | None, demo_count: int,
             allowed: list[dict[str, Any]], expected: dict[str, Any] | None) -> SimOutcome:
    """One simulated call. `allowed` are the valid answers (as output fields); `expected` the right one, when
    known. Without `expected` the simulator answers validly but can't be right."""
    key = (spec.seed, artifact, canonical_json(given))
    if unit(*key, "error") < spec.error_rate(variant):
        return SimOutcome(kind=spec.errors[int(unit(*key, "kind") * len(spec.errors))])
    if expected is not None and unit(*key, "correct") < spec.accuracy(variant=variant, demo_count=demo_count):
        return SimOutcome(kind="answer", fields=expected, correct=True)
    wrong = [a for a in allowed if a != expected] or allowed
    pick = wrong[int(unit(*key, "pick") * len(wrong))]
    return SimOutcome(kind="answer", fields=pick, correct=False if expected is not None else None)


def simulate_prompt(spec: SimSpec, entry: RegisteredSignature, *, system: str, turns: list[str], given: BaseModel,
                    expected: dict[str, Any] | None) -> SimOutcome:
    """One simulated call from what a model sees: the system prompt and the turns (demo pairs, then the input).
    The artifact is identified by its prompt (instructions and demos), the variant by its instructions."""
    return simulate(
        spec, artifact=sha256_hex(system + "".join(turns[:-1])), given=given.model_dump(mode="json"),
        variant=instruction_variant(system, entry.contract.search_space.instructions),
        demo_count=(len(turns) - 1) // 2,
        allowed=entry.allowed_fields(given),
        expected=entry.to_fields(expected) if expected is not None else None,
    )


def instruction_variant(system_prompt: str, variants: tuple[str, ...]) -> int | None:
    """Which of the signature's instruction variants the prompt carries (the longest match wins)."""
    found = [(len(text), index) for index, text in enumerate(variants) if text.strip() in system_prompt]
    return max(found)[1] if found else None
