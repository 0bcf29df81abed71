"""A deterministic offline provider for demos and tests."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from inferpipe.llm import errors, pricing
from inferpipe.llm.types import ChatRequest, ChatResult, Cost, TokenSink, ToolCall, Usage

# A "token" of the fake provider: a word with the whitespace before it, so the pieces of a text
# join back to exactly that text.
_TOKEN = re.compile(r"\s*\S+|\s+$")

#: Models the fake provider serves without a script, and what each one replies.
DEFAULT_BEHAVIOURS = {
    "echo": "repeats the last user message",
    "summarize": "replies with the first sentence of the last user message, at most 20 words",
    "classify": "replies with JSON matching the response format; each enum field takes the "
    "value the last user message mentions first (else the enum's first value)",
}

_SUMMARY_WORDS = 20
_RECORDED_REQUESTS = 1000


@dataclass(frozen=True)
class ScriptedReply:
    """One reply of a `FakeProvider` script.

    Args:
        content: The text of the reply (streamed word by word).
        tool_calls: Tool calls the model makes in this reply.
        usage: Token counts to report; None counts words deterministically.
        finish_reason: None means "tool_calls" when there are tool calls, else "stop".
        error: Raised instead of replying (to script a rate limit, an outage, ...).
    """

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None
    error: errors.ProviderError | None = None


#: Computes the reply to a request (a stateless script, safe to replay after a crash).
ReplyFunction = Callable[[ChatRequest], ScriptedReply | str]


class FakeProvider:
    """Replies from a script, a function, or a default behaviour: never touches a network.

    With a list, replies are consumed in order (a plain string is a text reply) and running out
    is an error. With a function, each request gets `function(request)`. Without a script, the
    model chooses a behaviour from DEFAULT_BEHAVIOURS, and a request with a `response_format`
    gets a minimal JSON value that matches its schema.

    Args:
        script: The replies, or the function that computes them.
        name: The provider name in model references ("fake/echo").
        priced_as: "provider/model" (or "provider") whose genai-prices prices apply, for demos;
            None makes every call cost a known 0.
        token_delay_s: Pause between streamed tokens, to make a demo's stream visible.
        clock: Monotonic seconds for latency and time to first token.

    Example:
        provider = FakeProvider([ScriptedReply(tool_calls=(ToolCall.of("lookup", {"q": "x"}),)),
                                 "The answer is 42."])
    """

    def __init__(
        self,
        script: Sequence[ScriptedReply | str] | ReplyFunction | None = None,
        *,
        name: str = "fake",
        priced_as: str | None = None,
        token_delay_s: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.name = name
        self._function = script if callable(script) else None
        self._queue: deque[ScriptedReply | str] | None = (
            deque(script) if script is not None and not callable(script) else None
        )
        self._priced_as = priced_as.partition("/") if priced_as else None
        self._token_delay_s = token_delay_s
        self._clock = clock
        #: The requests received, oldest first (the last 1000: a demo may run for days).
        self.requests: deque[ChatRequest] = deque(maxlen=_RECORDED_REQUESTS)
        self._calls = 0

    def __repr__(self) -> str:
        return f"FakeProvider(name={self.name!r})"

    def knows_model(self, model: str) -> bool | None:
        """A scripted fake answers any model (None); otherwise only its default behaviours."""
        if self._function is not None or self._queue is not None:
            return None
        return model in DEFAULT_BEHAVIOURS

    async def chat(self, request: ChatRequest, on_token: TokenSink | None = None) -> ChatResult:
        """Reply to `request`; stream the reply's words to `on_token` when given."""
        started_s = self._clock()
        self.requests.append(request)
        self._calls += 1
        reply = self._reply_to(request)
        if reply.error is not None:
            raise reply.error
        first_token_s: float | None = None
        if on_token is not None:
            first_token_s = self._clock()
            for piece in split_tokens(reply.content or ""):
                await on_token(piece)
                if self._token_delay_s > 0:
                    await asyncio.sleep(self._token_delay_s)
        usage = reply.usage or Usage(
            input_tokens=count_request_tokens(request), output_tokens=count_reply_tokens(reply)
        )
        ended_s = self._clock()
        return ChatResult(
            content=reply.content,
            tool_calls=reply.tool_calls,
            usage=usage,
            model=request.model,
            provider=self.name,
            finish_reason=reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"),
            latency_ms=max(ended_s - started_s, 0.0) * 1000.0,
            time_to_first_token_ms=(
                None if first_token_s is None else max(first_token_s - started_s, 0.0) * 1000.0
            ),
            cost=self._cost(request.model, usage),
        )

    async def aclose(self) -> None:
        """Nothing to close; present for symmetry with network providers."""

    def _reply_to(self, request: ChatRequest) -> ScriptedReply:
        if self._function is not None:
            reply = self._function(request)
        elif self._queue is not None:
            if not self._queue:
                raise errors.InvalidRequestError(
                    f"fake provider {self.name!r}: the script has no reply left for call "
                    f"{self._calls}",
                    provider=self.name,
                )
            reply = self._queue.popleft()
        else:
            reply = default_reply(request, provider=self.name)
        return ScriptedReply(content=reply) if isinstance(reply, str) else reply

    def _cost(self, model: str, usage: Usage) -> Cost:
        if self._priced_as is None:
            return Cost(amount_usd=0.0, known=True, note="the fake provider is free")
        provider_id, _, priced_model = self._priced_as
        return pricing.price_call(provider_id, priced_model or model, usage)


def default_reply(request: ChatRequest, *, provider: str = "fake") -> ScriptedReply:
    """The reply of the fake provider's default behaviours (see DEFAULT_BEHAVIOURS)."""
    if request.model not in DEFAULT_BEHAVIOURS:
        raise errors.UnknownModelError(
            f"fake provider has no model {request.model!r} without a script; "
            f"models: {sorted(DEFAULT_BEHAVIOURS)}",
            provider=provider,
        )
    text = next(
        (m.content for m in reversed(request.messages) if m.role == "user" and m.content), ""
    )
    if request.model == "classify":
        return _classify_reply(request, text, provider)
    if request.response_format is not None:
        return ScriptedReply(content=json.dumps(example_value(request.response_format)))
    if request.model == "echo":
        return ScriptedReply(content=text)
    first_sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    words = first_sentence.split()
    summary = " ".join(words[:_SUMMARY_WORDS]) + (" ..." if len(words) > _SUMMARY_WORDS else "")
    return ScriptedReply(content=summary)


def _classify_reply(request: ChatRequest, text: str, provider: str) -> ScriptedReply:
    """The "classify" behaviour: a deterministic label pick, for offline demos of routing."""
    if request.response_format is None:
        raise errors.InvalidRequestError(
            "fake/classify needs a response format (structured output) listing the labels",
            provider=provider,
        )
    value = example_value(request.response_format)
    properties = request.response_format.get("properties", {})
    if isinstance(value, dict):
        for name, field_schema in properties.items():
            choice = _first_mentioned(field_schema.get("enum"), text)
            if name in value and choice is not None:
                value[name] = choice
    else:
        value = _first_mentioned(request.response_format.get("enum"), text) or value
    return ScriptedReply(content=json.dumps(value))


def _first_mentioned(labels: Any, text: str) -> str | None:
    """The label of `labels` whose first whole-word mention in `text` comes earliest."""
    if not isinstance(labels, list):
        return None
    found = [
        (match.start(), label)
        for label in labels
        if isinstance(label, str)
        and (match := re.search(rf"\b{re.escape(label)}\b", text, re.IGNORECASE))
    ]
    return min(found)[1] if found else None


def split_tokens(text: str) -> list[str]:
    """The fake provider's tokens of `text`; they join back to `text`."""
    return _TOKEN.findall(text)


def count_request_tokens(request: ChatRequest) -> int:
    """Input tokens of a request: the words of its messages and tool-call arguments."""
    total = 0
    for message in request.messages:
        total += len(split_tokens(message.content or ""))
        total += sum(len(split_tokens(call.arguments)) for call in message.tool_calls)
    return total


def count_reply_tokens(reply: ScriptedReply) -> int:
    """Output tokens of a reply: the words of its text and tool-call arguments."""
    calls = sum(len(split_tokens(call.arguments)) for call in reply.tool_calls)
    return len(split_tokens(reply.content or "")) + calls


def example_value(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A small JSON value that matches `schema` (types, required properties, enums, $refs)."""
    root = schema if root is None else root
    if "$ref" in schema:
        return example_value(_resolve_ref(root, str(schema["$ref"])), root)
    for keyword in ("const", "default"):
        if keyword in schema:
            return schema[keyword]
    if schema.get("enum"):
        return schema["enum"][0]
    for keyword in ("anyOf", "oneOf", "allOf"):
        if schema.get(keyword):
            return example_value(schema[keyword][0], root)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _example_of_type(str(kind), schema, root)


def _example_of_type(kind: str, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        return {
            name: example_value(properties[name], root)
            for name in schema.get("required", list(properties))
            if name in properties
        }
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [example_value(schema.get("items", {}), root) for _ in range(count)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "example".ljust(int(schema.get("minLength", 0)), "x") if kind == "string" else None


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)
