"""Time for the engine: the system clock, or a virtual one that tests move by hand."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep_until(self, when_ms: int, wake: asyncio.Event) -> None:
        """Return at `when_ms` or as soon as `wake` is set, whichever is first."""


class SystemClock:
    """Wall-clock time; sleeping is a timer, precise to the millisecond."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep_until(self, when_ms: int, wake: asyncio.Event) -> None:
        delay_s = max(0.0, (when_ms - self.now_ms()) / 1000)
        try:
            async with asyncio.timeout(delay_s):  # not wait_for: see Worker._heartbeat
                await wake.wait()
        except TimeoutError:
            return


class VirtualClock:
    """A clock that moves only when told: a seven-day sleep passes in a test at once."""

    def __init__(self, start_ms: int | None = None) -> None:
        self._now_ms = start_ms if start_ms is not None else int(time.time() * 1000)

    def now_ms(self) -> int:
        return self._now_ms

    def advance_to(self, when_ms: int) -> None:
        self._now_ms = max(self._now_ms, when_ms)

    def advance(self, ms: int) -> None:
        self._now_ms += ms

    async def sleep_until(self, when_ms: int, wake: asyncio.Event) -> None:
        # Virtual time does not pass on its own; the test driver advances it.
        await wake.wait()
