"""One SQLite connection on its own thread, with group commit.

Write jobs that arrive while a commit is in progress are batched into the next transaction,
each inside its own savepoint so one failing job does not undo the others. A job's future
resolves only after COMMIT returns, and with `synchronous=FULL` in WAL mode that means the
write is on disk: "a step reported done is on disk".
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from inferpipe.core.errors import StoreError
from inferpipe.store import sql

T = TypeVar("T")
P = ParamSpec("P")

MAX_BATCH = 512
"""Jobs per transaction; bounds how long one commit holds the write lock."""

BUSY_TIMEOUT_MS = 10_000
"""How long to wait for another process's write lock before failing."""


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    taken: bool = False  #: an urgent job, already taken ahead of its place in the queue


_Outcome = tuple[_Job, Any, BaseException | None]
"""A job, and what it returned or raised."""


class Database:
    """Runs callables against one connection on a dedicated thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._urgent: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def start(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            try:
                self._conn = self._connect()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._serve()

        self._thread = threading.Thread(target=main, name="inferpipe-sqlite", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise StoreError(f"cannot open SQLite database {self.path}: {failure[0]}") from failure[
                0
            ]

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(fn, write=False)

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, urgent: bool = False) -> T:
        """Run `fn` in a transaction; returns once committed. An `urgent` write goes in the
        next transaction, ahead of the jobs queued before it (lease renewals: a worker whose
        renewals wait behind a burst of writes loses its leases and stops its runs)."""
        return await self._submit(fn, write=True, urgent=urgent)

    async def _submit(
        self, fn: Callable[[sqlite3.Connection], T], *, write: bool, urgent: bool = False
    ) -> T:
        if self._thread is None:
            raise StoreError("the store is not open: call `await store.open()` first")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, write, loop, future)
        if urgent:
            self._urgent.put(job)
        self._jobs.put(job)  # an urgent one too: it wakes the thread, and is skipped if taken
        return await future

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _serve(self) -> None:
        assert self._conn is not None
        conn = self._conn
        while True:
            job = self._jobs.get()
            if job is None:
                break
            batch = self._take_urgent()
            if not job.taken:
                batch.append(job)
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if not nxt.taken:
                    batch.append(nxt)
            if not batch:
                continue
            reads = [j for j in batch if not j.write]
            if reads:
                _settle([(read, *_call(read.fn, conn)) for read in reads])
            writes = [j for j in batch if j.write]
            if writes:
                self._commit(conn, writes)
            if stop:
                break
        conn.close()

    def _take_urgent(self) -> list[_Job]:
        jobs: list[_Job] = []
        while True:
            try:
                job = self._urgent.get_nowait()
            except queue.Empty:
                return jobs
            job.taken = True
            jobs.append(job)

    def _commit(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        # A lone job needs no savepoint: if it fails, the whole transaction is its own.
        isolate = len(jobs) > 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                if isolate:
                    conn.execute("SAVEPOINT job")
                result, error = _call(job.fn, conn)
                if isolate and error:
                    conn.execute("ROLLBACK TO job")
                if isolate:
                    conn.execute("RELEASE job")
                results.append((result, error))
            conn.execute("ROLLBACK" if not isolate and results[0][1] else "COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreError(f"SQLite commit failed: {exc}")
            failure.__cause__ = exc
            _settle([(job, None, failure) for job in jobs])
            return
        _settle([(job, *outcome) for job, outcome in zip(jobs, results, strict=True)])


def _call(
    fn: Callable[[sqlite3.Connection], Any], conn: sqlite3.Connection
) -> tuple[Any, BaseException | None]:
    try:
        return fn(conn), None
    except sqlite3.Error as exc:
        failure = StoreError(f"SQLite error: {exc}")
        failure.__cause__ = exc
        return None, failure
    except BaseException as exc:
        return None, exc


def _settle(outcomes: list[_Outcome]) -> None:
    """Resolve the jobs' futures, with one wake-up of each caller's loop for all of them:
    every wake-up is a write to the loop's self-pipe, and each one gives up and takes back the
    GIL that the loop's thread is holding."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, settled in by_loop.items():
        # RuntimeError: the caller's loop is closed; nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, settled)


def _resolve(outcomes: list[_Outcome]) -> None:
    for job, result, error in outcomes:
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)


class Runner:
    """Runs `inferpipe.store.sql` bodies as jobs of the connection thread (`sql.Runner`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def read(self, body: Callable[P, sql.Body[T]], *args: P.args, **kw: P.kwargs) -> T:
        return await self._db.read(lambda c: sql.drive(body(*args, **kw), _executor(c)))

    async def snapshot(self, body: Callable[P, sql.Body[T]], *args: P.args, **kw: P.kwargs) -> T:
        def snapshot(c: sqlite3.Connection) -> T:
            c.execute("BEGIN")
            try:
                return sql.drive(body(*args, **kw), _executor(c))
            finally:
                c.execute("COMMIT")

        return await self._db.read(snapshot)

    async def write(self, body: Callable[P, sql.Body[T]], *args: P.args, **kw: P.kwargs) -> T:
        return await self._db.write(lambda c: sql.drive(body(*args, **kw), _executor(c)))


def _executor(conn: sqlite3.Connection) -> Callable[[sql.Statement], Any]:
    def execute(statement: sql.Statement) -> Any:
        if isinstance(statement, sql.Lock):
            return None  # the write transaction (BEGIN IMMEDIATE) already excludes writers
        cursor = conn.execute(statement.sql, statement.params)
        return cursor.fetchall() if isinstance(statement, sql.Rows) else cursor.rowcount

    return execute
