"""The durable agent: a loop of model calls and tool calls, each one a step of the run.

A crash, a deploy or a week-long wait for an approval loses nothing: on recovery the run replays
its journal, so recorded model calls are not paid for again and recorded tool calls do not act
twice (a call in flight at the crash runs again: at least once, like any step).

Example:
    def lookup_order(order_id: str) -> dict[str, str]:
        '''Find an order by its number.'''
        return orders[order_id]

    agent = Agent(
        "support-agent",
        model="openai/gpt-4o-mini",
        instructions="You answer customers about their orders.",
        tools=[lookup_order, tool(issue_refund, needs_approval=True)],
    )
    agent.register(app, trigger=inferpipe.on_event("support/question"))
    run_id = await app.invoke("support-agent", {"input": "Where is order A-1001?"})
    # run output: {"output": "Your order ...", "turns": 2, "usage": {...}, "cost": {...}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from inferpipe.agents.approval import (
    APPROVAL_EVENT,
    APPROVAL_REQUESTED_EVENT,
    REQUEST_STEP_PREFIX,
    WAIT_STEP_PREFIX,
    Approval,
    ApprovalRequest,
)
from inferpipe.agents.errors import InvalidAgentInputError, MaxTurnsExceededError
from inferpipe.agents.tools import Tool, ToolOutcome, failure, outcome_text
from inferpipe.core.durations import Duration
from inferpipe.core.errors import StepError
from inferpipe.core.events import Event
from inferpipe.engine.context import Context
from inferpipe.engine.functions import (
    Backoff,
    CancelOn,
    FunctionDef,
    Handler,
    Timeouts,
    Trigger,
    failure_handler,
)
from inferpipe.llm import step as llm_step
from inferpipe.llm.providers import ProviderRegistry
from inferpipe.llm.types import ChatResult, Cost, Message, ToolCall, Usage, parse_json_object


class FunctionHost(Protocol):
    """Where an agent registers (an `inferpipe.App`)."""

    def add(self, fn: FunctionDef) -> None: ...


#: What happens when the last turn still calls tools: fail the run, or ask for a final answer.
OnMaxTurns = Literal["fail", "final"]

#: The kind of the run-stream event published when a tool call finishes (its outcome).
TOOL_RESULT_EVENT = "agent.tool_result"

#: Sent (as a user message) before the final answer when `on_max_turns="final"`.
FINAL_ANSWER_PROMPT = (
    "You have used all the turns you had. Do not call any more tools: answer now with what "
    "you know, and say what remains undone."
)


class Agent:
    """A model with instructions and tools, run as a durable function.

    Args:
        id: The function id of the agent on the app.
        model: "provider/model" (see `inferpipe.llm.step.chat`).
        instructions: The system message.
        tools: Python callables (sync or async) or `Tool`s; their JSON schemas come from their
            signatures.
        max_turns: Model calls at most; each turn is a step `turn-<n>`.
        registry: The providers; the default registry of `inferpipe.llm.step` when None.
        on_max_turns: "fail" raises `MaxTurnsExceededError`; "final" makes one more call
            (`turn-final`) that may not use tools and returns its answer.
        approval_timeout: How long a call waits for a person's approval before it is refused.
        settings: Model settings for every turn (`temperature`, `max_tokens`, `seed`, ...).
    """

    def __init__(
        self,
        id: str,
        model: str,
        instructions: str,
        tools: Sequence[Callable[..., Any] | Tool] = (),
        *,
        max_turns: int = 10,
        registry: ProviderRegistry | None = None,
        on_max_turns: OnMaxTurns = "fail",
        approval_timeout: Duration = "7d",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self.id = id
        self.model = model
        self.instructions = instructions
        self.tools = {t.name: t for t in (Tool.of(fn) for fn in tools)}
        if len(self.tools) != len(tools):
            raise ValueError(f"agent {id!r}: two tools have the same name")
        self.max_turns = max_turns
        self.registry = registry
        self.on_max_turns = on_max_turns
        self.approval_timeout = approval_timeout
        self.settings = dict(settings or {})

    def register(
        self,
        app: FunctionHost,
        *,
        trigger: Trigger | Sequence[Trigger] | None = None,
        retries: int = 4,
        backoff: Backoff | None = None,
        cancel_on: CancelOn | Sequence[CancelOn] | None = None,
        timeouts: Timeouts | None = None,
        on_failure: Handler | None = None,
    ) -> Agent:
        """Register the agent on `app` as a durable function whose run data is
        `{"input": "<the user's message>"}` (the options are those of `App.function`)."""
        app.add(
            FunctionDef(
                id=self.id,
                handler=self.run,
                triggers=_as_list(trigger),
                retries=retries,
                backoff=backoff or Backoff(),
                cancel_on=_as_list(cancel_on),
                timeouts=timeouts or Timeouts(),
                description=f"agent: {self.instructions[:200]}",
            )
        )
        if on_failure is not None:
            app.add(failure_handler(self.id, on_failure))
        return self

    async def run(self, ctx: Context) -> dict[str, Any]:
        """The agent loop (the function body; also callable from another function's body).

        Returns:
            `{"output": final answer, "turns": model calls, "usage": tokens, "cost": cost}`.

        Raises:
            InvalidAgentInputError: the run's data has no "input" text.
            MaxTurnsExceededError: with `on_max_turns="fail"`, no answer after `max_turns`.
        """
        messages = [Message.system(self.instructions), Message.user(self._input_of(ctx))]
        calls: list[ChatResult] = []
        for turn in range(1, self.max_turns + 1):
            reply = await self._chat(ctx, f"turn-{turn}", messages)
            calls.extend(reply.attempts)
            messages.append(reply.message())
            if not reply.tool_calls:
                return _output(reply.content, turn, calls)
            for call in reply.tool_calls:
                content = await self._tool_call(ctx, call, turn)
                messages.append(Message.tool(call.id, content, name=call.name))
        if self.on_max_turns == "fail":
            raise MaxTurnsExceededError(self.id, self.max_turns)
        messages.append(Message.user(FINAL_ANSWER_PROMPT))
        reply = await self._chat(ctx, "turn-final", messages, tool_choice="none")
        calls.extend(reply.attempts)
        return _output(reply.content, self.max_turns + 1, calls)

    def _input_of(self, ctx: Context) -> str:
        text = ctx.event.data.get("input") if isinstance(ctx.event.data, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise InvalidAgentInputError(self.id, "the run's data has no non-empty 'input' text")
        return text

    async def _chat(
        self, ctx: Context, step_id: str, messages: list[Message], **extra: Any
    ) -> llm_step.ChatReply[Any]:
        settings = {**self.settings, **extra}
        return await llm_step.chat(
            ctx,
            step_id,
            model=self.model,
            messages=messages,
            tools=[t.spec for t in self.tools.values()] or None,
            registry=self.registry,
            **settings,
        )

    async def _tool_call(self, ctx: Context, call: ToolCall, turn: int) -> str:
        """Run one tool call (with its approval) and return what the model is told."""
        tool = self.tools.get(call.name)
        if tool is None:
            return outcome_text(
                failure("UnknownTool", f"no tool {call.name!r}; tools: {sorted(self.tools)}")
            )
        approval: Approval | None = None
        if tool.requires_approval(call.arguments):
            approval = await self._approval(ctx, call, turn, "this tool needs approval")
            if not approval.approved:
                return approval.refusal(str(self.approval_timeout))
        outcome = await self._tool_step(ctx, tool, call, approval)
        requested = outcome.get("approval_required")
        if requested is not None and approval is None:
            approval = await self._approval(ctx, call, turn, str(requested.get("reason", "")))
            if not approval.approved:
                return approval.refusal(str(self.approval_timeout))
            outcome = await self._tool_step(ctx, tool, call, approval)
        return outcome_text(outcome)

    async def _tool_step(
        self, ctx: Context, tool: Tool, call: ToolCall, approval: Approval | None
    ) -> ToolOutcome:
        async def execute() -> ToolOutcome:
            outcome = await tool.execute(call.arguments, approval)
            await _publish(ctx, TOOL_RESULT_EVENT, {"tool": tool.name, "id": call.id, **outcome})
            return outcome

        # Decoded, so the engine's redaction of sensitive keys applies to the arguments too.
        arguments = parse_json_object(call.arguments)
        recorded: dict[str, Any] = {
            "tool_call_id": call.id,
            "tool": tool.name,
            "arguments": call.arguments if arguments is None else arguments,
        }
        if approval is not None:
            recorded["approval_id"] = approval.approval_id
        try:
            outcome: ToolOutcome = await ctx.step.run(f"tool-{tool.name}", execute, _input=recorded)
        except StepError as exc:
            # Retries of a transient failure ran out (or the result could not be stored):
            # the model hears about it like about any other tool error.
            return failure(exc.error_type or exc.error_code, exc.error_message)
        return outcome

    async def _approval(self, ctx: Context, call: ToolCall, turn: int, reason: str) -> Approval:
        request = ApprovalRequest(
            approval_id=f"{ctx.run_id}:{turn}:{call.id}",
            run_id=ctx.run_id,
            agent_id=self.id,
            tool=call.name,
            tool_call_id=call.id,
            arguments=call.arguments,
            reason=reason,
        )
        await ctx.step.send_event(
            f"{REQUEST_STEP_PREFIX}{call.id}",
            Event(
                APPROVAL_REQUESTED_EVENT, request.as_data(), id=f"approval:{request.approval_id}"
            ),
        )
        answer = await ctx.step.wait_for_event(
            f"{WAIT_STEP_PREFIX}{call.id}",
            event=APPROVAL_EVENT,
            if_exp=request.match_expression(),
            timeout=self.approval_timeout,
            # An approver may answer the request before the wait is recorded (a bot): the id
            # is unique to this call, so an earlier answer can only be for this call.
            lookback="1h",
        )
        return Approval.from_event(request.approval_id, answer)


def _output(content: str | None, turns: int, calls: list[ChatResult]) -> dict[str, Any]:
    usage: Usage | None = Usage()
    cost = Cost(amount_usd=0.0, known=True)
    for call in calls:
        usage = usage.plus(call.usage) if usage is not None and call.usage is not None else None
        cost = cost.plus(call.cost)
    return {
        "output": content or "",
        "turns": turns,
        "usage": usage.model_dump(mode="json") if usage is not None else None,
        "cost": cost.model_dump(mode="json"),
    }


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


async def _publish(ctx: Context, kind: str, data: dict[str, Any]) -> None:
    """Publish to the run's stream (called inside steps, so not again on replay)."""
    stream: Any = getattr(ctx, "stream", None)
    if stream is not None:
        await stream.publish(data, kind=kind)
