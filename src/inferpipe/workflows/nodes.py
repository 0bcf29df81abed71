"""How each node type runs as durable steps: one step per node, one per map item.

Every node's step is named as the plan says (``node-<id>-<type>``; map items
``node-<id>-<type>-<index>``) and records the values the node read as its input, its output,
and metadata (`node_id`). LLM nodes are model-call steps (`inferpipe.llm.step.chat`): they
record the request and the reply, with the provider, model, tokens and cost; structured
replies that fail validation are re-asked as steps ``<step>:reask-<n>``. A node whose templates
or expressions fail before its step could start still gets a (failed) step record, so the
failure shows where the node is.

A node's `retries` (attempts after the first) applies to its own steps; a map's items use their
item node's `retries`, else the map's; unset, the runtime's retries (the function's) apply.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from inferpipe.core import expr
from inferpipe.core.errors import ExpressionBudgetError
from inferpipe.core.records import StepKind
from inferpipe.engine import sandbox
from inferpipe.engine.context import Context
from inferpipe.llm import step as llm_step
from inferpipe.llm.providers import ProviderRegistry
from inferpipe.llm.types import Message
from inferpipe.net import http as net_http
from inferpipe.net.egress import EgressPolicy
from inferpipe.workflows import _secret_use, spec
from inferpipe.workflows._bind import bind_refs, scrub, scrubbed_error
from inferpipe.workflows.compile import ExecutionPlan, PlanNode
from inferpipe.workflows.errors import ExpressionFailedError, UnknownTaskError, WorkflowError
from inferpipe.workflows.secrets import SecretMisuseError, SecretResolver, placeholders
from inferpipe.workflows.shadow.guard import ShadowGuard
from inferpipe.workflows.templates import TemplateRenderer

TaskFunction = Callable[..., Any]
"""A Python function a `task` node calls by name with keyword arguments (sync or async)."""


@dataclass(slots=True)
class NodeServices:
    """What nodes use at run time: model providers, secrets, the network, registered tasks."""

    providers: ProviderRegistry
    secrets: SecretResolver
    http: net_http.HttpSettings
    tasks: Mapping[str, TaskFunction]
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    renderer: TemplateRenderer = field(default_factory=TemplateRenderer)


@dataclass(frozen=True, slots=True)
class NodeResult:
    """A completed node's output; a branch also reports the index of the arm it chose."""

    output: Any
    arm: int | None = None


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a node body runs: its step, the variables it sees and what its record shows."""

    node_id: str
    step_name: str
    scope: dict[str, Any]
    recorded: dict[str, Any]
    meta: dict[str, Any]
    secrets: tuple[str, ...]
    retries: int | None = None
    """The node's own retries (None: the function's)."""


class NodeRunner:
    """Runs the nodes of one run of a plan against its step API."""

    def __init__(
        self,
        ctx: Context,
        plan: ExecutionPlan,
        services: NodeServices,
        input_data: Any,
        outputs: Mapping[str, Any],
        guard: ShadowGuard | None = None,
    ) -> None:
        self._ctx = ctx
        self._guard = guard
        """Set in a shadow run: side-effect nodes reuse the primary's outputs."""
        self._steps = ctx.step
        self._plan = plan
        self._s = services
        self._input = input_data
        self._outputs = outputs

    async def run(self, node: PlanNode) -> NodeResult:
        """Run `node` (its dependencies are decided; their outputs are in `outputs`)."""
        definition = node.definition
        place = self._place(node)
        if isinstance(definition, spec.BranchNode):
            return await self._branch(node.id, place)
        if isinstance(definition, spec.MapNode):
            return NodeResult(await self._map(node, definition, place))
        if isinstance(definition, spec.WaitNode):
            return NodeResult(await self._wait(definition, place))
        return NodeResult(await self._body(definition, place))

    async def record_skip(self, node: PlanNode, reason: str) -> None:
        """Record that `node` did not run, and why (so a run's timeline shows every node)."""

        async def skipped() -> dict[str, Any]:
            return {"skipped": True, "reason": reason}

        meta = {"node_id": node.id, "node_type": node.type, "skipped": True}
        await self._steps.run(node.step_name, skipped, _input=None, _meta=lambda _: meta)

    def _place(self, node: PlanNode) -> _Place:
        deps = {dep: {"output": self._outputs.get(dep)} for dep in node.depends_on}
        scope = {"input": self._input, "nodes": deps}
        source = self._input if isinstance(self._input, dict) else {}
        recorded = {
            "input": {name: source[name] for name in node.inputs if name in source},
            "nodes": {dep: value["output"] for dep, value in deps.items()},
        }
        meta = {"node_id": node.id, "node_type": node.type}
        retries = node.definition.retries
        return _Place(node.id, node.step_name, scope, recorded, meta, node.secrets, retries)

    async def _body(self, body: spec.ItemNode, place: _Place) -> Any:
        if isinstance(body, spec.LlmFields):
            return await self._llm(body, place)
        if isinstance(body, spec.TransformFields):
            return await self._transform(body, place)
        if isinstance(body, spec.HttpFields):
            return await self._http(body, place)
        return await self._task(body, place)

    async def _fail(self, place: _Place, kind: StepKind, exc: Exception) -> NoReturn:
        """Record a failure found before the node's step could start, and fail the node."""

        async def failed() -> NoReturn:
            raise exc

        await self._steps.run(place.step_name, failed, _kind=kind, _input=place.recorded)
        raise exc  # unreachable: the step above fails (its error is not retried)

    async def _stand_in(self, place: _Place) -> Any:
        """A shadow run's step for a side-effect node: the primary's output, or null."""
        assert self._guard is not None
        output, action, reason = self._guard.stand_in(place.step_name)

        async def stand_in() -> Any:
            return output

        meta = {**place.meta, "shadow": action, "shadow_reason": reason}
        return await self._steps.run(
            place.step_name, stand_in, _input=place.recorded, _meta=lambda _: meta
        )

    # node types ---------------------------------------------------------------------------
    async def _transform(self, body: spec.TransformFields, place: _Place) -> Any:
        async def evaluate() -> Any:
            return await evaluate_cel(body.expression, place.scope, place.node_id)

        recorded = {**place.recorded, "expression": body.expression}
        return await self._steps.run(
            place.step_name,
            evaluate,
            _input=recorded,
            _meta=lambda _: place.meta,
            _retries=place.retries,
        )

    async def _branch(self, node_id: str, place: _Place) -> NodeResult:
        branch = self._plan.branches[node_id]

        async def choose() -> dict[str, Any]:
            async def holds(when: str) -> bool:
                return await evaluate_cel(when, place.scope, node_id) is True

            arm = await branch.choose(holds)
            chosen = branch.arms[arm]
            return {"arm": arm, "when": chosen.when, "targets": list(chosen.targets)}

        out = await self._steps.run(
            place.step_name,
            choose,
            _input=place.recorded,
            _meta=lambda _: place.meta,
            _retries=place.retries,
        )
        return NodeResult(out, arm=int(out["arm"]))

    async def _wait(self, body: spec.WaitNode, place: _Place) -> Any:
        if self._guard is not None and self._guard.stands_in(place.node_id, "wait"):
            event = await self._stand_in(place)
            return event.get("data") if isinstance(event, dict) else None
        try:
            bound = bind_refs(body.match, place.scope) if body.match else None
        except WorkflowError as exc:
            await self._fail(place, StepKind.WAIT_FOR_EVENT, exc)
        event = await self._steps.wait_for_event(
            place.step_name, event=body.event, timeout=body.timeout, if_exp=bound
        )
        return None if event is None else event.data

    async def _task(self, body: spec.TaskFields, place: _Place) -> Any:
        if self._guard is not None and self._guard.stands_in(place.node_id, "task", body.task):
            return await self._stand_in(place)
        fn = self._s.tasks.get(body.task)
        try:
            if fn is None:
                raise UnknownTaskError(body.task, self._s.tasks)
            kwargs = {
                name: await evaluate_cel(source, place.scope, place.node_id)
                for name, source in body.args.items()
            }
        except WorkflowError as exc:
            await self._fail(place, StepKind.RUN, exc)
        task = fn

        async def call() -> Any:
            return await call_task(task, kwargs)

        recorded = {"task": body.task, "args": kwargs}
        return await self._steps.run(
            place.step_name,
            call,
            _input=recorded,
            _meta=lambda _: place.meta,
            _retries=place.retries,
        )

    async def _llm(self, body: spec.LlmFields, place: _Place) -> Any:
        try:
            messages = self._messages(body, place)
        except WorkflowError as exc:
            await self._fail(place, StepKind.LLM, exc)
        # The model-call step records the request, reply, tokens and cost; a structured reply
        # that does not validate is re-asked as steps `<step>:reask-<n>`.
        structured = body.output == "json"
        reply = await llm_step.chat(
            self._ctx,
            place.step_name,
            model=body.model,
            messages=messages,
            response_format=(body.output_schema or {}) if structured else None,
            registry=self._s.providers,
            temperature=body.temperature,
            max_tokens=body.max_tokens,
            retries=place.retries,
        )
        return reply.parsed if structured else (reply.content or "")

    def _messages(self, body: spec.LlmFields, place: _Place) -> list[Message]:
        where = f"node {place.node_id!r}"
        messages = []
        if body.system is not None:
            system = self._s.renderer.render(body.system, place.scope, where=f"{where} system")
            messages.append(Message.system(system))
        prompt = self._s.renderer.render(body.prompt, place.scope, where=f"{where} prompt")
        messages.append(Message.user(prompt))
        return messages

    async def _http(self, body: spec.HttpFields, place: _Place) -> Any:
        if self._guard is not None and self._guard.stands_in(place.node_id, "http"):
            return await self._stand_in(place)
        try:
            for path, reason in _secret_use.http_misuse(body):  # a graph saved before the rule
                raise SecretMisuseError(f"node {place.node_id!r} at {path}: {reason}")
            shown = self._http_request(body, place, placeholders(place.secrets))
        except WorkflowError as exc:
            await self._fail(place, StepKind.RUN, exc)

        async def call() -> Any:
            values = await self._s.secrets.resolve(self._ctx.workspace, place.secrets)
            request = self._http_request(body, place, values)
            try:
                response = await net_http.send(
                    self._s.http,
                    **request,
                    timeout_s=body.timeout_s,
                    # The policy again: the graph may have been saved under another one.
                    allow_private=body.allow_private
                    and self._s.egress.allows_private(self._ctx.workspace),
                )
            except Exception as exc:
                raise scrubbed_error(exc, values) from None
            return scrub(response, values)

        return await self._steps.run(
            place.step_name, call, _input=shown, _meta=lambda _: place.meta, _retries=place.retries
        )

    def _http_request(
        self, body: spec.HttpFields, place: _Place, secrets: Mapping[str, str]
    ) -> dict[str, Any]:
        context = {**place.scope, "secrets": dict(secrets)}
        where = f"node {place.node_id!r}"
        render = self._s.renderer
        request: dict[str, Any] = {
            "method": body.method,
            "url": render.render(body.url, context, where=f"{where} url"),
            "headers": {
                name: render.render(value, context, where=f"{where} header {name}")
                for name, value in body.headers.items()
            },
        }
        if body.body is not None:
            request["body"] = render.render_json(body.body, context, where=f"{where} body")
        return request

    async def _map(self, node: PlanNode, definition: spec.MapNode, place: _Place) -> list[Any]:
        try:
            items = await map_items(definition, place.scope, node.id)
        except WorkflowError as exc:
            await self._fail(place, StepKind.RUN, exc)
        gate = asyncio.Semaphore(definition.concurrency)
        item_retries = definition.node.retries
        if item_retries is None:
            item_retries = place.retries

        async def one(index: int, item: Any) -> Any:
            async with gate:
                item_place = _Place(
                    node.id,
                    node.item_step_name(index),
                    {**place.scope, "item": item, "index": index},
                    {**place.recorded, "item": item, "index": index},
                    {**place.meta, "item": index},
                    place.secrets,
                    item_retries,
                )
                return await self._body(definition.node, item_place)

        # Every item settles before the node does: no item step is left running when a
        # sibling fails, so the run never finishes under an item still writing.
        settled = await asyncio.gather(
            *(one(i, item) for i, item in enumerate(items)), return_exceptions=True
        )
        interrupts = [o for o in settled if isinstance(o, BaseException)]
        if interrupts:  # engine control flow (cancel, suspend) first, then the first failure
            raise min(interrupts, key=lambda o: isinstance(o, Exception))
        results = list(settled)

        async def collect() -> list[Any]:
            return results

        return list(
            await self._steps.run(
                place.step_name,
                collect,
                _input={**place.recorded, "items": len(items)},
                _meta=lambda _: place.meta,
                _retries=place.retries,
            )
        )


async def evaluate_cel(source: str, scope: Mapping[str, Any], node_id: str | None = None) -> Any:
    """Evaluate a graph's CEL expression in the expression sandbox (worker processes, with a
    time and memory budget: a graph is a tenant's code); a failure, or running over the
    budget, is an ExpressionFailedError (not retried)."""
    try:
        return await sandbox.default_sandbox().evaluate(source, dict(scope))
    except (expr.ExpressionEvalError, ExpressionBudgetError) as exc:
        where = f"node {node_id!r}: " if node_id else ""
        raise ExpressionFailedError(f"{where}{exc}") from None


async def map_items(definition: spec.MapNode, scope: Mapping[str, Any], node_id: str) -> list[Any]:
    """The list a map node runs over, checked against its `max_items`."""
    items = await evaluate_cel(definition.over, scope, node_id)
    if not isinstance(items, list):
        raise ExpressionFailedError(
            f"node {node_id!r}: `over` must yield a list, got {type(items).__name__}"
        )
    if len(items) > definition.max_items:
        raise ExpressionFailedError(
            f"node {node_id!r}: `over` yielded {len(items)} items; max_items is "
            f"{definition.max_items}"
        )
    return items


async def call_task(fn: TaskFunction, kwargs: dict[str, Any]) -> Any:
    """Call a task function: a coroutine function inline, a plain one in a thread."""
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    result = await asyncio.to_thread(functools.partial(fn, **kwargs))
    if inspect.isawaitable(result):
        return await result
    return result
