"""The model-call step: what it records, replay without a second call, re-asks, retries, keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pydantic
import pytest

import inferpipe as ip
from inferpipe.llm import (
    ChatRequest,
    FakeProvider,
    Message,
    OpenAICompatibleProvider,
    ProviderRegistry,
    RateLimitedError,
    ScriptedReply,
    Usage,
    price_call,
)
from inferpipe.llm import step as llm_step
from inferpipe.testing import Harness
from tests.llm.chat_completions_server import API_KEY, REPLY_TEXT, ChatCompletionsServer


def one_call_app(
    registry: ProviderRegistry, *, model: str = "fake/echo", **options: Any
) -> tuple[ip.App, list[str]]:
    """An app whose function makes one model call, then sleeps (so it is replayed)."""
    app = ip.App("llm-test")
    tokens: list[str] = []

    async def collect(text: str) -> None:
        tokens.append(text)

    @app.function(id="ask", retries=options.pop("retries", 4))
    async def ask(ctx: ip.Context) -> Any:
        reply = await llm_step.chat(
            ctx,
            "ask",
            model=model,
            messages=[Message.system("Be brief."), {"role": "user", "content": "Hello there"}],
            registry=registry,
            on_token=collect,
            **options,
        )
        await ctx.step.sleep("pause", "1h")
        return {"content": reply.content, "cost": reply.cost.amount_usd}

    return app, tokens


async def run_to_end(app: ip.App, path: Path | None = None) -> tuple[ip.Run, list[ip.StepRecord]]:
    async with Harness(app, path=path) as h:
        run_id = await h.invoke("ask")
        run = await h.settle(run_id)
        assert run is not None
        return run, await h.steps(run_id)


async def test_records_provider_model_settings_usage_and_cost() -> None:
    fake = FakeProvider(priced_as="openai/gpt-4o-mini")
    app, _ = one_call_app(ProviderRegistry([fake]), temperature=0.2, seed=7)
    run, steps = await run_to_end(app)
    assert run.status is ip.RunStatus.COMPLETED
    step = steps[0]
    assert (step.key, step.kind) == ("ask", ip.StepKind.LLM)
    meta = step.meta
    assert (meta["provider"], meta["model"], meta["model_ref"]) == ("fake", "echo", "fake/echo")
    assert meta["settings"]["temperature"] == 0.2 and meta["settings"]["seed"] == 7
    assert meta["usage"] == {"input_tokens": 4, "output_tokens": 2, "cached_tokens": 0}
    expected = price_call("openai", "gpt-4o-mini", Usage(input_tokens=4, output_tokens=2))
    assert expected.known and expected.amount_usd
    assert meta["cost"] == {"amount_usd": expected.amount_usd, "known": True, "note": None}
    assert meta["cost_usd"] == expected.amount_usd
    assert meta["latency_ms"] >= 0 and meta["time_to_first_token_ms"] is not None
    assert step.input["messages"][1] == {
        "role": "user",
        "content": "Hello there",
        "tool_calls": [],
        "tool_call_id": None,
        "name": None,
    }
    assert run.output == {"content": "Hello there", "cost": expected.amount_usd}


async def test_unknown_model_records_tokens_and_an_unknown_cost() -> None:
    fake = FakeProvider(priced_as="openai/no-such-model-anywhere")
    app, _ = one_call_app(ProviderRegistry([fake]))
    run, steps = await run_to_end(app)
    meta = steps[0].meta
    assert meta["usage"]["input_tokens"] == 4
    assert meta["cost"]["known"] is False and meta["cost"]["amount_usd"] is None
    assert "no price" in meta["cost"]["note"]
    assert meta["cost_usd"] is None
    assert run.output == {"content": "Hello there", "cost": None}


async def test_openai_compatible_endpoint_streams_and_records_usage(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    registry = ProviderRegistry([make_provider(name="openai")])
    app, tokens = one_call_app(registry, model="openai/gpt-4o-mini")
    run, steps = await run_to_end(app)
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert "".join(tokens) == REPLY_TEXT
    meta = steps[0].meta
    assert meta["usage"] == {"input_tokens": 120, "output_tokens": 9, "cached_tokens": 100}
    assert meta["model"] == "gpt-4o-mini-2024-07-18" and meta["provider"] == "openai"
    assert meta["cost"]["known"] is True and meta["cost_usd"] > 0
    assert meta["time_to_first_token_ms"] is not None


async def test_endpoint_without_usage_records_unknown_cost(
    make_provider: Callable[..., OpenAICompatibleProvider],
) -> None:
    registry = ProviderRegistry([make_provider(name="openai")])
    app, _ = one_call_app(registry, model="openai/no-usage")
    _, steps = await run_to_end(app)
    assert steps[0].meta["usage"] is None
    assert steps[0].meta["cost"]["known"] is False and steps[0].meta["cost_usd"] is None


async def test_replay_neither_calls_the_provider_nor_streams_again() -> None:
    fake = FakeProvider()
    app, tokens = one_call_app(ProviderRegistry([fake]))
    async with Harness(app) as h:
        run_id = await h.invoke("ask")
        run = await h.settle(run_id)  # the sleep makes the run execute twice
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        events = await stream_of(app, run_id)
    assert len(fake.requests) == 1
    assert tokens == ["Hello", " there"]
    assert [e["data"] for e in events if e["type"] == llm_step.TOKEN_EVENT] == [
        {"step": "ask", "text": "Hello"},
        {"step": "ask", "text": " there"},
    ]
    assert [e["type"] for e in events].count("run.resumed") == 1


class Contact(pydantic.BaseModel):
    name: str
    email: str


def contact_replies(valid_after: int) -> Callable[[ChatRequest], ScriptedReply]:
    """Invalid JSON until `valid_after` corrections have been sent, then a valid contact."""

    def reply(request: ChatRequest) -> ScriptedReply:
        corrections = sum(
            1
            for m in request.messages
            if m.role == "user" and "does not match" in (m.content or "")
        )
        if corrections < valid_after:
            return ScriptedReply(content='{"name": "Ada"}')
        return ScriptedReply(content='{"name": "Ada", "email": "ada@example.com"}')

    return reply


def extraction_app(fake: FakeProvider, max_reasks: int) -> ip.App:
    app = ip.App("extract")

    @app.function(id="ask", retries=0)
    async def ask(ctx: ip.Context) -> Any:
        reply = await llm_step.chat(
            ctx,
            "extract",
            messages=[Message.user("Ada, ada@example.com")],
            response_format=Contact,
            registry=ProviderRegistry([fake]),
            max_reasks=max_reasks,
        )
        await ctx.step.sleep("pause", "1d")
        assert isinstance(reply.parsed, Contact)
        return {"contact": reply.parsed.model_dump(), "calls": len(reply.attempts)}

    return app


async def test_structured_output_reasked_once_each_attempt_its_own_step() -> None:
    fake = FakeProvider(contact_replies(valid_after=1))
    run, steps = await run_to_end(extraction_app(fake, max_reasks=2))
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert run.output == {"contact": {"name": "Ada", "email": "ada@example.com"}, "calls": 2}
    assert [s.key for s in steps] == ["extract", "extract:reask-1", "pause"]
    assert steps[0].input["response_format"]["title"] == "Contact"
    assert len(fake.requests) == 2  # the replay after the sleep called nothing


async def test_reask_is_bounded() -> None:
    fake = FakeProvider(contact_replies(valid_after=99))
    run, steps = await run_to_end(extraction_app(fake, max_reasks=2))
    assert run.status is ip.RunStatus.FAILED
    assert run.error is not None and run.error["type"] == "StructuredOutputError"
    assert "after 3 attempt(s)" in run.error["message"] and "email" in run.error["message"]
    assert [s.key for s in steps] == ["extract", "extract:reask-1", "extract:reask-2"]
    assert len(fake.requests) == 3


async def test_rate_limit_is_retried_after_retry_after_on_the_virtual_clock() -> None:
    def reply(request: ChatRequest) -> ScriptedReply:
        if len(fake.requests) == 1:
            return ScriptedReply(error=RateLimitedError("slow down", retry_after_s=30))
        return ScriptedReply(content="finally")

    fake = FakeProvider(reply)
    app, _ = one_call_app(ProviderRegistry([fake]))
    async with Harness(app) as h:
        run_id = await h.invoke("ask")
        await h.run_ready()
        step = (await h.steps(run_id))[0]
        assert step.status is ip.StepStatus.RETRYING
        assert step.wake_at_ms == h.now_ms + 30_000
        await h.advance("29s")
        assert len(fake.requests) == 1
        await h.advance("1s")
        assert len(fake.requests) == 2
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED
        assert run.output["content"] == "finally"


async def test_provider_error_is_a_clear_step_error_without_retries() -> None:
    app, _ = one_call_app(ProviderRegistry([FakeProvider()]), model="fake/no-such-model")
    run, steps = await run_to_end(app)
    assert run.status is ip.RunStatus.FAILED
    assert steps[0].status is ip.StepStatus.FAILED and steps[0].attempt == 0
    assert steps[0].error is not None and steps[0].error["type"] == "UnknownModelError"
    assert "no model 'no-such-model'" in steps[0].error["message"]


async def test_invalid_request_fails_before_any_step() -> None:
    app = ip.App("bad")

    @app.function(id="ask", retries=0)
    async def ask(ctx: ip.Context) -> Any:
        return await llm_step.chat(ctx, "ask", messages=[{"role": "wizard", "content": "hi"}])

    run, steps = await run_to_end(app)
    assert run.status is ip.RunStatus.FAILED and steps == []
    assert run.error is not None and "messages.0.role" in run.error["message"]


@pytest.fixture
def default_registry_reset() -> Iterator[None]:
    yield
    llm_step.set_default_registry(None)


def test_default_registry_from_environment(default_registry_reset: None) -> None:
    registry = llm_step.registry_from_env({"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"})
    assert registry.names() == ["fake", "openai"]
    provider = registry.get("openai")
    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.base_url == "http://127.0.0.1:1/v1"
    mine = ProviderRegistry([FakeProvider(name="mine")])
    llm_step.set_default_registry(mine)
    assert llm_step.default_registry() is mine
    llm_step.set_default_registry(None)
    assert llm_step.default_registry().names() == ["fake", "openai"]


async def test_keys_never_reach_the_store(
    tmp_path: Path,
    chat_server: ChatCompletionsServer,
    monkeypatch: pytest.MonkeyPatch,
    default_registry_reset: None,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", chat_server.base_url)
    llm_step.set_default_registry(llm_step.registry_from_env())
    wrong_key = "sk-wrong-key-that-the-server-echoes-0123456789"
    app = ip.App("keys")

    @app.function(id="ask", retries=0)
    async def ask(ctx: ip.Context) -> Any:
        good = await llm_step.chat(
            ctx, "good", model="openai/gpt-4o-mini", messages=[Message.user("hi")]
        )
        try:
            await llm_step.chat(ctx, "smuggled", messages=[Message.user("hi")], api_key=API_KEY)
        except Exception as exc:
            ctx.logger.info("refused", error=str(exc))
        wrong = ProviderRegistry(
            [OpenAICompatibleProvider(chat_server.base_url, api_key=wrong_key)]
        )
        try:
            await llm_step.chat(
                ctx,
                "bad-key",
                model="openai/gpt-4o-mini",
                messages=[Message.user("hi")],
                registry=wrong,
            )
        except ip.StepError as exc:
            ctx.logger.info("failed", error=str(exc))
        await wrong.aclose()
        return good.content

    db = tmp_path / "keys.db"
    run, steps = await run_to_end(app, path=db)
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert [s.key for s in steps] == ["good", "bad-key"]
    assert steps[1].error is not None and "AuthenticationError" in steps[1].error["type"]
    stored = stored_bytes(tmp_path, "keys.db")
    assert b"Incorrect API key" in stored  # the provider's error was stored, scrubbed
    assert API_KEY.encode() not in stored
    assert wrong_key.encode() not in stored
    await llm_step.default_registry().aclose()


def stored_bytes(folder: Path, prefix: str) -> bytes:
    """Everything SQLite wrote: the database, its write-ahead log and shared memory."""
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith(prefix))


async def stream_of(app: ip.App, run_id: str) -> list[dict[str, Any]]:
    """The run's stream events (each a dict with a "type")."""
    return [cast(dict[str, Any], event.data) async for event in app.stream(run_id)]
