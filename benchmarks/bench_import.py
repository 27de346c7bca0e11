"""Dataset import throughput: a generated 100,000-row SelectTool.v1 file, imported, then re-imported unchanged.

    make bench-import                                    # SQLite in a temporary directory
    OVERNIGHT_BENCH_PG_URL=postgresql+psycopg://… make bench-import

Runs the same path as `overnight import` (parse and validate every row, then one upsert transaction) and prints
rows per second for both passes. The unchanged pass writes nothing: it reads the stored hashes and compares.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from pathlib import Path

from figures import record  # benchmarks/ is on sys.path when a script runs

from overnight.config import Settings
from overnight.domain.datasets import parse_dataset
from overnight.logging import configure_logging
from overnight.registry import Registry
from overnight.store import build_store

ROWS = 100_000
TOOLS = [{"name": name, "description": f"does {name.replace('_', ' ')}"}
         for name in ("web_search", "get_weather", "send_email", "set_reminder", "lookup_order")]


def generate(path: Path) -> None:
    """Example ids unique to this invocation: on a PostgreSQL database kept between runs, the first pass must
    still insert every row (else it measures a re-import)."""
    batch = secrets.token_hex(4)
    with path.open("w", encoding="utf-8") as out:
        for n in range(ROWS):
            tool = TOOLS[n % len(TOOLS)]["name"]
            expected = {"action": "none"} if n % 6 == 0 else {"action": "tool", "tool_name": tool}
            out.write(json.dumps({
                "example_id": f"gen-{batch}-{n:06d}", "split": "holdout" if n % 5 == 0 else "train",
                "tags": ["generated"],
                "input": {"message": f"request number {n}: please {tool.replace('_', ' ')} for order {n * 7}",
                          "agent_name": "Nova", "user_handle": f"@user{n % 97}", "tools": TOOLS},
                "expected": expected,
            }) + "\n")


def timed_import(db_url: str, path: Path) -> tuple[float, str]:
    store = build_store(Settings(db_url=db_url, tokens="bench:admin:" + "B" * 40))
    try:
        contract = Registry().contract("SelectTool.v1")
        started = time.perf_counter()
        rows = parse_dataset(contract, path.read_bytes(), fmt="jsonl")
        result = store.import_examples(signature_id="SelectTool.v1", rows=rows)
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    return ROWS / elapsed, f"{result.inserted} inserted / {result.unchanged} unchanged"


def main() -> None:
    configure_logging(fmt="json", level="warning")
    workdir = Path(tempfile.mkdtemp())
    data = workdir / "generated.jsonl"
    generate(data)
    targets = {"sqlite": f"sqlite:///{workdir / 'bench.db'}"}
    if os.environ.get("OVERNIGHT_BENCH_PG_URL"):
        targets["postgresql"] = os.environ["OVERNIGHT_BENCH_PG_URL"]
    print(f"{ROWS:,} rows, {data.stat().st_size / 1e6:.1f} MB")
    print(f"{'store':<12}{'first import rows/s':>22}{'unchanged re-import rows/s':>30}")
    for name, url in targets.items():
        first, first_note = timed_import(url, data)
        again, again_note = timed_import(url, data)
        if not first_note.startswith(f"{ROWS} inserted"):
            raise SystemExit(f"{name}: the first pass was not a first import ({first_note})")
        print(f"{name:<12}{first:>22,.0f}{again:>30,.0f}   ({first_note}; then {again_note})")
        record("import", f"rows/s, first import ({name})", first, "/s")
        record("import", f"rows/s, unchanged re-import ({name})", again, "/s")


if __name__ == "__main__":
    main()
