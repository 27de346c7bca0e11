"""The predicts' own threads. A predict holds one for its whole run, the LM call included, so the pool's size
(`OVERNIGHT_PREDICT_CONCURRENCY`) is how many predicts one process runs at once; more wait their turn, in order,
for at most `OVERNIGHT_PREDICT_QUEUE_TIMEOUT_S`, then are refused 503 `server_busy`. Behind a slow LM the backlog
is shed rather than served long after its callers gave up, and a refused predict never reaches the LM or writes
a receipt, so it counts on neither arm of a canary. Other blocking calls (admin routes, review pages) keep
anyio's default threads, so a full pool does not stall them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio

from overnight.errors import ServerBusy

T = TypeVar("T")


class PredictPool:
    def __init__(self, size: int, *, wait_s: float) -> None:
        self.size = size
        self.wait_s = wait_s
        self._turns = anyio.Semaphore(size)  # the queue, with a bounded wait
        self._threads = anyio.CapacityLimiter(size)  # never waited on: a turn comes with a thread

    async def run(self, work: Callable[[], T]) -> T:
        try:
            with anyio.fail_after(self.wait_s):
                await self._turns.acquire()
        except TimeoutError:
            raise ServerBusy(
                f"the server is busy: all {self.size} predict slots (OVERNIGHT_PREDICT_CONCURRENCY) stayed taken "
                f"for {self.wait_s:g} s (OVERNIGHT_PREDICT_QUEUE_TIMEOUT_S); retry later, or add replicas",
                details={"predict_concurrency": self.size, "waited_s": self.wait_s}) from None
        try:
            return await anyio.to_thread.run_sync(work, limiter=self._threads)
        finally:
            self._turns.release()
