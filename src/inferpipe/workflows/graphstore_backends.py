"""Which `GraphStore` keeps the graphs of a store's database, and saved graphs read at import.

Graph versions live in the app's own database, whatever it is: `graph_store_for` returns the
SQLite or the PostgreSQL graph store sharing an open store's connection, scoped to the store's
workspace. `saved_graphs` reads the current versions straight from a database URL, without
opening (or migrating) a store, so an application can register the triggers of its saved
graphs at import time, before it starts.

Example::

    graphs = graph_store_for(app.engine.store)          # SQLiteGraphStore or PostgresGraphStore
    for graph in saved_graphs("postgresql://db/inferpipe", "default"):
        print(graph.id, graph.trigger)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from inferpipe.core.errors import ConfigurationError, StoreError
from inferpipe.store import database_url, store_from_url
from inferpipe.store.base import Store
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.workflows import spec
from inferpipe.workflows.graphstore import GraphStore
from inferpipe.workflows.graphstore_sqlite import SQLiteGraphStore
from inferpipe.workflows.validate import ValidationOptions

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0
"""How long `saved_graphs` waits for a PostgreSQL connection."""

_CURRENT_GRAPHS = (
    "SELECT v.graph FROM workflow_versions v JOIN workflow_heads h"
    " ON h.workspace = v.workspace AND h.graph_id = v.graph_id AND h.version = v.version"
    " WHERE v.workspace = {param} ORDER BY v.graph_id"
)


def graph_store_for(
    store: Store,
    *,
    options: ValidationOptions | None = None,
    clock: Callable[[], int] | None = None,
) -> GraphStore:
    """The graph store in the same database as `store` (scoped to its workspace).

    Raises:
        ConfigurationError: `store` is neither SQLite nor PostgreSQL (pass a `GraphStore` of
            your own to `WorkflowRuntime` then).
    """
    if isinstance(store, SQLiteStore):
        return SQLiteGraphStore(store, options=options, clock=clock)
    if type(store).__name__ == "PostgresStore":  # by name: PostgreSQL support is optional
        from inferpipe.store.postgres import PostgresStore  # noqa: PLC0415
        from inferpipe.workflows.graphstore_postgres import PostgresGraphStore  # noqa: PLC0415

        if isinstance(store, PostgresStore):
            return PostgresGraphStore(store, options=options, clock=clock)
    raise ConfigurationError(
        "pass a GraphStore to WorkflowRuntime: graph versions are kept in the app's "
        f"database only for SQLite and PostgreSQL, not for {type(store).__name__}"
    )


def saved_graphs(database: str | Path | None, workspace: str) -> list[spec.Graph]:
    """The current version of every graph saved in `database` for `workspace`, by graph id.

    `database` is a `sqlite:///` or `postgresql://` URL or a file path (None: the default
    database, as for `App`). Nothing is created: a missing SQLite file or missing tables
    read as no graphs.

    Raises:
        StoreError: the PostgreSQL database cannot be reached or read.
    """
    url = database_url(None if database is None else str(database))
    store = store_from_url(url, workspace)  # only to parse the URL: nothing is opened
    if isinstance(store, SQLiteStore):
        documents = _sqlite_graphs(store.path, workspace)
    else:
        documents = _apart(_postgres_graphs(url, workspace))
    return [spec.Graph.model_validate_json(document) for document in documents]


def _sqlite_graphs(path: Path | str, workspace: str) -> list[str]:
    if str(path) == ":memory:" or not Path(path).exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            rows = conn.execute(_CURRENT_GRAPHS.format(param="?"), (workspace,)).fetchall()
        except sqlite3.OperationalError:  # the workflow tables do not exist yet
            return []
    return [str(row[0]) for row in rows]


async def _postgres_graphs(url: str, workspace: str) -> list[str]:
    import asyncpg  # noqa: PLC0415 - PostgreSQL support is optional

    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
        try:
            if not await conn.fetchval("SELECT to_regclass('workflow_heads') IS NOT NULL"):
                return []
            rows = await conn.fetch(_CURRENT_GRAPHS.format(param="$1"), workspace)
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"cannot read the saved workflow graphs from PostgreSQL: {exc}") from exc
    return [str(row[0]) for row in rows]


def _apart(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to completion on an event loop of its own, in a thread, so this works both
    at import time and when called from code already running in an event loop."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inferpipe-wf") as pool:
        return pool.submit(asyncio.run, work).result()
