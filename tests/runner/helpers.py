"""Running `overnight run` as a real process, and reading what it left behind through the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.factories import FAIR_SPLIT_P

ROOT = Path(__file__).resolve().parents[2]
SELECT = ROOT / "datasets" / "selecttool.v1.jsonl"
TRIAGE = ROOT / "datasets" / "supporttriage.v1.jsonl"
BETTER = "sim:seed=1,instr=0.55/0.8/0.6,demos=0:0/4:0.1/8:0.05"  # variant 1 with 4 demos is truly better
FLAKY = "sim:seed=1,instr=0.3/1/0.3,ierr=0/0.3/0,demos=0:0/4:0/8:0"  # the best one fails 30% of its calls
NOTHING = "sim:seed=1,instr=0.9/0.5/0.5,demos=0:0/4:-0.3/8:-0.3"  # the default is already the best
# The best is ahead on holdout, +0.133 over 30 examples, but [-0.100, +0.367] cannot rule out a worse one
UNSHOWN = "sim:seed=1,instr=0.7/0.72/0.7,demos=0:0/4:0/8:0"


FAIR_SPLIT = ("--srm-threshold", str(FAIR_SPLIT_P))  # unless a test passes its own


def with_split_threshold(args: tuple[str, ...]) -> tuple[str, ...]:
    return args if "--srm-threshold" in args else (*args, *FAIR_SPLIT)


def runner_env(db_url: str, lm: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
    return {**base, "OVERNIGHT_DB_URL": db_url, "OVERNIGHT_LM": lm, "OVERNIGHT_LOG_FORMAT": "json", **extra}


def overnight_run(db_url: str, lm: str, *args: str, timeout: float = 300, **extra: str) -> tuple[int, dict[str, Any],
                                                                                                  str]:
    """`overnight run --json …` to completion: (exit code, the summary, stderr)."""
    command = [sys.executable, "-m", "overnight", "run", "--json", *with_split_threshold(args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                          env=runner_env(db_url, lm, **extra))
    summary = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done.returncode, summary, done.stderr


def start_runner(db_url: str, lm: str, *args: str, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        command = [sys.executable, "-m", "overnight", "run", "--json", *with_split_threshold(args)]
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=runner_env(db_url, lm, **extra))
