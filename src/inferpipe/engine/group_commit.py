"""Group commit inside one execution: the writes of parallel branches that meet are one write.

A parent gathering N invokes (or N parallel steps) would otherwise send N commits to the store
at once, each its own transaction and each queued ahead of every other run's writes and of the
worker's lease renewals. Here the writes that arrive while one is being written wait and go
together in the next (up to `MAX_WRITES`), so N branches cost about N / `MAX_WRITES` store
commits, and each branch still returns only once its own write is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from inferpipe.core.errors import EngineInterrupt
from inferpipe.store.base import Progress, ProgressResult

MAX_WRITES = 256
"""Branch writes per store commit: bounds how long one commit holds the store."""


@dataclass(slots=True)
class _Pending:
    progress: Progress
    future: asyncio.Future[ProgressResult]


class GroupCommit:
    """Merges concurrent writes of one run into store commits, one at a time, in order.

    The writes go out from a task of their own: a branch cancelled while its write is under
    way does not abort the write its siblings share (they still get their results).
    """

    def __init__(self, write: Callable[[Progress], Awaitable[ProgressResult]]) -> None:
        self._write = write
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def commit(self, progress: Progress) -> ProgressResult:
        """Write `progress` with whatever else is waiting; returns the merged write's result
        (keyed by step key, so each branch finds its own steps in it)."""
        loop = asyncio.get_running_loop()
        pending = _Pending(progress, loop.create_future())
        self._queue.append(pending)
        if self._writer is None:
            # Started on a later turn of the loop: siblings scheduled in this one join the write.
            self._writer = loop.create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_WRITES], self._queue[MAX_WRITES:]
                await self._commit(batch)
        finally:
            self._writer = None

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            result = await self._write(merged([p.progress for p in batch]))
        except asyncio.CancelledError:
            for pending in [*batch, *self._queue]:
                pending.future.cancel()
            raise
        except (Exception, EngineInterrupt) as exc:  # every branch of the write sees it
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        for pending in batch:
            if not pending.future.done():
                pending.future.set_result(result)


def merged(parts: list[Progress]) -> Progress:
    """One `Progress` with every part's writes, in order."""
    if len(parts) == 1:
        return parts[0]
    return Progress(
        steps=[s for p in parts for s in p.steps],
        logs=[lg for p in parts for lg in p.logs],
        waits=[w for p in parts for w in p.waits],
        events=[e for p in parts for e in p.events],
        runs=[r for p in parts for r in p.runs],
        scores=[s for p in parts for s in p.scores],
    )
