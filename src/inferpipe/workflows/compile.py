"""Compile a validated graph into an ExecutionPlan: what a generic durable function interprets.

The plan is plain data (JSON-serializable, frozen) and carries, per node: its step name
``node-<id>-<type>``, its dependencies (from edges, branch targets *and* references in templates
and expressions), its topological level, the branch that must choose it, and its definition
with templates verbatim — so secret references stay references and no secret value is ever in
the plan. A content hash (sha256 over canonical JSON) identifies the plan's content.

Skip semantics a runtime follows (see `schedule.PlanCursor`, the reference implementation):

- a node is decided once all its dependencies are decided (completed or skipped);
- a branch target is skipped unless its branch completed and chose an arm listing it;
- any other node is skipped when it has dependencies and all of them were skipped;
- otherwise it runs; a skipped dependency's output reads as null.

Example::

    plan = compile_graph(load_graph(text))
    plan.ready_nodes(done=set())          # the nodes that can start at once
    ExecutionPlan.from_json(plan.model_dump_json())   # round-trips, verifying the hash
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from inferpipe.workflows import _dag, spec
from inferpipe.workflows._index import GraphIndex, branch_targets, index_graph
from inferpipe.workflows.errors import GraphInvalidError, PlanIntegrityError
from inferpipe.workflows.validate import ValidationOptions, validate_index

PLAN_VERSION: Literal[1] = 1
"""Bumped when the plan's shape or semantics change; a runtime refuses versions it lacks."""

_UNHASHED = frozenset({"content_hash", "graph_version"})
"""A version number says when content was saved, not what it is: equal content, equal hash."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def step_name(node_id: str, node_type: str) -> str:
    """The durable step name of a node: ``node-<id>-<type>``."""
    return f"node-{node_id}-{node_type}"


class PlanNode(_Frozen):
    """One node as the runtime sees it."""

    id: str
    type: spec.NodeType
    step_name: str
    level: int
    """0 for nodes without dependencies, else 1 + the deepest dependency's level."""
    depends_on: tuple[str, ...]
    dependents: tuple[str, ...]
    branch: str | None = None
    """The branch node that must choose this node for it to run."""
    inputs: tuple[str, ...] = ()
    """Input fields its templates and expressions read."""
    secrets: tuple[str, ...] = ()
    """Names of the secrets its templates reference (resolved at run time, never stored)."""
    definition: spec.Node

    def item_step_name(self, index: int) -> str:
        """Step name of a map node's item: ``node-<id>-<item type>-<index>``."""
        if not isinstance(self.definition, spec.MapNode):
            raise ValueError(f"node {self.id!r} is a {self.type} node, not a map")
        return f"node-{self.id}-{self.definition.node.type}-{index}"


class ArmPlan(_Frozen):
    """One arm of a branch: a case (`when` set) or the else arm (`when` None)."""

    when: str | None
    targets: tuple[str, ...]
    owned: tuple[str, ...]
    """Nodes that run only if this arm is chosen (its targets and what only they feed)."""


class BranchPlan(_Frozen):
    """A branch's arms in evaluation order (the else arm last) and the nodes it controls."""

    node_id: str
    arms: tuple[ArmPlan, ...]
    controlled: tuple[str, ...]
    """Nodes this branch's choice may cause to be skipped."""

    async def choose(self, is_true: Callable[[str], Awaitable[bool]]) -> int:
        """Index of the first arm whose condition holds, else of the else arm (the last).
        Conditions are evaluated in order, and only until one holds."""
        for position, arm in enumerate(self.arms):
            if arm.when is None or await is_true(arm.when):
                return position
        return len(self.arms) - 1


class ExecutionPlan(_Frozen):
    """A compiled graph. `nodes` is in topological order (by level, then id)."""

    plan_version: Literal[1] = PLAN_VERSION
    graph_id: str
    graph_name: str
    graph_version: int | None = None
    input_schema: dict[str, Any]
    nodes: dict[str, PlanNode]
    levels: tuple[tuple[str, ...], ...]
    branches: dict[str, BranchPlan]
    output: dict[str, str]
    secrets: tuple[str, ...]
    content_hash: str

    @property
    def order(self) -> tuple[str, ...]:
        """Node ids in topological order."""
        return tuple(self.nodes)

    def ready_nodes(self, done: Collection[str]) -> tuple[str, ...]:
        """Nodes not in `done` whose dependencies are all in `done`, in topological order.

        `done` holds decided nodes (completed or skipped); this is the parallel frontier.
        """
        return tuple(
            node.id
            for node in self.nodes.values()
            if node.id not in done and all(dep in done for dep in node.depends_on)
        )

    def canonical_json(self) -> bytes:
        """Canonical JSON of the hashed content (sorted keys, no whitespace)."""
        return _canonical(self.model_dump(mode="json", exclude=set(_UNHASHED)))

    def verify(self) -> None:
        """Raise PlanIntegrityError unless the content hashes to `content_hash`."""
        actual = hashlib.sha256(self.canonical_json()).hexdigest()
        if actual != self.content_hash:
            raise PlanIntegrityError(
                f"plan for graph {self.graph_id!r} hashes to {actual}, "
                f"not to its recorded {self.content_hash}: it was altered after compilation"
            )

    @classmethod
    def from_json(cls, raw: str | bytes) -> ExecutionPlan:
        """Load a stored plan and verify its content hash."""
        plan = cls.model_validate_json(raw)
        plan.verify()
        return plan


def compile_graph(graph: spec.Graph, options: ValidationOptions | None = None) -> ExecutionPlan:
    """Validate `graph` and compile it.

    Raises:
        GraphInvalidError: listing every problem when the graph is invalid.
    """
    index = index_graph(graph)
    problems = validate_index(index, options or ValidationOptions())
    if problems:
        raise GraphInvalidError(problems, graph_id=graph.id)
    levels = _dag.topological_levels(index.order, index.deps)
    order = sorted(index.nodes, key=lambda node_id: (levels[node_id], node_id))
    dependents = _dag.dependents_of(order, index.deps)
    nodes = {node_id: _plan_node(index, node_id, levels, dependents) for node_id in order}
    branches = {
        node_id: _branch_plan(node_id, definition, nodes)
        for node_id, definition in index.nodes.items()
        if isinstance(definition, spec.BranchNode)
    }
    depth = max(levels.values(), default=-1) + 1
    content: dict[str, Any] = {
        "plan_version": PLAN_VERSION,
        "graph_id": graph.id,
        "graph_name": graph.name,
        "input_schema": graph.input_schema,
        "nodes": nodes,
        "levels": tuple(tuple(n for n in order if levels[n] == lvl) for lvl in range(depth)),
        "branches": dict(sorted(branches.items())),
        "output": graph.output,
        "secrets": tuple(sorted({name for node in nodes.values() for name in node.secrets})),
    }
    draft = ExecutionPlan(**content, graph_version=graph.version, content_hash="")
    digest = hashlib.sha256(draft.canonical_json()).hexdigest()
    return draft.model_copy(update={"content_hash": digest})


def _plan_node(
    index: GraphIndex, node_id: str, levels: Mapping[str, int], dependents: Mapping[str, list[str]]
) -> PlanNode:
    definition = index.nodes[node_id]
    scans = index.scans[node_id]
    owners = index.branch_owners.get(node_id, set())
    return PlanNode(
        id=node_id,
        type=definition.type,
        step_name=step_name(node_id, definition.type),
        level=levels[node_id],
        depends_on=tuple(sorted(index.deps[node_id])),
        dependents=tuple(sorted(dependents.get(node_id, ()))),
        branch=next(iter(owners)) if owners else None,
        inputs=tuple(sorted({name for item in scans for name in item.refs.inputs})),
        secrets=tuple(sorted({name for item in scans for name in item.refs.secrets})),
        definition=definition,
    )


def _branch_plan(
    node_id: str, definition: spec.BranchNode, nodes: Mapping[str, PlanNode]
) -> BranchPlan:
    arm_specs: list[tuple[str | None, list[str]]] = [(c.when, c.then) for c in definition.cases]
    arm_specs.append((None, definition.else_))
    everything = set(branch_targets(definition))
    # Scenario b: arm b is chosen, so every other target is skipped; see what follows.
    skipped_when_chosen = [
        _propagate_skips(nodes, everything - set(targets)) for _, targets in arm_specs
    ]
    arms = []
    for position, (when, targets) in enumerate(arm_specs):
        others = [s for other, s in enumerate(skipped_when_chosen) if other != position]
        owned = set.intersection(*others) if others else set()
        arms.append(
            ArmPlan(when=when, targets=tuple(sorted(set(targets))), owned=_in_order(nodes, owned))
        )
    controlled = set().union(*skipped_when_chosen)
    return BranchPlan(node_id=node_id, arms=tuple(arms), controlled=_in_order(nodes, controlled))


def _propagate_skips(nodes: Mapping[str, PlanNode], seed: set[str]) -> set[str]:
    """Nodes certainly skipped when `seed` is skipped, by the plan's skip semantics."""
    skipped = set(seed)
    for node in nodes.values():  # topological order: dependencies are decided first
        if node.id not in skipped and is_skipped(node, skipped):
            skipped.add(node.id)
    return skipped


def is_skipped(node: PlanNode, skipped: Collection[str]) -> bool:
    """Whether `node` is skipped given the skipped nodes among its decided dependencies.

    Only the branch rule for nodes it owns is not covered here: a branch that completed but
    did not choose its target skips it too (the runtime knows the choice, the plan does not).
    """
    if node.branch is not None and node.branch in skipped:
        return True
    return bool(node.depends_on) and all(dep in skipped for dep in node.depends_on)


def _in_order(nodes: Mapping[str, PlanNode], members: set[str]) -> tuple[str, ...]:
    return tuple(node_id for node_id in nodes if node_id in members)


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
