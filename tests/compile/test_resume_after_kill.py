"""Kill `overnight compile` with SIGKILL mid-way, compile again: nothing already scored is sent to the LM again,
and the report equals an uninterrupted compile's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from overnight.compile.service import compile_signature
from overnight.config import Settings
from overnight.domain.datasets import parse_dataset
from overnight.lm.backends import build_backend
from overnight.registry import Registry
from overnight.store.schema import compile_results
from tests.factories import make_store

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "datasets" / "selecttool.v1.jsonl"
ENTRY = Registry().get("SelectTool.v1")
SLOW_TRUTH = "sim:seed=1,instr=0.55/0.8/0.6,demos=0:0/4:0.1/8:0.05,latency_ms=25"


def persisted(store_url: str) -> int:
    store = make_store(store_url)
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(compile_results)).scalar_one())
    finally:
        store.close()


def seeded(url: str) -> None:
    store = make_store(url)
    store.import_examples(signature_id="SelectTool.v1",
                          rows=parse_dataset(ENTRY.contract, DATASET.read_bytes(), fmt="jsonl"))
    store.close()


def test_sigkill_mid_compile_then_resume(tmp_path: Path) -> None:
    killed_url, clean_url = f"sqlite:///{tmp_path / 'killed.db'}", f"sqlite:///{tmp_path / 'clean.db'}"
    seeded(killed_url)
    seeded(clean_url)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")},
           "OVERNIGHT_DB_URL": killed_url, "OVERNIGHT_LM": SLOW_TRUTH}
    child = subprocess.Popen([sys.executable, "-m", "overnight", "compile", "-s", "SelectTool.v1", "--json"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while persisted(killed_url) < 60:
        assert child.poll() is None, "the compile finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    already = persisted(killed_url)

    slow = build_backend(Settings(lm=SLOW_TRUTH))
    resumed_store, clean_store = make_store(killed_url), make_store(clean_url)
    try:
        resumed = compile_signature(resumed_store, ENTRY, slow)
        calls_after_kill = slow.engine.calls
        clean = compile_signature(clean_store, ENTRY, build_backend(Settings(lm=SLOW_TRUTH)))
    finally:
        resumed_store.close()
        clean_store.close()
    print(f"\nkilled after {already} persisted results; the resumed compile sent {calls_after_kill} calls, "
          f"an uninterrupted one {clean.lm_calls}")
    assert already >= 60
    assert calls_after_kill == resumed.lm_calls == clean.lm_calls - already
    assert (resumed.reused, clean.reused) == (already, 0)  # the resumed report says what it read back
    spend = {"lm_calls", "reused", "tokens", "created_at"}
    assert resumed.model_dump(exclude=spend) == clean.model_dump(exclude=spend)
