"""Each benchmark's headline figures, for `make bench`'s one table: a benchmark calls `record(...)` for each
figure it prints; when OVERNIGHT_BENCH_RESULTS names a file, the figure is appended to it as one JSON line, and
`benchmarks/summary.py` prints them all. Run alone, a benchmark records nothing."""

from __future__ import annotations

import json
import os


def record(bench: str, figure: str, value: float, unit: str, *, limit: float | None = None,
           limit_says: str = "", higher_is_better: bool = True) -> None:
    """One figure; `limit` is what it is held against (the physical limit or the target), `limit_says` what
    that is. The ratio shown is value / limit when higher is better, else limit / value (1.0 = at the limit)."""
    path = os.environ.get("OVERNIGHT_BENCH_RESULTS")
    if not path:
        return
    line = {"bench": bench, "figure": figure, "value": value, "unit": unit, "limit": limit,
            "limit_says": limit_says, "higher_is_better": higher_is_better}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
