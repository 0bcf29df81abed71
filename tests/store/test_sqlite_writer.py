"""The SQLite connection's writer: where a write runs, and that it is durable when answered.

A brief write that finds the connection idle runs on the caller's thread; writes that come
together go to the connection's thread in one transaction; a brief write never makes its loop
wait for another process's write lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from inferpipe.core.errors import StoreError
from inferpipe.store.sqlite.database import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "w.db")
    database.start()
    await database.write(lambda c: c.execute("CREATE TABLE t (v INTEGER)"))
    yield database
    database.close()


def _insert(value: int) -> Callable[[sqlite3.Connection], threading.Thread]:
    """A job: insert `value`; returns the thread it ran on."""

    def job(conn: sqlite3.Connection) -> threading.Thread:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return threading.current_thread()

    return job


def _committed(path: str) -> list[int]:
    """The values another connection reads: what is committed to the file."""
    other = sqlite3.connect(path)
    try:
        return [v for (v,) in other.execute("SELECT v FROM t ORDER BY v")]
    finally:
        other.close()


async def test_a_brief_write_on_an_idle_connection_runs_here_and_is_committed(
    db: Database,
) -> None:
    thread = await db.write(_insert(1), brief=True)
    assert thread is threading.current_thread()
    assert _committed(db.path) == [1]


async def test_a_write_not_brief_runs_on_the_connections_thread(db: Database) -> None:
    thread = await db.write(_insert(1))
    assert thread is not threading.current_thread()
    assert _committed(db.path) == [1]


async def test_writes_that_come_together_go_to_the_thread_in_one_transaction(
    db: Database,
) -> None:
    in_transaction: list[bool] = []

    def second(conn: sqlite3.Connection) -> threading.Thread:
        in_transaction.append(conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1)
        conn.execute("INSERT INTO t (v) VALUES (2)")
        return threading.current_thread()

    first, then = await asyncio.gather(
        db.write(_insert(1), brief=True), db.write(second, brief=True)
    )
    assert first is then is not threading.current_thread()
    assert in_transaction == [True]  # the second saw the first's insert: one transaction
    assert _committed(db.path) == [1, 2]


async def test_a_failing_brief_write_leaves_nothing(db: Database) -> None:
    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (1)")
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        await db.write(failing, brief=True)
    with pytest.raises(StoreError):
        await db.write(lambda c: c.execute("INSERT INTO nowhere VALUES (1)"), brief=True)
    await db.write(_insert(2), brief=True)
    assert _committed(db.path) == [2]


async def test_a_brief_write_waits_for_another_processs_lock_without_stopping_its_loop(
    db: Database,
) -> None:
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock
    try:
        write = asyncio.create_task(db.write(_insert(1), brief=True))
        # Were the loop's thread waiting for the lock, this sleep would end only when the
        # write failed on its busy timeout; the write waits on the connection's thread.
        await asyncio.sleep(0.05)
        assert not write.done()
        other.execute("COMMIT")
        thread = await write
    finally:
        other.close()
    assert thread is not threading.current_thread()
    assert _committed(db.path) == [1]


async def test_a_brief_write_held_for_the_next_turn_fails_if_the_store_closes_first(
    tmp_path: Path,
) -> None:
    database = Database(tmp_path / "c.db")
    database.start()
    await database.write(lambda c: c.execute("CREATE TABLE t (v INTEGER)"))
    write = asyncio.ensure_future(database.write(_insert(1), brief=True))
    await asyncio.sleep(0)  # the write is submitted and held for the loop's next turn
    database.close()
    with pytest.raises(StoreError, match="closed"):
        await write
