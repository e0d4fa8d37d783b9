"""Knowing that the process was told to stop, before the server cuts anything.

uvicorn handles SIGTERM/SIGINT by closing the listening socket and letting
requests in flight run for ``shutdown_grace_s``; the app is told only later,
through the lifespan, once they are done or cut. Chaining uvicorn's signal
handlers tells it at once, so a stream the shutdown cuts is audited as that
rather than as a client that went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any]


class Drain:
    def __init__(self) -> None:
        self.started = False
        self.streams = 0  # open answer streams; each is audited when it ends

    async def settled(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the streams still open to end. The
        server cancels the ones its grace period cut just before it shuts the
        app down, and each must still write its audit record."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.streams and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    def install(self) -> None:
        """Chain onto the handlers the server installed. Only the main thread
        may set handlers, and a handler that is not a function (the default
        action) is left alone: no server to chain onto."""
        for number in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread
                previous = signal.getsignal(number)
                if callable(previous):
                    signal.signal(number, self._chained(previous))

    def _chained(self, previous: Handler) -> Handler:
        def handler(number: int, frame: FrameType | None) -> None:
            self.started = True
            previous(number, frame)

        return handler
