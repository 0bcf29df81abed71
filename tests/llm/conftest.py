"""Fixtures of the LLM tests: a chat-completions server on loopback and providers bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from inferpipe.llm import OpenAICompatibleProvider
from tests.llm.chat_completions_server import API_KEY, ChatCompletionsServer


@pytest.fixture(scope="session")
def chat_server() -> Iterator[ChatCompletionsServer]:
    server = ChatCompletionsServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def make_provider(
    chat_server: ChatCompletionsServer,
) -> AsyncIterator[Callable[..., OpenAICompatibleProvider]]:
    """Builds providers against the test server (the right key unless told otherwise)."""
    made: list[OpenAICompatibleProvider] = []
    chat_server.release.clear()

    def make(**options: Any) -> OpenAICompatibleProvider:
        options.setdefault("api_key", API_KEY)
        options.setdefault("timeout_s", 5.0)
        provider = OpenAICompatibleProvider(chat_server.base_url, **options)
        made.append(provider)
        return provider

    yield make
    chat_server.release.set()
    for provider in made:
        await provider.aclose()
