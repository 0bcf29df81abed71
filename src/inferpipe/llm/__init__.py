"""LLM providers, token usage and cost, structured output (a public extension point).

Implement `Provider` to add a backend; use `ProviderRegistry.chat` to call "provider/model".
"""

from __future__ import annotations

from inferpipe.llm.errors import (
    AuthenticationError,
    InvalidRequestError,
    MissingCredentialsError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    QuotaExceededError,
    RateLimitedError,
    StructuredOutputError,
    UnknownModelError,
    UnknownProviderError,
)
from inferpipe.llm.pricing import price_call
from inferpipe.llm.providers import (
    FakeProvider,
    OpenAICompatibleProvider,
    Provider,
    ProviderConfig,
    ProviderRegistry,
    ScriptedReply,
    parse_model_ref,
)
from inferpipe.llm.redaction import redact, scrub_text
from inferpipe.llm.structured import OutputSchema, StructuredResult, chat_structured
from inferpipe.llm.types import (
    ChatRequest,
    ChatResult,
    Cost,
    Message,
    TokenSink,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = [
    "AuthenticationError",
    "ChatRequest",
    "ChatResult",
    "Cost",
    "FakeProvider",
    "InvalidRequestError",
    "Message",
    "MissingCredentialsError",
    "OpenAICompatibleProvider",
    "OutputSchema",
    "Provider",
    "ProviderConfig",
    "ProviderConfigError",
    "ProviderError",
    "ProviderRegistry",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "QuotaExceededError",
    "RateLimitedError",
    "ScriptedReply",
    "StructuredOutputError",
    "StructuredResult",
    "TokenSink",
    "ToolCall",
    "ToolSpec",
    "UnknownModelError",
    "UnknownProviderError",
    "Usage",
    "chat_structured",
    "parse_model_ref",
    "price_call",
    "redact",
    "scrub_text",
]
