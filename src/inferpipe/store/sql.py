"""One SQL body for both dialects: a generator of statements that each dialect runs.

A *body* is a generator function that yields statements written with ``?`` placeholders and
receives each one's result, so the Python around the SQL is written once::

    def rename(ws: str, old: str, new: str) -> sql.Body[bool]:
        found = yield from sql.row("SELECT 1 FROM t WHERE ws = ? AND name = ?", ws, old)
        if found is None:
            return False
        yield from sql.count("UPDATE t SET name = ? WHERE ws = ? AND name = ?", new, ws, old)
        return True

SQLite runs it synchronously on its connection thread (so a write body is one job of the
group commit), PostgreSQL with awaits on a pooled connection, numbering the placeholders
(``$1``, ``$2``, ...). What a dialect does differently is a statement's own field: ``lock``
(row locks, which only PostgreSQL needs, SQLite's write transactions being exclusive) and
``Lock`` (a transaction-scoped named lock).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Generator, Sized
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, Protocol, TypeAlias, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

#: A row lock added after a PostgreSQL ``SELECT`` (SQLite ignores it).
RowLock = Literal["", "FOR UPDATE", "FOR UPDATE SKIP LOCKED"]


@dataclass(frozen=True, slots=True)
class Rows:
    """A statement whose rows (tuples) are wanted."""

    sql: str
    params: tuple[Any, ...]
    lock: RowLock = ""


@dataclass(frozen=True, slots=True)
class Count:
    """A statement whose count of affected rows is wanted."""

    sql: str
    params: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Lock:
    """Hold the named lock of a workspace until the transaction ends (SQLite: a no-op, its
    write transaction already excludes every other writer)."""

    workspace: str
    name: str


Statement: TypeAlias = Rows | Count | Lock
Body: TypeAlias = Generator[Statement, Any, T]


def rows(sql: str, *params: Any, lock: RowLock = "") -> Body[list[tuple[Any, ...]]]:
    """The rows of a query."""
    found: list[tuple[Any, ...]] = yield Rows(sql, params, lock)
    return found


def row(sql: str, *params: Any, lock: RowLock = "") -> Body[tuple[Any, ...] | None]:
    """The first row of a query, or None."""
    found = yield from rows(sql, *params, lock=lock)
    return found[0] if found else None


def count(sql: str, *params: Any) -> Body[int]:
    """Run a statement; the number of rows it changed."""
    changed: int = yield Count(sql, params)
    return changed


def lock(workspace: str, name: str) -> Body[None]:
    """Take the named lock of ``workspace`` for the rest of the transaction."""
    yield Lock(workspace, name)


def marks(values: Sized) -> str:
    """``?, ?, ?``: one placeholder per value, for an ``IN (...)`` list."""
    return ", ".join("?" * len(values))


def drive(body: Body[T], run: Callable[[Statement], Any]) -> T:
    """Run ``body`` to its end, each statement with ``run`` (SQLite's synchronous driver)."""
    result: Any = None
    while True:
        try:
            statement = body.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result = run(statement)


async def drive_async(body: Body[T], run: Callable[[Statement], Awaitable[Any]]) -> T:
    """Run ``body`` to its end, awaiting each statement with ``run``."""
    result: Any = None
    while True:
        try:
            statement = body.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result = await run(statement)


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``sql`` with its ``?`` placeholders numbered ``$1``, ``$2``, ... (PostgreSQL's)."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))


class Runner(Protocol):
    """How a dialect runs bodies (``body(*args)`` is built anew for every attempt)."""

    async def read(self, body: Callable[P, Body[T]], *args: P.args, **kw: P.kwargs) -> T:
        """Each statement committing on its own."""
        ...

    async def snapshot(self, body: Callable[P, Body[T]], *args: P.args, **kw: P.kwargs) -> T:
        """In one read-only snapshot."""
        ...

    async def write(self, body: Callable[P, Body[T]], *args: P.args, **kw: P.kwargs) -> T:
        """In one transaction; returns once committed."""
        ...
