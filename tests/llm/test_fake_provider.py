"""FakeProvider: deterministic, offline, scriptable."""

from __future__ import annotations

import json

import pytest

from inferpipe.llm import (
    ChatRequest,
    ChatResult,
    FakeProvider,
    Message,
    RateLimitedError,
    ScriptedReply,
    ToolCall,
    UnknownModelError,
    Usage,
)
from inferpipe.llm._fake import example_value, split_tokens


def fixed_clock() -> float:
    return 100.0


def ask(text: str, model: str = "echo", **fields: object) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [Message.system("Be brief."), Message.user(text)], **fields}
    )


async def collect(provider: FakeProvider, request: ChatRequest) -> tuple[ChatResult, list[str]]:
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    return await provider.chat(request, on_token=on_token), tokens


async def test_same_request_same_result() -> None:
    request = ask("The cat sat on the mat.  It was happy.")
    first, first_tokens = await collect(FakeProvider(clock=fixed_clock), request)
    second, second_tokens = await collect(FakeProvider(clock=fixed_clock), request)

    assert first == second
    assert first_tokens == second_tokens
    assert "".join(first_tokens) == first.content == "The cat sat on the mat.  It was happy."
    assert first.usage == Usage(input_tokens=11, output_tokens=9)
    assert first.cost.known and first.cost.amount_usd == 0.0
    assert (first.latency_ms, first.time_to_first_token_ms) == (0.0, 0.0)


def test_tokens_join_back_to_the_text() -> None:
    for text in ["", "one", "  lead and trail  ", "new\nlines\n\nand\ttabs\n"]:
        assert "".join(split_tokens(text)) == text


async def test_summarize_behaviour() -> None:
    long = " ".join(f"w{i}" for i in range(30)) + ". Second sentence."
    result = await FakeProvider().chat(ask(long, model="summarize"))
    assert result.content == " ".join(f"w{i}" for i in range(20)) + " ..."
    short = await FakeProvider().chat(ask("Short one. And more.", model="summarize"))
    assert short.content == "Short one."


async def test_unknown_model_without_script() -> None:
    with pytest.raises(UnknownModelError, match="gpt-9"):
        await FakeProvider().chat(ask("hi", model="gpt-9"))


async def test_default_reply_matches_the_response_format() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 18},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "kind": {"$ref": "#/$defs/Kind"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["name", "age", "tags", "kind"],
        "$defs": {"Kind": {"enum": ["person", "org"]}},
    }
    result = await FakeProvider().chat(ask("x", response_format=schema))
    assert json.loads(result.content or "") == {
        "name": "example",
        "age": 18,
        "tags": ["example"],
        "kind": "person",
    }
    assert example_value({"type": ["null", "boolean"]}) is False


async def test_script_is_consumed_in_order_with_tool_calls() -> None:
    call = ToolCall.of("lookup_order", {"order_id": 42}, id="call_a")
    provider = FakeProvider(
        [
            ScriptedReply(tool_calls=(call,), usage=Usage(input_tokens=50, output_tokens=5)),
            "Your order ships tomorrow.",
        ]
    )

    first, tokens = await collect(provider, ask("Where is my order?", model="any-model"))
    assert first.tool_calls == (call,)
    assert first.tool_calls[0].parsed_arguments == {"order_id": 42}
    assert first.finish_reason == "tool_calls"
    assert first.usage == Usage(input_tokens=50, output_tokens=5)
    assert tokens == []

    second = await provider.chat(ask("again", model="any-model"))
    assert second.content == "Your order ships tomorrow."
    assert second.finish_reason == "stop"
    assert [r.messages[-1].content for r in provider.requests] == ["Where is my order?", "again"]

    with pytest.raises(Exception, match="no reply left"):
        await provider.chat(ask("more", model="any-model"))


async def test_scripted_error_then_success() -> None:
    provider = FakeProvider(
        [ScriptedReply(error=RateLimitedError("slow down", retry_after_s=2.0)), "ok"]
    )
    with pytest.raises(RateLimitedError) as caught:
        await provider.chat(ask("hi"))
    assert caught.value.retry_after_s == 2.0
    assert (await provider.chat(ask("hi"))).content == "ok"


async def test_reply_function_is_stateless() -> None:
    def reply(request: ChatRequest) -> str:
        return f"{len(request.messages)} messages"

    provider = FakeProvider(reply)
    assert (await provider.chat(ask("a"))).content == "2 messages"
    assert (await provider.chat(ask("b"))).content == "2 messages"


async def test_priced_as_a_real_model() -> None:
    provider = FakeProvider(priced_as="openai/gpt-4o-mini")
    result = await provider.chat(ask("hello world"))
    assert result.cost.known and result.cost.amount_usd is not None
    assert result.cost.amount_usd > 0


async def test_result_round_trips_through_json() -> None:
    call = ToolCall.of("f", {"a": 1})
    result = await FakeProvider([ScriptedReply("text", tool_calls=(call,))]).chat(ask("x"))
    recorded = json.loads(json.dumps(result.model_dump(mode="json")))
    assert ChatResult.model_validate(recorded) == result
