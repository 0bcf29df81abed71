"""A provider for any endpoint that speaks OpenAI's chat-completions protocol.

OpenAI, Azure OpenAI, OpenRouter, Ollama, vLLM, LM Studio, ... through the official `openai` SDK.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from inferpipe.llm import errors, pricing
from inferpipe.llm._openai_wire import (
    CompletionParts,
    StreamAssembler,
    completion_parts,
    request_body,
)
from inferpipe.llm.types import ChatRequest, ChatResult, TokenSink

if TYPE_CHECKING:
    # The SDK takes about 0.4 s to import, so it is loaded at the first call rather than with
    # inferpipe (an app on the fake provider, or the CLI, never pays for it). Not hiding a cycle.
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

#: Resolves a secret name to its value (None when there is no such secret).
SecretResolver = Callable[[str], str | None]

#: Sent as the key when none is configured: local servers (Ollama, vLLM) accept any key, and
#: the SDK refuses to start without one.
_NO_KEY = "no-key-configured"


class OpenAICompatibleProvider:
    """Chat with an OpenAI-compatible endpoint.

    The key is given in configuration (`api_key`), or by reference: the name of an environment
    variable (`api_key_env`) or of a secret (`api_key_secret`, resolved by `secrets`). A reference
    is resolved at the first call, so a missing key is a clear error on that call. With no key at
    all, a placeholder is sent (local servers need none).

    Args:
        base_url: The API root, e.g. "https://api.openai.com/v1" or "http://localhost:11434/v1".
        name: The provider name used in model references ("openai/gpt-4o-mini") and records.
        timeout_s: Longest wait for a connection or for the next bytes of the answer.
        total_timeout_s: Longest duration of a whole call, streaming included; None for no limit.
        max_retries: Retries inside the SDK; 0 by default because the durable step retries.
        pricing_provider_id: genai-prices' provider id; defaults to `name`. An id genai-prices
            does not know (e.g. "ollama") gives an unknown cost.
        default_headers: Extra headers sent with every request (configuration, not step data).
        clock: Monotonic seconds, for latency and time to first token.

    Example:
        provider = OpenAICompatibleProvider(api_key_env="OPENAI_API_KEY")
        result = await provider.chat(ChatRequest(model="gpt-4o-mini", messages=[...]))
    """

    def __init__(
        self,
        base_url: str = "https://api.openai.com/v1",
        *,
        name: str = "openai",
        api_key: str | None = None,
        api_key_env: str | None = None,
        api_key_secret: str | None = None,
        secrets: SecretResolver | None = None,
        timeout_s: float = 60.0,
        total_timeout_s: float | None = None,
        max_retries: int = 0,
        pricing_provider_id: str | None = None,
        default_headers: dict[str, str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if sum(x is not None for x in (api_key, api_key_env, api_key_secret)) > 1:
            raise errors.ProviderConfigError(
                f"provider {name!r}: give one of api_key, api_key_env, api_key_secret",
                provider=name,
            )
        self.name = name
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.total_timeout_s = total_timeout_s
        self.max_retries = max_retries
        self.pricing_provider_id = pricing_provider_id or name
        self._api_key = api_key
        self._api_key_env = api_key_env
        self._api_key_secret = api_key_secret
        self._secrets = secrets
        self._default_headers = dict(default_headers or {})
        self._clock = clock
        self._client: openai.AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._secret_values: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(name={self.name!r}, base_url={self.base_url!r})"

    def knows_model(self, model: str) -> bool | None:
        """At OpenAI's own API, whether genai-prices lists the model; elsewhere (Ollama, vLLM,
        a gateway) the server decides what it serves: None."""
        if urlsplit(self.base_url).hostname != "api.openai.com":
            return None
        return pricing.known_model(self.pricing_provider_id, model)

    async def chat(self, request: ChatRequest, on_token: TokenSink | None = None) -> ChatResult:
        """Send one chat request; stream the reply's text to `on_token` when given.

        Raises:
            ProviderError: a subclass saying what failed (rate limit, timeout, key, model, ...).
        """
        from inferpipe.llm import _openai_errors as sdk  # noqa: PLC0415 - SDK loaded on first use

        client = self._client_for_call()
        body = request_body(request)
        settings = dict(request.settings)
        started_s = self._clock()
        first_token_s: list[float] = []
        try:
            async with asyncio.timeout(self.total_timeout_s) as deadline:
                if on_token is None:
                    parts = await self._complete(client, request.model, body, settings)
                else:
                    parts = await self._stream(
                        client, request.model, body, settings, on_token, first_token_s
                    )
        except sdk.SDK_ERRORS as exc:
            raise sdk.map_sdk_error(
                exc,
                provider=self.name,
                model=request.model,
                base_url=self.base_url,
                secrets=self._secret_values,
            ) from None
        except TimeoutError:
            if not deadline.expired():
                raise
            raise errors.ProviderTimeoutError(
                f"provider {self.name!r} did not finish within {self.total_timeout_s}s",
                provider=self.name,
            ) from None
        return self._result(request, parts, started_s, first_token_s)

    async def aclose(self) -> None:
        """Close the HTTP connections (call it before the event loop that used them ends)."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _complete(
        self, client: openai.AsyncOpenAI, model: str, body: dict[str, Any], settings: dict[str, Any]
    ) -> CompletionParts:
        # The body is built by our wire module; settings ride in extra_body so vendor-specific
        # ones (top_k, num_ctx, ...) reach OpenAI-compatible servers unchanged.
        completion: ChatCompletion = await client.chat.completions.create(
            model=model, **body, extra_body=settings or None
        )
        return completion_parts(completion)

    async def _stream(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        body: dict[str, Any],
        settings: dict[str, Any],
        on_token: TokenSink,
        first_token_s: list[float],
    ) -> CompletionParts:
        stream: openai.AsyncStream[ChatCompletionChunk] = await client.chat.completions.create(
            model=model,
            **body,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=settings or None,
        )
        assembler = StreamAssembler()
        async with stream:
            async for chunk in stream:
                text, has_output = assembler.add(chunk)
                if has_output and not first_token_s:
                    first_token_s.append(self._clock())
                if text:
                    await on_token(text)
        return assembler.finish()

    def _result(
        self,
        request: ChatRequest,
        parts: CompletionParts,
        started_s: float,
        first_token_s: list[float],
    ) -> ChatResult:
        ended_s = self._clock()
        return ChatResult(
            content=parts.content,
            tool_calls=parts.tool_calls,
            usage=parts.usage,
            model=parts.model or request.model,
            provider=self.name,
            finish_reason=parts.finish_reason,
            latency_ms=max(ended_s - started_s, 0.0) * 1000.0,
            time_to_first_token_ms=(
                max(first_token_s[0] - started_s, 0.0) * 1000.0 if first_token_s else None
            ),
            cost=pricing.price_call(
                self.pricing_provider_id, request.model, parts.usage, reported_model=parts.model
            ),
        )

    def _client_for_call(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            # Pooled connections belong to the loop that opened them; that loop is gone or
            # elsewhere (a test per loop), so start a new pool rather than fail with
            # "Event loop is closed". Call aclose() before a loop ends to release the old one.
            self._client = None
        if self._client is None:
            self._client_loop = loop
            key = self._resolve_key()
            self._secret_values = (key,) if key != _NO_KEY else ()
            import openai  # noqa: PLC0415 - loaded on first use

            self._client = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.base_url,
                timeout=self.timeout_s,
                max_retries=self.max_retries,
                default_headers=self._default_headers or None,
            )
        return self._client

    def _resolve_key(self) -> str:
        if self._api_key is not None:
            return self._api_key
        if self._api_key_env is not None:
            value = os.environ.get(self._api_key_env)
            if not value:
                raise errors.MissingCredentialsError(
                    f"provider {self.name!r}: environment variable {self._api_key_env} is not set",
                    provider=self.name,
                )
            return value
        if self._api_key_secret is not None:
            value = self._secrets(self._api_key_secret) if self._secrets is not None else None
            if not value:
                raise errors.MissingCredentialsError(
                    f"provider {self.name!r}: secret {self._api_key_secret!r} is not available",
                    provider=self.name,
                )
            return value
        return _NO_KEY
