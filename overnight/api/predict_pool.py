"""The predicts' own threads. A predict holds one for its whole run, the LM call included, so the pool's size
(`OVERNIGHT_PREDICT_CONCURRENCY`) is how many predicts one process runs at once; more wait their turn, in order,
for at most `OVERNIGHT_PREDICT_QUEUE_TIMEOUT_S`, then are refused 503 `server_busy`. Behind a slow LM the backlog
is shed rather than served long after its callers gave up, and a refused predict never reaches the LM or writes
a receipt, so it counts on neither arm of a canary. A waiting predict whose caller disconnects is dropped when the
server sees it (polled every `LEFT_POLL_S`), not run when a slot frees up. Other blocking calls (admin routes,
review pages) keep anyio's default threads, so a full pool does not stall them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from overnight.errors import ClientGone, ServerBusy

T = TypeVar("T")
LEFT_POLL_S = 0.1


class PredictPool:
    def __init__(self, size: int, *, wait_s: float) -> None:
        self.size = size
        self.wait_s = wait_s
        self._turns = anyio.Semaphore(size)  # the queue, with a bounded wait
        self._threads = anyio.CapacityLimiter(size)  # never waited on: a turn comes with a thread

    async def run(self, work: Callable[[], T], *, left: Callable[[], Awaitable[bool]] | None = None) -> T:
        """Run `work` in a predict thread once a slot is free. `left` says whether the caller has disconnected;
        it is asked only while the predict waits (a free slot is taken at once, with no watcher)."""
        try:
            self._turns.acquire_nowait()
        except anyio.WouldBlock:
            await self._wait_for_turn(left)
        try:
            return await anyio.to_thread.run_sync(work, limiter=self._threads)
        finally:
            self._turns.release()

    async def _wait_for_turn(self, left: Callable[[], Awaitable[bool]] | None) -> None:
        held, gone = False, False

        async def watch(left: Callable[[], Awaitable[bool]], scope: anyio.CancelScope) -> None:
            nonlocal gone
            try:
                while not await left():
                    await anyio.sleep(LEFT_POLL_S)
            except Exception:  # noqa: BLE001 - cannot tell whether the caller is there: it waits on, as before
                return
            gone = True
            scope.cancel()  # stops the wait: a cancelled acquire never holds a slot

        try:
            with anyio.fail_after(self.wait_s):
                async with anyio.create_task_group() as waiting:
                    if left is not None:
                        waiting.start_soon(watch, left, waiting.cancel_scope)
                    await self._turns.acquire()
                    held = True
                    waiting.cancel_scope.cancel()  # stops the watcher
        except TimeoutError:
            raise ServerBusy(
                f"the server is busy: all {self.size} predict slots (OVERNIGHT_PREDICT_CONCURRENCY) stayed taken "
                f"for {self.wait_s:g} s (OVERNIGHT_PREDICT_QUEUE_TIMEOUT_S); retry later, or add replicas",
                details={"predict_concurrency": self.size, "waited_s": self.wait_s}) from None
        if gone:
            if held:
                self._turns.release()
            raise ClientGone("the caller disconnected while its predict waited for a slot: not run, no LM call, "
                             "no receipt")
