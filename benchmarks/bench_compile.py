"""Compile cost: successive halving against the full grid on the same job, with the seeded simulator (one
instruction variant and one demo count truly best), each on a fresh store so each pays for everything.

    make bench-compile

The physical limit: every compile must score at least the finalists and the incumbent on all of holdout; the
full grid also scores every candidate on all of train.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from figures import record  # benchmarks/ is on sys.path when a script runs

from overnight.compile.service import compile_signature
from overnight.config import Settings
from overnight.domain.datasets import parse_dataset
from overnight.lm.backends import build_backend
from overnight.logging import configure_logging
from overnight.registry import Registry
from overnight.store import build_store

ROOT = Path(__file__).resolve().parents[1]
TRUTH = "sim:seed=1,instr=0.55/0.8/0.6,demos=0:0/4:0.1/8:0.05"


def main() -> None:
    configure_logging(fmt="json", level="warning")
    entry = Registry().get("SelectTool.v1")
    rows = parse_dataset(entry.contract, (ROOT / "datasets" / "selecttool.v1.jsonl").read_bytes(), fmt="jsonl")
    print(f"SelectTool.v1, {TRUTH}: truly best = instruction 1 with 4 demos (0.90); default 0.55")
    print(f"{'search':<10}{'LM calls':>10}{'winner (instr, demos)':>24}{'holdout delta [95% CI]':>30}")
    calls = {}
    for search in ("halving", "grid"):
        store = build_store(Settings(db_url=f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}",
                                     tokens="bench:admin:" + "B" * 40))
        store.import_examples(signature_id="SelectTool.v1", rows=rows)
        report = compile_signature(store, entry, build_backend(Settings(lm=TRUTH)), search=search)  # type: ignore[arg-type]
        store.close()
        best = next(c.params for c in report.candidates if c.compiled_id == report.best_compiled_id)
        d = report.paired_delta
        if d is None:
            raise SystemExit(f"{search}: the compile produced no paired delta ({report.status})")
        print(f"{search:<10}{report.lm_calls:>10}{(best['instruction_index'], best['demo_count'])!s:>24}"
              f"{f'{d.delta:+.3f} [{d.low:+.3f}, {d.high:+.3f}]':>30}")
        calls[search] = report.lm_calls
    record("compile", "LM calls, successive halving", calls["halving"], "calls", limit=calls["grid"],
           limit_says="(full grid)", higher_is_better=False)


if __name__ == "__main__":
    main()
