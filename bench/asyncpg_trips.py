"""Each round trip asyncpg makes to PostgreSQL, shown to a callback: for the benches that count
them (`bench.round_trips`, `bench.run_costs`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from asyncpg import connection

Seen = Callable[[float, float, str], None]
"""Told of a round trip: perf_counter at its start and at its end, and the query sent."""


@contextmanager
def traced(seen: Seen) -> Iterator[None]:
    """Tell `seen` of each round trip while inside: a prepared statement's (`_execute`, behind
    every fetch and execute with arguments) or a simple query's (`execute` without arguments:
    BEGIN, COMMIT and ROLLBACK, of asyncpg's transactions too, and statements sent with them)."""
    prepared = connection.Connection._execute  # type: ignore[attr-defined]
    simple = connection.Connection.execute

    async def timed(query: str, call: Awaitable[Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return await call
        finally:
            seen(t0, time.perf_counter(), query)

    async def traced_prepared(self: Any, query: str, *args: Any, **kw: Any) -> Any:
        return await timed(query, prepared(self, query, *args, **kw))

    async def traced_simple(self: Any, query: str, *args: Any, **kw: Any) -> Any:
        if args:  # goes through `_execute`, traced there
            return await simple(self, query, *args, **kw)
        return await timed(query, simple(self, query, **kw))

    connection.Connection._execute = traced_prepared  # type: ignore[attr-defined]
    connection.Connection.execute = traced_simple  # type: ignore[method-assign]
    try:
        yield
    finally:
        connection.Connection._execute = prepared  # type: ignore[attr-defined]
        connection.Connection.execute = simple  # type: ignore[method-assign]
