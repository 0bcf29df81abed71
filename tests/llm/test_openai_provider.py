"""OpenAICompatibleProvider against a real chat-completions server on loopback."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable

import pytest

from inferpipe.llm import (
    AuthenticationError,
    ChatRequest,
    InvalidRequestError,
    Message,
    MissingCredentialsError,
    OpenAICompatibleProvider,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    QuotaExceededError,
    RateLimitedError,
    ToolSpec,
    UnknownModelError,
)
from tests.llm.chat_completions_server import (
    API_KEY,
    REPLY_TEXT,
    REPORTED_MODEL,
    TOOL_CALLS,
    ChatCompletionsServer,
)

MakeProvider = Callable[..., OpenAICompatibleProvider]

WEATHER_TOOL = ToolSpec(
    name="get_weather",
    description="Current weather of a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def request(model: str = "gpt-4o-mini", **fields: object) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "model": model,
            "messages": [Message.system("Be kind."), Message.user("Hi there")],
            **fields,
        }
    )


async def test_complete_without_streaming(
    make_provider: MakeProvider, chat_server: ChatCompletionsServer
) -> None:
    provider = make_provider()
    result = await provider.chat(request(temperature=0.3, max_tokens=50, settings={"seed": 7}))

    assert result.content == REPLY_TEXT
    assert result.tool_calls == ()
    assert result.model == REPORTED_MODEL
    assert result.provider == "openai"
    assert result.finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (120, 9)
    assert result.usage.cached_tokens == 100
    assert result.cost.known and result.cost.amount_usd is not None and result.cost.amount_usd > 0
    assert result.latency_ms >= 0
    assert result.time_to_first_token_ms is None
    sent = chat_server.requests[-1]
    assert sent["headers"]["authorization"] == f"Bearer {API_KEY}"
    body = sent["body"]
    assert body["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi there"},
    ]
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.3, 50, 7)
    assert "stream" not in body


async def test_streaming_sends_tokens_and_reads_usage_from_last_chunk(
    make_provider: MakeProvider, chat_server: ChatCompletionsServer
) -> None:
    provider = make_provider()
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    result = await provider.chat(request(), on_token=on_token)

    assert "".join(tokens) == REPLY_TEXT == result.content
    assert len(tokens) == len(REPLY_TEXT.split(" "))
    assert result.usage is not None and result.usage.input_tokens == 120
    assert result.cost.known
    assert result.model == REPORTED_MODEL
    assert result.time_to_first_token_ms is not None
    assert 0 <= result.time_to_first_token_ms <= result.latency_ms
    body = chat_server.requests[-1]["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_reports_unknown_usage_and_cost(
    make_provider: MakeProvider,
) -> None:
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    result = await make_provider().chat(request("no-usage"), on_token=on_token)

    assert result.content == REPLY_TEXT
    assert result.usage is None
    assert not result.cost.known and result.cost.amount_usd is None


@pytest.mark.parametrize("streaming", [False, True])
async def test_tool_calls(
    make_provider: MakeProvider, chat_server: ChatCompletionsServer, streaming: bool
) -> None:
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    result = await make_provider().chat(
        request("tool-caller", tools=[WEATHER_TOOL]), on_token=on_token if streaming else None
    )

    assert result.content is None
    assert tokens == []
    assert result.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        (c["id"], c["name"], c["arguments"]) for c in TOOL_CALLS
    ]
    assert result.tool_calls[0].parsed_arguments == {"city": "Paris", "unit": "C"}
    assert result.tool_calls[1].parsed_arguments == {"order_id": 42}
    tools = chat_server.requests[-1]["body"]["tools"]
    assert tools == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather of a city",
                "parameters": WEATHER_TOOL.parameters,
            },
        }
    ]


async def test_tool_results_go_back_on_the_wire(
    make_provider: MakeProvider, chat_server: ChatCompletionsServer
) -> None:
    first = await make_provider().chat(request("tool-caller", tools=[WEATHER_TOOL]))
    call = first.tool_calls[0]
    follow_up = request().model_copy(
        update={"messages": (first.message(), Message.tool(call.id, '{"temp_c": 21}'))}
    )

    await make_provider().chat(follow_up)

    assistant, tool = chat_server.requests[-1]["body"]["messages"]
    assert assistant["tool_calls"][0]["id"] == call.id
    assert assistant["tool_calls"][0]["function"]["arguments"] == call.arguments
    assert tool == {"role": "tool", "content": '{"temp_c": 21}', "tool_call_id": call.id}


async def test_response_format_is_sent_as_json_schema(
    make_provider: MakeProvider, chat_server: ChatCompletionsServer
) -> None:
    schema = {"title": "Contact card", "type": "object", "properties": {"x": {"type": "string"}}}
    await make_provider().chat(request(response_format=schema))

    sent = chat_server.requests[-1]["body"]["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": "Contact_card", "schema": schema},
    }


@pytest.mark.parametrize(
    ("model", "retry_after_s"), [("rate-limited", 7.0), ("rate-limited-ms", 1.5)]
)
async def test_rate_limit_carries_retry_after(
    make_provider: MakeProvider, model: str, retry_after_s: float
) -> None:
    with pytest.raises(RateLimitedError) as caught:
        await make_provider().chat(request(model))

    error = caught.value
    assert error.retryable and error.code == "llm.rate_limited"
    assert error.retry_after_s == retry_after_s
    assert error.status_code == 429
    assert json.loads(json.dumps(error.to_dict()))["retry_after_s"] == retry_after_s


async def test_insufficient_quota_is_not_retryable(make_provider: MakeProvider) -> None:
    with pytest.raises(QuotaExceededError) as caught:
        await make_provider().chat(request("quota"))
    assert not caught.value.retryable


@pytest.mark.parametrize(("model", "retry_after_s"), [("crash", None), ("overloaded", 3.0)])
async def test_server_errors_are_retryable(
    make_provider: MakeProvider, model: str, retry_after_s: float | None
) -> None:
    with pytest.raises(ProviderUnavailableError) as caught:
        await make_provider().chat(request(model))

    assert caught.value.retryable
    assert caught.value.retry_after_s == retry_after_s
    assert "says no" in str(caught.value)


async def test_error_event_in_the_middle_of_a_stream(make_provider: MakeProvider) -> None:
    async def on_token(text: str) -> None:
        pass

    with pytest.raises(ProviderUnavailableError, match="backend exploded"):
        await make_provider().chat(request("stream-error"), on_token=on_token)


async def test_rejected_key_never_appears_in_the_error(
    make_provider: MakeProvider, chat_server: ChatCompletionsServer
) -> None:
    wrong_key = "sk-wrong-9876543210fedcbaSECRET"
    with pytest.raises(AuthenticationError) as caught:
        await make_provider(api_key=wrong_key).chat(request())

    error = caught.value
    assert not error.retryable and error.code == "llm.authentication_failed"
    assert error.status_code == 401
    printed = "".join(traceback.format_exception(error))
    for text in (str(error), repr(error), json.dumps(error.to_dict()), printed):
        assert wrong_key not in text
        assert API_KEY not in text
    assert "Incorrect API key provided" in str(error)
    assert error.__cause__ is None
    assert f"Bearer {wrong_key}" == chat_server.requests[-1]["headers"]["authorization"]


async def test_key_by_environment_reference(
    make_provider: MakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERPIPE_TEST_KEY", API_KEY)
    provider = make_provider(api_key=None, api_key_env="INFERPIPE_TEST_KEY")
    assert (await provider.chat(request())).content == REPLY_TEXT
    assert API_KEY not in repr(provider)


async def test_missing_key_reference_is_a_clear_error(make_provider: MakeProvider) -> None:
    provider = make_provider(api_key=None, api_key_env="INFERPIPE_TEST_KEY_NOT_SET")
    with pytest.raises(MissingCredentialsError, match="INFERPIPE_TEST_KEY_NOT_SET"):
        await provider.chat(request())

    by_secret = make_provider(api_key=None, api_key_secret="llm-key", secrets=lambda name: None)
    with pytest.raises(MissingCredentialsError, match="llm-key"):
        await by_secret.chat(request())


async def test_key_by_secret_reference(make_provider: MakeProvider) -> None:
    secrets = {"llm-key": API_KEY}
    provider = make_provider(api_key=None, api_key_secret="llm-key", secrets=secrets.get)
    assert (await provider.chat(request())).content == REPLY_TEXT


async def test_unknown_model(make_provider: MakeProvider) -> None:
    with pytest.raises(UnknownModelError, match="gpt-nonexistent") as caught:
        await make_provider().chat(request("gpt-nonexistent"))
    assert not caught.value.retryable


async def test_bad_request(make_provider: MakeProvider) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await make_provider().chat(request("bad-request"))
    assert caught.value.status_code == 400 and not caught.value.retryable


async def test_timeout_waiting_for_the_answer(make_provider: MakeProvider) -> None:
    provider = make_provider(timeout_s=0.2)
    with pytest.raises(ProviderTimeoutError) as caught:
        await provider.chat(request("slow"))

    assert caught.value.retryable and caught.value.code == "llm.timeout"
    assert isinstance(caught.value, ProviderUnavailableError)


async def test_total_timeout_cuts_a_stream_that_hangs(make_provider: MakeProvider) -> None:
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    provider = make_provider(timeout_s=5.0, total_timeout_s=0.3)
    with pytest.raises(ProviderTimeoutError, match="did not finish within"):
        await provider.chat(request("slow-stream"), on_token=on_token)
    assert tokens == ["Hel"]


async def test_unreachable_server_is_unavailable() -> None:
    provider = OpenAICompatibleProvider("http://127.0.0.1:9/v1", api_key=API_KEY, timeout_s=2.0)
    try:
        with pytest.raises(ProviderUnavailableError, match="cannot reach") as caught:
            await provider.chat(request())
    finally:
        await provider.aclose()
    assert API_KEY not in str(caught.value)


def test_a_key_may_be_given_one_way_only() -> None:
    with pytest.raises(ProviderError, match="one of"):
        OpenAICompatibleProvider(api_key="k", api_key_env="K")


async def test_a_failing_token_sink_is_not_a_provider_error(make_provider: MakeProvider) -> None:
    async def on_token(text: str) -> None:
        raise RuntimeError("stream publisher down")

    with pytest.raises(RuntimeError, match="stream publisher down"):
        await make_provider().chat(request(), on_token=on_token)
