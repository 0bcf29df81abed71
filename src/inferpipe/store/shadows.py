"""Shadow rows: the `shadow_policies` and `shadow_comparisons` tables of every store
(migration 0014).

What a policy and a comparison mean (candidates, overrides, sampling, diffs, the parity
report) is the workflows' (`inferpipe.workflows.shadow`); a table keeps them as JSON, scoped
to one workspace, with the few columns queries filter on.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

from inferpipe.core import json
from inferpipe.store import sql

POLICY_LOCK_PREFIX = "shadow-policy:"
"""Lock name of a graph's policy writes (keeps "one enabled policy per graph" under races)."""


@dataclass(frozen=True, slots=True)
class PolicyRow:
    """A shadow policy as stored: `body` holds its fields."""

    id: str
    graph_id: str
    enabled: bool
    body: dict[str, Any]
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """The comparison of one shadow run with its primary run."""

    shadow_run_id: str
    policy_id: str
    primary_run_id: str
    body: dict[str, Any]
    created_at_ms: int


class ShadowTable(Protocol):
    """Storage of one workspace's shadow policies and comparisons (`Store.shadows`)."""

    @property
    def workspace(self) -> str: ...

    def for_workspace(self, workspace: str) -> ShadowTable:
        """The rows of `workspace` in the same database."""

    async def put_policy(self, row: PolicyRow) -> PolicyRow:
        """Insert or replace a policy (the first `created_at_ms` is kept); an enabled one
        disables every other policy of its graph in the same transaction."""

    async def get_policy(self, policy_id: str) -> PolicyRow | None: ...

    async def policies(self, graph_id: str | None = None) -> list[PolicyRow]:
        """Newest first, of one graph when given."""

    async def active_policy(self, graph_id: str) -> PolicyRow | None:
        """The enabled policy of a graph, if any."""

    async def put_comparison(self, row: ComparisonRow) -> None:
        """Insert or replace the comparison of a shadow run (a replayed step writes it
        again)."""

    async def comparison(self, shadow_run_id: str) -> ComparisonRow | None: ...

    async def comparisons(self, policy_id: str, *, limit: int = 1000) -> list[ComparisonRow]:
        """A policy's comparisons, newest first."""


_POLICY = "id, graph_id, enabled, body, created_at_ms, updated_at_ms"
_COMPARISON = "shadow_run_id, policy_id, primary_run_id, body, created_at_ms"


class SQLShadows:
    """A `ShadowTable` in the store's database, run by its dialect's `sql.Runner`."""

    def __init__(self, runner: sql.Runner, workspace: str) -> None:
        self._runner = runner
        self.workspace = workspace

    def for_workspace(self, workspace: str) -> Self:
        view = copy.copy(self)
        view.workspace = workspace
        return view

    async def put_policy(self, row: PolicyRow) -> PolicyRow:
        return await self._runner.write(_put_policy, self.workspace, row)

    async def get_policy(self, policy_id: str) -> PolicyRow | None:
        found = await self._runner.read(_policies, self.workspace, " AND id = ?", policy_id)
        return found[0] if found else None

    async def policies(self, graph_id: str | None = None) -> list[PolicyRow]:
        where, params = ("", []) if graph_id is None else (" AND graph_id = ?", [graph_id])
        order = " ORDER BY created_at_ms DESC, id DESC"
        return await self._runner.read(_policies, self.workspace, where + order, *params)

    async def active_policy(self, graph_id: str) -> PolicyRow | None:
        where = " AND graph_id = ? AND enabled = 1"
        found = await self._runner.read(_policies, self.workspace, where, graph_id)
        return found[0] if found else None

    async def put_comparison(self, row: ComparisonRow) -> None:
        await self._runner.write(_put_comparison, self.workspace, row)

    async def comparison(self, shadow_run_id: str) -> ComparisonRow | None:
        where = " AND shadow_run_id = ?"
        found = await self._runner.read(_comparisons, self.workspace, where, shadow_run_id)
        return found[0] if found else None

    async def comparisons(self, policy_id: str, *, limit: int = 1000) -> list[ComparisonRow]:
        where = " AND policy_id = ? ORDER BY created_at_ms DESC, shadow_run_id DESC LIMIT ?"
        return await self._runner.read(_comparisons, self.workspace, where, policy_id, limit)


def _put_policy(ws: str, row: PolicyRow) -> sql.Body[PolicyRow]:
    yield from sql.lock(ws, POLICY_LOCK_PREFIX + row.graph_id)
    if row.enabled:
        yield from sql.count(
            "UPDATE shadow_policies SET enabled = 0, updated_at_ms = ?"
            " WHERE workspace = ? AND graph_id = ? AND enabled = 1 AND id <> ?",
            row.updated_at_ms,
            ws,
            row.graph_id,
            row.id,
        )
    yield from sql.count(
        f"INSERT INTO shadow_policies (workspace, {_POLICY}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (workspace, id) DO UPDATE SET graph_id = excluded.graph_id,"
        " enabled = excluded.enabled, body = excluded.body,"
        " updated_at_ms = excluded.updated_at_ms",
        ws,
        row.id,
        row.graph_id,
        1 if row.enabled else 0,
        json.dumps(row.body).decode(),
        row.created_at_ms,
        row.updated_at_ms,
    )
    stored = yield from _policies(ws, " AND id = ?", row.id)
    return stored[0]


def _policies(ws: str, where: str, *params: Any) -> sql.Body[list[PolicyRow]]:
    found = yield from sql.rows(
        f"SELECT {_POLICY} FROM shadow_policies WHERE workspace = ?" + where, ws, *params
    )
    return [_policy(r) for r in found]


def _policy(r: Sequence[Any]) -> PolicyRow:
    body = json.loads(str(r[3]))
    return PolicyRow(
        id=str(r[0]),
        graph_id=str(r[1]),
        enabled=bool(r[2]),
        body=body if isinstance(body, dict) else {},
        created_at_ms=int(r[4]),
        updated_at_ms=int(r[5]),
    )


def _put_comparison(ws: str, row: ComparisonRow) -> sql.Body[int]:
    return sql.count(
        f"INSERT INTO shadow_comparisons (workspace, {_COMPARISON}) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (workspace, shadow_run_id) DO UPDATE SET body = excluded.body",
        ws,
        row.shadow_run_id,
        row.policy_id,
        row.primary_run_id,
        json.dumps(row.body).decode(),
        row.created_at_ms,
    )


def _comparisons(ws: str, where: str, *params: Any) -> sql.Body[list[ComparisonRow]]:
    found = yield from sql.rows(
        f"SELECT {_COMPARISON} FROM shadow_comparisons WHERE workspace = ?" + where, ws, *params
    )
    return [_comparison(r) for r in found]


def _comparison(r: Sequence[Any]) -> ComparisonRow:
    body = json.loads(str(r[3]))
    return ComparisonRow(
        shadow_run_id=str(r[0]),
        policy_id=str(r[1]),
        primary_run_id=str(r[2]),
        body=body if isinstance(body, dict) else {},
        created_at_ms=int(r[4]),
    )
