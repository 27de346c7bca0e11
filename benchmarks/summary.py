"""`make bench`'s closing table: every benchmark's headline figures (see figures.py), each against what it is
held to, with the ratio (1.00 = at the limit; the further below 1, the further from it).

    python benchmarks/summary.py RESULTS.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def ratio(line: dict[str, object]) -> str:
    value, limit = float(line["value"]), line["limit"]  # type: ignore[arg-type]
    if limit is None or value == 0:
        return ""
    return f"{value / float(limit) if line['higher_is_better'] else float(limit) / value:.2f}"  # type: ignore[arg-type]


def number(value: float) -> str:
    """Three decimals for fractions (an accuracy), one for the rest."""
    return f"{value:.3f}" if abs(value) < 1 else f"{value:,.1f}"


def main() -> None:
    lines = [json.loads(text) for text in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines() if text]
    print(f"\n{'benchmark':<10}{'figure':<44}{'value':>14}  {'held to':<40}{'ratio':>7}")
    for line in lines:
        value = f"{number(line['value'])} {line['unit']}"
        held = "" if line["limit"] is None else f"{number(line['limit'])} {line['unit']} {line['limit_says']}"
        print(f"{line['bench']:<10}{line['figure']:<44}{value:>14}  {held:<40}{ratio(line):>7}".rstrip())


if __name__ == "__main__":
    main()
