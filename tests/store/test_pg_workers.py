"""Several worker processes on one PostgreSQL database: cron raced by every worker, and the
listener across a server restart (the fault scenarios are in `test_faults`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

import inferpipe as ip
from inferpipe.core.records import NewRun
from inferpipe.store.base import PlannedEvent
from inferpipe.store.postgres import PostgresStore
from tests.store.cluster import Cluster, eventually
from tests.store.conftest import PostgresServer

WORKERS = 3


@pytest.fixture
async def cluster(own_postgres: PostgresServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    url = await own_postgres.new_database()
    store = PostgresStore(url)  # migrate once before the workers race to do it
    await store.open()
    await store.close()
    made = Cluster(url, tmp_path)
    try:
        yield made
    finally:
        made.stop_all()
        await made.close()


async def _count(url: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def test_cron_with_three_workers_fires_once_per_tick(cluster: Cluster) -> None:
    for _ in range(WORKERS):
        cluster.start_worker(cron=True)
    all_up_ms = int(time.time() * 1000) + 3000  # every worker is running by then

    async def enough_ticks() -> bool:
        count = await _count(
            cluster.url,
            "SELECT count(*) FROM events WHERE name = 'inferpipe/scheduled.tick' AND ts_ms >= $1",
            all_up_ms,
        )
        return count >= 4

    await eventually(enough_ticks, timeout_s=30)
    cluster.stop_all()
    conn = await asyncpg.connect(cluster.url)
    try:
        rows = await conn.fetch(
            "SELECT (input->0->'data'->>'tick_ms')::bigint AS tick, count(*) FROM runs"
            " WHERE function_id = 'every-second' GROUP BY tick ORDER BY tick"
        )
    finally:
        await conn.close()
    ticks = {r[0]: r[1] for r in rows}
    assert ticks and all(n == 1 for n in ticks.values()), ticks
    late = sorted(t for t in ticks if t >= all_up_ms)
    assert late == list(range(late[0], late[-1] + 1, 1000)), "a tick was skipped"
    assert len(late) >= 4


async def test_listener_reconnects_after_restart(
    cluster: Cluster, own_postgres: PostgresServer
) -> None:
    store = PostgresStore(cluster.url, "listening")
    await store.open()
    woken = asyncio.Event()
    unlisten = await store.listen(woken.set)
    try:
        await asyncio.to_thread(own_postgres.restart)
        await asyncio.wait_for(woken.wait(), timeout=30)  # called once reconnected
        woken.clear()
        sender = PostgresStore(cluster.url, "listening")
        await sender.open()
        try:
            event = ip.Event("x", id="e1", ts_ms=1)
            await sender.ingest([PlannedEvent(event, [NewRun("r1", "f", ["e1"], [], 0)])], 1)
        finally:
            await sender.close()
        await asyncio.wait_for(woken.wait(), timeout=10)
    finally:
        await unlisten()
        await store.close()
