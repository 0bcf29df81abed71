"""The worker's heartbeat stops when the worker does, even when it is stopped just as a renewal
answers (Python 3.11's `asyncio.wait_for` returned the answer then and dropped the cancel: the
heartbeat went on renewing forever and the worker never exited after SIGTERM)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import inferpipe as ip
from inferpipe.core.records import Lease
from inferpipe.engine.worker import Worker
from inferpipe.store.sqlite import SQLiteStore


class HeldRenewals(SQLiteStore):
    """A store whose lease renewals answer only when `answer` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.renewing = asyncio.Event()
        self.answer: asyncio.Future[None] | None = None

    async def renew_leases(self, leases: list[Lease], until_ms: int) -> list[str]:
        self.answer = asyncio.get_running_loop().create_future()
        self.renewing.set()
        await self.answer
        return []


async def test_a_heartbeat_stopped_as_a_renewal_answers_ends(tmp_path: Path) -> None:
    store = HeldRenewals(tmp_path / "app.db")
    app = ip.App("heartbeat")
    await app.start(store=store)
    worker = Worker(app.engine, lease_ms=300)
    held = asyncio.get_running_loop().create_future()
    lease = Lease("run-1", "w", 1)
    worker._active["run-1"] = (lease, asyncio.ensure_future(held))
    heartbeat = asyncio.create_task(worker._heartbeat())
    try:
        await asyncio.wait_for(store.renewing.wait(), 5)
        assert store.answer is not None
        store.answer.set_result(None)  # the renewal answers...
        heartbeat.cancel()  # ...as the worker stops it
        done, _ = await asyncio.wait({heartbeat}, timeout=2)
        assert heartbeat in done and heartbeat.cancelled()
    finally:
        heartbeat.cancel()
        held.cancel()
        await app.close()
