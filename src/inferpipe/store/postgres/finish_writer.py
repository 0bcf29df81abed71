"""Group commit of run finishes: finishes that arrive while a batch is written go together in
the next one.

A batch whose events wake nothing is one autocommitted statement (`direct_finish`); one whose
events may resolve a wait, or that writes scores or starts runs, is a transaction
(`finishes.finish_many`).
"""

from __future__ import annotations

from inferpipe.core.errors import LeaseLost
from inferpipe.store.base import FinishResult
from inferpipe.store.postgres import direct_finish
from inferpipe.store.postgres.batches import Batches
from inferpipe.store.postgres.database import Database
from inferpipe.store.postgres.finishes import Finish, finish_many

MAX_BATCH = 128
"""Finishes per batch; bounds how long a batch holds its rows."""


class FinishWriter:
    """Group commit of the finishes of every run of this process."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._batches: Batches[Finish, FinishResult] = Batches(self._write, MAX_BATCH)

    async def finish(self, item: Finish) -> FinishResult:
        """Returns once the finish is committed, or with the reason of a cancel request that
        refused its outcome; raises LeaseLost if the lease was lost."""
        return await self._batches.submit(item)

    async def _write(self, items: list[Finish]) -> list[FinishResult | LeaseLost]:
        if direct_finish.applies(items):
            done = await self._db.read(lambda c: direct_finish.finish(c, items))
            if done is not None:
                return done
        return await self._db.transaction(lambda c: finish_many(c, items))
