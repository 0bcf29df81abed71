"""The chat-completions wire format: requests out, completions and stream chunks in."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inferpipe.llm.types import ChatRequest, Message, ToolCall, ToolSpec, Usage

if TYPE_CHECKING:
    # Annotations only: the SDK is imported at the first call (see _openai_compat).
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    from openai.types.completion_usage import CompletionUsage

_SCHEMA_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def request_body(request: ChatRequest) -> dict[str, Any]:
    """The JSON body fields of a chat-completions request, except `model` and streaming."""
    body: dict[str, Any] = {"messages": [message_dict(m) for m in request.messages]}
    if request.tools:
        body["tools"] = [tool_dict(tool) for tool in request.tools]
    if request.response_format is not None:
        body["response_format"] = response_format_dict(request.response_format)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    return body


def message_dict(message: Message) -> dict[str, Any]:
    """One message in the wire format."""
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    if message.name is not None and message.role != "tool":
        wire["name"] = message.name
    return wire


def tool_dict(tool: ToolSpec) -> dict[str, Any]:
    """One tool in the wire format."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def response_format_dict(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema as a `json_schema` response format (named after the schema's title)."""
    title = str(schema.get("title") or "response")
    name = _SCHEMA_NAME_CHARS.sub("_", title)[:64] or "response"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def usage_of(usage: CompletionUsage | None) -> Usage | None:
    """Token counts from the wire usage; None when the provider sent none."""
    if usage is None:
        return None
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if details is not None else None
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        cached_tokens=cached or 0,
    )


@dataclass
class CompletionParts:
    """The fields of a reply, from a completion or assembled from stream chunks."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    model: str = ""
    finish_reason: str | None = None


def completion_parts(completion: ChatCompletion) -> CompletionParts:
    """The reply of a non-streamed completion (the first choice)."""
    parts = CompletionParts(usage=usage_of(completion.usage), model=completion.model or "")
    if not completion.choices:
        return parts
    choice = completion.choices[0]
    parts.content = choice.message.content
    parts.finish_reason = choice.finish_reason
    parts.tool_calls = tuple(
        ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments or "{}")
        for call in choice.message.tool_calls or ()
        if call.type == "function"
    )
    return parts


@dataclass
class _ToolCallDraft:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class StreamAssembler:
    """Assembles a reply from stream chunks: text pieces, tool-call deltas, the final usage."""

    content: list[str] = field(default_factory=list)
    drafts: dict[int, _ToolCallDraft] = field(default_factory=dict)
    parts: CompletionParts = field(default_factory=CompletionParts)

    def add(self, chunk: ChatCompletionChunk) -> tuple[str | None, bool]:
        """Take one chunk; returns (its text, whether it carried any output)."""
        if chunk.model:
            self.parts.model = chunk.model
        if chunk.usage is not None:
            self.parts.usage = usage_of(chunk.usage)
        if not chunk.choices:
            return None, False
        choice = chunk.choices[0]
        if choice.finish_reason is not None:
            self.parts.finish_reason = choice.finish_reason
        text = choice.delta.content or None
        if text is not None:
            self.content.append(text)
        for delta in choice.delta.tool_calls or ():
            draft = self.drafts.setdefault(delta.index, _ToolCallDraft())
            # Servers differ: most send id and name once, some repeat them in every delta.
            if delta.id and delta.id != draft.id:
                draft.id += delta.id
            if delta.function is not None:
                if delta.function.name and delta.function.name != draft.name:
                    draft.name += delta.function.name
                if delta.function.arguments:
                    draft.arguments.append(delta.function.arguments)
        return text, text is not None or bool(choice.delta.tool_calls)

    def finish(self) -> CompletionParts:
        """The assembled reply."""
        self.parts.content = "".join(self.content) if self.content else None
        self.parts.tool_calls = tuple(
            ToolCall(
                id=draft.id or f"call_{index}",
                name=draft.name,
                arguments="".join(draft.arguments) or "{}",
            )
            for index, draft in sorted(self.drafts.items())
        )
        return self.parts
