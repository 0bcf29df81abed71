"""Group commit: writes that arrive while a batch is written wait and go together in the next.

One statement (or transaction), one round trip and one WAL flush for many writes, and each
caller still returns only once its own write is durable. The journal appends and the run
finishes of a process each go through one `Batches`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_IN_FLIGHT = 2
"""Batches written at once: the next one fills while the previous one waits on its flush."""


@dataclass(slots=True)
class _Pending(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result]


class Batches(Generic[Item, Result]):
    """Writes items in batches of at most `max_batch`, `MAX_IN_FLIGHT` batches at once.

    Args:
        write: writes one batch; returns each item's result in order, or the exception its
            caller gets (a lost lease), without failing the others.
        max_batch: items per batch; bounds how long a batch holds its rows.
    """

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        max_batch: int,
    ) -> None:
        self._write_batch = write
        self._max_batch = max_batch
        self._queue: list[_Pending[Item, Result]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        """Returns `item`'s result once its batch is committed, or raises its exception (or
        the batch's failure)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append(_Pending(item, future))
        if self._in_flight < MAX_IN_FLIGHT:
            self._in_flight += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._write(batch)
        finally:
            self._in_flight -= 1

    async def _write(self, batch: list[_Pending[Item, Result]]) -> None:
        try:
            results = await self._write_batch([p.item for p in batch])
        except BaseException as exc:  # every caller sees the failure (StoreError, cancel)
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for pending, result in zip(batch, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
