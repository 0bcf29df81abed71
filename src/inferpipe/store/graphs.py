"""Graph version rows: the `workflow_versions` and `workflow_heads` tables of every store.

Validating, compiling and diffing are the workflows' (`inferpipe.workflows.graphstore`); a table
keeps the versions of one workspace as JSON text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What a listing shows of one saved version."""

    graph_id: str
    version: int
    name: str
    content_hash: str
    """The compiled plan's hash: equal plans, equal hashes."""
    document_hash: str
    """The graph document's hash (every field but the version)."""
    created_at_ms: int
    current: bool = False


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """A version as a backend keeps it: its info and its documents as JSON text."""

    info: VersionInfo
    graph_json: str
    plan_json: str


class GraphTable(Protocol):
    """Storage of one workspace's graph versions (`Store.graphs`)."""

    @property
    def workspace(self) -> str: ...

    def for_workspace(self, workspace: str) -> GraphTable:
        """The versions of `workspace` in the same database.

        Raises:
            ConfigurationError: this table keeps a single workspace (the in-memory one).
        """

    async def append(self, row: StoredVersion) -> tuple[StoredVersion, bool]:
        """Atomically: when the current version has `row`'s document hash, return it and
        False; else store `row` as the next version number, make it current, return it and
        True (the `version` of `row.info` is a placeholder)."""

    async def fetch(
        self, graph_id: str, version: int | None, content_hash: str | None
    ) -> StoredVersion | None:
        """A version by number, else the newest with `content_hash`, else the current one."""

    async def infos(self, graph_id: str) -> list[VersionInfo]:
        """Every version of a graph, oldest first."""

    async def heads(self) -> list[VersionInfo]:
        """The current version of every graph, by graph id."""

    async def set_current(self, graph_id: str, version: int, now_ms: int) -> bool:
        """Make `version` current; False when there is no such version."""


INFO_COLUMNS = (
    "v.graph_id, v.version, v.name, v.content_hash, v.document_hash, v.created_at_ms,"
    " h.version IS NOT NULL"
)
"""What the SQL backends select of a version (`info_from_row` reads it), aliased `v`/`h`."""
VERSIONS_FROM = (
    "FROM workflow_versions v LEFT JOIN workflow_heads h ON h.workspace = v.workspace"
    " AND h.graph_id = v.graph_id AND h.version = v.version"
)
"""The versions joined with the current-version pointers (migration 0003, both backends)."""


def info_from_row(row: Sequence[Any]) -> VersionInfo:
    """A `VersionInfo` from the first columns of a row selected with `INFO_COLUMNS`."""
    return VersionInfo(
        graph_id=str(row[0]),
        version=int(row[1]),
        name=str(row[2]),
        content_hash=str(row[3]),
        document_hash=str(row[4]),
        created_at_ms=int(row[5]),
        current=bool(row[6]),
    )


CURRENT_GRAPHS = (
    "SELECT v.graph FROM workflow_versions v JOIN workflow_heads h"
    " ON h.workspace = v.workspace AND h.graph_id = v.graph_id AND h.version = v.version"
    " WHERE v.workspace = {param} ORDER BY v.graph_id"
)
"""The current graph documents of a workspace (`{param}`: the dialect's placeholder)."""


def saved_documents(url: str, workspace: str) -> list[str]:
    """The current graph documents of `workspace` in the database at `url` (a `sqlite:///` or
    `postgresql://` URL, or a file path), read without opening a store, so nothing is created
    or migrated: a missing SQLite file or missing tables read as none. Works at import time
    and from code already running in an event loop.

    Raises:
        StoreError: the PostgreSQL database cannot be reached or read.
    """
    from inferpipe.store import store_from_url  # noqa: PLC0415 - the package imports this
    from inferpipe.store.sqlite import SQLiteStore, graphs  # noqa: PLC0415

    store = store_from_url(url, workspace)  # only to parse the URL: nothing is opened
    if isinstance(store, SQLiteStore):
        return graphs.saved_documents(store.path, workspace)
    from inferpipe.store.postgres import graphs as pg_graphs  # noqa: PLC0415 - optional

    # On an event loop of its own, in a thread: the caller may be inside a running loop.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inferpipe-wf") as pool:
        return pool.submit(asyncio.run, pg_graphs.saved_documents(url, workspace)).result()
