"""LLM providers: the protocol to implement, the built-in providers, and the registry.

A model is referenced as "provider/model": "openai/gpt-4o-mini", "fake/echo",
"openrouter/anthropic/claude-3.5-sonnet" (the provider is the part before the first slash).
Keys come from the provider's configuration (an environment variable or a secret, by name),
never from a request.

Example:
    registry = ProviderRegistry.with_defaults()        # "fake", and "openai" from OPENAI_API_KEY
    result = await registry.chat(
        ChatRequest(model="fake/echo", messages=[Message.user("hi")]), on_token=publish
    )
    record = result.model_dump(mode="json")             # all a step needs to record
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, model_validator

from inferpipe.llm import errors
from inferpipe.llm._fake import DEFAULT_BEHAVIOURS, FakeProvider, ReplyFunction, ScriptedReply
from inferpipe.llm._openai_compat import OpenAICompatibleProvider, SecretResolver
from inferpipe.llm.types import ChatRequest, ChatResult, TokenSink

__all__ = [
    "DEFAULT_BEHAVIOURS",
    "FakeProvider",
    "ModelLister",
    "OpenAICompatibleProvider",
    "Provider",
    "ProviderConfig",
    "ProviderRegistry",
    "ReplyFunction",
    "ScriptedReply",
    "SecretResolver",
    "parse_model_ref",
]

#: Where the default "openai" provider sends requests unless OPENAI_BASE_URL says otherwise.
OPENAI_BASE_URL = "https://api.openai.com/v1"


@runtime_checkable
class Provider(Protocol):
    """What a provider implements. `request.model` is the bare model name ("gpt-4o-mini").

    `chat` streams the reply's text to `on_token` when given, and raises a
    `inferpipe.llm.errors.ProviderError` subclass on failure (its `retryable` flag and
    `retry_after_s` drive the step's retries).
    """

    name: str

    async def chat(self, request: ChatRequest, on_token: TokenSink | None = None) -> ChatResult: ...


@runtime_checkable
class ModelLister(Protocol):
    """A provider that knows which models it serves (used to validate graphs when saved)."""

    def knows_model(self, model: str) -> bool | None:
        """Whether `model` (the bare name) is served; None when the provider cannot tell."""


class ProviderConfig(BaseModel):
    """A provider described as data (a settings file); keys only by reference.

    `kind` is "openai_compatible" (the OpenAI SDK against `base_url`) or "fake".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Literal["openai_compatible", "fake"] = "openai_compatible"
    base_url: str = OPENAI_BASE_URL
    api_key_env: str | None = None
    api_key_secret: str | None = None
    timeout_s: float = 60.0
    total_timeout_s: float | None = None
    max_retries: int = 0
    pricing_provider_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_literal_key(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "api_key" in data:
            raise ValueError(
                "a provider configuration may not hold a key: put it in an environment "
                "variable or a secret and name it with api_key_env or api_key_secret"
            )
        return data

    def build(self, secrets: SecretResolver | None = None) -> Provider:
        """The provider this configuration describes."""
        if self.kind == "fake":
            return FakeProvider(name=self.name)
        return OpenAICompatibleProvider(
            self.base_url,
            name=self.name,
            api_key_env=self.api_key_env,
            api_key_secret=self.api_key_secret,
            secrets=secrets,
            timeout_s=self.timeout_s,
            total_timeout_s=self.total_timeout_s,
            max_retries=self.max_retries,
            pricing_provider_id=self.pricing_provider_id,
        )


def parse_model_ref(model_ref: str) -> tuple[str, str]:
    """Split "provider/model" into its provider name and model name.

    Raises:
        UnknownProviderError: `model_ref` has no provider part.
    """
    provider, sep, model = model_ref.partition("/")
    if not sep or not provider or not model:
        raise errors.UnknownProviderError(
            f"model {model_ref!r} does not name a provider: write 'provider/model', "
            "e.g. 'openai/gpt-4o-mini' or 'fake/echo'"
        )
    return provider, model


class ProviderRegistry:
    """Providers by name, and the model references that select them.

    Args:
        providers: Providers to register under their `name`.
        default_provider: Provider used for a model reference without "provider/".
    """

    def __init__(
        self, providers: Iterable[Provider] = (), *, default_provider: str | None = None
    ) -> None:
        self._providers: dict[str, Provider] = {}
        self.default_provider = default_provider
        for provider in providers:
            self.register(provider)

    @classmethod
    def from_config(
        cls,
        configs: Iterable[ProviderConfig | Mapping[str, Any]],
        *,
        secrets: SecretResolver | None = None,
    ) -> ProviderRegistry:
        """A registry of the providers described by `configs`."""
        built = (
            (c if isinstance(c, ProviderConfig) else ProviderConfig.model_validate(c)).build(
                secrets
            )
            for c in configs
        )
        return cls(built)

    @classmethod
    def with_defaults(
        cls, *, environ: Mapping[str, str] | None = None, secrets: SecretResolver | None = None
    ) -> ProviderRegistry:
        """ "fake" (offline), and "openai" keyed by OPENAI_API_KEY at OPENAI_BASE_URL or OpenAI."""
        env = os.environ if environ is None else environ
        openai_provider = OpenAICompatibleProvider(
            env.get("OPENAI_BASE_URL") or OPENAI_BASE_URL, api_key_env="OPENAI_API_KEY"
        )
        return cls([FakeProvider(), openai_provider])

    def register(self, provider: Provider, *, replace: bool = False) -> None:
        """Add `provider` under its name; a second provider of the same name needs `replace`."""
        if provider.name in self._providers and not replace:
            raise errors.ProviderConfigError(
                f"a provider named {provider.name!r} is already registered", provider=provider.name
            )
        if "/" in provider.name or not provider.name:
            raise errors.ProviderConfigError(
                f"invalid provider name {provider.name!r}: non-empty, without '/'",
                provider=provider.name,
            )
        self._providers[provider.name] = provider

    def names(self) -> list[str]:
        """The registered provider names, sorted."""
        return sorted(self._providers)

    def get(self, name: str) -> Provider:
        """The provider registered as `name`.

        Raises:
            UnknownProviderError: no provider has that name.
        """
        provider = self._providers.get(name)
        if provider is None:
            raise errors.UnknownProviderError(
                f"unknown provider {name!r}; registered: {self.names()}", provider=name
            )
        return provider

    def resolve(self, model_ref: str) -> tuple[Provider, str]:
        """The provider and the bare model name of "provider/model".

        Raises:
            UnknownProviderError: no provider part and no default, or an unregistered provider.
        """
        if "/" not in model_ref and self.default_provider is not None:
            return self.get(self.default_provider), model_ref
        name, model = parse_model_ref(model_ref)
        return self.get(name), model

    async def chat(self, request: ChatRequest, on_token: TokenSink | None = None) -> ChatResult:
        """Send `request` (whose model is "provider/model") to its provider.

        Raises:
            ProviderError: a subclass; see `inferpipe.llm.errors`.
        """
        provider, model = self.resolve(request.model)
        return await provider.chat(request.model_copy(update={"model": model}), on_token)

    async def aclose(self) -> None:
        """Close every provider that holds connections."""
        for provider in self._providers.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()
