"""Scoring candidates on examples: results are read from the store when already known (same compiled_id,
row_hash, lm_id) and otherwise computed and persisted at once, so a crashed compile resumes without paying
again. The per-job budget (LM calls, tokens, seconds) stops evaluation cleanly: no call starts once it is spent,
and the calls in flight finish and are kept. Must not import the API."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from overnight.compile.programs import Candidate
from overnight.domain.compiling import BudgetLimit, ExampleResult
from overnight.domain.datasets import StoredExample
from overnight.domain.rewards import reward_for
from overnight.lm.backends import Backend
from overnight.lm.invoke import invoke
from overnight.registry import RegisteredSignature
from overnight.store import Store


class BudgetExhausted(Exception):
    pass


@dataclass
class Evaluator:
    store: Store
    backend: Backend
    entry: RegisteredSignature
    max_lm_calls: int | None = None
    max_tokens: int | None = None
    concurrency: int = 4
    until: float | None = None  # time.monotonic() after which no call starts (max_seconds from the job's start)
    lm_calls: int = 0
    tokens: int = 0
    stopped_by: BudgetLimit | None = None  # the first limit reached
    _lock: threading.Lock = field(default_factory=threading.Lock)
    used: dict[str, dict[str, ExampleResult]] = field(default_factory=dict)  # compiled_id -> row_hash -> result
    _known: dict[str, dict[str, ExampleResult]] = field(default_factory=dict)  # the store's, read once per candidate
    _stored: set[tuple[str, str]] = field(default_factory=set)  # (compiled_id, row_hash) found in the store

    @property
    def evaluations(self) -> int:
        """Distinct (candidate, example) scores used, paid now or read back from an earlier compile."""
        return sum(len(results) for results in self.used.values())

    @property
    def reused(self) -> int:
        """Of the scores used, those read back from an earlier compile (paid then, not now)."""
        return sum((cid, row_hash) in self._stored for cid, results in self.used.items() for row_hash in results)

    def cost(self, compiled_id: str) -> dict[str, int]:
        """The LM calls and tokens a candidate's scores cost, whether paid now or earlier."""
        results = self.used.get(compiled_id, {}).values()
        return {"lm_calls": len(results), "tokens": sum(r.tokens_in + r.tokens_out for r in results)}

    def rewards(self, candidate: Candidate, rows: list[StoredExample]) -> dict[str, float]:
        """example_id -> reward for every row; raises `BudgetExhausted` (after persisting what it computed)."""
        if candidate.compiled_id not in self._known:
            self._known[candidate.compiled_id] = self.store.get_results(compiled_id=candidate.compiled_id,
                                                                        lm_id=self.backend.lm_id)
            self._stored.update((candidate.compiled_id, row_hash) for row_hash in self._known[candidate.compiled_id])
        known = self._known[candidate.compiled_id]
        todo = [row for row in rows if row.row_hash not in known]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for result in pool.map(lambda row: self._score(candidate, row), todo):
                if result is not None:
                    known[result.row_hash] = result
        if self.stopped_by:
            raise BudgetExhausted
        self.used.setdefault(candidate.compiled_id, {}).update({row.row_hash: known[row.row_hash] for row in rows})
        return {row.example_id: known[row.row_hash].reward for row in rows}

    def _reserve(self) -> bool:
        with self._lock:
            if self.stopped_by is None:
                self.stopped_by = self._limit_reached()
            if self.stopped_by:
                return False
            self.lm_calls += 1
            return True

    def _limit_reached(self) -> BudgetLimit | None:
        if self.max_lm_calls is not None and self.lm_calls >= self.max_lm_calls:
            return "max_lm_calls"
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            return "max_tokens"
        if self.until is not None and time.monotonic() >= self.until:
            return "max_seconds"
        return None

    def _score(self, candidate: Candidate, row: StoredExample) -> ExampleResult | None:
        if not self._reserve():
            return None
        call = invoke(candidate.program, self.backend, self.entry, row.input, row.expected, decode=candidate.decode,
                      cached=True)  # compile may reuse a cached answer (OVERNIGHT_LM_CACHE_DIR); serving never does
        correct = call.ok and reward_for(self.entry.contract.reward_id)(row.expected, call.output) == 1.0
        result = ExampleResult(compiled_id=candidate.compiled_id, row_hash=row.row_hash, lm_id=self.backend.lm_id,
                               ok=call.ok, output=call.output, correct=correct, error_code=call.error_code,
                               latency_ms=call.latency_ms, tokens_in=call.tokens_in, tokens_out=call.tokens_out)
        self.store.put_result(result=result)
        with self._lock:
            self.tokens += call.tokens_in + call.tokens_out
        return result
