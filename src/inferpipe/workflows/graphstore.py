"""Saved versions of workflow graphs: save (validated, compiled), list, get, diff, roll back.

A save validates the graph (every problem at once), compiles it, and appends an immutable
version; the newest save becomes *current*. Saving a document equal to the current version
makes no new version. A rollback makes an older version current again (history is kept).

Versions live in the app's own database, in tables of their own (migration 0003): saves are
transactional (two concurrent saves get distinct version numbers), scoped by workspace,
backed up with the runs they explain, and shared by every worker that shares the database.
The core `Store` protocol is untouched: `SQLiteGraphStore` uses the SQLite store's connection,
`PostgresGraphStore` the PostgreSQL store's pool (`graph_store_for` picks the one of a store).

Example::

    graphs = SQLiteGraphStore(app.engine.store)
    saved = await graphs.save(load_graph_file("triage.json"))    # GraphInvalidError if invalid
    await graphs.versions("ticket-triage")                       # [VersionInfo(version=1, ...)]
    print((await graphs.diff("ticket-triage", 1, 2)).render())
    await graphs.rollback("ticket-triage", 1)
"""

from __future__ import annotations

import abc
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from inferpipe.core.errors import ConfigurationError
from inferpipe.workflows import spec
from inferpipe.workflows.compile import ExecutionPlan, compile_graph
from inferpipe.workflows.errors import GraphNotFoundError
from inferpipe.workflows.validate import ValidationOptions
from inferpipe.workflows.versions import GraphDiff, diff_graphs

MAX_VERSION = 2**31 - 1
"""The highest version number (an SQL INTEGER); larger numbers name no version."""


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


@dataclass(frozen=True, slots=True)
class GraphVersion:
    """A saved version: its info, the graph document and its execution plan."""

    info: VersionInfo
    graph: spec.Graph
    plan: ExecutionPlan


@dataclass(frozen=True, slots=True)
class SaveResult:
    """The version a save made current; `created` is False when nothing had changed."""

    version: GraphVersion
    created: bool


class GraphStore(abc.ABC):
    """Versions of graphs. Backends implement the five storage hooks; the rest is shared.

    Args:
        options: what saved graphs are validated against (models, tasks, limits).
        clock: milliseconds since the epoch, for `created_at_ms`.
    """

    def __init__(
        self,
        *,
        options: ValidationOptions | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.options = options or ValidationOptions()
        self._clock = clock or (lambda: int(time.time() * 1000))

    def for_workspace(self, workspace: str) -> GraphStore:
        """The versions of `workspace` in the same database (a view sharing its connection).

        Raises:
            ConfigurationError: this backend keeps a single workspace (the in-memory one).
        """
        raise ConfigurationError(
            f"{type(self).__name__} keeps the graphs of one workspace only: use the graph "
            "store of the app's database (SQLite or PostgreSQL) to serve several"
        )

    # storage hooks --------------------------------------------------------------------------
    @abc.abstractmethod
    async def _append(self, row: StoredVersion) -> tuple[StoredVersion, bool]:
        """Atomically: when the current version has `row`'s document hash, return it and
        False; else store `row` as the next version number, make it current, return it and
        True (the `version` of `row.info` is a placeholder)."""

    @abc.abstractmethod
    async def _fetch(
        self, graph_id: str, version: int | None, content_hash: str | None
    ) -> StoredVersion | None:
        """A version by number, else the newest with `content_hash`, else the current one."""

    @abc.abstractmethod
    async def _infos(self, graph_id: str) -> list[VersionInfo]:
        """Every version of a graph, oldest first."""

    @abc.abstractmethod
    async def _heads(self) -> list[VersionInfo]:
        """The current version of every graph, by graph id."""

    @abc.abstractmethod
    async def _set_current(self, graph_id: str, version: int, now_ms: int) -> bool:
        """Make `version` current; False when there is no such version."""

    # API ------------------------------------------------------------------------------------
    async def save(
        self, graph: spec.Graph | Mapping[str, Any], *, options: ValidationOptions | None = None
    ) -> SaveResult:
        """Validate, compile and save `graph` as its next version (unless unchanged).

        Raises:
            GraphInvalidError: listing every problem; nothing is saved.
        """
        parsed = graph if isinstance(graph, spec.Graph) else spec.parse_graph(graph)
        unversioned = parsed.model_copy(update={"version": None})
        plan = compile_graph(unversioned, options or self.options)
        document = unversioned.model_dump(mode="json", by_alias=True, exclude={"version"})
        info = VersionInfo(
            graph_id=parsed.id,
            version=0,
            name=parsed.name,
            content_hash=plan.content_hash,
            document_hash=document_hash(document),
            created_at_ms=self._clock(),
            current=True,
        )
        row = StoredVersion(info, orjson.dumps(document).decode(), plan.model_dump_json())
        stored, created = await self._append(row)
        return SaveResult(_decode(stored), created)

    async def get(
        self, graph_id: str, version: int | None = None, *, content_hash: str | None = None
    ) -> GraphVersion:
        """A version by number or content hash; the current version when neither is given.

        Raises:
            GraphNotFoundError: no such graph or version.
        """
        if version is not None and not 1 <= version <= MAX_VERSION:
            raise GraphNotFoundError(graph_id, version)  # never stored; nor storable in SQL
        stored = await self._fetch(graph_id, version, content_hash)
        if stored is None:
            raise GraphNotFoundError(graph_id, version, content_hash or "")
        return _decode(stored)

    async def versions(self, graph_id: str) -> list[VersionInfo]:
        """Every version of `graph_id`, oldest first (`current` marks the current one).

        Raises:
            GraphNotFoundError: the graph was never saved.
        """
        infos = await self._infos(graph_id)
        if not infos:
            raise GraphNotFoundError(graph_id)
        return infos

    async def graphs(self) -> list[VersionInfo]:
        """The current version of every saved graph."""
        return await self._heads()

    async def diff(self, graph_id: str, old: int, new: int) -> GraphDiff:
        """What changed from version `old` to version `new`."""
        before = await self.get(graph_id, old)
        after = await self.get(graph_id, new)
        return diff_graphs(before.graph, after.graph)

    async def rollback(self, graph_id: str, version: int) -> VersionInfo:
        """Make an older (or any) version current again; later saves continue the numbering.

        Raises:
            GraphNotFoundError: no such version.
        """
        in_range = 1 <= version <= MAX_VERSION
        if not in_range or not await self._set_current(graph_id, version, self._clock()):
            raise GraphNotFoundError(graph_id, version)
        return (await self.get(graph_id, version)).info


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


def document_hash(document: Mapping[str, Any]) -> str:
    """sha256 of a graph document's canonical JSON (sorted keys, no whitespace)."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _decode(stored: StoredVersion) -> GraphVersion:
    version = stored.info.version
    graph = spec.Graph.model_validate_json(stored.graph_json).model_copy(
        update={"version": version}
    )
    plan = ExecutionPlan.from_json(stored.plan_json).model_copy(update={"graph_version": version})
    return GraphVersion(stored.info, graph, plan)


class MemoryGraphStore(GraphStore):
    """Versions in a dict: for tests, benchmarks and one-off runs (nothing is persisted)."""

    def __init__(
        self,
        *,
        options: ValidationOptions | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(options=options, clock=clock)
        self._rows: dict[str, list[StoredVersion]] = {}
        self._current: dict[str, int] = {}

    async def _append(self, row: StoredVersion) -> tuple[StoredVersion, bool]:
        graph_id = row.info.graph_id
        rows = self._rows.setdefault(graph_id, [])
        head = self._current.get(graph_id)
        if head is not None and rows[head - 1].info.document_hash == row.info.document_hash:
            return self._mark(rows[head - 1]), False
        stored = replace(row, info=replace(row.info, version=len(rows) + 1, current=False))
        rows.append(stored)
        self._current[graph_id] = len(rows)
        return self._mark(stored), True

    async def _fetch(
        self, graph_id: str, version: int | None, content_hash: str | None
    ) -> StoredVersion | None:
        rows = self._rows.get(graph_id, [])
        if version is not None:
            return self._mark(rows[version - 1]) if 1 <= version <= len(rows) else None
        if content_hash is not None:
            found = [r for r in rows if r.info.content_hash == content_hash]
            return self._mark(found[-1]) if found else None
        head = self._current.get(graph_id)
        return None if head is None else self._mark(rows[head - 1])

    async def _infos(self, graph_id: str) -> list[VersionInfo]:
        return [self._mark(row).info for row in self._rows.get(graph_id, [])]

    async def _heads(self) -> list[VersionInfo]:
        return [
            self._mark(self._rows[graph_id][head - 1]).info
            for graph_id, head in sorted(self._current.items())
        ]

    async def _set_current(self, graph_id: str, version: int, now_ms: int) -> bool:
        if not 1 <= version <= len(self._rows.get(graph_id, [])):
            return False
        self._current[graph_id] = version
        return True

    def _mark(self, row: StoredVersion) -> StoredVersion:
        current = self._current.get(row.info.graph_id) == row.info.version
        return replace(row, info=replace(row.info, current=current))
