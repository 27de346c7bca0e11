"""The canary: sticky arm assignment, per-arm counters, the plan, and the pure assessment that moves a canary
through its steps (argo's `assessMetricStatus`, as one function of counters, config, state, `now` and, where it
tests a step's split, the request keys each arm got under the step).

A canary's plan is a list of rollout steps (percent of traffic to the candidate, e.g. 5 -> 25 -> 50), each with a
cumulative target of candidate samples. Assessed after every candidate receipt:
1. abort (fail) as soon as the Beta-mixture e-process for "error rate > max_error_rate" reaches 1/alpha;
2. at an intermediate step's target: advance, unless the split of that step is a sample-ratio mismatch or the
   candidate is over its latency/cost budget (then fail);
3. at the last step's target, the single pre-planned look: pass only when the error upper bound, the quality
   gate, the budget and the split all pass; fail when quality is confidently worse, the budget is broken or the
   split is broken; otherwise the look is missed and nothing can pass any more;
4. inconclusive (the candidate is not promoted) at `max_samples` or at the deadline.
No data never passes. Must not import I/O modules, the clock or DSPy.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from overnight.domain.gates import (
    ALPHA,
    EXPECTED_ERROR_RATE,
    LATENCY_EDGES_MS,
    MAX_ERROR_RATE,
    OVERFLOW_MS,
    POWER,
    SRM_THRESHOLD_MAX,
    SRM_THRESHOLD_P,
    Decision,
    budget_gate,
    error_gate,
    plan_samples,
    quality_gate,
    srm_gate,
    step_targets,
    unplannable,
)
from overnight.domain.runs import ID_PATTERN
from overnight.domain.signatures import Budget

Arm = Literal["control", "candidate"]
ARMS: tuple[Arm, Arm] = ("control", "candidate")
CanaryStatus = Literal["active", "passed", "failed", "inconclusive", "stopped", "promoted"]
Outcome = Literal["continue", "advance", "pass", "fail", "inconclusive"]
BUCKETS = 10_000


def bucket_of(*, salt: str, signature_id: str, request_key: str) -> int:
    """The request's bucket in [0, 10000): a salted hash, so the same key always lands in the same bucket."""
    digest = hashlib.sha256(f"{salt}|{signature_id}|{request_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def arm_for(bucket: int, rollout_pct: float) -> Arm:
    """Buckets below the rollout go to the candidate; a larger later step keeps every earlier candidate key."""
    return "candidate" if bucket < round(rollout_pct * BUCKETS / 100) else "control"


def latency_bucket(latency_ms: int) -> int:
    return next((edge for edge in LATENCY_EDGES_MS if latency_ms <= edge), OVERFLOW_MS)


class ArmCounters(BaseModel):
    """One arm's counters, bumped by the server with atomic SQL increments; clients can't write them."""

    samples: int = 0
    errors: int = 0
    labeled: int = 0
    correct: int = 0
    latency_sum_ms: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    costed: int = Field(default=0, description="calls whose cost is known")
    carried: int = Field(default=0, description=(
        "receipts routed under an earlier step but recorded after the canary advanced (their LM call was in "
        "flight): counted in every gate but the split test, which must only see the current step's routing"))
    latency_buckets: dict[int, int] = Field(default_factory=dict)

    def latency_p95_ms(self) -> float | None:
        """The upper edge of the bucket holding the 95th percentile (conservative: never under-reports)."""
        total = sum(self.latency_buckets.values())
        if total == 0:
            return None
        seen = 0
        for edge in sorted(self.latency_buckets):
            seen += self.latency_buckets[edge]
            if seen >= math.ceil(0.95 * total):
                return float(edge)
        return float(OVERFLOW_MS)

    def cost_per_call_usd(self) -> float | None:
        return self.cost_usd / self.costed if self.costed else None

    def routed_here(self) -> int:
        """Samples routed under the step the canary was at when they were recorded (what a step base counts)."""
        return self.samples - self.carried

    def summary(self) -> dict[str, Any]:
        return {"samples": self.samples, "errors": self.errors, "error_rate": _rate(self.errors, self.samples),
                "labeled": self.labeled, "correct": self.correct, "accuracy": _rate(self.correct, self.labeled),
                "latency_p95_ms": self.latency_p95_ms(), "cost_per_call_usd": self.cost_per_call_usd(),
                "tokens_in": self.tokens_in, "tokens_out": self.tokens_out}


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


class CanaryPlanRequest(BaseModel):
    """What a caller asks for when starting a canary; `min_samples` are cumulative candidate samples at the end
    of each step (planned from `expected_error_rate` when absent)."""

    model_config = ConfigDict(extra="forbid")

    steps: list[float] = Field(default=[5.0, 25.0, 50.0], min_length=1, max_length=10,
                               description="percent of traffic to the candidate at each step, increasing, in (0, 100)")
    max_error_rate: float = Field(default=MAX_ERROR_RATE, gt=0, lt=1)
    expected_error_rate: float = Field(default=EXPECTED_ERROR_RATE, ge=0, lt=1)
    alpha: float = Field(default=ALPHA, gt=0, le=0.2)
    power: float = Field(default=POWER, gt=0.5, lt=1)
    quality_margin: float | None = Field(default=0.05, ge=0, le=1,
                                         description="null turns the labeled-quality gate off (no labels)")
    min_labeled: int = Field(default=30, ge=1)
    min_samples: list[int] | None = None
    max_samples: int | None = Field(default=None, ge=1)
    deadline_s: int = Field(default=3600, ge=1, le=7 * 86_400)
    srm_threshold_p: float = Field(default=SRM_THRESHOLD_P, gt=0, le=SRM_THRESHOLD_MAX, description=(
        "a step whose split has a p-value below this is a sample-ratio mismatch and fails the canary"))

    @model_validator(mode="after")
    def _shape(self) -> CanaryPlanRequest:
        if any(not 0 < s < 100 for s in self.steps) or not _increasing(self.steps):
            raise ValueError("steps must be strictly increasing percentages between 0 and 100 (exclusive)")
        if self.min_samples is not None:
            if len(self.min_samples) != len(self.steps):
                raise ValueError(f"min_samples needs one cumulative target per step ({len(self.steps)})")
            if self.min_samples[0] < 1 or not _increasing(self.min_samples):
                raise ValueError("min_samples must be strictly increasing positive cumulative sample counts")
        if self.min_samples is None and self.expected_error_rate >= self.max_error_rate:
            raise ValueError("expected_error_rate must be below max_error_rate to plan the samples")
        return self


def _increasing(values: list[float] | list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


class CanaryConfig(BaseModel):
    """The resolved plan a canary runs under, stored with it and shown in the review."""

    model_config = ConfigDict(frozen=True)

    steps: tuple[float, ...]
    targets: tuple[int, ...]
    max_error_rate: float
    expected_error_rate: float
    alpha: float
    power: float
    quality_margin: float | None
    min_labeled: int
    max_samples: int
    deadline_at: int
    budget: Budget
    srm_threshold_p: float = SRM_THRESHOLD_P  # absent from canaries stored before it was a plan field


def resolve_plan(request: CanaryPlanRequest, *, budget: Budget, now: int) -> CanaryConfig:
    """Fill in the sample targets (the last is the single pass look) and the deadline."""
    targets = request.min_samples
    if targets is None:
        look = plan_samples(max_error_rate=request.max_error_rate, expected_error_rate=request.expected_error_rate,
                            alpha=request.alpha, power=request.power)
        if look is None:
            raise ValueError(unplannable(max_error_rate=request.max_error_rate, alpha=request.alpha,
                                         expected_error_rate=request.expected_error_rate, power=request.power,
                                         expected_is="expected_error_rate", max_is="max_error_rate"))
        targets = step_targets(look, len(request.steps))
    max_samples = request.max_samples if request.max_samples is not None else max(400, targets[-1])
    if max_samples < targets[-1]:
        raise ValueError(f"max_samples {max_samples} is below the pass look at {targets[-1]} candidate samples")
    return CanaryConfig(steps=tuple(request.steps), targets=tuple(targets), max_error_rate=request.max_error_rate,
                        expected_error_rate=request.expected_error_rate, alpha=request.alpha, power=request.power,
                        quality_margin=request.quality_margin, min_labeled=request.min_labeled,
                        max_samples=max_samples, deadline_at=now + request.deadline_s * 1000, budget=budget,
                        srm_threshold_p=request.srm_threshold_p)


class Assessment(BaseModel):
    outcome: Outcome
    reason_code: str
    message: str
    decisions: list[Decision]
    step: int
    can_still_pass: bool
    look_missed: bool = Field(default=False, description="this is the pass look, and a gate was not shown")
    keys: dict[str, int] | None = Field(default=None, description=(
        "the distinct request keys each arm got under the step, which its split counted (None: one per request)"))

    def evidence(self, control: ArmCounters, candidate: ArmCounters) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason_code": self.reason_code, "message": self.message,
                "step": self.step, "can_still_pass": self.can_still_pass,
                "arms": {"control": control.summary(), "candidate": candidate.summary()},
                "gates": [d.model_dump(mode="json") for d in self.decisions]}


def tests_split(config: CanaryConfig, *, step: int, candidate: ArmCounters) -> bool:
    """Whether an assessment at these counts tests the step's split: at an intermediate step's target, or at the
    look (the store then counts the request keys each arm got under the step, for `assess`)."""
    if step == len(config.steps) - 1:
        return candidate.samples == config.targets[-1]
    return candidate.samples >= config.targets[step]


def assess(config: CanaryConfig, *, step: int, step_base: dict[str, int], control: ArmCounters,
           candidate: ArmCounters, now: int, keys: dict[str, int] | None = None) -> Assessment:
    """What the evidence says now. Called after every candidate receipt, in the transaction that wrote it, so
    every candidate sample count is assessed exactly once (the single look happens exactly at its target).
    `keys`: the distinct request keys each arm got under the step, where the split is tested (None: one each)."""
    look, last = config.targets[-1], step == len(config.steps) - 1
    errors = error_gate(samples=candidate.samples, errors=candidate.errors, max_error_rate=config.max_error_rate,
                        alpha=config.alpha, min_samples=look, max_samples=config.max_samples)
    if errors.reason_code == "error_rate_exceeded":
        return _result("fail", errors, [errors], step)
    if tests_split(config, step=step, candidate=candidate):
        split = _split(config, step, step_base, control, candidate, keys=keys)
        assessment = (_the_look(config, errors, split, step=step, control=control, candidate=candidate) if last
                      else _step_end(config, errors, split, step=step, candidate=candidate))
        return assessment.model_copy(update={"keys": keys})
    if errors.reason_code == "inconclusive_at_max_samples":
        return _result("inconclusive", errors, [errors], step)
    if now >= config.deadline_at:
        late = Decision(verdict="fail", reason_code="deadline_passed", evidence={"deadline_at": config.deadline_at},
                        message=(f"deadline passed after {candidate.samples} candidate requests "
                                 f"({candidate.errors} errors) without a pass -> roll back"))
        return _result("inconclusive", late, [errors, late], step)
    return _result("continue", errors, [errors], step, can_pass=candidate.samples < look)


def _result(outcome: Outcome, decision: Decision, gates: list[Decision], step: int, *,
            can_pass: bool = False) -> Assessment:
    return Assessment(outcome=outcome, reason_code=decision.reason_code, message=decision.message,
                      decisions=gates, step=step, can_still_pass=can_pass)


def _step_end(config: CanaryConfig, errors: Decision, split: Decision, *, step: int,
              candidate: ArmCounters) -> Assessment:
    """An intermediate step's target: advance unless the split or the budget fails."""
    gates = [split, _budget(config, candidate)]
    failed = [g for g in gates if g.verdict == "fail"]
    if failed:
        return _result("fail", failed[0], [errors, *gates], step)
    advance = Decision(verdict="pass", reason_code="step_complete", evidence={"step": step}, message=(
        f"step {step + 1} ({config.steps[step]:g}%) reached {candidate.samples} candidate requests with "
        f"{candidate.errors} errors; split and budget fine -> rollout {config.steps[step + 1]:g}%"))
    return _result("advance", advance, [errors, *gates, advance], step, can_pass=True)


def _the_look(config: CanaryConfig, errors: Decision, split: Decision, *, step: int, control: ArmCounters,
              candidate: ArmCounters) -> Assessment:
    """The single pre-planned look: pass only if every gate passes; fail if any fails; else the look is missed."""
    gates = [errors, _quality(config, control, candidate), _budget(config, candidate), split]
    if all(g.verdict == "pass" for g in gates):
        verdict = Decision(verdict="pass", reason_code="canary_passed", evidence={},
                           message="; ".join(g.message for g in gates))
        return _result("pass", verdict, [*gates, verdict], step)
    failed = [g for g in gates if g.verdict == "fail"]
    if failed:
        return _result("fail", failed[0], gates, step)
    missed = next(g for g in gates if g.verdict != "pass")
    return _result("continue", missed, gates, step).model_copy(update={"look_missed": True, "message": (
        f"the pass look at {candidate.samples} candidate requests was missed ({missed.reason_code}): "
        f"{missed.message}")})


def _split(config: CanaryConfig, step: int, step_base: dict[str, int], control: ArmCounters,
           candidate: ArmCounters, *, keys: dict[str, int] | None) -> Decision:
    return srm_gate(candidate_samples=candidate.routed_here() - step_base.get("candidate", 0),
                    control_samples=control.routed_here() - step_base.get("control", 0),
                    candidate_share=config.steps[step] / 100, threshold_p=config.srm_threshold_p,
                    keys=None if keys is None else (keys.get("candidate", 0), keys.get("control", 0)))


def _budget(config: CanaryConfig, candidate: ArmCounters) -> Decision:
    return budget_gate(latency_p95_ms=candidate.latency_p95_ms(), cost_per_call_usd=candidate.cost_per_call_usd(),
                       max_latency_p95_ms=config.budget.max_latency_p95_ms,
                       max_cost_per_call_usd=config.budget.max_cost_per_call_usd)


def _quality(config: CanaryConfig, control: ArmCounters, candidate: ArmCounters) -> Decision:
    if config.quality_margin is None:
        return Decision(verdict="pass", reason_code="quality_gate_off", evidence={"quality_margin": None},
                        message="quality gate off for this canary (no labeled traffic expected)")
    return quality_gate(candidate_labeled=candidate.labeled, candidate_correct=candidate.correct,
                        control_labeled=control.labeled, control_correct=control.correct,
                        margin=config.quality_margin, alpha=config.alpha, min_labeled=config.min_labeled)


class CanaryRecord(BaseModel):
    """A canary as stored: its plan, where it is, how it ended, and both arms' counters."""

    canary_id: str
    signature_id: str
    control_id: str
    candidate_id: str
    config: CanaryConfig
    step: int
    step_base: dict[str, int]
    status: CanaryStatus
    end_reason: str | None
    run_id: str | None
    report_id: str | None
    actor: str | None
    started_at: int
    ended_at: int | None
    arms: dict[str, ArmCounters]

    @property
    def rollout_pct(self) -> float:
        return self.config.steps[self.step]

    def tests_split(self) -> bool:
        return tests_split(self.config, step=self.step, candidate=self.arms["candidate"])

    def assess(self, now: int, keys: dict[str, int] | None = None) -> Assessment:
        return assess(self.config, step=self.step, step_base=self.step_base, control=self.arms["control"],
                      candidate=self.arms["candidate"], now=now, keys=keys)

    def decision_record(self, assessment: Assessment, now: int) -> tuple[str, str, dict[str, Any]] | None:
        """How an assessment of this canary goes into its history: kind, verdict, and the evidence with everything
        `assess` read besides the plan (stored with the canary), so `rederive` can run it again; None when the
        assessment decides nothing yet."""
        recorded = recorded_as(assessment)
        if recorded is None:
            return None
        inputs: dict[str, Any] = {"step": self.step, "step_base": dict(self.step_base), "now": now,
                                  "arms": {arm: self.arms[arm].model_dump(mode="json") for arm in ARMS}}
        if assessment.keys is not None:
            inputs["keys"] = dict(assessment.keys)
        return (*recorded, {**assessment.evidence(self.arms["control"], self.arms["candidate"]), "inputs": inputs})


GATE_KINDS = frozenset({"step_advanced", "look_missed", "gate_evaluated"})  # history rows that are gate decisions
_METHOD_KEYS = ("abort_method", "pass_method", "method")


def recorded_as(assessment: Assessment) -> tuple[str, str] | None:
    """The history kind and verdict an assessment is recorded as; None for one that decides nothing yet."""
    if assessment.look_missed:
        return "look_missed", "inconclusive"
    if assessment.outcome == "advance":
        return "step_advanced", "pass"
    return None if assessment.outcome == "continue" else ("gate_evaluated", assessment.outcome)


class Rederived(BaseModel):
    """Whether a recorded gate decision follows from the inputs recorded with it, under this overnight's gates."""

    status: Literal["agrees", "differs", "method_changed", "no_inputs"]
    detail: str | None = Field(default=None, description="what differs, or which gate methods changed")


def rederive(config: CanaryConfig, *, kind: str, verdict: str | None, evidence: dict[str, Any]) -> Rederived | None:
    """Run the assessment again on a gate decision's recorded inputs and compare it with what was recorded: the
    kind, the verdict, and the evidence (every gate's verdict, reason, sentence and figures). A decision is a pure
    function of its inputs and the versioned gate methods, so any difference means the record is not what those
    gates said — or the gates changed without a new method version. None for history that is not a gate decision
    (opened, stopped, promoted)."""
    if kind not in GATE_KINDS:
        return None
    inputs = evidence.get("inputs")
    if not isinstance(inputs, dict):
        return Rederived(status="no_inputs", detail="recorded before gate decisions kept their inputs")
    try:
        arms = {arm: ArmCounters.model_validate(inputs["arms"][arm]) for arm in ARMS}
        keys = inputs.get("keys")
        assessment = assess(config, step=int(inputs["step"]), step_base=dict(inputs["step_base"]),
                            control=arms["control"], candidate=arms["candidate"], now=int(inputs["now"]),
                            keys=None if keys is None else {arm: int(keys[arm]) for arm in ARMS})
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        return Rederived(status="differs", detail=f"its recorded inputs cannot be read ({type(exc).__name__})")
    again = json.loads(json.dumps(assessment.evidence(arms["control"], arms["candidate"])))
    recorded = {key: value for key, value in evidence.items() if key != "inputs"}
    before, now_methods = _methods(recorded), _methods(again)
    if before != now_methods:
        return Rederived(status="method_changed", detail=(
            f"recorded under {', '.join(sorted(before - now_methods)) or 'no method'}; this overnight gates with "
            f"{', '.join(sorted(now_methods - before)) or 'no method'}"))
    gives = recorded_as(assessment)
    if (kind, verdict) != gives:
        return Rederived(status="differs", detail=(
            f"recorded {kind} {verdict}; its inputs give {' '.join(gives) if gives else 'no decision yet'}"))
    where = _first_difference(recorded, again, "")
    return Rederived(status="agrees") if where is None else Rederived(status="differs", detail=where)


def _methods(evidence: dict[str, Any]) -> set[str]:
    found = set()
    for gate in evidence.get("gates") or []:
        gate_evidence = gate.get("evidence") if isinstance(gate, dict) else None
        for key in _METHOD_KEYS:
            value = gate_evidence.get(key) if isinstance(gate_evidence, dict) else None
            if isinstance(value, str) and re.fullmatch(r"[a-z0-9_]+@\d+", value):
                found.add(value)
    return found


def _first_difference(recorded: Any, again: Any, path: str) -> str | None:
    """Where two JSON values first differ, as `gates[1].verdict: recorded "pass", its inputs give "fail"`; None
    when they do not."""
    if isinstance(recorded, dict) and isinstance(again, dict):
        pairs = [(f"{path}.{key}" if path else key, recorded.get(key), again.get(key))
                 for key in sorted(recorded.keys() | again.keys())]
    elif isinstance(recorded, list) and isinstance(again, list) and len(recorded) == len(again):
        pairs = [(f"{path}[{i}]", one, other) for i, (one, other) in enumerate(zip(recorded, again, strict=True))]
    elif _same(recorded, again):
        return None
    else:
        return f"{path}: recorded {_short(recorded)}, its inputs give {_short(again)}"
    return next((where for at, one, other in pairs if (where := _first_difference(one, other, at)) is not None), None)


def _same(recorded: Any, again: Any) -> bool:
    """Equal JSON leaves; numbers to 1e-9 relative (the same figure through another machine's libm)."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (recorded, again)):
        return math.isclose(recorded, again, rel_tol=1e-9, abs_tol=1e-12)
    return bool(recorded == again and type(recorded) is type(again))


def _short(value: Any) -> str:
    said = json.dumps(value, ensure_ascii=False)
    return said if len(said) <= 160 else f"{said[:157]}..."


class CanaryEntry(BaseModel):
    """One row of a canary's append-only history: started, step advanced, verdict, stopped, promoted."""

    id: int
    canary_id: str
    kind: str
    step: int
    verdict: str | None
    actor: str | None
    evidence: dict[str, Any]
    created_at: int


class ServingRoute(BaseModel):
    """What the predict path reads before it calls the LM: the champion and, during a canary, how to split."""

    champion_id: str | None
    canary_id: str | None = None
    salt: str | None = None
    rollout_pct: float = 0.0
    step: int | None = None
    control_id: str | None = None
    candidate_id: str | None = None


class CanaryStart(CanaryPlanRequest):
    candidate_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    report_id: str | None = Field(default=None, pattern=ID_PATTERN,
                                  description="the compile report naming the candidate (default: the newest)")
    run_id: str | None = Field(default=None, pattern=ID_PATTERN, description="record gate decisions on this run")


class CanaryStop(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)
    canary_id: str | None = Field(default=None, pattern=ID_PATTERN, description=(
        "stop only this canary: 404 canary_not_found when it is not the signature's active one (another has "
        "replaced it), and nothing is stopped"))


class CanaryView(BaseModel):
    canary: CanaryRecord
    rollout_pct: float
    evaluation: dict[str, Any] | None = Field(description="the gates on the counters right now (active canaries)")
    history: list[CanaryEntry]
    error_codes: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="failed requests by arm and error code, the most frequent first; each one "
                                          "is listed by GET /api/v1/receipts?canary=ID&ok=false")
