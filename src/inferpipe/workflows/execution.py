"""One run of a compiled plan: ready nodes start at once, in parallel, each as its own task.

The schedule follows `PlanCursor` (the reference semantics of readiness and skips): when a node
completes, its dependents whose inputs are now all decided start in the same turn of the event
loop (no wave barrier: a slow node delays only what depends on it). Skipped nodes get a step
record saying why. A failed node stops new nodes from starting; the nodes already running
finish (and are recorded), then the run fails naming the node.

Replays (after a wait, a retry's backoff, a crash, or a re-run from the failed step) rebuild the
same schedule: recorded steps return their outputs at once and only unrecorded work runs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from typing import Any

from inferpipe.core.errors import StepError
from inferpipe.workflows import _refs
from inferpipe.workflows.compile import ExecutionPlan, PlanNode
from inferpipe.workflows.errors import ExpressionFailedError, NodeFailedError
from inferpipe.workflows.nodes import NodeRunner, evaluate_cel
from inferpipe.workflows.schedule import NodeOutcome, PlanCursor


class GraphExecution:
    """Executes `plan` with `runner`; `run()` returns the graph's mapped output."""

    def __init__(
        self, plan: ExecutionPlan, runner: NodeRunner, input_data: Any, outputs: dict[str, Any]
    ) -> None:
        self.plan = plan
        self.cursor = PlanCursor(plan)
        self.outputs = outputs
        """Node id -> output of each decided node (None when skipped); the runner reads it."""
        self._runner = runner
        self._input = input_data
        self._tasks: set[asyncio.Task[None]] = set()
        self._skips_recorded: set[str] = set()
        self._failures: dict[str, BaseException] = {}
        self._interrupt: BaseException | None = None
        self._settled = asyncio.Event()

    async def run(self) -> dict[str, Any]:
        """Run every node; return the output mapping's values.

        Raises:
            NodeFailedError: a node failed after its retries (the first in plan order).
            ExpressionFailedError: an output expression failed.
        """
        self._advance()
        try:
            await self._settled.wait()
        finally:
            # The engine suspends a run by cancelling it: parked nodes must go with it.
            for task in list(self._tasks):
                task.cancel()
        if self._interrupt is not None:
            raise self._interrupt
        for node_id in self.cursor.failed:
            raise _node_failure(self.plan.nodes[node_id], self._failures[node_id])
        return await self._mapped_output()

    def _advance(self) -> None:
        """Start the ready nodes and record new skips; note when nothing is left to do."""
        if self._interrupt is None:
            # Skips first: tasks start in spawn order, so a skip is recorded before the nodes
            # that became ready in the same decision (records keep the dependency order).
            for node_id, outcome in self.cursor.outcomes.items():
                if outcome is NodeOutcome.SKIPPED and node_id not in self._skips_recorded:
                    self._skips_recorded.add(node_id)
                    self.outputs[node_id] = None  # a skipped dependency reads as null
                    self._spawn(self._record_skip(self.plan.nodes[node_id]))
            for node_id in self.cursor.ready():
                self._spawn(self._run_node(self.cursor.start(node_id)))
        self._check_settled()

    def _check_settled(self) -> None:
        # An interrupt (cancel, drain) ends the run at once: parked nodes would never finish.
        if self._interrupt is not None or (not self._tasks and self.cursor.finished):
            self._settled.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._check_settled()

    async def _run_node(self, node: PlanNode) -> None:
        try:
            result = await self._runner.run(node)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failures[node.id] = exc
            self.cursor.fail(node.id)
        except BaseException as exc:  # engine control flow: cancel, suspend, lease lost
            self._interrupt = self._interrupt or exc
        else:
            self.outputs[node.id] = result.output
            self.cursor.complete(node.id, arm=result.arm)
        self._advance()

    async def _record_skip(self, node: PlanNode) -> None:
        try:
            await self._runner.record_skip(node, self._skip_reason(node))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._interrupt = self._interrupt or exc
            self._check_settled()

    def _skip_reason(self, node: PlanNode) -> str:
        outcomes = self.cursor.outcomes
        if node.branch is not None:
            if outcomes.get(node.branch) is NodeOutcome.SKIPPED:
                return f"its branch {node.branch!r} was skipped"
            arm = self.cursor.choices[node.branch]
            chosen = self.plan.branches[node.branch].arms[arm]
            condition = f"case {chosen.when!r}" if chosen.when is not None else "the else arm"
            return f"branch {node.branch!r} chose {condition}, which does not include it"
        deps = ", ".join(repr(dep) for dep in node.depends_on)
        return f"every node it depends on was skipped ({deps})"

    async def _mapped_output(self) -> dict[str, Any]:
        mapped = {}
        for key, source in self.plan.output.items():
            # Only the nodes it reads: CEL converts every variable it is given, each time.
            nodes = {ref: {"output": self.outputs.get(ref)} for ref in _node_refs(source)}
            try:
                mapped[key] = await evaluate_cel(source, {"input": self._input, "nodes": nodes})
            except ExpressionFailedError as exc:
                raise ExpressionFailedError(f"output {key!r}: {exc}") from None
        return mapped


@functools.lru_cache(maxsize=4096)
def _node_refs(source: str) -> frozenset[str]:
    """The node ids an expression of the output mapping reads."""
    return frozenset(_refs.scan(_refs.Expression("cel", source, "", _refs.BASE_SCOPE)).nodes)


def _node_failure(node: PlanNode, exc: BaseException) -> NodeFailedError:
    if isinstance(exc, StepError):
        kind = f"{exc.error_type}: " if exc.error_type else ""
        return NodeFailedError(node.id, node.step_name, f"{kind}{exc.error_message}")
    return NodeFailedError(node.id, node.step_name, f"{type(exc).__name__}: {exc}")
