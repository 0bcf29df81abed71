"""One SQLite connection on its own thread, with group commit.

Write jobs that arrive while a commit is in progress are batched into the next transaction,
each inside its own savepoint so one failing job does not undo the others. A job's future
resolves only after COMMIT returns, and with `synchronous=FULL` in WAL mode that means the
write is on disk: "a step reported done is on disk".

A brief write (a few statements whose caller waits for them: a start, a park, a finish)
that finds the connection idle runs on the caller's thread instead, at the loop's next turn,
if no other job of that loop came in the meantime: it saves the two thread hand-offs (the job
to the thread, its answer back to the loop), which cost a wake-up each and, on a loaded
machine, a wait for a core. Jobs that arrive together still go to the thread, in one
transaction. A step's journal is not brief: its function runs on while it commits, and on the
caller's thread it would stop for the commit.
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
    """Runs callables against one connection on a dedicated thread (a brief write, on its
    caller's thread when the connection is idle)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._urgent: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        # Whoever holds `_using` may use the connection: the thread for a batch, or a caller
        # running its brief write itself.
        self._using = threading.Lock()
        self._counting = threading.Lock()
        self._queued = 0  #: jobs given to the thread and not yet answered
        self._waits = True  #: the connection's busy timeout is on (`_wait_for_locks`)
        self._deferred: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        """Per loop, the jobs held for its next turn behind a brief write that found the
        connection idle (touched only from that loop's thread)."""

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

    async def write(
        self, fn: Callable[[sqlite3.Connection], T], *, urgent: bool = False, brief: bool = False
    ) -> T:
        """Run `fn` in a transaction; returns once committed. An `urgent` write goes in the
        next transaction, ahead of the jobs queued before it (lease renewals: a worker whose
        renewals wait behind a burst of writes loses its leases and stops its runs). A `brief`
        one (a few statements, never a scan, that the caller waits for) may run on the
        caller's thread when the connection is idle, blocking its loop for the commit."""
        return await self._submit(fn, write=True, urgent=urgent, brief=brief)

    async def _submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        write: bool,
        urgent: bool = False,
        brief: bool = False,
    ) -> T:
        if self._thread is None:
            raise StoreError("the store is not open: call `await store.open()` first")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, write, loop, future)
        held = self._deferred.get(loop)
        if held is not None and not urgent:
            held.append(job)  # behind the brief write held for the next turn: in order
        elif brief and not urgent and self._queued == 0:
            self._deferred[loop] = [job]
            loop.call_soon(self._run_deferred, loop)
        else:
            self._queue([job], urgent=urgent)
        return await future

    def _queue(self, jobs: list[_Job], *, urgent: bool = False) -> None:
        with self._counting:
            self._queued += len(jobs)
        for job in jobs:
            if urgent:
                self._urgent.put(job)
            self._jobs.put(job)  # an urgent one too: it wakes the thread, skipped if taken

    def _run_deferred(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop's next turn after a brief write found the connection idle: run it here if
        it is still alone and the connection still idle, else give the jobs to the thread."""
        jobs = self._deferred.pop(loop)
        if len(jobs) == 1 and not self._queued and self._using.acquire(blocking=False):
            try:
                outcomes = self._run_here(jobs)
            finally:
                self._using.release()
            if outcomes is not None:
                _resolve(outcomes)
                return
        self._queue(jobs)

    def _run_here(self, jobs: list[_Job]) -> list[_Outcome] | None:
        """`_transaction` on the caller's thread, which must not wait for another process's
        write lock (its loop would stop meanwhile): None when that lock is taken."""
        conn = self._conn
        if conn is None:
            closed = StoreError("the store was closed before this write ran")
            return [(job, None, closed) for job in jobs]
        try:
            self._wait_for_locks(conn, False)
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                return None
            return _failed(jobs, exc)
        return _transaction(conn, jobs, begun=True)

    def _wait_for_locks(self, conn: sqlite3.Connection, wait: bool) -> None:
        """Whether the connection waits (`BUSY_TIMEOUT_MS`) for another process's lock: its
        thread does; a caller running a write itself does not. Set only when it changes."""
        if wait != self._waits:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS if wait else 0}")
            self._waits = wait

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
            with self._using:
                stop, answers = self._serve_batch(conn, job)
            _settle(answers)  # the connection free first: a caller they wake may run its own
            if stop:
                break
        with self._using:
            conn.close()
            self._conn = None

    def _serve_batch(self, conn: sqlite3.Connection, job: _Job) -> tuple[bool, list[_Outcome]]:
        """Run `job` and the jobs queued behind it (the reads answered at once); returns
        whether `close` asked to stop, and the writes' outcomes."""
        self._wait_for_locks(conn, True)
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
        reads = [j for j in batch if not j.write]
        if reads:
            _settle([(read, *_call(read.fn, conn)) for read in reads])
        writes = [j for j in batch if j.write]
        outcomes = _transaction(conn, writes) if writes else []
        with self._counting:  # before the answers: a caller they wake finds the thread idle
            self._queued -= len(batch)
        return stop, outcomes

    def _take_urgent(self) -> list[_Job]:
        jobs: list[_Job] = []
        while True:
            try:
                job = self._urgent.get_nowait()
            except queue.Empty:
                return jobs
            job.taken = True
            jobs.append(job)


def _transaction(
    conn: sqlite3.Connection, jobs: list[_Job], *, begun: bool = False
) -> list[_Outcome]:
    """Run the write jobs in one transaction: what each returned or raised, once committed."""
    results: list[tuple[Any, BaseException | None]] = []
    # A lone job needs no savepoint: if it fails, the whole transaction is its own.
    isolate = len(jobs) > 1
    try:
        if not begun:
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
        return _failed(jobs, exc)
    return [(job, *outcome) for job, outcome in zip(jobs, results, strict=True)]


def _failed(jobs: list[_Job], exc: sqlite3.Error) -> list[_Outcome]:
    failure = StoreError(f"SQLite commit failed: {exc}")
    failure.__cause__ = exc
    return [(job, None, failure) for job in jobs]


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
