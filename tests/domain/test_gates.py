"""The gate statistics as tables, and measured as a gate: seeded simulations of thousands of canaries per case,
asserting the false-pass and false-abort rates against the targets (issue 6, must-show 1, error gates)."""

from __future__ import annotations

import random
from statistics import median

import pytest

from overnight.domain.gates import (
    abort_thresholds,
    clopper_pearson_upper,
    error_gate,
    log_e_value,
    max_errors_to_pass,
    plan_samples,
)

P0, ALPHA, MAX_SAMPLES = 0.05, 0.05, 400


@pytest.mark.parametrize(("n", "k", "upper"), [  # canary-gates.md, section 7 (Clopper-Pearson column)
    (20, 0, 0.139), (20, 1, 0.216), (50, 0, 0.058), (50, 2, 0.121), (100, 0, 0.030), (100, 5, 0.102),
    (300, 6, 0.039), (500, 10, 0.034),
])
def test_clopper_pearson_upper_bounds_match_the_reference_table(n: int, k: int, upper: float) -> None:
    assert clopper_pearson_upper(k, n, 0.05) == pytest.approx(upper, abs=0.0015)


def test_zero_failure_sizes_match_the_reference() -> None:
    for target, size in ((0.10, 29), (0.05, 59), (0.02, 149), (0.01, 299)):
        assert max_errors_to_pass(size, target, 0.05) == 0
        assert max_errors_to_pass(size - 1, target, 0.05) == -1


@pytest.mark.parametrize(("samples", "errors", "min_samples", "verdict", "reason"), [
    (0, 0, 153, "inconclusive", "not_enough_evidence"),  # no data never passes
    (153, 0, 153, "pass", "error_rate_within_bound"),
    (153, 3, 153, "pass", "error_rate_within_bound"),
    (153, 4, 153, "inconclusive", "not_enough_evidence"),  # missed the planned look
    (152, 0, 153, "inconclusive", "not_enough_evidence"),  # before the look, even a clean record waits
    (20, 6, 153, "fail", "error_rate_exceeded"),  # 30% errors: aborted early
    (400, 12, 153, "fail", "inconclusive_at_max_samples"),
])
def test_error_gate_table(samples: int, errors: int, min_samples: int, verdict: str, reason: str) -> None:
    decision = error_gate(samples=samples, errors=errors, max_error_rate=P0, alpha=ALPHA, min_samples=min_samples,
                          max_samples=MAX_SAMPLES)
    assert (decision.verdict, decision.reason_code) == (verdict, reason)
    assert decision.evidence["samples"] == samples
    assert decision.message


def test_the_gate_function_agrees_with_the_thresholds_the_simulation_uses() -> None:
    thresholds = abort_thresholds(200, P0, ALPHA)
    for n in range(1, 201):
        for k in range(n + 1):
            aborted = error_gate(samples=n, errors=k, max_error_rate=P0, alpha=ALPHA, min_samples=10_000,
                                 max_samples=10_000).verdict == "fail"
            assert aborted == (k >= thresholds[n]), (n, k)
    assert all(log_e_value(k, 60, P0) < log_e_value(k + 1, 60, P0) for k in range(60))


def simulate(error_rate: float, *, canaries: int, seed: int) -> dict[str, object]:
    """Canaries checked after every request: abort by the e-process, pass at the planned single look."""
    min_samples = plan_samples(max_error_rate=P0, expected_error_rate=0.01, alpha=ALPHA, power=0.9)
    assert min_samples is not None
    thresholds, pass_at_most = abort_thresholds(MAX_SAMPLES, P0, ALPHA), max_errors_to_pass(min_samples, P0, ALPHA)
    rng = random.Random(seed)
    passed, aborted, abort_at = 0, 0, []
    for _ in range(canaries):
        errors = 0
        for n in range(1, MAX_SAMPLES + 1):
            errors += rng.random() < error_rate
            if errors >= thresholds[n]:
                aborted += 1
                abort_at.append(n)
                break
            if n == min_samples and errors <= pass_at_most:
                passed += 1
                break
    return {"pass": passed / canaries, "abort": aborted / canaries,
            "median_abort_n": median(abort_at) if abort_at else None, "min_samples": min_samples}


def test_gate_rates_meet_the_targets() -> None:
    good, boundary = simulate(0.01, canaries=3000, seed=1), simulate(0.05, canaries=3000, seed=2)
    bad, slightly = simulate(0.20, canaries=3000, seed=3), simulate(0.02, canaries=3000, seed=4)
    print(f"\nplanned look at {good['min_samples']} samples; 3,000 canaries per case, checked after every request:"
          f"\n  true error 0.01: pass {good['pass']:.3f} (target >= 0.90)"
          f"\n  true error 0.05: pass {boundary['pass']:.3f} (target <= 0.05)"
          f"\n  true error 0.20: abort {bad['abort']:.3f} (target >= 0.99), median at {bad['median_abort_n']} "
          f"requests (target <= 40)"
          f"\n  true error 0.02: false abort {slightly['abort']:.3f} (target <= 0.02)")
    assert good["pass"] >= 0.90
    assert boundary["pass"] <= 0.05
    assert bad["abort"] >= 0.99
    assert bad["median_abort_n"] is not None
    assert bad["median_abort_n"] <= 40
    assert slightly["abort"] <= 0.02


def test_zero_traffic_never_passes() -> None:
    for min_samples in (0, 1, 153):
        decision = error_gate(samples=0, errors=0, max_error_rate=P0, alpha=ALPHA, min_samples=min_samples,
                              max_samples=MAX_SAMPLES)
        assert decision.verdict != "pass"
