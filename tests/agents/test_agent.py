"""The durable agent on a virtual clock: the tool loop, errors fed back, turns, approvals."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import pytest

import inferpipe as ip
from inferpipe.agents import (
    FINAL_ANSWER_PROMPT,
    Agent,
    ApprovalRequired,
    Tool,
    ToolDefinitionError,
    approval_event,
    current_approval,
    pending_approvals,
    tool,
)
from inferpipe.llm import ChatRequest, FakeProvider, ProviderRegistry, ScriptedReply, ToolCall
from inferpipe.testing import Harness

Reply = ScriptedReply | Callable[[ChatRequest], ScriptedReply]


def turn_script(*replies: Reply) -> Callable[[ChatRequest], ScriptedReply]:
    """The n-th reply answers the request of turn n (a function of the request, so it is the
    same in any process and on any replay)."""

    def reply(request: ChatRequest) -> ScriptedReply:
        turn = sum(1 for m in request.messages if m.role == "assistant")
        chosen = replies[min(turn, len(replies) - 1)]
        return chosen(request) if callable(chosen) else chosen

    return reply


def calls(*calls: tuple[str, str, dict[str, Any] | str]) -> ScriptedReply:
    """A reply calling tools: (id, name, arguments as a dict or as raw text)."""
    return ScriptedReply(
        tool_calls=tuple(
            ToolCall(id=i, name=n, arguments=a if isinstance(a, str) else json.dumps(a))
            for i, n, a in calls
        )
    )


def tool_messages(request: ChatRequest) -> list[str]:
    return [m.content or "" for m in request.messages if m.role == "tool"]


def make_agent(
    script: Callable[[ChatRequest], ScriptedReply],
    tools: Sequence[Callable[..., Any] | Tool],
    **options: Any,
) -> tuple[ip.App, FakeProvider]:
    retries = options.pop("retries", 2)
    fake = FakeProvider(script, priced_as="openai/gpt-4o-mini")
    agent = Agent(
        "helper",
        model="fake/scripted",
        instructions="You help.",
        tools=tools,
        registry=ProviderRegistry([fake]),
        **options,
    )
    app = ip.App("agents")
    agent.register(app, retries=retries)
    return app, fake


async def run_agent(app: ip.App, text: str = "Help me") -> tuple[ip.Run, list[ip.StepRecord]]:
    async with Harness(app) as h:
        run_id = await h.invoke("helper", {"input": text})
        run = await h.settle(run_id)
        assert run is not None
        return run, await h.steps(run_id)


async def test_tool_loop_each_call_a_step_and_the_answer_is_the_output() -> None:
    executed: list[str] = []

    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: The first number.
            b: The second number.
        """
        executed.append(f"add {a} {b}")
        return a + b

    async def weather(city: str, unit: str = "C") -> dict[str, Any]:
        """The weather in a city."""
        executed.append(f"weather {city}")
        return {"city": city, "temp": 21, "unit": unit}

    script = turn_script(
        calls(("c1", "add", {"a": 2, "b": 3}), ("c2", "weather", {"city": "Paris"})),
        calls(("c3", "add", {"a": 5, "b": 1})),
        lambda r: ScriptedReply(content="Results: " + " | ".join(tool_messages(r))),
    )
    app, fake = make_agent(script, [add, weather])
    run, steps = await run_agent(app)
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert [s.key for s in steps] == [
        "turn-1",
        "tool-add",
        "tool-weather",
        "turn-2",
        "tool-add:1",
        "turn-3",
    ]
    assert executed == ["add 2 3", "weather Paris", "add 5 1"]
    assert run.output["output"] == 'Results: 5 | {"city":"Paris","temp":21,"unit":"C"} | 6'
    assert run.output["turns"] == 3
    assert run.output["cost"]["known"] is True
    tokens = [s.meta["usage"] for s in steps if s.kind is ip.StepKind.LLM]
    assert run.output["usage"]["input_tokens"] == sum(u["input_tokens"] for u in tokens)
    assert steps[1].input == {"tool_call_id": "c1", "tool": "add", "arguments": {"a": 2, "b": 3}}
    assert steps[1].output == {"ok": True, "result": 5}
    sent = fake.requests[0]
    assert [t.name for t in sent.tools] == ["add", "weather"]
    assert sent.tools[0].description == "Add two numbers."
    assert sent.tools[0].parameters == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "title": "A", "description": "The first number."},
            "b": {"type": "integer", "title": "B", "description": "The second number."},
        },
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    assert sent.messages[0].content == "You help." and sent.messages[1].content == "Help me"


async def test_the_run_stream_carries_tokens_and_tool_results() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    script = turn_script(
        calls(("c1", "add", {"a": 2, "b": 3})), ScriptedReply(content="The sum is 5.")
    )
    app, _ = make_agent(script, [add])
    async with Harness(app) as h:
        run_id = await h.invoke("helper", {"input": "2 + 3?"})
        await h.settle(run_id)
        events = await stream_of(app, run_id)
    mine = [
        (e["type"], e["data"]) for e in events if e["type"] in ("llm.token", "agent.tool_result")
    ]
    assert mine == [
        ("agent.tool_result", {"tool": "add", "id": "c1", "ok": True, "result": 5}),
        ("llm.token", {"step": "turn-2", "text": "The"}),
        ("llm.token", {"step": "turn-2", "text": " sum"}),
        ("llm.token", {"step": "turn-2", "text": " is"}),
        ("llm.token", {"step": "turn-2", "text": " 5."}),
    ]


async def test_tool_error_goes_back_to_the_model() -> None:
    def lookup_order(order_id: str) -> dict[str, str]:
        raise LookupError(f"no order {order_id}")

    script = turn_script(
        calls(("c1", "lookup_order", {"order_id": "A-9"})),
        lambda r: ScriptedReply(content="Sorry: " + tool_messages(r)[0]),
    )
    app, _ = make_agent(script, [lookup_order])
    run, steps = await run_agent(app)
    assert run.status is ip.RunStatus.COMPLETED
    assert run.output["output"] == "Sorry: Error (LookupError): no order A-9"
    assert steps[1].status is ip.StepStatus.COMPLETED and steps[1].attempt == 0
    assert steps[1].output == {
        "ok": False,
        "error": {"type": "LookupError", "message": "no order A-9"},
    }


async def test_bad_tool_arguments_go_back_to_the_model() -> None:
    executed: list[int] = []

    def add(a: int, b: int) -> int:
        executed.append(a)
        return a + b

    script = turn_script(
        calls(
            ("c1", "add", {"a": "three", "b": 1}),
            ("c2", "add", {"a": 1, "c": 2}),
            ("c3", "add", "{not json"),
            ("c4", "subtract", {"a": 1}),
        ),
        lambda r: ScriptedReply(content="\n".join(tool_messages(r))),
    )
    app, _ = make_agent(script, [add])
    run, _ = await run_agent(app)
    assert run.status is ip.RunStatus.COMPLETED
    assert executed == []
    lines = run.output["output"].split("\n")
    assert lines[0].startswith("Error (InvalidArguments): invalid arguments: a: Input should be")
    assert "b: Field required" in lines[1] and "c: Extra inputs are not permitted" in lines[1]
    assert lines[2] == "Error (InvalidArguments): the arguments are not a JSON object: {not json"
    assert lines[3] == "Error (UnknownTool): no tool 'subtract'; tools: ['add']"


async def test_max_turns_fails_the_run_clearly() -> None:
    def ping() -> str:
        return "pong"

    app, _ = make_agent(turn_script(calls(("c", "ping", {}))), [ping], max_turns=3)
    run, steps = await run_agent(app)
    assert run.status is ip.RunStatus.FAILED
    assert run.error is not None and run.error["code"] == "agents.max_turns"
    assert "limit of 3 turns" in run.error["message"]
    assert [s.key for s in steps if s.kind is ip.StepKind.LLM] == ["turn-1", "turn-2", "turn-3"]


async def test_max_turns_can_end_with_a_final_answer() -> None:
    def ping() -> str:
        return "pong"

    def reply(request: ChatRequest) -> ScriptedReply:
        if request.messages[-1].content == FINAL_ANSWER_PROMPT:
            assert request.settings == {"tool_choice": "none"}
            return ScriptedReply(content="I pinged twice.")
        return calls(("c", "ping", {}))

    app, _ = make_agent(reply, [ping], max_turns=2, on_max_turns="final")
    run, steps = await run_agent(app)
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert run.output["output"] == "I pinged twice." and run.output["turns"] == 3
    assert steps[-1].key == "turn-final"


async def test_a_transient_tool_failure_is_retried_by_the_step() -> None:
    attempts: list[int] = []

    class Flaky(Exception):
        retryable = True

    def fetch() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise Flaky("connection reset")
        return "data"

    script = turn_script(
        calls(("c1", "fetch", {})), lambda r: ScriptedReply(content=tool_messages(r)[0])
    )
    app, _ = make_agent(script, [fetch])
    run, steps = await run_agent(app)
    assert run.output["output"] == "data" and len(attempts) == 2
    assert steps[1].attempt == 1


def refund_script() -> Callable[[ChatRequest], ScriptedReply]:
    return turn_script(
        calls(("call_r1", "issue_refund", {"order_id": "A-1", "amount_usd": 250.0})),
        lambda r: ScriptedReply(content="Refund: " + tool_messages(r)[0]),
    )


async def test_approval_waits_days_then_resumes_on_the_virtual_clock() -> None:
    refunds: list[str] = []

    @tool(needs_approval=lambda args: args["amount_usd"] > 100)
    def issue_refund(order_id: str, amount_usd: float) -> str:
        """Refund an order."""
        approval = current_approval()
        assert approval is not None and approval.approved
        refunds.append(order_id)
        return f"refunded {amount_usd} on {order_id} (approved by {approval.by})"

    app, fake = make_agent(refund_script(), [issue_refund])
    async with Harness(app) as h:
        run_id = await h.invoke("helper", {"input": "Refund order A-1 please"})
        await h.run_ready()
        assert (await h.run(run_id)).status is ip.RunStatus.WAITING
        [request] = pending_approvals(await h.steps(run_id))
        assert (request.tool, request.tool_call_id, request.run_id) == (
            "issue_refund",
            "call_r1",
            run_id,
        )
        assert json.loads(request.arguments) == {"order_id": "A-1", "amount_usd": 250.0}
        await h.advance("3d")
        assert (await h.run(run_id)).status is ip.RunStatus.WAITING and refunds == []
        await h.send(approval_event(request.approval_id, approved=True, by="manager"))
        run = await h.settle(run_id)
        assert run is not None
        assert run.status is ip.RunStatus.COMPLETED, run.error
        assert run.output["output"] == "Refund: refunded 250.0 on A-1 (approved by manager)"
        assert refunds == ["A-1"] and len(fake.requests) == 2
        steps = {s.key: s for s in await h.steps(run_id)}
        assert list(steps) == [
            "turn-1",
            "request-approval-call_r1",
            "approval-call_r1",
            "tool-issue_refund",
            "turn-2",
        ]
        waited_ms = steps["approval-call_r1"].duration_ms
        assert waited_ms is not None and waited_ms >= 3 * 86_400_000
        assert pending_approvals(list(steps.values())) == []


async def test_a_small_refund_needs_no_approval() -> None:
    @tool(needs_approval=lambda args: args["amount_usd"] > 100)
    def issue_refund(order_id: str, amount_usd: float) -> str:
        return "refunded"

    script = turn_script(
        calls(("c1", "issue_refund", {"order_id": "A-1", "amount_usd": 20})),
        ScriptedReply(content="done"),
    )
    app, _ = make_agent(script, [issue_refund])
    _, steps = await run_agent(app)
    assert [s.key for s in steps] == ["turn-1", "tool-issue_refund", "turn-2"]


async def test_a_tool_asks_for_approval_and_a_denial_goes_back_to_the_model() -> None:
    called: list[bool] = []

    async def issue_refund(order_id: str, amount_usd: float) -> str:
        called.append(current_approval() is not None)
        if current_approval() is None:
            raise ApprovalRequired("refunds over $100 need a manager")
        return "refunded"

    app, _ = make_agent(refund_script(), [issue_refund])
    async with Harness(app) as h:
        run_id = await h.invoke("helper", {"input": "Refund A-1"})
        await h.run_ready()
        [request] = pending_approvals(await h.steps(run_id))
        assert request.reason == "refunds over $100 need a manager"
        await h.send(approval_event(request.approval_id, approved=False, comment="too much"))
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        assert run.output["output"] == "Refund: The call was not run: a person denied it: too much"
        assert called == [False]


async def test_a_tool_approved_after_asking_runs_again_with_the_approval() -> None:
    async def issue_refund(order_id: str, amount_usd: float) -> str:
        approval = current_approval()
        if approval is None:
            raise ApprovalRequired("big refund")
        return f"refunded by {approval.by}"

    app, _ = make_agent(refund_script(), [issue_refund])
    async with Harness(app) as h:
        run_id = await h.invoke("helper", {"input": "Refund A-1"})
        await h.run_ready()
        [request] = pending_approvals(await h.steps(run_id))
        await h.send(approval_event(request.approval_id, by="ada"))
        run = await h.settle(run_id)
        assert run is not None and run.output["output"] == "Refund: refunded by ada"
        keys = [s.key for s in await h.steps(run_id)]
        assert keys[1:5] == [
            "tool-issue_refund",
            "request-approval-call_r1",
            "approval-call_r1",
            "tool-issue_refund:1",
        ]


async def test_no_approval_in_time_means_the_call_does_not_run() -> None:
    @tool(needs_approval=True)
    def issue_refund(order_id: str, amount_usd: float) -> str:
        raise AssertionError("must not run")

    app, _ = make_agent(refund_script(), [issue_refund], approval_timeout="2d")
    run, steps = await run_agent(app)
    assert run.status is ip.RunStatus.COMPLETED
    assert run.output["output"] == "Refund: The call was not run: nobody approved it within 2d."
    assert "tool-issue_refund" not in [s.key for s in steps]


async def test_an_agent_needs_an_input_text() -> None:
    app, _ = make_agent(turn_script(ScriptedReply(content="hi")), [])
    async with Harness(app) as h:
        run_id = await h.invoke("helper", {"question": "?"})
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.FAILED
        assert run.error is not None and run.error["code"] == "agents.invalid_input"


def test_tools_must_have_describable_signatures() -> None:
    def variadic(*items: str) -> None: ...

    with pytest.raises(ToolDefinitionError, match="named parameters only"):
        Tool.of(variadic)
    with pytest.raises(ToolDefinitionError, match="tool name"):
        Tool.of(lambda: None)

    def first() -> None: ...

    def second() -> None: ...

    with pytest.raises(ValueError, match="same name"):
        Agent("a", "fake/echo", "", tools=[Tool.of(first, name="x"), Tool.of(second, name="x")])


async def test_reserved_parameter_names_and_partials_work_as_tools() -> None:
    def search(query: str, json: bool = False, model_name: str = "x", limit: int = 3) -> str:
        return f"{query} {json} {model_name} {limit}"

    spec = Tool.of(search).spec
    assert list(spec.parameters["properties"]) == ["query", "json", "model_name", "limit"]
    outcome = await Tool.of(search).execute('{"query": "q", "json": true, "model_name": "m"}')
    assert outcome == {"ok": True, "result": "q True m 3"}
    short = Tool.of(functools.partial(search, limit=1), name="short")
    assert await short.execute('{"query": "q"}') == {"ok": True, "result": "q False x 1"}


async def stream_of(app: ip.App, run_id: str) -> list[dict[str, Any]]:
    """The run's stream events (each a dict with a "type")."""
    return [cast(dict[str, Any], event.data) async for event in app.stream(run_id)]
