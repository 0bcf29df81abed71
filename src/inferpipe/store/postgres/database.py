"""A pool of asyncpg connections: transactions that survive a lost server, errors translated.

Every store operation is one callable run against a pooled connection, usually inside a
transaction. A failure that says nothing about the operation itself (the server restarted, the
connection dropped, a deadlock or serialization conflict) makes the whole callable run again on a
fresh connection, with backoff, for up to `retry_s`; only then does it surface as `StoreError`.
Operations are written so a second run is harmless: writes are fenced by the lease, keyed writes
use ON CONFLICT, and events are deduplicated by id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeAlias, TypeVar

import asyncpg
from asyncpg import exceptions as pgexc
from asyncpg.pool import PoolConnectionProxy

from inferpipe.core.errors import StoreError
from inferpipe.store import sql

_log = logging.getLogger("inferpipe.store.postgres")

T = TypeVar("T")
P = ParamSpec("P")
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

CHANNEL = "inferpipe_ready"
"""NOTIFY channel: the payload is a workspace in which runs became ready to claim."""

FINISHED_CHANNEL = "inferpipe_finished"
"""NOTIFY channel: the payload is a workspace and a run id, of a run whose finish committed."""

RETRY_S = 30.0
"""How long an operation keeps retrying through a lost server before it fails."""

POOL_SIZE = 10
"""Connections per store; 2 cores serve far fewer concurrent transactions than a worker has runs."""

IDLE_IN_TRANSACTION_MS = 5000
"""The server ends a session left inside a transaction this long: our transactions last
milliseconds, so only a stopped or stalled process (SIGSTOP, a debugger, a frozen VM) is cut, and
the rows it locked (a run it was finishing) can be taken over instead of waiting for it."""

_CUT_STALLED = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'inferpipe'
  AND usename = current_user AND pid <> pg_backend_pid()
  AND state = 'active' AND wait_event = 'ClientRead'
  AND state_change < now() - make_interval(secs => $1)
"""
"""Sessions of our processes inside a statement and waiting for their client for longer than
`IDLE_IN_TRANSACTION_MS`: stopped in the middle of preparing a statement (see
`cut_stalled_sessions`). Only our own role's: ending them needs no privilege."""

_BACKOFF_FIRST_S = 0.02
_BACKOFF_MAX_S = 1.0

_CONFLICT = (pgexc.SerializationError, pgexc.DeadlockDetectedError)
"""Rolled back by the server to let another transaction win: run again at once."""

_UNREACHABLE = (
    OSError,
    TimeoutError,
    pgexc.PostgresConnectionError,
    pgexc.CannotConnectNowError,
    pgexc.AdminShutdownError,
    pgexc.CrashShutdownError,
    pgexc.TooManyConnectionsError,
    pgexc.IdleInTransactionSessionTimeoutError,  # this process was stopped mid-transaction
)
"""The server is restarting or out of reach: wait and run again."""


def lock_key(workspace: str, name: str) -> int:
    """A stable 64-bit advisory lock key for an event name in a workspace."""
    digest = hashlib.blake2b(f"{workspace}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _is_closed_connection(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


class Database:
    """An asyncpg pool that runs operations with retry and error translation.

    Args:
        url: a `postgresql://` URL.
        pool_size: the most connections held at once.
        retry_s: how long to retry an operation through connection loss.
    """

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE, retry_s: float = RETRY_S):
        self.url = url
        self.pool_size = pool_size
        self.retry_s = retry_s
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    async def start(self) -> None:
        if self._pool is not None:
            return
        # min_size=0: no connection is made here, so a server that is still starting is
        # waited for by the first operation's retry loop rather than failing the open.
        # plan_cache_mode: asyncpg prepares every statement, and PostgreSQL kept planning ours
        # anew at each execution (a custom plan: the array parameters make the generic plan
        # look dearer), 0.53 ms of server CPU per hot statement; a generic plan is made once
        # per connection (0.08 ms a bind), and made again when ANALYZE changes the tables'
        # statistics. Our statements name their partial indexes' predicates as literals, so a
        # generic plan can use them (`bench.parked` claims: same plans at 100 000 runs).
        self._pool = asyncpg.create_pool(
            self.url,
            min_size=0,
            max_size=self.pool_size,
            max_inactive_connection_lifetime=300,
            server_settings={
                "application_name": "inferpipe",
                "synchronous_commit": "on",
                "plan_cache_mode": "force_generic_plan",
                "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
            },
            reset=_keep_session,
        )
        try:
            await self._pool
        except (ValueError, asyncpg.InterfaceError) as exc:
            self._pool = None
            raise StoreError(f"invalid PostgreSQL URL: {exc}") from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except (TimeoutError, *_UNREACHABLE, asyncpg.InterfaceError):
                pool.terminate()

    async def transaction(self, fn: Callable[[Conn], Awaitable[T]], *, first: str = "") -> T:
        """Run `fn` in a transaction; returns once committed (durably: synchronous_commit).
        `first`: SQL without parameters run in the round trip of BEGIN (one message of the
        simple query protocol), before `fn`, as a statement of its own (such as taking
        advisory locks: the statements of `fn` then have snapshots taken once they are held)."""
        return await self._run(fn, transaction=True, first=first)

    async def read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn` outside an explicit transaction (each statement commits on its own)."""
        return await self._run(fn, transaction=False)

    async def _run(
        self, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool, first: str = ""
    ) -> T:
        pool = self._pool
        if pool is None:
            raise StoreError("the store is not open: call `await store.open()` first")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_s
        delay_s = _BACKOFF_FIRST_S
        attempt = 0
        while True:
            attempt += 1
            try:
                async with pool.acquire() as conn:
                    if not transaction:
                        return await fn(conn)
                    if first:
                        return await _in_transaction(conn, first, fn)
                    async with conn.transaction():
                        return await fn(conn)
            except _CONFLICT as exc:
                _log.debug("transaction conflict, running again: %s", exc)
                if loop.time() > deadline:
                    raise StoreError(f"PostgreSQL conflict persisted: {exc}") from exc
            except (*_UNREACHABLE, asyncpg.InterfaceError) as exc:
                if isinstance(exc, asyncpg.InterfaceError) and not _is_closed_connection(exc):
                    raise StoreError(f"PostgreSQL client error: {exc}") from exc
                if loop.time() + delay_s > deadline:
                    raise StoreError(
                        f"PostgreSQL unreachable for {self.retry_s:.0f} s: {exc!r}"
                    ) from exc
                # Once per operation at WARNING: a restart makes every operation in flight fail.
                level = logging.WARNING if attempt == 1 else logging.DEBUG
                _log.log(level, "PostgreSQL unreachable (%r); retrying in %.2f s", exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _BACKOFF_MAX_S)
            except pgexc.PostgresError as exc:
                raise StoreError(f"PostgreSQL error: {exc}") from exc


async def _in_transaction(conn: Conn, first: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
    """`conn.transaction()` whose BEGIN carries `first`: rolled back when anything fails."""
    try:
        await conn.execute(f"BEGIN; {first}")
        result = await fn(conn)
    except BaseException:
        if not conn.is_closed():
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")
    return result


async def _keep_session(conn: object) -> None:
    """Skip asyncpg's reset query on every release (a round trip per operation): the store
    leaves no session state behind (transaction-scoped locks; asyncpg still rolls back an
    unfinished transaction)."""


async def cut_stalled_sessions(conn: Conn) -> int:
    """End the sessions of stopped processes that `IDLE_IN_TRANSACTION_MS` does not reach;
    returns how many. asyncpg prepares a statement new to its connection with Parse, Describe
    and Flush, and sends Bind, Execute and Sync only once it has read the answer. A process
    stopped in that round trip (SIGSTOP, a frozen VM, a starved CPU) leaves its session
    "active", waiting for the client: the server's idle-in-transaction timeout does not apply,
    and the rows its transaction locked (a batch of finishes) stayed locked for as long as the
    process was stopped, so the runs it held were never taken over (claims skip locked rows).
    PostgreSQL 15 has no timeout for that wait (`statement_timeout` is not armed there, and
    `transaction_timeout` is new in 17), so claims end such sessions (`PostgresStore.claim`)."""
    return int(await conn.fetchval(_CUT_STALLED, IDLE_IN_TRANSACTION_MS / 1000))


async def notify(conn: Conn, workspace: str) -> None:
    """Tell listeners (delivered at commit) that runs of `workspace` are ready to claim."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, workspace)


def record_value(row: Any, index: int = 0) -> Any:
    """The value at `index` of a row that may be missing."""
    return None if row is None else row[index]


class Runner:
    """Runs `inferpipe.store.sql` bodies on pooled connections (`sql.Runner`); a body is
    built anew for each attempt of `Database`'s retry loop."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def read(self, body: Callable[P, sql.Body[T]], *args: P.args, **kw: P.kwargs) -> T:
        return await self._db.read(lambda c: sql.drive_async(body(*args, **kw), _executor(c)))

    async def snapshot(self, body: Callable[P, sql.Body[T]], *args: P.args, **kw: P.kwargs) -> T:
        async def snapshot(c: Conn) -> T:
            await c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return await sql.drive_async(body(*args, **kw), _executor(c))

        return await self._db.transaction(snapshot)

    async def write(self, body: Callable[P, sql.Body[T]], *args: P.args, **kw: P.kwargs) -> T:
        return await self._db.transaction(
            lambda c: sql.drive_async(body(*args, **kw), _executor(c))
        )


def _executor(conn: Conn) -> Callable[[sql.Statement], Awaitable[Any]]:
    async def execute(statement: sql.Statement) -> Any:
        if isinstance(statement, sql.Lock):
            key = lock_key(statement.workspace, statement.name)
            return await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
        text = sql.numbered(statement.sql)
        if isinstance(statement, sql.Count):
            return rowcount(await conn.execute(text, *statement.params))
        if statement.lock:
            text = f"{text} {statement.lock}"
        return [tuple(r) for r in await conn.fetch(text, *statement.params)]

    return execute


def rowcount(status: str) -> int:
    """The row count of a command tag such as ``DELETE 12``."""
    return int(status.rsplit(" ", 1)[-1])
