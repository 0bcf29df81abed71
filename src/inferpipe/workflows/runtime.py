"""Running saved graphs durably: one generic function, `workflow-run`, interprets any plan.

A run's input names the graph (`graph_id`, and optionally `version` or `content_hash`; the
current version otherwise) and carries the graph's `input`. The version is resolved in the
run's first step, so a replay, a recovery or a re-run uses the version the run started with,
whatever was saved since. Graphs that declare a trigger (an event or a cron schedule) get a
function of their own, `workflow:<graph id>`, which runs the current version.

Versions are kept per workspace, in the app's database (SQLite or PostgreSQL): a run reads the
graphs of its own workspace, so one runtime serves every workspace of a server.

Example::

    app = inferpipe.App("support")
    runtime = WorkflowRuntime(app)                  # versions in the app's SQLite database

    @runtime.task("lookup-customer")
    async def lookup_customer(email: str) -> dict: ...

    async with app:
        await runtime.save(load_graph_file("ticket_triage.json"))
        run_id = await runtime.run("ticket-triage", {"ticket_id": "t1", ...})
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import jsonschema.validators

from inferpipe.core.errors import ConfigurationError
from inferpipe.core.records import StepRecord
from inferpipe.engine.context import Context
from inferpipe.engine.engine import Engine
from inferpipe.engine.flow import flow_control
from inferpipe.engine.functions import (
    AttachedScorer,
    Backoff,
    FunctionDef,
    Trigger,
    on_cron,
    on_event,
)
from inferpipe.llm.providers import ProviderRegistry
from inferpipe.net.egress import EgressPolicy
from inferpipe.net.http import HttpSettings
from inferpipe.store.base import Store
from inferpipe.workflows import spec
from inferpipe.workflows.compile import ExecutionPlan
from inferpipe.workflows.errors import PlanIntegrityError, WorkflowInputError
from inferpipe.workflows.execution import GraphExecution
from inferpipe.workflows.graphstore import GraphStore, SaveResult, saved_graphs
from inferpipe.workflows.nodes import NodeRunner, NodeServices, TaskFunction
from inferpipe.workflows.secret_store import WorkspaceSecrets, workspace_secrets
from inferpipe.workflows.secrets import SecretProvider, SecretResolver
from inferpipe.workflows.shadow.guard import ShadowGuard
from inferpipe.workflows.shadow.policy import ShadowPolicies
from inferpipe.workflows.shadow.run import SHADOW_FUNCTION_ID, SHADOW_PRIORITY, ShadowRun
from inferpipe.workflows.validate import (
    Limits,
    ModelCatalog,
    RegistryModelCatalog,
    ValidationOptions,
)

WORKFLOW_FUNCTION_ID = "workflow-run"
"""The generic function that runs any saved graph."""
TRIGGER_FUNCTION_PREFIX = "workflow:"
"""Functions of graphs with their own trigger are `workflow:<graph id>`."""
RESOLVE_STEP = "resolve-graph"
"""The first step of every run: which version (and plan content) the run executes."""
PLAN_CACHE_SIZE = 256
"""Compiled plans kept parsed in memory (versions are immutable: no invalidation needed)."""

F = TypeVar("F", bound=TaskFunction)


class AppHost(Protocol):
    """What the runtime needs of an application (`inferpipe.App` provides it)."""

    workspace: str
    database: str | None

    def add(self, fn: FunctionDef) -> None: ...

    @property
    def engine(self) -> Engine: ...


_RUNTIMES: weakref.WeakKeyDictionary[Any, WorkflowRuntime] = weakref.WeakKeyDictionary()


class WorkflowRuntime:
    """Registers `workflow-run` on `app` and runs graphs for it.

    Args:
        app: the application whose engine runs the graphs.
        graphs: where versions are saved; by default the app's database, SQLite or
            PostgreSQL (tables of migration 0003), opened with the app. A store given here
            serves other workspaces through its `for_workspace`.
        providers: model providers for `llm` nodes (by default "fake", and "openai").
        secrets: an operator's provider of `secrets.<NAME>` shared by every workspace, read
            when the run's workspace has no secret of that name (e.g.
            ``EnvSecrets(prefix="INFERPIPE_SECRET_")``); None: workspace secrets only.
        http: the network access of `http` nodes (transport, resolver, response size).
        retries: attempts after the first, per node step (the function's retries).
        backoff: delays between a node's attempts.
        limits: size limits graphs are validated against when saved.
        egress: which workspaces' HTTP nodes may reach private addresses (the operator's
            decision; by default `EgressPolicy.from_env()`: nobody unless configured).
        models: the models graphs may use (by default `RegistryModelCatalog(providers)`: each
            provider's own list; pass one with `allow`/`only_allowed` for an allowlist).
        scorers: scorers attached to every graph run, and to every shadow run (`sample(...)`
            for a share of them): a parity report compares their scores.
        shadow_concurrency: shadow runs executing at once in each process's workspace (they
            queue at a lower priority than the graphs' own runs).
    """

    def __init__(
        self,
        app: AppHost,
        graphs: GraphStore | None = None,
        *,
        providers: ProviderRegistry | None = None,
        secrets: SecretProvider | None = None,
        http: HttpSettings | None = None,
        retries: int = 3,
        backoff: Backoff | None = None,
        limits: Limits | None = None,
        egress: EgressPolicy | None = None,
        models: ModelCatalog | None = None,
        scorers: Sequence[FunctionDef | AttachedScorer] = (),
        shadow_concurrency: int = 2,
    ) -> None:
        self.app = app
        self.providers = providers or ProviderRegistry.with_defaults()
        self.retries = retries
        self.backoff = backoff or Backoff()
        self.limits = limits or Limits()
        self.tasks: dict[str, TaskFunction] = {}
        self.side_effect_tasks: set[str] = set()
        """Tasks that stand in for their side effects in shadow runs."""
        self.scorers = [
            s if isinstance(s, AttachedScorer) else AttachedScorer(s.id) for s in scorers
        ]
        self._graphs = graphs
        # Graph stores per workspace, for the store they were made for (an app started again
        # - tests, the CLI - gets stores of its own).
        self._views: tuple[object, dict[str, GraphStore]] = (None, {})
        self._secret_views: tuple[object, WorkspaceSecrets | None] = (None, None)
        resolver = SecretResolver(self._workspace_secret, secrets)
        self.egress = egress or EgressPolicy.from_env()
        self.models = models or RegistryModelCatalog(self.providers)
        self._services = NodeServices(
            self.providers, resolver, http or HttpSettings(), self.tasks, self.egress
        )
        self._plans: OrderedDict[tuple[str, int, str], ExecutionPlan] = OrderedDict()
        app.add(self._function(WORKFLOW_FUNCTION_ID, self._on_invoke, [], "Runs a saved graph."))
        shadow = ShadowRun(self)
        app.add(
            FunctionDef(
                id=SHADOW_FUNCTION_ID,
                handler=shadow.execute,
                retries=retries,
                backoff=self.backoff,
                description="Runs a shadow policy's candidate beside a primary graph run.",
                scorers=list(self.scorers),
                flow=flow_control(concurrency=shadow_concurrency, priority=SHADOW_PRIORITY),
                quiet=True,
            )
        )
        _RUNTIMES[app] = self

    async def _workspace_secret(self, workspace: str, name: str) -> str | None:
        store = self.app.engine.store
        if self._secret_views[0] is not store:
            try:
                found: WorkspaceSecrets | None = workspace_secrets(store)
            except ConfigurationError:
                found = None  # a store of another kind keeps no secrets: the shared ones only
            self._secret_views = (store, found)
        secrets = self._secret_views[1]
        return None if secrets is None else await secrets.value(workspace, name)

    # registration -------------------------------------------------------------------------
    def task(self, name: str | None = None, *, side_effect: bool = False) -> Callable[[F], F]:
        """Register a Python function that `task` nodes call by `name` (default: its name).

        It receives the node's `args` as keyword arguments and returns JSON; it may be sync
        (run in a thread) or async. `side_effect`: it changes the outside world (sends a mail,
        writes a record), so a shadow run does not call it (it reuses the primary's output).
        """

        def register(fn: F) -> F:
            task_name = name or fn.__name__
            if task_name in self.tasks:
                raise ConfigurationError(f"a task named {task_name!r} is already registered")
            self.tasks[task_name] = fn
            if side_effect:
                self.side_effect_tasks.add(task_name)
            return fn

        return register

    def add_trigger(self, graph_id: str, trigger: spec.GraphTrigger) -> str:
        """Register `workflow:<graph_id>`, started by `trigger`; returns the function id.

        Each trigger runs the graph's current version at the time the run starts. Call before
        the app starts (functions are fixed once it runs).
        """
        engine_trigger: Trigger
        if trigger.cron is not None:
            engine_trigger = on_cron(trigger.cron)
        else:
            assert trigger.event is not None  # GraphTrigger has exactly one of the two
            engine_trigger = on_event(trigger.event, trigger.match)
        cron_input = dict(trigger.input)

        async def handler(ctx: Context) -> Any:
            data = cron_input if trigger.cron is not None else ctx.event.data
            return await self.execute(ctx, graph_id, data)

        function_id = TRIGGER_FUNCTION_PREFIX + graph_id
        description = f"Runs graph {graph_id!r} on its trigger."
        self.app.add(self._function(function_id, handler, [engine_trigger], description))
        return function_id

    def add_graph_trigger(self, graph: spec.Graph) -> str | None:
        """Register the trigger `graph` declares, if any; returns the function id."""
        return self.add_trigger(graph.id, graph.trigger) if graph.trigger else None

    def load_saved_triggers(
        self, database: str | Path | None = None, *, workspace: str | None = None
    ) -> list[str]:
        """Register the triggers of the current versions saved in a database (call at import
        time, before the app starts); returns the function ids registered.

        Args:
            database: a `sqlite:///` or `postgresql://` URL or a SQLite file; by default the
                app's database. It is read, not migrated: no tables, no triggers.
            workspace: whose graphs (the app's workspace by default).
        """
        found = saved_graphs(database or self.app.database, workspace or self.app.workspace)
        return [fid for graph in found if (fid := self.add_graph_trigger(graph)) is not None]

    def _function(
        self,
        function_id: str,
        handler: Callable[[Context], Any],
        triggers: list[Trigger],
        description: str,
    ) -> FunctionDef:
        return FunctionDef(
            id=function_id,
            handler=handler,
            triggers=triggers,
            retries=self.retries,
            backoff=self.backoff,
            description=description,
            scorers=list(self.scorers),
        )

    # graphs -------------------------------------------------------------------------------
    @property
    def graphs(self) -> GraphStore:
        """The graph store of the app's workspace (in the app's database unless one was
        given)."""
        return self.graphs_for(None)

    def graphs_for(self, workspace: str | None) -> GraphStore:
        """The graph store of `workspace` (None: the app's), in the same database.

        Raises:
            ConfigurationError: the app's store has no graph store (neither SQLite nor
                PostgreSQL) and none was given, or the one given keeps a single workspace.
        """
        base: GraphStore | Store = (
            self._graphs if self._graphs is not None else self.app.engine.store
        )
        if self._views[0] is not base:
            self._views = (base, {})
        views = self._views[1]
        key = workspace or ""
        found = views.get(key)
        if found is None:
            found = self._graph_store(base, workspace)
            views[key] = found
        return found

    def _graph_store(self, base: GraphStore | Store, workspace: str | None) -> GraphStore:
        if isinstance(base, GraphStore):
            if workspace is None or workspace == self.app.workspace:
                return base
            return base.for_workspace(workspace)
        store = base if workspace in (None, base.workspace) else base.for_workspace(workspace)
        return GraphStore(store.graphs, options=self.validation_options(workspace))

    def validation_options(self, workspace: str | None = None) -> ValidationOptions:
        """Validation against this runtime's providers, registered tasks, limits and the
        egress policy of `workspace` (the app's by default)."""
        return ValidationOptions(
            models=self.models,
            limits=self.limits,
            tasks=tuple(self.tasks),
            private_egress=self.egress.allows_private(workspace or self.app.workspace),
        )

    async def save(
        self, graph: spec.Graph | Mapping[str, Any], *, workspace: str | None = None
    ) -> SaveResult:
        """Validate (against this runtime's models and tasks), compile and save a graph in
        `workspace` (the app's by default).

        Raises:
            GraphInvalidError: listing every problem; nothing is saved.
        """
        graphs = self.graphs_for(workspace)
        return await graphs.save(graph, options=self.validation_options(workspace))

    # runs ---------------------------------------------------------------------------------
    async def run(
        self,
        graph_id: str,
        input_data: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        engine: Engine | None = None,
    ) -> str:
        """Start a run of a saved graph (its current version unless `version`); returns the
        run id. The version is fixed now, and the input checked against the input schema.

        `engine` is the engine of the workspace to run in (the graph is read from it): the
        app's by default; the HTTP API passes the caller's.

        Raises:
            GraphNotFoundError: no such graph or version.
            WorkflowInputError: the input does not match the graph's input schema.
        """
        engine = engine or self.app.engine
        saved = await self.graphs_for(engine.store.workspace).get(graph_id, version)
        data = dict(input_data or {})
        check_input(saved.plan, data)
        request = {
            "graph_id": graph_id,
            "version": saved.info.version,
            "content_hash": saved.info.content_hash,
            "input": data,
        }
        return await engine.runs.invoke(WORKFLOW_FUNCTION_ID, request)

    async def _on_invoke(self, ctx: Context) -> Any:
        data = ctx.event.data
        return await self.execute(
            ctx,
            str(data.get("graph_id", "")),
            data.get("input") or {},
            version=data.get("version"),
            content_hash=data.get("content_hash"),
        )

    async def execute(
        self,
        ctx: Context,
        graph_id: str,
        input_data: Any,
        *,
        version: int | None = None,
        content_hash: str | None = None,
    ) -> dict[str, Any]:
        """Run a graph inside a durable function: resolve its version once, then every node.

        The version is `version`, else the newest with `content_hash`, else the current one,
        among the graphs of the run's workspace.
        """
        graphs = self.graphs_for(_workspace_of(ctx))

        async def resolve() -> dict[str, Any]:
            saved = await graphs.get(graph_id, version, content_hash=content_hash)
            self._remember(saved.plan)
            info = saved.info
            ref = {
                "graph_id": graph_id,
                "version": info.version,
                "content_hash": info.content_hash,
            }
            # Decided once, with the version: a replay or a re-run plans the same shadow.
            shadow = await self._shadow_decision(ctx, graph_id)
            return ref if shadow is None else {**ref, "shadow": shadow}

        ref = await ctx.step.run(RESOLVE_STEP, resolve, _input={"graph_id": graph_id})
        plan = await self._plan(ref, graphs)
        if isinstance(ref.get("shadow"), dict):
            # Recorded with the run's next step; it starts when this run finalizes, in the
            # same transaction, so a crash loses neither (and the shadow reads every output
            # this run recorded, never competing with it while it runs).
            planned = {k: ref[k] for k in ("graph_id", "version", "content_hash", "shadow")}
            ctx.defer("shadow", SHADOW_FUNCTION_ID, {**planned, "input": input_data})
        return await self.run_plan(ctx, plan, input_data)

    def store_for(self, workspace: str | None = None) -> Store:
        """The app's store, for `workspace` (None: the app's)."""
        store = self.app.engine.store
        return store if workspace in (None, store.workspace) else store.for_workspace(workspace)

    def shadow_policies(self, workspace: str | None = None) -> ShadowPolicies:
        """The shadow policies of `workspace` (the app's by default), checked against its
        graphs and this runtime's models and tasks."""
        return ShadowPolicies(
            self.graphs_for(workspace),
            self.store_for(workspace).shadows,
            self.validation_options(workspace),
            clock=self.app.engine.clock.now_ms,
        )

    async def _shadow_decision(self, ctx: Context, graph_id: str) -> dict[str, Any] | None:
        """The candidate of the graph's enabled policy, when it samples this run."""
        policy = await self.shadow_policies(_workspace_of(ctx)).active(graph_id)
        if policy is None or not policy.samples(ctx.run_id):
            return None
        fields = ("id", "candidate_version", "overrides", "call_nodes")
        return policy.model_dump(mode="json", include=set(fields))

    @property
    def engine(self) -> Engine:
        """The app's engine."""
        return self.app.engine

    async def run_plan(
        self, ctx: Context, plan: ExecutionPlan, input_data: Any, guard: ShadowGuard | None = None
    ) -> dict[str, Any]:
        """Run every node of `plan` in the run `ctx` (a shadow run passes its `guard`)."""
        check_input(plan, input_data)
        outputs: dict[str, Any] = {}  # written by the execution, read by the nodes
        runner = NodeRunner(ctx, plan, self._services, input_data, outputs, guard)
        return await GraphExecution(plan, runner, input_data, outputs).run()

    def cached_plan(self, key: tuple[str, int, str]) -> ExecutionPlan | None:
        """A plan parsed before, by (graph id, version, content hash)."""
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
        return plan

    def remember(self, plan: ExecutionPlan) -> None:
        """Keep a plan parsed (a shadow's candidate, e.g.)."""
        self._remember(plan)

    async def _plan(self, ref: Mapping[str, Any], graphs: GraphStore) -> ExecutionPlan:
        """The plan a run resolved, by the graph id, version and content hash it recorded."""
        key = (str(ref["graph_id"]), int(ref["version"]), str(ref.get("content_hash", "")))
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        plan = (await graphs.get(key[0], key[1])).plan
        if key[2] and plan.content_hash != key[2]:
            raise PlanIntegrityError(
                f"version {key[1]} of graph {key[0]!r} is not the one this run started with "
                f"(content hash {plan.content_hash[:12]}, recorded {key[2][:12]})"
            )
        self._remember(plan)
        return plan

    def _remember(self, plan: ExecutionPlan) -> None:
        assert plan.graph_version is not None  # plans from a store carry their version
        # Keyed by content too: two databases may each have a version 1 of a graph.
        self._plans[(plan.graph_id, plan.graph_version, plan.content_hash)] = plan
        if len(self._plans) > PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)


def register_workflows(
    app: AppHost, graphs: GraphStore | None = None, **options: Any
) -> WorkflowRuntime:
    """Register `workflow-run` on `app`; see `WorkflowRuntime` for the options."""
    return WorkflowRuntime(app, graphs, **options)


def runtime_of(app: object) -> WorkflowRuntime | None:
    """The workflow runtime registered on `app`, if any (the CLI uses the app's tasks)."""
    return _RUNTIMES.get(app)


def _workspace_of(ctx: Context) -> str:
    """The workspace of the run `ctx` belongs to (its graphs are that workspace's); from the
    run record, never from the run's input, which a caller could forge."""
    return ctx.workspace


def check_input(plan: ExecutionPlan, input_data: Any) -> None:
    """Raise WorkflowInputError listing every way `input_data` breaks the input schema."""
    validator_class = jsonschema.validators.validator_for(plan.input_schema)
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(input)'}: {error.message}"
        for error in validator_class(plan.input_schema).iter_errors(input_data)
    ]
    if problems:
        raise WorkflowInputError(plan.graph_id, problems)


@dataclass(frozen=True, slots=True)
class RunCost:
    """Tokens and cost of a run, summed over its model-call steps."""

    llm_steps: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """None when a step's cost is unknown (never a silent zero)."""
    unpriced_steps: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def run_cost(steps: Iterable[StepRecord]) -> RunCost:
    """Tokens and cost of a run from its step records (their `usage` and `cost` metadata)."""
    count = input_tokens = output_tokens = unpriced = 0
    total = 0.0
    for step in steps:
        usage, cost = step.meta.get("usage"), step.meta.get("cost")
        if usage is None and cost is None:
            continue
        count += 1
        if isinstance(usage, dict):
            input_tokens += int(usage.get("input_tokens", 0))
            output_tokens += int(usage.get("output_tokens", 0))
        amount = cost.get("amount_usd") if isinstance(cost, dict) else None
        if amount is None:
            unpriced += 1
        else:
            total += float(amount)
    return RunCost(count, input_tokens, output_tokens, None if unpriced else total, unpriced)
