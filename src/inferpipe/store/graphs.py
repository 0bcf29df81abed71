"""Graph version rows: the `workflow_versions` and `workflow_heads` tables of every store.

Validating, compiling and diffing are the workflows' (`inferpipe.workflows.graphstore`); a table
keeps the versions of one workspace as JSON text.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

from inferpipe.store import sql


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


_INFO = (
    "v.graph_id, v.version, v.name, v.content_hash, v.document_hash, v.created_at_ms,"
    " h.version IS NOT NULL"
)
_VERSIONS = (
    f"SELECT {_INFO}, v.graph, v.plan FROM workflow_versions v LEFT JOIN workflow_heads h"
    " ON h.workspace = v.workspace AND h.graph_id = v.graph_id AND h.version = v.version"
    " WHERE v.workspace = ?"
)
"""The versions of a workspace joined with the current-version pointers (migration 0003)."""
CURRENT_GRAPHS = (
    "SELECT v.graph FROM workflow_versions v JOIN workflow_heads h"
    " ON h.workspace = v.workspace AND h.graph_id = v.graph_id AND h.version = v.version"
    " WHERE v.workspace = ? ORDER BY v.graph_id"
)
"""The current graph documents of a workspace."""
SAVE_LOCK_PREFIX = "workflow-graph:"
"""Lock name of a graph's saves: the prefix keeps it apart from event-name locks."""


class SQLGraphs:
    """A `GraphTable` in the store's database, run by its dialect's `sql.Runner`. Concurrent
    saves of one graph, from any number of processes, are serialized by a lock on (workspace,
    graph id), so each gets its own version number and an unchanged document never makes a
    second version."""

    def __init__(self, runner: sql.Runner, workspace: str) -> None:
        self._runner = runner
        self.workspace = workspace

    def for_workspace(self, workspace: str) -> Self:
        view = copy.copy(self)
        view.workspace = workspace
        return view

    async def append(self, row: StoredVersion) -> tuple[StoredVersion, bool]:
        return await self._runner.write(_append, self.workspace, row)

    async def fetch(
        self, graph_id: str, version: int | None, content_hash: str | None
    ) -> StoredVersion | None:
        where, params = " AND v.graph_id = ?", list[Any]([graph_id])
        if version is not None:
            where += " AND v.version = ?"
            params.append(version)
        elif content_hash is not None:
            where += " AND v.content_hash = ? ORDER BY v.version DESC LIMIT 1"
            params.append(content_hash)
        else:
            where += " AND h.version IS NOT NULL"
        return await self._runner.read(_one, self.workspace, where, *params)

    async def infos(self, graph_id: str) -> list[VersionInfo]:
        where = " AND v.graph_id = ? ORDER BY v.version"
        return await self._runner.read(_infos, self.workspace, where, graph_id)

    async def heads(self) -> list[VersionInfo]:
        where = " AND h.version IS NOT NULL ORDER BY v.graph_id"
        return await self._runner.read(_infos, self.workspace, where)

    async def set_current(self, graph_id: str, version: int, now_ms: int) -> bool:
        return await self._runner.write(_move, self.workspace, graph_id, version, now_ms)


def _append(ws: str, row: StoredVersion) -> sql.Body[tuple[StoredVersion, bool]]:
    info = row.info
    yield from sql.lock(ws, SAVE_LOCK_PREFIX + info.graph_id)
    current = yield from _one(ws, " AND v.graph_id = ? AND h.version IS NOT NULL", info.graph_id)
    if current is not None and current.info.document_hash == info.document_hash:
        return current, False
    latest = yield from sql.rows(
        "SELECT COALESCE(MAX(version), 0) FROM workflow_versions"
        " WHERE workspace = ? AND graph_id = ?",
        ws,
        info.graph_id,
    )
    version = int(latest[0][0]) + 1
    yield from sql.count(
        "INSERT INTO workflow_versions (workspace, graph_id, version, name, content_hash,"
        " document_hash, graph, plan, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ws,
        info.graph_id,
        version,
        info.name,
        info.content_hash,
        info.document_hash,
        row.graph_json,
        row.plan_json,
        info.created_at_ms,
    )
    yield from _point(ws, info.graph_id, version, info.created_at_ms)
    stored = yield from _one(ws, " AND v.graph_id = ? AND v.version = ?", info.graph_id, version)
    assert stored is not None  # inserted just above, in this transaction
    return stored, True


def _move(ws: str, graph_id: str, version: int, now_ms: int) -> sql.Body[bool]:
    found = yield from sql.row(
        "SELECT 1 FROM workflow_versions WHERE workspace = ? AND graph_id = ? AND version = ?",
        ws,
        graph_id,
        version,
    )
    if found is None:
        return False
    yield from _point(ws, graph_id, version, now_ms)
    return True


def _point(ws: str, graph_id: str, version: int, now_ms: int) -> sql.Body[int]:
    return sql.count(
        "INSERT INTO workflow_heads (workspace, graph_id, version, updated_at_ms)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (workspace, graph_id)"
        " DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms",
        ws,
        graph_id,
        version,
        now_ms,
    )


def _one(ws: str, where: str, *params: Any) -> sql.Body[StoredVersion | None]:
    found = yield from sql.row(_VERSIONS + where, ws, *params)
    return None if found is None else StoredVersion(_info(found), str(found[7]), str(found[8]))


def _infos(ws: str, where: str, *params: Any) -> sql.Body[list[VersionInfo]]:
    found = yield from sql.rows(_VERSIONS + where, ws, *params)
    return [_info(r) for r in found]


def _info(row: Sequence[Any]) -> VersionInfo:
    return VersionInfo(
        graph_id=str(row[0]),
        version=int(row[1]),
        name=str(row[2]),
        content_hash=str(row[3]),
        document_hash=str(row[4]),
        created_at_ms=int(row[5]),
        current=bool(row[6]),
    )
