"""Runs exported as traces to a real OTLP/HTTP receiver: the span tree of a run, GenAI
attributes on model calls, scores on the run's span, child runs in their parent's trace."""

from __future__ import annotations

import json
from typing import Any

import pytest

import inferpipe as ip
from inferpipe.core.trace_context import run_span
from inferpipe.llm import FakeProvider, Message, ProviderRegistry, ScriptedReply, Usage
from inferpipe.llm import step as llm_step
from inferpipe.testing import Harness
from tests.engine.conftest import HarnessFactory
from tests.telemetry.otlp_receiver import ReceivedSpan, Receiver


def pipeline_app(registry: ProviderRegistry) -> ip.App:
    """Three steps: one plain, one failing once (retried), one model call; and a score."""
    app = ip.App("traced")
    tries: list[int] = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("upstream reset")
        return "fetched"

    @app.function(id="pipeline", retries=2, backoff=ip.Backoff(base_s=2, jitter=0))
    async def pipeline(ctx: ip.Context) -> Any:
        doc = await ctx.step.run("load", lambda: "a document")
        await ctx.step.run("fetch", flaky)
        reply = await llm_step.chat(
            ctx,
            "summarize",
            model="fake/echo",
            messages=[Message.system("Be brief."), Message.user(f"Summarize {doc}")],
            registry=registry,
            temperature=0.2,
        )
        await ctx.step.score("quality", 0.75, reason="concise")
        return reply.content

    return app


def scripted() -> ProviderRegistry:
    reply = ScriptedReply("A summary.", usage=Usage(input_tokens=12, output_tokens=3))
    return ProviderRegistry([FakeProvider([reply])])


def by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    found: dict[str, list[ReceivedSpan]] = {}
    for span in sorted(
        spans, key=lambda s: (s.start_ns, s.attributes.get("inferpipe.step.attempt", 0))
    ):
        found.setdefault(span.name, []).append(span)
    return found


async def test_a_run_is_one_trace_with_a_span_per_attempt(
    receiver: Receiver, harness: HarnessFactory
) -> None:
    async with harness(pipeline_app(scripted())) as h:
        run_id = await h.invoke("pipeline")
        run = await h.settle(run_id)
    assert run is not None and run.status is ip.RunStatus.COMPLETED
    spans = receiver.spans  # the app's close flushed them
    names = sorted((s.name, s.attributes.get("inferpipe.step.attempt")) for s in spans)
    assert names == [
        ("chat echo", 0),
        ("run pipeline", None),
        ("step fetch", 0),
        ("step fetch", 1),
        ("step load", 0),
    ]
    found = by_name(spans)
    (root,) = found["run pipeline"]
    expected = run_span(run_id, [])
    assert (root.trace_id, root.span_id, root.parent_span_id) == (
        expected.trace_id,
        expected.span_id,
        "",
    )
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert {s.parent_span_id for s in spans if s is not root} == {root.span_id}
    assert root.kind == "consumer" and root.service == "traced"
    assert root.attributes["inferpipe.run.id"] == run_id
    assert root.attributes["inferpipe.run.status"] == "completed"
    assert root.attributes["inferpipe.score.quality"] == 0.75
    assert root.events == [
        (
            "gen_ai.evaluation.result",
            {
                "gen_ai.evaluation.name": "quality",
                "gen_ai.evaluation.score.value": 0.75,
                "gen_ai.evaluation.explanation": "concise",
            },
        )
    ]
    first, second = found["step fetch"]
    assert first.status == "error" and first.attributes["inferpipe.step.status"] == "retrying"
    assert first.attributes["error.type"] == "ConnectionError"
    assert first.events == [
        ("exception", {"exception.type": "ConnectionError", "exception.message": "upstream reset"})
    ]
    assert second.status == "unset" and second.attributes["inferpipe.step.status"] == "completed"
    assert second.start_ns == first.start_ns + 2_000_000_000  # the 2 s backoff (virtual clock)
    (chat,) = found["chat echo"]
    assert chat.kind == "client"
    genai = {k: v for k, v in chat.attributes.items() if k.startswith("gen_ai.")}
    assert genai == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "echo",
        "gen_ai.response.model": "echo",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ["stop"],
    }


async def test_prompts_and_completions_only_when_asked_and_redacted(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    async with Harness(pipeline_app(scripted())) as h:
        run_id = await h.invoke("pipeline")
        await h.settle(run_id)
        (recorded,) = [s for s in await h.steps(run_id) if s.key == "summarize"]
    (chat,) = by_name(receiver.spans)["chat echo"]
    assert json.loads(chat.attributes["gen_ai.input.messages"]) == recorded.input["messages"]
    assert json.loads(chat.attributes["gen_ai.output.messages"])[0]["content"] == "A summary."


def family_app() -> ip.App:
    """A parent that invokes a child, sends an event that starts another run, and defers a
    scorer; the scorer judges the parent."""
    app = ip.App("family")

    @app.function(id="child")
    async def child(ctx: ip.Context) -> str:
        return str(await ctx.step.run("work", lambda: "child done"))

    @app.function(id="notified", trigger=ip.on_event("family/notified"))
    async def notified(ctx: ip.Context) -> None:
        await ctx.step.run("note", lambda: None)

    @app.scorer(id="judge")
    async def judge(ctx: ip.Context) -> ip.Score:
        return ip.Score("judged", 1.0, reason="fine")

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> str:
        result = await ctx.step.invoke("call-child", "child", {})
        await ctx.step.send_event("notify", ip.Event("family/notified", {}))
        await ctx.step.sleep("pause", "1m")
        ctx.defer("judge-it", judge, {})
        return str(result)

    return app


async def test_child_runs_continue_their_parents_trace(receiver: Receiver) -> None:
    async with Harness(family_app()) as h:
        parent_id = await h.invoke("parent")
        parent = await h.settle(parent_id)
        assert parent is not None and parent.status is ip.RunStatus.COMPLETED
        (child,) = await h.runs_of("child")
        (notified,) = await h.runs_of("notified")
        (judge,) = await h.runs_of("judge")
    spans = by_name(receiver.spans)
    (root,) = spans["run parent"]
    (invoke,) = spans["invoke child"]
    (send,) = spans["send notify"]
    (sleep,) = spans["sleep pause"]
    assert root.parent_span_id == ""
    assert {s.trace_id for s in receiver.spans} == {root.trace_id}  # one trace for the family
    assert invoke.parent_span_id == send.parent_span_id == sleep.parent_span_id == root.span_id
    assert invoke.kind == "internal" and send.kind == "producer"
    assert invoke.attributes["inferpipe.invoke.run_id"] == child.id
    assert sleep.end_ns - sleep.start_ns == 60_000_000_000
    (child_span,) = spans["run child"]
    (notified_span,) = spans["run notified"]
    (judge_span,) = spans["run judge"]
    assert child_span.parent_span_id == invoke.span_id
    assert child_span.attributes["inferpipe.run.id"] == child.id
    assert notified_span.attributes["inferpipe.run.id"] == notified.id
    assert judge_span.attributes["inferpipe.run.id"] == judge.id
    assert notified_span.parent_span_id == send.span_id
    assert judge_span.parent_span_id == root.span_id
    assert judge_span.attributes["inferpipe.run.parent_id"] == parent_id
    assert judge_span.attributes["inferpipe.score.judged"] == 1.0
    assert [name for name, _ in judge_span.events] == ["gen_ai.evaluation.result"]
    (work,) = spans["step work"]
    assert work.parent_span_id == child_span.span_id


async def test_metrics_are_exported_too(receiver: Receiver) -> None:
    async with Harness(pipeline_app(scripted())) as h:
        await h.settle(await h.invoke("pipeline"))
    metrics = receiver.metrics
    assert ({"inferpipe.function.id": "pipeline"}, 1.0) in metrics["inferpipe.runs.started"]
    assert (
        {"inferpipe.function.id": "pipeline", "inferpipe.run.status": "completed"},
        1.0,
    ) in metrics["inferpipe.runs.finished"]
    durations = {
        (a["inferpipe.step.kind"], a["inferpipe.step.status"]): n
        for a, n in metrics["inferpipe.step.duration"]
    }
    assert durations == {("run", "completed"): 2, ("run", "retrying"): 1, ("llm", "completed"): 1}
    tokens = {a["gen_ai.token.type"]: n for a, n in metrics["gen_ai.client.token.usage"]}
    assert tokens == {"input": 1, "output": 1}  # one call: one recorded count of each
    assert sum(n for _, n in metrics["inferpipe.run.queue_delay"]) == 2  # two executions
    assert "inferpipe.llm.cost" in metrics


async def test_feedback_posted_later_is_a_score_span_in_the_runs_trace(receiver: Receiver) -> None:
    app = ip.App("feedback")

    @app.function(id="answer")
    async def answer(ctx: ip.Context) -> str:
        return str(await ctx.step.run("reply", lambda: "42"))

    async with Harness(app) as h:
        run_id = await h.invoke("answer")
        await h.settle(run_id)
        await app.score(run_id, "helpful", True, reason="thumbs up")
    spans = by_name(receiver.spans)
    (root,) = spans["run answer"]
    (score,) = spans["score helpful"]
    assert (score.trace_id, score.parent_span_id) == (root.trace_id, root.span_id)
    assert score.attributes["inferpipe.score.source"] == "feedback"
    assert score.attributes["inferpipe.score.helpful"] == 1.0
    assert score.events == [
        (
            "gen_ai.evaluation.result",
            {
                "gen_ai.evaluation.name": "helpful",
                "gen_ai.evaluation.score.value": 1.0,
                "gen_ai.evaluation.explanation": "thumbs up",
            },
        )
    ]


async def test_in_process_sends_continue_the_callers_current_span(receiver: Receiver) -> None:
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

    app = ip.App("embedded")

    @app.function(id="on-order", trigger=ip.on_event("shop/ordered"))
    async def on_order(ctx: ip.Context) -> None:
        await ctx.step.run("bill", lambda: None)

    @app.function(id="direct")
    async def direct(ctx: ip.Context) -> None:
        await ctx.step.run("work", lambda: None)

    web = TracerProvider().get_tracer("the-web-app")  # the application's own, not global
    async with Harness(app) as h:
        with web.start_as_current_span("POST /orders") as request:
            await h.send(ip.Event("shop/ordered", {}))
            await h.invoke("direct")
        await h.settle()
    ctx = request.get_span_context()
    for name in ("run on-order", "run direct"):
        (span,) = by_name(receiver.spans)[name]
        assert (span.trace_id, span.parent_span_id) == (
            format(ctx.trace_id, "032x"),
            format(ctx.span_id, "016x"),
        )


async def test_an_agents_turns_and_tool_calls_follow_the_genai_conventions(
    receiver: Receiver,
) -> None:
    from inferpipe.agents import Agent  # noqa: PLC0415
    from inferpipe.llm import ToolCall  # noqa: PLC0415

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    def reply(request: Any) -> ScriptedReply:
        if any(m.role == "tool" for m in request.messages):
            return ScriptedReply(content="It is 5.")
        return ScriptedReply(tool_calls=(ToolCall(id="c1", name="add", arguments='{"a":2,"b":3}'),))

    agent = Agent(
        "helper",
        model="fake/scripted",
        instructions="You help.",
        tools=[add],
        registry=ProviderRegistry([FakeProvider(reply)]),
    )
    app = ip.App("agents")
    agent.register(app)
    async with Harness(app) as h:
        run = await h.settle(await h.invoke("helper", {"input": "2+3?"}))
    assert run is not None and run.status is ip.RunStatus.COMPLETED
    spans = by_name(receiver.spans)
    assert [s.attributes["inferpipe.step.key"] for s in spans["chat scripted"]] == [
        "turn-1",
        "turn-2",
    ]
    assert [s.attributes["gen_ai.response.finish_reasons"] for s in spans["chat scripted"]] == [
        ["tool_calls"],
        ["stop"],
    ]
    (tool_span,) = spans["execute_tool add"]
    assert {k: v for k, v in tool_span.attributes.items() if k.startswith("gen_ai.")} == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "gen_ai.tool.call.id": "c1",
    }


async def test_a_wait_spans_until_its_event_and_links_to_the_events_trace(
    receiver: Receiver,
) -> None:
    app = ip.App("waiting")
    sender = "00-11111111111111111111111111111111-2222222222222222-01"

    @app.function(id="approve", trigger=ip.on_event("doc/submitted"))
    async def approve(ctx: ip.Context) -> bool:
        found = await ctx.step.wait_for_event(
            "decision", event="doc/decided", timeout="1d", if_exp="async.data.id == event.data.id"
        )
        timed_out = await ctx.step.wait_for_event("never", event="doc/none", timeout="1h")
        return found is not None and timed_out is None

    async with Harness(app) as h:
        await h.send(ip.Event("doc/submitted", {"id": 1}))
        await h.run_ready()
        await h.advance("10m")
        await h.send(ip.Event("doc/decided", {"id": 1}, trace={"traceparent": sender}))
        await h.settle()
        (run,) = await h.runs_of("approve")
    assert run.status is ip.RunStatus.COMPLETED and run.output is True
    spans = by_name(receiver.spans)
    (decision,) = spans["wait decision"]
    (never,) = spans["wait never"]
    assert decision.end_ns - decision.start_ns == 600_000_000_000  # the 10 minutes waited
    assert decision.links == [
        ("11111111111111111111111111111111", "2222222222222222", {"inferpipe.link": "resolved_by"})
    ]
    assert decision.attributes["inferpipe.wait.timed_out"] is False
    assert never.attributes["inferpipe.wait.timed_out"] is True
    assert never.end_ns - never.start_ns == 3_600_000_000_000


async def test_spans_the_steps_code_makes_are_children_of_the_attempts_span(
    receiver: Receiver,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )

    own = InMemorySpanExporter()  # the application's own instrumentation, e.g. an HTTP client
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(own))
    tracer = provider.get_tracer("the-app")
    app = ip.App("nested")

    async def call_api() -> str:
        with tracer.start_as_current_span("GET /api"):
            return "ok"

    def call_sync() -> str:  # a sync step runs in a thread: the context goes with it
        with tracer.start_as_current_span("SELECT 1"):
            return "ok"

    @app.function(id="f")
    async def f(ctx: ip.Context) -> None:
        await ctx.step.run("api", call_api)
        await ctx.step.run("db", call_sync)
        with tracer.start_as_current_span("outside steps"):
            pass

    async with Harness(app) as h:
        await h.settle(await h.invoke("f"))
    spans = by_name(receiver.spans)
    mine = {s.name: s for s in own.get_finished_spans()}
    for step, inner in (("step api", "GET /api"), ("step db", "SELECT 1")):
        (attempt,) = spans[step]
        parent = mine[inner].parent
        assert parent is not None
        assert (format(parent.trace_id, "032x"), format(parent.span_id, "016x")) == (
            attempt.trace_id,
            attempt.span_id,
        )
    assert mine["outside steps"].parent is None  # the attempt's span is current only inside
