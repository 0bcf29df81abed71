"""Run an app's functions in-process on a virtual clock.

Example::

    async with inferpipe.testing.Harness(app) as h:
        run_id = await h.invoke("handle-ticket", {"ticket_id": "tk_1"})
        await h.run_ready()                       # runs until it waits for feedback
        await h.send(Event("support/feedback.received", {"ticket_id": "tk_1"}))
        run = await h.settle()                    # sleeps and timeouts pass at once
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from inferpipe.app import App
from inferpipe.core.durations import Duration, to_ms
from inferpipe.core.events import Event
from inferpipe.core.records import LogRecord, Run, StepRecord
from inferpipe.engine.clock import VirtualClock
from inferpipe.engine.engine import Engine
from inferpipe.engine.worker import Worker
from inferpipe.store.sqlite import SQLiteStore

MAX_SETTLE_ROUNDS = 10_000
"""Bound on clock jumps in `settle`, so a function that sleeps forever in a loop fails a test
instead of hanging it."""


class Harness:
    """An app on a fresh SQLite file and a virtual clock; work runs when the test says so.

    Args:
        app: the application (its functions are used; its database setting is not).
        start_ms: the virtual clock's start time.
        path: the SQLite file; a temporary one by default.
    """

    __test__ = False

    def __init__(self, app: App, *, start_ms: int = 1_700_000_000_000, path: Path | None = None):
        self.app = app
        self.clock = VirtualClock(start_ms)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="inferpipe-test-")
            path = Path(self._tmp.name) / "test.db"
        self.path = path
        self._worker: Worker | None = None

    async def __aenter__(self) -> Harness:
        engine = await self.app.start(store=SQLiteStore(self.path), clock=self.clock)
        self._worker = Worker(engine, lease_ms=3_600_000, worker_id="harness")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.app.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def engine(self) -> Engine:
        return self.app.engine

    @property
    def now_ms(self) -> int:
        return self.clock.now_ms()

    async def send(self, events: Event | list[Event]) -> list[str]:
        return await self.app.send(events)

    async def invoke(self, function_id: str, data: dict[str, Any] | None = None) -> str:
        return await self.app.invoke(function_id, data)

    async def run_ready(self) -> int:
        """Execute everything ready now, without moving the clock; returns runs executed."""
        assert self._worker is not None
        return await self._worker.run_until_idle()

    async def advance(self, duration: Duration) -> None:
        """Move the clock forward by `duration`, running work as it becomes due on the way."""
        target = self.now_ms + to_ms(duration)
        await self.run_ready()
        while True:
            nxt = await self._next_due()
            if nxt is None or nxt > target:
                break
            self.clock.advance_to(nxt)
            await self.run_ready()
        self.clock.advance_to(target)
        await self.run_ready()

    async def settle(self, run_id: str | None = None) -> Run | None:
        """Run until nothing is left to do, jumping the clock over sleeps and timeouts (cron
        ticks excepted); returns `run_id`'s run when given."""
        await self.run_ready()
        for _ in range(MAX_SETTLE_ROUNDS):
            nxt = await self.engine.store.next_ready_at(self.engine.registry.ids)
            if nxt is None:
                break
            self.clock.advance_to(nxt)
            await self.run_ready()
        else:
            raise RuntimeError(f"work did not settle after {MAX_SETTLE_ROUNDS} clock jumps")
        return await self.run(run_id) if run_id else None

    async def _next_due(self) -> int | None:
        assert self._worker is not None
        times = [
            await self.engine.store.next_ready_at(self.engine.registry.ids),
            self._worker.cron.next_tick_ms(),
        ]
        present = [t for t in times if t is not None]
        return min(present) if present else None

    async def run(self, run_id: str) -> Run:
        return await self.app.get_run(run_id)

    async def steps(self, run_id: str) -> list[StepRecord]:
        return await self.app.steps(run_id)

    async def logs(self, run_id: str) -> list[LogRecord]:
        return await self.app.logs(run_id)

    async def runs_of(self, function_id: str) -> list[Run]:
        from inferpipe.store.base import RunFilter  # noqa: PLC0415

        page = await self.app.list_runs(RunFilter(function_id=function_id), limit=1000)
        return list(reversed(page.items))
