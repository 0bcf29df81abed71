"""Shadow policies: which candidate runs beside a graph's live runs, for which share of them,
and the cutover to it.

A policy names a graph and a candidate: another saved version (`candidate_version`), or the
version each primary run uses with `overrides` (``{"<node id>.<field path>": value}``, e.g.
``{"classify.model": "fake/summarize"}``), or both. `rate` is the share of the graph's runs
that get a shadow, decided by run id (the same run always decides the same way). At most one
policy of a graph is enabled; enabling one disables the others.

`promote` makes the candidate the graph's current version (an overridden candidate is saved
as a new version first) and disables the policy; `rollback` makes the version current again
that was current before the promotion. The policy, its comparisons and its report remain.

Example::

    policies = runtime.shadow_policies()
    policy = await policies.create("ticket-triage", overrides={"classify.model": "fake/echo"},
                                   rate=0.1)
    await policies.promote(policy.id)           # the candidate is now the current version
    await policies.rollback(policy.id)          # and the previous one again
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from inferpipe.core.experiments import unit_hash
from inferpipe.core.ids import new_id
from inferpipe.store.shadows import PolicyRow, ShadowTable
from inferpipe.workflows import spec
from inferpipe.workflows.compile import ExecutionPlan, compile_graph
from inferpipe.workflows.errors import (
    GraphInvalidError,
    ShadowPolicyInvalidError,
    ShadowPolicyNotFoundError,
    ShadowStateError,
)
from inferpipe.workflows.graphstore import MAX_VERSION, GraphStore
from inferpipe.workflows.validate import ValidationOptions

MAX_OVERRIDES = 50
"""Overrides one policy may carry."""
MAX_POLICY_ID_CHARS = 128


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Promotion(_Frozen):
    """A cutover: `version` became current, replacing `previous_version`."""

    version: int
    previous_version: int
    promoted_at_ms: int
    rolled_back_at_ms: int | None = None


class ShadowPolicy(_Frozen):
    """A graph's shadow policy (see the module docstring)."""

    id: str
    graph_id: str
    candidate_version: int | None = None
    """None: each primary run's own version (with `overrides`)."""
    overrides: dict[str, Any] = {}
    rate: float = 1.0
    enabled: bool = True
    call_nodes: tuple[str, ...] = ()
    """Nodes with side effects (`http`, side-effect tasks, waits) that call for real in the
    shadow; every other one reuses the primary's recorded output."""
    created_at_ms: int = 0
    updated_at_ms: int = 0
    promotion: Promotion | None = None

    def samples(self, run_id: str) -> bool:
        """Whether the primary run `run_id` gets a shadow (deterministic per run id)."""
        return unit_hash("shadow", self.id, run_id) < self.rate

    def describe(self) -> str:
        """The candidate in words, e.g. ``version 3 + 1 override``."""
        base = (
            "the run's version"
            if self.candidate_version is None
            else (f"version {self.candidate_version}")
        )
        count = len(self.overrides)
        return base + (f" + {count} override{'s' if count != 1 else ''}" if count else "")


def apply_overrides(document: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a graph document with each ``<node id>.<field path>`` set to its value.

    Raises:
        ShadowPolicyInvalidError: naming every path that does not lead into a node.
    """
    result = copy.deepcopy(dict(document))
    nodes = {node.get("id"): node for node in result.get("nodes", []) if isinstance(node, dict)}
    problems = []
    for path, value in overrides.items():
        node_id, _, field_path = path.partition(".")
        parts = field_path.split(".") if field_path else []
        if node_id not in nodes:
            known = ", ".join(sorted(str(n) for n in nodes))
            problems.append(f"overrides.{path}: the graph has no node {node_id!r} ({known})")
            continue
        if not parts or any(not part for part in parts):
            problems.append(f"overrides.{path}: name a field of the node: <node id>.<field>")
            continue
        target: Any = nodes[node_id]
        for part in parts[:-1]:
            target = target.setdefault(part, {}) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            problems.append(f"overrides.{path}: {'.'.join(parts[:-1])!r} is not an object")
            continue
        target[parts[-1]] = copy.deepcopy(value)
    if problems:
        raise ShadowPolicyInvalidError(problems)
    return result


def candidate_graph(base: spec.Graph, overrides: Mapping[str, Any]) -> spec.Graph:
    """`base` with `overrides` applied (unversioned), parsed.

    Raises:
        ShadowPolicyInvalidError: a path leads nowhere, or the result is not a graph.
    """
    if not overrides:
        return base.model_copy(update={"version": None})
    document = base.model_dump(mode="json", by_alias=True, exclude={"version"})
    try:
        return spec.parse_graph(apply_overrides(document, overrides))
    except GraphInvalidError as exc:
        raise ShadowPolicyInvalidError(_problems(exc)) from None


def compile_candidate(
    base: spec.Graph, base_version: int, overrides: Mapping[str, Any], options: ValidationOptions
) -> ExecutionPlan:
    """The execution plan of `base` with `overrides`, validated like a save.

    Raises:
        ShadowPolicyInvalidError: listing every problem of the overridden graph.
    """
    try:
        plan = compile_graph(candidate_graph(base, overrides), options)
    except GraphInvalidError as exc:
        raise ShadowPolicyInvalidError(_problems(exc)) from None
    return plan.model_copy(update={"graph_version": base_version})


def _problems(exc: GraphInvalidError) -> list[str]:
    return [f"overrides: {problem}" for problem in exc.problems]


class ShadowPolicies:
    """A workspace's shadow policies, checked against its saved graphs.

    Args:
        graphs: the workspace's graph versions.
        table: where policies are kept (`store.shadows`).
        options: what candidates are validated against (the runtime's models and tasks).
        clock: milliseconds since the epoch.
    """

    def __init__(
        self,
        graphs: GraphStore,
        table: ShadowTable,
        options: ValidationOptions,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.graphs = graphs
        self.table = table
        self.options = options
        self._clock = clock or (lambda: int(time.time() * 1000))

    async def create(
        self,
        graph_id: str,
        *,
        candidate_version: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        rate: float = 1.0,
        enabled: bool = True,
        call_nodes: Iterable[str] = (),
        policy_id: str | None = None,
    ) -> ShadowPolicy:
        """Check and store a new policy (enabled: the graph's other policies are disabled).

        Raises:
            GraphNotFoundError: no such graph, or no such candidate version.
            ShadowPolicyInvalidError: every field at fault (rate, overrides, call_nodes).
        """
        now = self._clock()
        policy = ShadowPolicy(
            id=policy_id or new_id(),
            graph_id=graph_id,
            candidate_version=candidate_version,
            overrides=dict(overrides or {}),
            rate=_rate(rate),
            enabled=enabled,
            call_nodes=tuple(dict.fromkeys(call_nodes)),
            created_at_ms=now,
            updated_at_ms=now,
        )
        await self._check(policy)
        return await self._put(policy)

    async def update(
        self,
        policy_id: str,
        *,
        rate: float | None = None,
        enabled: bool | None = None,
        call_nodes: Iterable[str] | None = None,
    ) -> ShadowPolicy:
        """Change a policy's rate, on/off switch or real-call nodes.

        Raises:
            ShadowPolicyNotFoundError: no such policy.
            ShadowPolicyInvalidError: a field at fault.
        """
        policy = await self.get(policy_id)
        changes: dict[str, Any] = {"updated_at_ms": self._clock()}
        if rate is not None:
            changes["rate"] = _rate(rate)
        if enabled is not None:
            changes["enabled"] = enabled
        if call_nodes is not None:
            changes["call_nodes"] = tuple(dict.fromkeys(call_nodes))
        updated = policy.model_copy(update=changes)
        if call_nodes is not None:
            await self._check(updated)
        return await self._put(updated)

    async def get(self, policy_id: str) -> ShadowPolicy:
        """The policy; ShadowPolicyNotFoundError when there is none with that id."""
        row = await self.table.get_policy(policy_id)
        if row is None:
            raise ShadowPolicyNotFoundError(f"no shadow policy with id {policy_id!r}")
        return policy_from(row)

    async def list(self, graph_id: str | None = None) -> list[ShadowPolicy]:
        """Every policy (of one graph when given), newest first."""
        return [policy_from(row) for row in await self.table.policies(graph_id)]

    async def active(self, graph_id: str) -> ShadowPolicy | None:
        """The graph's enabled policy, if any."""
        row = await self.table.active_policy(graph_id)
        return None if row is None else policy_from(row)

    async def plan(self, policy: ShadowPolicy, primary_version: int) -> ExecutionPlan:
        """The candidate's plan for a primary run of `primary_version`."""
        base_version = policy.candidate_version or primary_version
        base = await self.graphs.get(policy.graph_id, base_version)
        if not policy.overrides:
            return base.plan
        return compile_candidate(base.graph, base_version, policy.overrides, self.options)

    async def promote(self, policy_id: str) -> ShadowPolicy:
        """Make the candidate the graph's current version and disable the policy; an
        overridden candidate is first saved as the graph's next version.

        Raises:
            ShadowPolicyNotFoundError: no such policy.
            ShadowStateError: it is promoted already (roll it back first).
            ShadowPolicyInvalidError: the candidate no longer validates.
        """
        policy = await self.get(policy_id)
        if policy.promotion is not None and policy.promotion.rolled_back_at_ms is None:
            raise ShadowStateError(
                f"shadow policy {policy_id!r} is promoted already (version "
                f"{policy.promotion.version}); roll it back first"
            )
        current = await self.graphs.get(policy.graph_id)
        base_version = policy.candidate_version or current.info.version
        if policy.overrides:
            base = await self.graphs.get(policy.graph_id, base_version)
            graph = candidate_graph(base.graph, policy.overrides)
            try:
                saved = await self.graphs.save(graph, options=self.options)
            except GraphInvalidError as exc:
                raise ShadowPolicyInvalidError(_problems(exc)) from None
            version = saved.version.info.version
        else:
            version = (await self.graphs.rollback(policy.graph_id, base_version)).version
        now = self._clock()
        promotion = Promotion(
            version=version, previous_version=current.info.version, promoted_at_ms=now
        )
        update = {"promotion": promotion, "enabled": False, "updated_at_ms": now}
        return await self._put(policy.model_copy(update=update))

    async def rollback(self, policy_id: str) -> ShadowPolicy:
        """Make the version current again that the promotion replaced.

        Raises:
            ShadowPolicyNotFoundError: no such policy.
            ShadowStateError: it was not promoted, or is rolled back already.
        """
        policy = await self.get(policy_id)
        promotion = policy.promotion
        if promotion is None or promotion.rolled_back_at_ms is not None:
            state = "was never promoted" if promotion is None else "is rolled back already"
            raise ShadowStateError(f"shadow policy {policy_id!r} {state}")
        await self.graphs.rollback(policy.graph_id, promotion.previous_version)
        now = self._clock()
        done = promotion.model_copy(update={"rolled_back_at_ms": now})
        return await self._put(policy.model_copy(update={"promotion": done, "updated_at_ms": now}))

    async def _check(self, policy: ShadowPolicy) -> None:
        problems = []
        if not policy.id or len(policy.id) > MAX_POLICY_ID_CHARS:
            problems.append(f"id: 1 to {MAX_POLICY_ID_CHARS} characters")
        if policy.candidate_version is not None and not 1 <= policy.candidate_version <= (
            MAX_VERSION
        ):
            problems.append("candidate_version: a saved version number (>= 1)")
        if policy.candidate_version is None and not policy.overrides:
            problems.append(
                "candidate_version/overrides: name a candidate (another version, or overrides)"
            )
        if len(policy.overrides) > MAX_OVERRIDES:
            problems.append(f"overrides: at most {MAX_OVERRIDES}")
        if problems:
            raise ShadowPolicyInvalidError(problems)
        base = await self.graphs.get(policy.graph_id, policy.candidate_version)
        plan = compile_candidate(base.graph, base.info.version, policy.overrides, self.options)
        unknown = [n for n in policy.call_nodes if n not in plan.nodes]
        if unknown:
            known = ", ".join(sorted(plan.nodes))
            raise ShadowPolicyInvalidError(
                [f"call_nodes: the candidate has no node {n!r} ({known})" for n in unknown]
            )

    async def _put(self, policy: ShadowPolicy) -> ShadowPolicy:
        body = policy.model_dump(mode="json", exclude={"id", "graph_id", "enabled"})
        row = PolicyRow(
            id=policy.id,
            graph_id=policy.graph_id,
            enabled=policy.enabled,
            body=body,
            created_at_ms=policy.created_at_ms,
            updated_at_ms=policy.updated_at_ms,
        )
        return policy_from(await self.table.put_policy(row))


def policy_from(row: PolicyRow) -> ShadowPolicy:
    """A policy from its stored row."""
    fields = {k: v for k, v in row.body.items() if k not in ("created_at_ms", "updated_at_ms")}
    return ShadowPolicy(
        id=row.id,
        graph_id=row.graph_id,
        enabled=row.enabled,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
        **fields,
    )


def _rate(rate: Any) -> float:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or math.isnan(rate):
        raise ShadowPolicyInvalidError([f"rate: a number from 0 to 1, got {rate!r}"])
    if not 0 <= rate <= 1:
        raise ShadowPolicyInvalidError([f"rate: must be within [0, 1], got {rate}"])
    return float(rate)
