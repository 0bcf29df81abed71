"""The shadow run: the function `workflow-shadow`, started when a sampled primary finalizes.

Its input is what the primary planned (graph, version, the policy's candidate, the primary's
input); `ctx.parent` is the primary. Steps:

1. ``resolve-candidate``: the candidate's plan (another version, or the primary's version with
   overrides), fixed for replays by its content hash;
2. ``shadow-primary-outputs`` (when the candidate has http, task or wait nodes): the primary's
   recorded outputs of side-effect nodes, which the shadow's nodes of those kinds return
   instead of calling out (`guard`);
3. the candidate's nodes, as in any graph run;
4. ``shadow-compare``: per node and per run, written to the store (`store.shadows`).

The function is quiet (no lifecycle events: nothing triggered, no webhook), queued at a lower
priority than graph runs and bounded by its own concurrency limit. A candidate that fails
still gets its comparison; the shadow run then fails with the candidate's error.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

import orjson

from inferpipe.core.errors import error_payload
from inferpipe.core.records import StepStatus
from inferpipe.engine.context import Context
from inferpipe.engine.engine import Engine
from inferpipe.store.base import Store
from inferpipe.store.payloads import Payloads
from inferpipe.store.shadows import ComparisonRow
from inferpipe.workflows.compile import ExecutionPlan
from inferpipe.workflows.errors import PlanIntegrityError
from inferpipe.workflows.shadow.compare import compare_runs
from inferpipe.workflows.shadow.guard import GUARDED_TYPES, ShadowGuard
from inferpipe.workflows.shadow.policy import ShadowPolicies, ShadowPolicy

SHADOW_FUNCTION_ID = "workflow-shadow"
"""The function of every shadow run."""
SHADOW_PRIORITY = "-600"
"""Shadow runs queue as if enqueued 600 s later than graph runs (the most the engine allows):
they take worker slots only when no primary waits."""
RESOLVE_CANDIDATE_STEP = "resolve-candidate"
PRIMARY_OUTPUTS_STEP = "shadow-primary-outputs"
COMPARE_STEP = "shadow-compare"
CANDIDATE_CACHE_SIZE = 64
"""Compiled candidates kept per process."""


class ShadowHost(Protocol):
    """What a shadow run needs of the workflow runtime."""

    side_effect_tasks: set[str]

    @property
    def engine(self) -> Engine: ...

    def store_for(self, workspace: str | None = None) -> Store: ...

    def shadow_policies(self, workspace: str | None = None) -> ShadowPolicies: ...

    def cached_plan(self, key: tuple[str, int, str]) -> ExecutionPlan | None: ...

    def remember(self, plan: ExecutionPlan) -> None: ...

    async def run_plan(
        self, ctx: Context, plan: ExecutionPlan, input_data: Any, guard: ShadowGuard
    ) -> dict[str, Any]: ...


class ShadowRun:
    """Executes shadow runs for a `ShadowHost` (the workflow runtime)."""

    def __init__(self, host: ShadowHost) -> None:
        self._host = host
        # Compiled candidates by (workspace, graph, base version, overrides): compiling is
        # the costliest part of a shadow's start, and a policy's candidate does not change.
        self._candidates: OrderedDict[tuple[str, ...], ExecutionPlan] = OrderedDict()

    async def execute(self, ctx: Context) -> Any:
        """The handler of `workflow-shadow`."""
        data = ctx.input if isinstance(ctx.input, dict) else {}
        primary_id = str((ctx.parent or {}).get("run_id", ""))
        decision = data.get("shadow") or {}
        policy = ShadowPolicy(
            id=str(decision.get("id", "")),
            graph_id=str(data.get("graph_id", "")),
            candidate_version=decision.get("candidate_version"),
            overrides=decision.get("overrides") or {},
            call_nodes=tuple(decision.get("call_nodes") or ()),
        )
        policies = self._host.shadow_policies(ctx.workspace)
        primary_version = int(data.get("version", 0))

        async def resolve() -> dict[str, Any]:
            plan = await self._candidate(ctx.workspace, policy, policies, primary_version)
            self._host.remember(plan)
            return {
                "graph_id": plan.graph_id,
                "version": plan.graph_version,
                "content_hash": plan.content_hash,
                "candidate": policy.describe(),
            }

        ref = await ctx.step.run(RESOLVE_CANDIDATE_STEP, resolve, _input=decision)
        plan = await self._plan(ref, policy, policies, primary_version)
        store = self._host.store_for(ctx.workspace)

        async def primary_outputs() -> dict[str, Any]:
            return await _guarded_outputs(store, self._payloads(store), plan, primary_id)

        recorded: dict[str, Any] = {}
        if any(node.type in GUARDED_TYPES for node in plan.nodes.values()):
            recorded = await ctx.step.run(
                PRIMARY_OUTPUTS_STEP, primary_outputs, _input={"primary_run_id": primary_id}
            )
        guard = ShadowGuard(
            primary_id,
            recorded,
            frozenset(policy.call_nodes),
            frozenset(self._host.side_effect_tasks),
        )
        output: Any = None
        failure: Exception | None = None
        try:
            output = await self._host.run_plan(ctx, plan, data.get("input") or {}, guard)
        except Exception as exc:  # the candidate's failure is a finding: compare, then fail
            failure = exc
        shadow = {
            "status": "completed" if failure is None else "failed",
            "output": output,
            "error": None if failure is None else error_payload(failure),
            "version": ref["version"],
            "candidate": ref["candidate"],
        }

        async def compare() -> dict[str, Any]:
            return await self._compare(ctx, store, policy, primary_id, data, shadow)

        await ctx.committed()  # the comparison reads this run's node steps from the store
        await ctx.step.run(COMPARE_STEP, compare, _input={"primary_run_id": primary_id})
        if failure is not None:
            raise failure
        return output

    async def _plan(
        self,
        ref: dict[str, Any],
        policy: ShadowPolicy,
        policies: ShadowPolicies,
        primary_version: int,
    ) -> ExecutionPlan:
        key = (str(ref["graph_id"]), int(ref["version"]), str(ref["content_hash"]))
        plan = self._host.cached_plan(key)
        if plan is not None:
            return plan
        plan = await policies.plan(policy, primary_version)
        if plan.content_hash != key[2]:
            raise PlanIntegrityError(
                f"the candidate of shadow policy {policy.id!r} no longer compiles to the plan "
                f"this shadow run started with (content hash {key[2][:12]})"
            )
        self._host.remember(plan)
        return plan

    async def _candidate(
        self, workspace: str, policy: ShadowPolicy, policies: ShadowPolicies, version: int
    ) -> ExecutionPlan:
        overrides = orjson.dumps(policy.overrides, option=orjson.OPT_SORT_KEYS).decode()
        base = str(policy.candidate_version or version)
        key = (workspace, policy.graph_id, base, overrides)
        plan = self._candidates.get(key)
        if plan is None:
            plan = await policies.plan(policy, version)
            self._candidates[key] = plan
            if len(self._candidates) > CANDIDATE_CACHE_SIZE:
                self._candidates.popitem(last=False)
        return plan

    def _payloads(self, store: Store) -> Payloads:
        limits = self._host.engine.runs.limits
        return Payloads(store.blobs, store.workspace, limits.offload_bytes)

    async def _compare(
        self,
        ctx: Context,
        store: Store,
        policy: ShadowPolicy,
        primary_id: str,
        data: dict[str, Any],
        shadow: dict[str, Any],
    ) -> dict[str, Any]:
        run = await store.get_run(primary_id)
        primary_steps = await store.get_steps(primary_id)
        shadow_steps = await store.get_steps(ctx.run_id)
        payloads = self._payloads(store)
        primary = {
            "status": run.status.value if run else "missing",
            "output": await payloads.resolve(run.output) if run else None,
            "error": run.error if run else None,
            "version": data.get("version"),
        }
        body = compare_runs(primary, shadow, primary_steps, shadow_steps)
        body.update(policy_id=policy.id, graph_id=policy.graph_id)
        now = self._host.engine.clock.now_ms()
        await store.shadows.put_comparison(
            ComparisonRow(ctx.run_id, policy.id, primary_id, body, now)
        )
        return {"equal": body["equal"], "differences": body["differences"]}


async def _guarded_outputs(
    store: Store, payloads: Payloads, plan: ExecutionPlan, primary_id: str
) -> dict[str, Any]:
    """The primary's completed outputs of nodes that may stand in, by step name (whole: an
    offloaded output is read back)."""
    names = [n.step_name for n in plan.nodes.values() if n.type in GUARDED_TYPES]
    found = {}
    for step in await store.get_steps(primary_id):
        if step.meta.get("skipped"):
            continue  # a node the primary's branch skipped: it has no output to reuse
        if step.status is StepStatus.COMPLETED and any(
            step.name == name or step.name.startswith(name + "-") for name in names
        ):
            found[step.name] = await payloads.resolve(step.output)
    return found
