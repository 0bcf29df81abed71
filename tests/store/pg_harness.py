"""`testing.Harness` on PostgreSQL: the same virtual clock and burst worker, on a workspace of
its own in a shared test database."""

from __future__ import annotations

from pathlib import Path

import inferpipe as ip
from inferpipe.engine.worker import Worker
from inferpipe.store.postgres import PostgresStore
from inferpipe.testing import Harness
from tests.store.conftest import unique_workspace


class PostgresHarness(Harness):
    """`testing.Harness` on a PostgreSQL workspace of its own instead of a SQLite file."""

    def __init__(self, app: ip.App, url: str, *, workspace: str | None = None) -> None:
        super().__init__(app, path=Path("unused.db"))
        self.url = url
        self.workspace = workspace or unique_workspace()

    async def __aenter__(self) -> PostgresHarness:
        store = PostgresStore(self.url, self.workspace)
        engine = await self.app.start(store=store, clock=self.clock)
        self._worker = Worker(engine, lease_ms=3_600_000, worker_id="harness")
        return self
