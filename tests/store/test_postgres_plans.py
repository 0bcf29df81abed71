"""Statements on the path of every finish find their rows by index on PostgreSQL: with many
runs in the table, a sequential scan costs each finish a read of every run."""

from __future__ import annotations

import asyncpg

from inferpipe.store.postgres import PostgresStore, finishes
from tests.store.conftest import PostgresServer


async def test_locking_a_finish_and_its_parents_reads_no_whole_table(
    postgres: PostgresServer,
) -> None:
    url = await postgres.new_database()
    store = PostgresStore(url)
    await store.open()  # migrated
    await store.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET enable_seqscan = off")  # an index plan whenever one exists
        rows = await conn.fetch(
            f"EXPLAIN {finishes._FINISH}",
            ["run-1", "run-2"],
            [1, 1],
            ["w", "w"],
            ["completed", "completed"],
            [None, None],
            [None, None],
            [5, 5],
            [None, None],
            "channel",
            [7, 9],
        )
    finally:
        await conn.close()
    lines = [row[0] for row in rows]
    start = next(i for i, line in enumerate(lines) if line.strip() == "CTE locked")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if len(lines[i]) - len(lines[i].lstrip()) <= indent
        ),
        len(lines),
    )
    plan = "\n".join(lines[start:end])  # the row locks; the update's join order follows stats
    # every read of runs is bounded by an index condition, none walks the table or an index
    # whole filtering every row (the advisory locks taken first are a one-time filter)
    filters = [line for line in plan.splitlines() if "Filter" in line]
    assert all("One-Time Filter" in line for line in filters), plan
    assert "Index Cond" in plan and "Seq Scan" not in plan, plan
    # the update waits for the row locks (a one-time filter on them, before any row)
    assert "CTE Scan on locked" in "\n".join(lines[end:]), "\n".join(lines)
