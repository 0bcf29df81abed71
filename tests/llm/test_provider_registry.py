"""ProviderRegistry: "provider/model" references, configuration, keys by reference."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inferpipe.llm import (
    ChatRequest,
    FakeProvider,
    Message,
    OpenAICompatibleProvider,
    Provider,
    ProviderConfig,
    ProviderConfigError,
    ProviderRegistry,
    UnknownProviderError,
    parse_model_ref,
)
from tests.llm.chat_completions_server import API_KEY, REPLY_TEXT, ChatCompletionsServer


def ask(model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=(Message.user("hello there"),))


def test_model_reference_parsing() -> None:
    assert parse_model_ref("openai/gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert parse_model_ref("openrouter/openai/gpt-4o") == ("openrouter", "openai/gpt-4o")
    for bad in ("gpt-4o-mini", "/x", "openai/"):
        with pytest.raises(UnknownProviderError, match="provider/model"):
            parse_model_ref(bad)


async def test_chat_routes_to_the_provider_with_the_bare_model() -> None:
    fake = FakeProvider()
    registry = ProviderRegistry([fake])

    result = await registry.chat(ask("fake/echo"))

    assert result.content == "hello there"
    assert (result.provider, result.model) == ("fake", "echo")
    assert fake.requests[0].model == "echo"
    assert isinstance(fake, Provider)


async def test_unknown_provider_is_a_clear_error() -> None:
    registry = ProviderRegistry([FakeProvider()])
    with pytest.raises(UnknownProviderError, match=r"'anthropic'.*\['fake'\]"):
        await registry.chat(ask("anthropic/claude"))


async def test_default_provider_for_bare_model_names() -> None:
    registry = ProviderRegistry([FakeProvider()], default_provider="fake")
    assert (await registry.chat(ask("echo"))).content == "hello there"


def test_duplicate_and_invalid_names_are_refused() -> None:
    registry = ProviderRegistry([FakeProvider()])
    with pytest.raises(ProviderConfigError, match="already registered"):
        registry.register(FakeProvider())
    registry.register(FakeProvider(), replace=True)
    with pytest.raises(ProviderConfigError, match="invalid provider name"):
        registry.register(FakeProvider(name="a/b"))


def test_configuration_holds_keys_only_by_reference() -> None:
    with pytest.raises(ValidationError, match="api_key_env or api_key_secret"):
        ProviderConfig.model_validate({"name": "openai", "api_key": "sk-literal"})


async def test_registry_from_configuration(
    chat_server: ChatCompletionsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_LLM_KEY", API_KEY)
    registry = ProviderRegistry.from_config(
        [
            {"name": "local", "base_url": chat_server.base_url, "api_key_env": "LOCAL_LLM_KEY"},
            {"name": "offline", "kind": "fake"},
            {"name": "vault", "base_url": chat_server.base_url, "api_key_secret": "llm"},
        ],
        secrets={"llm": API_KEY}.get,
    )
    try:
        assert registry.names() == ["local", "offline", "vault"]
        local = await registry.chat(ask("local/gpt-4o-mini"))
        assert (local.content, local.provider) == (REPLY_TEXT, "local")
        # "local" is not a genai-prices provider: tokens are recorded, the cost is unknown.
        assert local.usage is not None and not local.cost.known
        assert (await registry.chat(ask("vault/gpt-4o-mini"))).content == REPLY_TEXT
        assert (await registry.chat(ask("offline/echo"))).content == "hello there"
    finally:
        await registry.aclose()


def test_defaults_read_the_base_url_from_the_environment() -> None:
    registry = ProviderRegistry.with_defaults(environ={"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"})
    assert registry.names() == ["fake", "openai"]
    openai_provider = registry.get("openai")
    assert isinstance(openai_provider, OpenAICompatibleProvider)
    assert openai_provider.base_url == "http://127.0.0.1:1/v1"


def test_request_settings_cannot_carry_credentials() -> None:
    with pytest.raises(ValidationError, match="api_key"):
        ChatRequest(
            model="openai/gpt-4o-mini",
            messages=(Message.user("x"),),
            settings={"api_key": "sk-from-step-input"},
        )
