"""A real compile of SelectTool.v1 with the bundled local model (CI installs it), within its budget."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from overnight.compile.service import compile_signature
from overnight.config import Settings
from overnight.domain.datasets import parse_dataset
from overnight.lm.backends import build_backend
from overnight.registry import Registry
from overnight.store import SqlStore

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 150


@pytest.mark.local_model
@pytest.mark.timeout(1200)  # up to 150 calls of a CPU model at 1-3 s each on a busy 2-core machine: not a speed test
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_real_compile_with_the_local_model_finishes_within_its_budget(open_store: Callable[..., SqlStore]) -> None:
    entry = Registry().get("SelectTool.v1")
    store = open_store()
    store.import_examples(signature_id="SelectTool.v1", rows=parse_dataset(
        entry.contract, (ROOT / "datasets" / "selecttool.v1.jsonl").read_bytes(), fmt="jsonl"))
    report = compile_signature(store, entry, build_backend(Settings(lm="local")), max_lm_calls=BUDGET,
                               first_slice=2, eta=3, finalists=1, concurrency=1)
    delta = report.paired_delta
    assert delta is not None
    print(f"\nlocal compile {report.report_id}: {report.status}, {len(report.candidates)} candidates, "
          f"{report.lm_calls} LM calls (budget {BUDGET}), {report.tokens} tokens, rungs {report.rungs}, "
          f"best {report.best_compiled_id[:12]} vs incumbent {report.incumbent_compiled_id[:12]}: "
          f"holdout {delta.candidate_mean:.3f} vs {delta.incumbent_mean:.3f}, "
          f"delta {delta.delta:+.3f} [{delta.low:+.3f}, {delta.high:+.3f}], McNemar p={delta.mcnemar_p:.3g}")
    assert report.status == "completed"
    assert report.lm_calls <= BUDGET
    assert report.paired_delta is not None
    assert report.paired_delta.n == 30
