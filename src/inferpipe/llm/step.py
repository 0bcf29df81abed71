"""The model-call step: one chat call recorded once in the run's journal, with its usage and cost.

`chat(ctx, "summarize", model=..., messages=[...])` sends one request through a provider
registry inside `ctx.step.run`, so a replayed run returns the recorded reply without calling
the provider again (nor streaming its tokens again). The step records the provider, model,
settings, tokens, cost (explicitly unknown when it cannot be priced), latency and time to first
token. With `response_format`, the reply is validated and the model is re-asked at most
`max_reasks` times, each attempt its own step (`<id>`, `<id>:reask-1`, ...), so a crash between
attempts does not pay for one twice.

Example:
    class Contact(BaseModel):
        name: str
        email: str

    @app.function(id="extract")
    async def extract(ctx: inferpipe.Context) -> dict[str, str]:
        reply = await llm_step.chat(
            ctx, "extract", model="openai/gpt-4o-mini",
            messages=[Message.user(ctx.event.data["text"])], response_format=Contact,
        )
        return reply.parsed.model_dump()
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import pydantic

from inferpipe.core.records import StepKind
from inferpipe.engine.context import Context
from inferpipe.llm import errors, redaction
from inferpipe.llm._fake import FakeProvider
from inferpipe.llm._openai_compat import OpenAICompatibleProvider
from inferpipe.llm.providers import OPENAI_BASE_URL, ProviderRegistry
from inferpipe.llm.structured import OutputSchema, chat_structured
from inferpipe.llm.types import (
    FORBIDDEN_SETTINGS,
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
    "DEFAULT_MAX_REASKS",
    "TOKEN_EVENT",
    "ChatReply",
    "chat",
    "default_registry",
    "registry_from_env",
    "set_default_registry",
]

T = TypeVar("T")
M = TypeVar("M", bound=pydantic.BaseModel)

#: Re-asks after an invalid structured reply (so at most 3 calls) unless a call says otherwise.
DEFAULT_MAX_REASKS = 2

#: The suffix of the step id of the n-th re-ask: "<id>:reask-<n>".
REASK_SUFFIX = ":reask-"

#: The kind of the run-stream events that carry streamed text: data {"step", "text"}.
TOKEN_EVENT = "llm.token"

_default: ProviderRegistry | None = None


def registry_from_env(
    environ: Mapping[str, str] | None = None, *, fake: FakeProvider | None = None
) -> ProviderRegistry:
    """A registry with "fake" (offline) and "openai" configured from the environment.

    "openai" sends to OPENAI_BASE_URL (OpenAI by default) with the key read from OPENAI_API_KEY
    at the first call; with a base URL and no key (a local Ollama or vLLM) it sends none.

    Args:
        environ: The environment to read (os.environ by default).
        fake: The offline provider to register as "fake" (a scripted one, for demos).
    """
    env = os.environ if environ is None else environ
    base_url = env.get("OPENAI_BASE_URL") or OPENAI_BASE_URL
    keyless_local = bool(env.get("OPENAI_BASE_URL")) and not env.get("OPENAI_API_KEY")
    openai_provider = OpenAICompatibleProvider(
        base_url, api_key_env=None if keyless_local else "OPENAI_API_KEY"
    )
    return ProviderRegistry([fake or FakeProvider(), openai_provider])


def default_registry() -> ProviderRegistry:
    """The registry model-call steps use when a call names none (built on first use)."""
    global _default  # noqa: PLW0603 - one process-wide default, replaceable for tests and apps
    if _default is None:
        _default = registry_from_env()
    return _default


def set_default_registry(registry: ProviderRegistry | None) -> None:
    """Use `registry` by default from now on; None goes back to `registry_from_env()`."""
    global _default  # noqa: PLW0603
    _default = registry


@dataclass(frozen=True)
class ChatReply(Generic[T]):
    """The reply of a model-call step.

    Attributes:
        result: The accepted call (the last one when the reply was re-asked).
        parsed: The validated value with a `response_format` (a model instance, or the
            decoded JSON for a JSON schema); None without one.
        attempts: Every call the step made (1 + re-asks), each with its usage and cost.
    """

    result: ChatResult
    parsed: T | None
    attempts: tuple[ChatResult, ...]

    @property
    def content(self) -> str | None:
        """The reply's text."""
        return self.result.content

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tools the model asked to call."""
        return self.result.tool_calls

    @property
    def usage(self) -> Usage | None:
        """Tokens of all attempts; None when a provider reported none for one of them."""
        total = Usage()
        for attempt in self.attempts:
            if attempt.usage is None:
                return None
            total = total.plus(attempt.usage)
        return total

    @property
    def cost(self) -> Cost:
        """Cost of all attempts; unknown as soon as one of them is."""
        total = Cost(amount_usd=0.0, known=True)
        for attempt in self.attempts:
            total = total.plus(attempt.cost)
        return total

    def message(self) -> Message:
        """The reply as an assistant message, to append to the conversation."""
        return self.result.message()


MessageLike = Message | Mapping[str, Any]
ToolLike = ToolSpec | Mapping[str, Any]


@overload
async def chat(
    ctx: Context,
    step_id: str,
    *,
    model: str = ...,
    messages: Sequence[MessageLike],
    tools: Sequence[ToolLike] | None = ...,
    response_format: type[M],
    registry: ProviderRegistry | None = ...,
    max_reasks: int = ...,
    temperature: float | None = ...,
    max_tokens: int | None = ...,
    on_token: TokenSink | None = ...,
    stream: bool = ...,
    retries: int | None = ...,
    **settings: Any,
) -> ChatReply[M]: ...


@overload
async def chat(
    ctx: Context,
    step_id: str,
    *,
    model: str = ...,
    messages: Sequence[MessageLike],
    tools: Sequence[ToolLike] | None = ...,
    response_format: dict[str, Any] | None = ...,
    registry: ProviderRegistry | None = ...,
    max_reasks: int = ...,
    temperature: float | None = ...,
    max_tokens: int | None = ...,
    on_token: TokenSink | None = ...,
    stream: bool = ...,
    retries: int | None = ...,
    **settings: Any,
) -> ChatReply[Any]: ...


async def chat(
    ctx: Context,
    step_id: str,
    *,
    model: str = "fake/echo",
    messages: Sequence[MessageLike],
    tools: Sequence[ToolLike] | None = None,
    response_format: type[pydantic.BaseModel] | dict[str, Any] | None = None,
    registry: ProviderRegistry | None = None,
    max_reasks: int = DEFAULT_MAX_REASKS,
    temperature: float | None = None,
    max_tokens: int | None = None,
    on_token: TokenSink | None = None,
    stream: bool = True,
    retries: int | None = None,
    **settings: Any,
) -> ChatReply[Any]:
    """Call a model as a durable step (recorded once; a replay returns the record).

    Args:
        ctx: The run's context.
        step_id: The step id; re-asks are `<step_id>:reask-<n>`.
        model: "provider/model", e.g. "openai/gpt-4o-mini" or "fake/echo".
        messages: `Message`s or dicts such as `{"role": "user", "content": "..."}`.
        tools: `ToolSpec`s or dicts with `name`, `description` and `parameters`.
        response_format: A pydantic model class or a JSON schema the reply must match.
        registry: The providers to use; `default_registry()` when None.
        max_reasks: Re-asks after an invalid structured reply.
        temperature, max_tokens: Sampling settings.
        on_token: Also called with each piece of text as it streams (not on replay).
        stream: Stream tokens to the run's stream (when it has one) and to `on_token`.
        retries: Attempts after the first for each call's step; None: the function's retries.
        **settings: Other provider settings (`top_p`, `seed`, `tool_choice`, ...); credentials
            and transport options are refused.

    Returns:
        The reply: `.content`, `.tool_calls`, `.parsed`, `.usage`, `.cost`.

    Raises:
        InvalidRequestError: the request is malformed (raised before any step is recorded).
        StepError: the call failed after its retries (rate limits wait for Retry-After).
        StructuredOutputError: the reply still did not match after `max_reasks` re-asks.
    """
    request = build_request(model, messages, tools, temperature, max_tokens, settings)
    sink = _token_sink(ctx, step_id, on_token, stream)
    call = _RecordedCall(ctx, step_id, registry, sink, retries)
    if response_format is None:
        result = await call(request)
        return ChatReply(result, None, (result,))
    try:
        schema: OutputSchema[Any] = OutputSchema.of(response_format)
    except (TypeError, AttributeError, pydantic.PydanticUserError) as exc:
        raise errors.InvalidRequestError(f"response_format: {exc}") from None
    structured = await chat_structured(call, request, schema, max_reasks=max_reasks)
    return ChatReply(structured.attempts[-1], structured.value, structured.attempts)


def build_request(
    model: str,
    messages: Sequence[MessageLike],
    tools: Sequence[ToolLike] | None,
    temperature: float | None,
    max_tokens: int | None,
    settings: Mapping[str, Any],
) -> ChatRequest:
    """The request of a call, or an InvalidRequestError that shows no value (it may be a key)."""
    refused = sorted(k for k in settings if k.lower() in FORBIDDEN_SETTINGS)
    if refused:
        raise errors.InvalidRequestError(
            f"settings may not contain {refused}: credentials and transport options come from "
            "the provider configuration, and the other fields have their own argument"
        )
    problems: list[str] = []
    parsed_messages = _validated(Message, messages, "messages", problems)
    parsed_tools = _validated(ToolSpec, tools or (), "tools", problems)
    if not problems:
        try:
            return ChatRequest(
                model=model,
                messages=parsed_messages,
                tools=parsed_tools,
                temperature=temperature,
                max_tokens=max_tokens,
                settings=dict(settings),
            )
        except pydantic.ValidationError as exc:
            problems.extend(_problems(exc, ""))
    raise errors.InvalidRequestError("invalid model call: " + "; ".join(problems))


_ModelT = TypeVar("_ModelT", Message, ToolSpec)


def _validated(
    cls: type[_ModelT],
    values: Sequence[_ModelT | Mapping[str, Any]],
    field: str,
    problems: list[str],
) -> tuple[_ModelT, ...]:
    valid: list[_ModelT] = []
    for index, value in enumerate(values):
        try:
            valid.append(value if isinstance(value, cls) else cls.model_validate(value))
        except pydantic.ValidationError as exc:
            problems.extend(_problems(exc, f"{field}.{index}"))
    return tuple(valid)


def _problems(exc: pydantic.ValidationError, prefix: str) -> list[str]:
    # Never the input values: a caller may have put a key where it does not belong.
    head = [prefix] if prefix else []
    return [
        f"{'.'.join([*head, *(str(p) for p in e['loc'])]) or '(root)'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


class _RecordedCall:
    """Sends requests as steps: the first under `step_id`, re-asks under `<id>:reask-<n>`."""

    def __init__(
        self,
        ctx: Context,
        step_id: str,
        registry: ProviderRegistry | None,
        sink: TokenSink | None,
        retries: int | None = None,
    ) -> None:
        self._ctx = ctx
        self._step_id = step_id
        self._registry = registry
        self._sink = sink
        self._retries = retries
        self._calls = 0

    async def __call__(self, request: ChatRequest) -> ChatResult:
        step_id = (
            self._step_id if self._calls == 0 else f"{self._step_id}{REASK_SUFFIX}{self._calls}"
        )
        self._calls += 1
        recorded = await self._ctx.step.run(
            step_id,
            self._send,
            request,
            _kind=StepKind.LLM,
            _input=recorded_request(request),
            _meta=lambda output: call_metadata(request, output),
            _retries=self._retries,
        )
        return ChatResult.model_validate(recorded)

    async def _send(self, request: ChatRequest) -> dict[str, Any]:
        # The registry is looked up at call time, so `set_default_registry` applies to runs
        # already registered, and a provider error is recorded on the step.
        registry = self._registry or default_registry()
        result = await registry.chat(request, on_token=self._sink)
        return result.model_dump(mode="json")


def recorded_request(request: ChatRequest) -> dict[str, Any]:
    """What a model-call step records as its input: the request, redacted."""
    dumped = request.model_dump(mode="json", exclude={"settings"})
    dumped["settings"] = request.recorded_settings()
    for message in dumped["messages"]:
        for call in message.get("tool_calls", ()):
            call.pop("parsed_arguments", None)  # the raw `arguments` text says it all
    redacted: dict[str, Any] = redaction.redact(dumped)
    return redacted


def call_metadata(request: ChatRequest, output: Mapping[str, Any]) -> dict[str, Any]:
    """The step metadata of a call: provider, model, settings, tokens, cost and timings.

    The cost is `{"amount_usd": None, "known": False, "note": why}` when it cannot be priced,
    and `cost_usd` is then None: never a zero that was not measured.
    """
    cost = output.get("cost") or Cost.unknown("no cost was reported").model_dump(mode="json")
    return {
        "provider": output.get("provider"),
        "model": output.get("model"),
        "model_ref": request.model,
        "settings": request.recorded_settings(),
        "usage": output.get("usage"),
        "cost": cost,
        "cost_usd": cost.get("amount_usd") if cost.get("known") else None,
        "latency_ms": output.get("latency_ms"),
        "time_to_first_token_ms": output.get("time_to_first_token_ms"),
        "finish_reason": output.get("finish_reason"),
    }


def _token_sink(
    ctx: Context, step_id: str, on_token: TokenSink | None, stream: bool
) -> TokenSink | None:
    """Where streamed text goes: the run's stream (events of kind "llm.token") and `on_token`.

    The sink runs inside the step, so a replay (which returns the record) streams nothing.
    """
    if not stream:
        return None
    run_stream: Any = getattr(ctx, "stream", None)
    if run_stream is None:
        return on_token

    async def publish(text: str) -> None:
        await run_stream.publish({"step": step_id, "text": text}, kind=TOKEN_EVENT)
        if on_token is not None:
            await on_token(text)

    return publish
