"""A pure reference scheduler over an ExecutionPlan: which nodes may run now, which are skipped.

A runtime asks `ready()` for the nodes it may start (all of them can run in parallel), reports
each result with `complete()` (a branch also reports the arm it chose) or `fail()`, and asks
again. Resuming a run rebuilds the cursor from the recorded completions and branch choices:
skips are recomputed, so they need not be recorded, and a node that failed runs again.

Example::

    cursor = PlanCursor(plan)
    while not cursor.finished:
        for node_id in cursor.ready():
            cursor.start(node_id)
            ...                                    # run the node's step
            cursor.complete(node_id)               # or complete(node_id, arm=2) for a branch
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum

from inferpipe.workflows.compile import ExecutionPlan, PlanNode


class NodeOutcome(StrEnum):
    """How a node ended in a run."""

    #: The node's step succeeded; its output is recorded.
    COMPLETED = "completed"
    #: The node did not run: its branch did not choose it, or all its dependencies were skipped.
    SKIPPED = "skipped"
    #: The node's step failed after its retries; the run fails naming it.
    FAILED = "failed"


class PlanCursor:
    """The progress of one run over a plan."""

    def __init__(
        self,
        plan: ExecutionPlan,
        *,
        completed: Collection[str] = (),
        choices: Mapping[str, int] | None = None,
    ) -> None:
        """Start a run, or resume one from recorded `completed` nodes and branch `choices`.

        Raises:
            ValueError: when a recorded completion is inconsistent with the plan.
        """
        self.plan = plan
        self._position = {node_id: position for position, node_id in enumerate(plan.nodes)}
        self._remaining = {node.id: len(node.depends_on) for node in plan.nodes.values()}
        self._outcomes: dict[str, NodeOutcome] = {}
        self._choices: dict[str, int] = {}
        self._ready: set[str] = set()
        self._running: set[str] = set()
        for node in plan.nodes.values():
            if not node.depends_on:
                self._settle(node.id)
        recorded = dict(choices or {})
        for node_id in plan.nodes:  # topological order: a completion's deps come first
            if node_id in completed:
                if node_id not in self._ready:
                    raise ValueError(
                        f"recorded completion of node {node_id!r} is inconsistent: "
                        f"it is {self._outcomes.get(node_id, 'not ready')} in this plan"
                    )
                self.complete(node_id, arm=recorded.get(node_id))

    @property
    def outcomes(self) -> Mapping[str, NodeOutcome]:
        """Decided nodes and how they ended."""
        return dict(self._outcomes)

    @property
    def choices(self) -> Mapping[str, int]:
        """Branch node id -> index of the arm it chose."""
        return dict(self._choices)

    @property
    def running(self) -> frozenset[str]:
        """Nodes started and not yet reported."""
        return frozenset(self._running)

    @property
    def failed(self) -> tuple[str, ...]:
        """Nodes that failed, in plan order."""
        return tuple(n for n in self.plan.nodes if self._outcomes.get(n) is NodeOutcome.FAILED)

    @property
    def finished(self) -> bool:
        """All nodes decided, or a node failed and nothing is still running."""
        if self.failed:
            return not self._running
        return len(self._outcomes) == len(self.plan.nodes)

    def ready(self) -> tuple[str, ...]:
        """Nodes that may start now, in plan order; none once a node has failed."""
        if self.failed:
            return ()
        return tuple(sorted(self._ready, key=self._position.__getitem__))

    def start(self, node_id: str) -> PlanNode:
        """Mark a ready node as running and return it."""
        if node_id not in self._ready:
            raise ValueError(f"node {node_id!r} is not ready to start")
        self._ready.discard(node_id)
        self._running.add(node_id)
        return self.plan.nodes[node_id]

    def complete(self, node_id: str, *, arm: int | None = None) -> None:
        """Record a node's success; a branch node passes the index of the arm it chose."""
        if node_id not in self._ready and node_id not in self._running:
            raise ValueError(f"node {node_id!r} is neither ready nor running")
        branch = self.plan.branches.get(node_id)
        if branch is not None:
            if arm is None or not 0 <= arm < len(branch.arms):
                raise ValueError(
                    f"branch {node_id!r} must report an arm in 0..{len(branch.arms) - 1}"
                )
            self._choices[node_id] = arm
        self._ready.discard(node_id)
        self._running.discard(node_id)
        self._outcomes[node_id] = NodeOutcome.COMPLETED
        for dependent in self._release(node_id):
            self._settle(dependent)

    def fail(self, node_id: str) -> None:
        """Record a node's failure after its retries: nothing else becomes ready."""
        if node_id not in self._ready and node_id not in self._running:
            raise ValueError(f"node {node_id!r} is neither ready nor running")
        self._ready.discard(node_id)
        self._running.discard(node_id)
        self._outcomes[node_id] = NodeOutcome.FAILED

    def _release(self, node_id: str) -> list[str]:
        """Dependents of a decided node whose dependencies are now all decided."""
        released = []
        for dependent in self.plan.nodes[node_id].dependents:
            self._remaining[dependent] -= 1
            if self._remaining[dependent] == 0:
                released.append(dependent)
        return released

    def _settle(self, node_id: str) -> None:
        """Make a node whose dependencies are decided ready, or skip it (and cascade)."""
        work = [node_id]
        while work:
            current = work.pop()
            if self._skips(self.plan.nodes[current]):
                self._outcomes[current] = NodeOutcome.SKIPPED
                work.extend(self._release(current))
            else:
                self._ready.add(current)

    def _skips(self, node: PlanNode) -> bool:
        if node.branch is not None:
            if self._outcomes.get(node.branch) is not NodeOutcome.COMPLETED:
                return True
            chosen = self.plan.branches[node.branch].arms[self._choices[node.branch]]
            return node.id not in chosen.targets
        deps = node.depends_on
        return bool(deps) and all(self._outcomes[d] is NodeOutcome.SKIPPED for d in deps)
