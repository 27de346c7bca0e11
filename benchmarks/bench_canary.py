"""Canary samples to a decision: the server's own `assess()` (an anytime-valid e-process that aborts as soon as
the errors prove too many, then one pre-planned exact look) against the fixed-sample rule (always wait for the
planned look, then decide), for candidates from good to bad.

    make bench-canary

One step at 50 % rollout, max error rate 5 %, planned for a candidate at 1 % (alpha 0.05, power 0.9: the look
at 153 candidate requests), no labels (quality off), CANARIES simulated canaries per error rate. The physical
limit for a bad candidate: the fewest requests in which its errors can show; for a good one, the planned look.
"missed": the look came and the bound was not met, so the candidate can no longer pass; the runner stops the
canary there (inconclusive: no promotion). Either way nothing is promoted that did not pass the look.
"""

from __future__ import annotations

import random
import statistics

from figures import record  # benchmarks/ is on sys.path when a script runs

from overnight.domain.canary import ArmCounters, CanaryPlanRequest, assess, resolve_plan
from overnight.domain.signatures import Budget

CANARIES = 400
RATES = (0.0, 0.01, 0.03, 0.05, 0.10, 0.20, 0.40)


def one(rate: float, rng: random.Random, config: object) -> tuple[str, int]:
    candidate, control = ArmCounters(), ArmCounters()
    while True:
        failed = rng.random() < rate
        candidate = candidate.model_copy(update={"samples": candidate.samples + 1,
                                                 "errors": candidate.errors + failed,
                                                 "latency_buckets": {100: candidate.samples + 1}})
        control = control.model_copy(update={"samples": control.samples + 1, "latency_buckets": {100: 1}})
        verdict = assess(config, step=0, step_base={"control": 0, "candidate": 0},  # type: ignore[arg-type]
                         control=control, candidate=candidate, now=0)
        if verdict.outcome != "continue":
            return verdict.outcome, candidate.samples
        if not verdict.can_still_pass:  # the look was missed: the runner stops here (inconclusive, no promotion)
            return "missed", candidate.samples


def main() -> None:
    config = resolve_plan(CanaryPlanRequest(steps=[50.0], quality_margin=None, deadline_s=3600),
                          budget=Budget(max_latency_p95_ms=10_000, max_cost_per_call_usd=1.0), now=0)
    look = config.targets[-1]
    rng = random.Random(7)  # noqa: S311  # a seeded simulation, not a secret
    print(f"{CANARIES} canaries per error rate; pass look at {look} candidate requests; max error rate "
          f"{config.max_error_rate:g}; fixed-sample rule: always {look} requests")
    print(f"{'true error rate':>16}{'pass':>8}{'abort':>8}{'missed':>8}{'mean n':>10}{'median n':>10}"
          f"{'saved vs fixed':>16}")
    for rate in RATES:
        outcomes = [one(rate, rng, config) for _ in range(CANARIES)]
        samples = [n for _, n in outcomes]
        passed = sum(o == "pass" for o, _ in outcomes) / CANARIES
        failed = sum(o == "fail" for o, _ in outcomes) / CANARIES
        mean = statistics.mean(samples)
        print(f"{rate:>16.2f}{passed:>8.1%}{failed:>8.1%}{1 - passed - failed:>8.1%}{mean:>10.1f}"
              f"{statistics.median(samples):>10.0f}{1 - mean / look:>16.0%}")
        if rate in (0.0, 0.2, 0.4):
            record("canary", f"requests to a decision at {rate:.0%} errors", mean, "req", limit=look,
                   limit_says="(fixed sample)", higher_is_better=False)


if __name__ == "__main__":
    main()
