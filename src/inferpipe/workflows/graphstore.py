"""Saved versions of workflow graphs: save (validated, compiled), list, get, diff, roll back.

A save validates the graph (every problem at once), compiles it, and appends an immutable
version; the newest save becomes *current*. Saving a document equal to the current version
makes no new version. A rollback makes an older version current again (history is kept).

Versions live in the app's own database, in tables of their own (migration 0003): saves are
transactional (two concurrent saves get distinct version numbers), scoped by workspace,
backed up with the runs they explain, and shared by every worker that shares the database.
The rows are the store's (`Store.graphs`, see `inferpipe.store.graphs`); this module validates,
compiles and diffs.

Example::

    graphs = GraphStore(app.engine.store.graphs)
    saved = await graphs.save(load_graph_file("triage.json"))    # GraphInvalidError if invalid
    await graphs.versions("ticket-triage")                       # [VersionInfo(version=1, ...)]
    print((await graphs.diff("ticket-triage", 1, 2)).render())
    await graphs.rollback("ticket-triage", 1)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from inferpipe.core.errors import ConfigurationError
from inferpipe.store import database_url, saved_documents
from inferpipe.store.graphs import GraphTable, StoredVersion, VersionInfo
from inferpipe.workflows import spec
from inferpipe.workflows.compile import ExecutionPlan, compile_graph
from inferpipe.workflows.errors import GraphNotFoundError
from inferpipe.workflows.validate import ValidationOptions
from inferpipe.workflows.versions import GraphDiff, diff_graphs

MAX_VERSION = 2**31 - 1
"""The highest version number (an SQL INTEGER); larger numbers name no version."""


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


class GraphStore:
    """Versions of graphs: validated and compiled here, kept as rows by a `GraphTable`.

    Args:
        table: where the versions are kept (`store.graphs` for the app's database, scoped to
            the store's workspace; `MemoryGraphTable()` for nothing persisted).
        options: what saved graphs are validated against (models, tasks, limits).
        clock: milliseconds since the epoch, for `created_at_ms`.
    """

    def __init__(
        self,
        table: GraphTable,
        *,
        options: ValidationOptions | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.table = table
        self.workspace = table.workspace
        self.options = options or ValidationOptions()
        self._clock = clock or (lambda: int(time.time() * 1000))

    def for_workspace(self, workspace: str) -> GraphStore:
        """The versions of `workspace` in the same database (a view sharing its connection).

        Raises:
            ConfigurationError: the table keeps a single workspace (the in-memory one).
        """
        return GraphStore(
            self.table.for_workspace(workspace), options=self.options, clock=self._clock
        )

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
        stored, created = await self.table.append(row)
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
        stored = await self.table.fetch(graph_id, version, content_hash)
        if stored is None:
            raise GraphNotFoundError(graph_id, version, content_hash or "")
        return _decode(stored)

    async def versions(self, graph_id: str) -> list[VersionInfo]:
        """Every version of `graph_id`, oldest first (`current` marks the current one).

        Raises:
            GraphNotFoundError: the graph was never saved.
        """
        infos = await self.table.infos(graph_id)
        if not infos:
            raise GraphNotFoundError(graph_id)
        return infos

    async def graphs(self) -> list[VersionInfo]:
        """The current version of every saved graph."""
        return await self.table.heads()

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
        if not in_range or not await self.table.set_current(graph_id, version, self._clock()):
            raise GraphNotFoundError(graph_id, version)
        return (await self.get(graph_id, version)).info


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


class MemoryGraphTable:
    """Versions in a dict: for tests, benchmarks and one-off runs (nothing is persisted)."""

    workspace = "default"

    def __init__(self) -> None:
        self._rows: dict[str, list[StoredVersion]] = {}
        self._current: dict[str, int] = {}

    def for_workspace(self, workspace: str) -> GraphTable:
        raise ConfigurationError(
            "a memory graph store keeps the graphs of one workspace only: use the graph "
            "store of the app's database (SQLite or PostgreSQL) to serve several"
        )

    async def append(self, row: StoredVersion) -> tuple[StoredVersion, bool]:
        graph_id = row.info.graph_id
        rows = self._rows.setdefault(graph_id, [])
        head = self._current.get(graph_id)
        if head is not None and rows[head - 1].info.document_hash == row.info.document_hash:
            return self._mark(rows[head - 1]), False
        stored = replace(row, info=replace(row.info, version=len(rows) + 1, current=False))
        rows.append(stored)
        self._current[graph_id] = len(rows)
        return self._mark(stored), True

    async def fetch(
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

    async def infos(self, graph_id: str) -> list[VersionInfo]:
        return [self._mark(row).info for row in self._rows.get(graph_id, [])]

    async def heads(self) -> list[VersionInfo]:
        return [
            self._mark(self._rows[graph_id][head - 1]).info
            for graph_id, head in sorted(self._current.items())
        ]

    async def set_current(self, graph_id: str, version: int, now_ms: int) -> bool:
        if not 1 <= version <= len(self._rows.get(graph_id, [])):
            return False
        self._current[graph_id] = version
        return True

    def _mark(self, row: StoredVersion) -> StoredVersion:
        current = self._current.get(row.info.graph_id) == row.info.version
        return replace(row, info=replace(row.info, current=current))


class MemoryGraphStore(GraphStore):
    """A `GraphStore` over a fresh `MemoryGraphTable`: for tests and one-off runs."""

    def __init__(
        self, *, options: ValidationOptions | None = None, clock: Callable[[], int] | None = None
    ) -> None:
        super().__init__(MemoryGraphTable(), options=options, clock=clock)


def saved_graphs(database: str | Path | None, workspace: str) -> list[spec.Graph]:
    """The current version of every graph saved in `database` for `workspace`, by graph id,
    read without opening (or migrating) a store: an application registers the triggers of
    its saved graphs at import time, before it starts.

    `database` is a `sqlite:///` or `postgresql://` URL or a file path (None: the default
    database, as for `App`). A missing SQLite file or missing tables read as no graphs.

    Raises:
        StoreError: the PostgreSQL database cannot be reached or read.
    """
    url = database_url(None if database is None else str(database))
    documents = saved_documents(url, workspace)
    return [spec.Graph.model_validate_json(document) for document in documents]
