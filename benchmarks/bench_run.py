"""The whole overnight run with the simulator at a fixed latency per LM call, against its lower bound.

    make bench-run

`overnight run` end to end (embedded API, SQLite, the simulator with a truly better candidate, every call
taking LATENCY_MS). The lower bound is the LM time the run cannot avoid at its concurrency: compile's calls ÷
the compile concurrency plus the canary's and the e2e's requests ÷ the runner's concurrency (plus the one
preflight call), each times the latency. Efficiency = lower bound ÷ wall time (target >= 80 %).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import record  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
LATENCY_MS = 200
SPEC = f"sim:seed=1,instr=0.55/0.8/0.6,demos=0:0/4:0.1/8:0.05,latency_ms={LATENCY_MS}"
COMPILE_CONCURRENCY, RUNNER_CONCURRENCY = 4, 4  # the defaults of compile_concurrency and RunOptions


def main() -> None:
    db = Path(tempfile.mkdtemp()) / "bench.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
    env.update({"OVERNIGHT_DB_URL": f"sqlite:///{db}", "OVERNIGHT_LM": SPEC, "OVERNIGHT_LOG_FORMAT": "json",
                "OVERNIGHT_LOG_LEVEL": "warning"})
    begun = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "overnight", "run", "--json", "--steps", "50"],
                          capture_output=True, text=True, env=env, check=False, cwd=ROOT)
    wall = time.perf_counter() - begun
    summary = json.loads(done.stdout)
    result = summary["signatures"]["SelectTool.v1"]
    show = subprocess.run([sys.executable, "-m", "overnight", "show", summary["run_id"], "--json"],  # noqa: S603
                          capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    review = json.loads(show.stdout)
    compile_calls = review["signatures"][0]["compile"]["lm_calls"]
    requests = result["requests_sent"] + result["e2e"]["requests"]
    bound = LATENCY_MS / 1000 * (1 + compile_calls / COMPILE_CONCURRENCY + requests / RUNNER_CONCURRENCY)
    phases = {p["phase"]: p["duration_ms"] / 1000 for p in review["phases"] if p["duration_ms"] is not None}
    print(f"overnight run, simulator at {LATENCY_MS} ms per call: exit {done.returncode}, {result['decision']}")
    print(f"{'LM calls':<28}{'compile':>10}{'canary+e2e':>12}")
    print(f"{'':<28}{compile_calls:>10}{requests:>12}")
    print(f"{'wall time (s)':<28}{wall:>10.1f}   (compile {phases.get('compile', 0):.1f}, traffic "
          f"{phases.get('traffic', 0):.1f}, process start and the rest {wall - sum(phases.values()):.1f})")
    print(f"{'lower bound (s)':<28}{bound:>10.1f}   (calls x {LATENCY_MS} ms / concurrency "
          f"{COMPILE_CONCURRENCY} and {RUNNER_CONCURRENCY})")
    print(f"{'efficiency':<28}{bound / wall:>10.0%}")
    record("run", "overnight run wall time (efficiency)", wall, "s", limit=bound, limit_says="(LM-time bound)",
           higher_is_better=False)


if __name__ == "__main__":
    main()
