"""Per-request canaries whose matchers are compiled before a request needs one.

Every chat request gets a fresh canary in its system prompt, and finding it
(in any encoding) in the answer takes an RE2 matcher compiled for that canary,
about 0.6-1 ms. The pool keeps a few canaries ready, compiled in worker
threads between requests, so the answer path only looks the matcher up. Each
canary is handed out once.
"""

from __future__ import annotations

import asyncio
import collections

from mantlet.detectors import canary as canaries


class CanaryPool:
    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._ready: collections.deque[str] = collections.deque()
        self._filling = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def take(self) -> str:
        """A fresh canary: compiled already when the pool had one ready (a
        canary made on the spot is compiled when its answer is checked)."""
        canary = self._ready.popleft() if self._ready else canaries.make_canary()
        self._refill()
        return canary

    @property
    def ready(self) -> int:
        return len(self._ready)

    def _refill(self) -> None:
        while len(self._ready) + self._filling < self._size:
            self._filling += 1
            task = asyncio.ensure_future(self._make())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _make(self) -> None:
        try:
            canary = canaries.make_canary()
            await asyncio.to_thread(canaries.prepare, [canary])
            self._ready.append(canary)
        finally:
            self._filling -= 1

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
