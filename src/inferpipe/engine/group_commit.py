"""Group commit inside one execution: the writes of one run go to the store one commit at a
time, in order, merged while they wait.

A parent gathering N invokes (or N parallel steps) would otherwise send N commits to the store
at once, each its own transaction and each queued ahead of every other run's writes and of the
worker's lease renewals. Here the writes that arrive while one is being written wait and go
together in the next (up to `MAX_WRITES`), so N branches cost about N / `MAX_WRITES` store
commits.

A write is either awaited (`commit`: the branch returns once it is committed) or pipelined
(`pipeline`: a step's result, which the function may use before it is durable). Pipelined
writes are bounded (`Lag`): past the bound, the branch waits for the writes ahead of it.
Because commits go out one at a time and in order, what is durable is always a prefix of what
was written: an awaited write, once committed, makes every write queued before it durable too.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from inferpipe.core.errors import EngineInterrupt
from inferpipe.core.records import LogRecord, StepRecord
from inferpipe.store.base import Progress, ProgressResult

MAX_WRITES = 256
"""Branch writes per store commit: bounds how long one commit holds the store."""


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a run's step results may run ahead of its durable journal."""

    steps: int
    """Pipelined step records not yet committed; 0 commits each one before the step returns."""
    bytes: int
    """Their JSON size; past it a record waits for its own commit."""


@dataclass(slots=True)
class _Pending:
    progress: Progress
    future: asyncio.Future[ProgressResult]
    steps: int = 0  #: pipelined step records (counted in the lag); 0 for an awaited write
    size: int = 0  #: their bytes
    owned: bool = False  #: `progress` was made here, so more writes may be added to it

    def absorb(self, steps: list[StepRecord], logs: list[LogRecord], size: int) -> None:
        """Take in a pipelined write that follows this one, while both are still queued."""
        if not self.owned:  # the lists may be the caller's: extend copies of them
            mine = self.progress = dataclasses.replace(
                self.progress, steps=[*self.progress.steps], logs=[*self.progress.logs]
            )
            self.owned = True
        else:
            mine = self.progress
        mine.steps += steps
        mine.logs += logs
        self.steps += len(steps)
        self.size += size


class GroupCommit:
    """Merges the writes of one run into store commits, one at a time, in order.

    The writes go out from a task of their own: a branch cancelled while its write is under
    way does not abort the write its siblings share (they still get their results). The first
    write that fails stops the rest: every write queued after it fails with the same error,
    so nothing is committed past a gap.
    """

    def __init__(self, write: Callable[[Progress], Awaitable[ProgressResult]], lag: Lag) -> None:
        self._write = write
        self._lag = lag
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._tail: asyncio.Future[ProgressResult] | None = None
        self._room = asyncio.Event()
        self._lag_steps = 0
        self._lag_bytes = 0
        self.failure: BaseException | None = None
        """What the first failed write raised; every later write fails with it."""

    @property
    def unflushed(self) -> bool:
        """Whether a write is queued or under way."""
        return self._tail is not None and not self._tail.done()

    async def commit(self, progress: Progress) -> ProgressResult:
        """Write `progress` after (or with) every write queued before it; returns once it is
        committed, with the merged write's result (keyed by step key, so each branch finds its
        own steps in it)."""
        return await self._enqueue(_Pending(progress, self._future())).future

    async def pipeline(
        self, steps: list[StepRecord], logs: list[LogRecord], size_bytes: int
    ) -> None:
        """Queue step records (of `size_bytes` of JSON, at least one) and log lines, and return
        before they are committed, unless the pipelined writes not yet committed exceed the lag
        bound: then wait until they no longer do. Raises the failure of an earlier write."""
        if self.failure is not None:
            raise self.failure
        last = self._queue[-1] if self._queue else None
        if last is not None and last.steps:  # a pipelined write not sent yet: join it
            last.absorb(steps, logs, size_bytes)
        else:
            pending = _Pending(Progress(steps=steps, logs=logs), self._future(), len(steps))
            pending.size = size_bytes
            # Nobody awaits it: its failure reaches the run through `failure` and later writes.
            pending.future.add_done_callback(_observe)
            self._enqueue(pending)
        self._lag_steps += len(steps)
        self._lag_bytes += size_bytes
        while self._over() and self.failure is None:
            self._room.clear()
            await self._room.wait()
        if self.failure is not None:
            raise self.failure

    async def flush(self) -> None:
        """Return once every write queued so far is committed; raises the failure of one."""
        tail = self._tail
        if tail is not None and not tail.done():
            # Not `await tail`: a branch cancelled here must not cancel the write it waits on.
            await asyncio.wait([tail])
        if self.failure is not None:
            raise self.failure

    def _over(self) -> bool:
        lag = self._lag
        return self._lag_steps > lag.steps or (self._lag_steps > 0 and self._lag_bytes > lag.bytes)

    def _future(self) -> asyncio.Future[ProgressResult]:
        return asyncio.get_running_loop().create_future()

    def _enqueue(self, pending: _Pending) -> _Pending:
        if self.failure is not None:
            pending.future.set_exception(self.failure)
            return pending
        self._queue.append(pending)
        self._tail = pending.future
        if self._writer is None:
            # Started on a later turn of the loop: siblings scheduled in this one join the write.
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        return pending

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
            self._fail(batch, None)
            raise
        except (Exception, EngineInterrupt) as exc:  # every branch of the write sees it
            self._fail(batch, exc)
            return
        self._settled(batch)
        for pending in batch:
            if not pending.future.done():
                pending.future.set_result(result)

    def _fail(self, batch: list[_Pending], exc: BaseException | None) -> None:
        """The write of `batch` failed with `exc` (None: it was cancelled): it and every write
        queued after it fail alike, and so does every later one."""
        pendings, self._queue = [*batch, *self._queue], []
        if exc is not None:
            self.failure = self.failure or exc
        self._settled(pendings)
        for pending in pendings:
            if pending.future.done():
                continue
            if exc is None:
                pending.future.cancel()
            else:
                pending.future.set_exception(exc)

    def _settled(self, pendings: list[_Pending]) -> None:
        self._lag_steps -= sum(p.steps for p in pendings)
        self._lag_bytes -= sum(p.size for p in pendings)
        self._room.set()


def _observe(future: asyncio.Future[ProgressResult]) -> None:
    """Marks a pipelined write's failure as seen (its error is kept in `failure`)."""
    if not future.cancelled():
        future.exception()


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
