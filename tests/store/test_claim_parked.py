"""Claims with many parked runs: queued runs and the sleeping or waiting runs whose time has
come are read apart and merged in queue order, so a parked run costs a claim nothing until
its time comes."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

from inferpipe.core.records import NewRun, RunStatus
from inferpipe.store.base import Store
from inferpipe.store.sqlite import SQLiteStore, claims
from tests.store.conftest import unique_workspace

NOW = 1_700_000_000_000
LEASE_MS = 10_000
FN = "fn"

_ids = itertools.count()


async def park_runs(store: Store, count: int, status: RunStatus, ready_at_ms: int) -> list[str]:
    """`count` runs that ran once and parked until `ready_at_ms`."""
    runs = [NewRun(f"{status.value}-{next(_ids):05d}", FN, [], [], NOW) for _ in range(count)]
    await store.create_runs(runs, NOW)
    taken = await store.claim("w", [FN], count, NOW, LEASE_MS)
    assert len(taken) == count
    for claimed in taken:
        await store.park(claimed.lease, status, ready_at_ms, NOW)
    return [r.id for r in runs]


async def test_due_parked_runs_and_queued_runs_are_claimed_in_queue_order(store: Store) -> None:
    # a parked run goes by its ready time, a new run by its queue tag (its arrival here)
    later = await park_runs(store, 3, RunStatus.WAITING, NOW + 3_600_000)
    slept = await park_runs(store, 2, RunStatus.SLEEPING, NOW + 50)
    waited = await park_runs(store, 1, RunStatus.WAITING, NOW + 20)
    fresh = NewRun("fresh", FN, [], [], NOW + 30)
    await store.create_runs([fresh], NOW + 30)

    first = await store.claim("w", [FN], 2, NOW + 100, LEASE_MS)
    rest = await store.claim("w", [FN], 10, NOW + 100, LEASE_MS)

    assert [c.run.id for c in first] == [*waited, "fresh"]
    assert [c.run.id for c in rest] == slept
    assert all(c.run.executions == 2 for c in [*first[:1], *rest])
    assert await store.claim("w", [FN], 10, NOW + 100, LEASE_MS) == []
    for run_id in later:
        run = await store.get_run(run_id)
        assert run is not None and run.status is RunStatus.WAITING


async def test_a_claim_reads_no_run_parked_ahead_of_its_time(tmp_path: Path) -> None:
    # SQLite's virtual machine steps for reading a claim's candidates, with 40 and with 400
    # runs parked for an hour and one run ready: the same (they scaled with the parked runs
    # when one index walk held both)
    store = SQLiteStore(tmp_path / "store.db", unique_workspace())
    await store.open()
    steps: list[int] = []
    try:
        for count in (40, 360):
            await park_runs(store, count, RunStatus.WAITING, NOW + 3_600_000)
            await store.create_runs([NewRun(f"ready-{count}", FN, [], [], NOW)], NOW)
            with sqlite3.connect(tmp_path / "store.db") as conn:
                executed = [0]

                def tick(executed: list[int] = executed) -> int:
                    executed[0] += 1
                    return 0

                conn.set_progress_handler(tick, 10)
                rows = claims._candidates(conn, store.workspace, [FN], NOW + 1, set(), 32)
                assert [row[0] for row in rows] == [f"ready-{count}"]
                steps.append(executed[0])
            (taken,) = await store.claim("w", [FN], 1, NOW + 1, LEASE_MS)
            assert taken.run.id == f"ready-{count}"
    finally:
        await store.close()
    assert steps[1] < 2 * steps[0], steps
