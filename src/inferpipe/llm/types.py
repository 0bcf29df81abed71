"""Data models of a model call: what goes to a provider and what comes back.

Every model here is a frozen pydantic model that forbids extra fields and round-trips through
`model_dump(mode="json")` / `model_validate`, so a durable step can record a `ChatResult` as JSON
and return an equal object when the run is replayed.

Example:
    request = ChatRequest(
        model="openai/gpt-4o-mini",
        messages=[Message.system("Be brief."), Message.user("Hello")],
        temperature=0.2,
    )
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inferpipe.llm import redaction

#: Called with each piece of text as the model produces it (streaming).
TokenSink = Callable[[str], Awaitable[None]]

#: Who wrote a message: instructions, the end user, the model, or a tool's result.
Role = Literal["system", "user", "assistant", "tool"]

#: Request settings a caller may not pass through `ChatRequest.settings`: transport options and
#: credentials belong to the provider's configuration, never to request (step input) data.
FORBIDDEN_SETTINGS = frozenset(
    {
        "api_key",
        "authorization",
        "base_url",
        "extra_body",
        "extra_headers",
        "extra_query",
        "headers",
        "messages",
        "model",
        "organization",
        "project",
        "response_format",
        "stream",
        "stream_options",
        "timeout",
        "tools",
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Model):
    """A call of a tool requested by the model.

    `arguments` is the JSON text exactly as the model wrote it; `parsed_arguments` is that text
    decoded when it is a JSON object, else None (the model wrote invalid JSON: feed an error back).
    """

    id: str
    name: str
    arguments: str = "{}"
    parsed_arguments: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse_arguments(cls, data: Any) -> Any:
        if isinstance(data, dict) and "parsed_arguments" not in data:
            data = {**data, "parsed_arguments": parse_json_object(data.get("arguments", "{}"))}
        return data

    @classmethod
    def of(cls, name: str, arguments: dict[str, Any], *, id: str = "call_1") -> ToolCall:
        """Build a tool call from a dict of arguments (scripts, tests)."""
        return cls(id=id, name=name, arguments=json.dumps(arguments, sort_keys=True))


class Message(_Model):
    """One chat message. `tool_call_id` links a `tool` message to the call it answers."""

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _check_content(self) -> Message:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        return self

    @classmethod
    def system(cls, content: str) -> Message:
        """An instruction message."""
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A message from the end user."""
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str | None, tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        """A message from the model (for example a previous turn)."""
        return cls(role="assistant", content=content, tool_calls=tool_calls)

    @classmethod
    def tool(cls, tool_call_id: str, content: str, *, name: str | None = None) -> Message:
        """The result of a tool call, sent back to the model."""
        return cls(role="tool", content=content, tool_call_id=tool_call_id, name=name)


class ToolSpec(_Model):
    """A tool the model may call; `parameters` is the JSON schema of its arguments object."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ChatRequest(_Model):
    """A chat call. `model` is "provider/model" for a registry, the bare model for a provider.

    `response_format` is the JSON schema the reply must match (structured output), or None.
    `settings` carries other provider settings (`top_p`, `seed`, `stop`, `tool_choice`, ...);
    credentials and transport options are refused there (see FORBIDDEN_SETTINGS).
    """

    model: str = Field(min_length=1)
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    response_format: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_settings(self) -> ChatRequest:
        refused = sorted(k for k in self.settings if k.lower() in FORBIDDEN_SETTINGS)
        if refused:
            raise ValueError(
                f"settings may not contain {refused}: credentials and transport options come "
                "from the provider configuration, and the other fields have their own argument"
            )
        return self

    def recorded_settings(self) -> dict[str, Any]:
        """The settings a step records beside the provider and model (no messages), redacted."""
        recorded: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        recorded.update(redaction.redact(self.settings))
        recorded["tools"] = [tool.name for tool in self.tools]
        recorded["structured"] = self.response_format is not None
        return recorded


class Usage(_Model):
    """Tokens of one call. `input_tokens` includes `cached_tokens` (OpenAI's convention)."""

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_tokens: int = Field(default=0, ge=0)

    def plus(self, other: Usage) -> Usage:
        """The sum of two usages (several calls of one step or agent)."""
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class Cost(_Model):
    """The price of a call in US dollars; `known=False` (and no amount) when it cannot be priced.

    An unknown price is never reported as zero: `amount_usd` is None and `note` says why.
    """

    amount_usd: float | None
    known: bool
    note: str | None = None

    @model_validator(mode="after")
    def _check_consistent(self) -> Cost:
        if self.known != (self.amount_usd is not None):
            raise ValueError("a known cost has an amount, an unknown cost has none")
        return self

    @classmethod
    def unknown(cls, note: str) -> Cost:
        """A cost that could not be computed, with the reason."""
        return cls(amount_usd=None, known=False, note=note)

    def plus(self, other: Cost) -> Cost:
        """The sum of two costs; unknown as soon as one of them is."""
        if self.amount_usd is None or other.amount_usd is None:
            return Cost.unknown(self.note or other.note or "a part of the cost is unknown")
        return Cost(amount_usd=self.amount_usd + other.amount_usd, known=True)


class ChatResult(_Model):
    """What a provider returned for one call, with usage, cost and timings.

    `usage` is None when the provider reported no token counts (then the cost is unknown too).
    `time_to_first_token_ms` is measured when streaming, None otherwise.
    """

    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None
    model: str
    provider: str
    finish_reason: str | None = None
    latency_ms: float = Field(ge=0)
    time_to_first_token_ms: float | None = None
    cost: Cost

    def message(self) -> Message:
        """This reply as an assistant message, to append to the conversation."""
        return Message.assistant(self.content, self.tool_calls)


def parse_json_object(text: object) -> dict[str, Any] | None:
    """Decode `text` as a JSON object; None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
