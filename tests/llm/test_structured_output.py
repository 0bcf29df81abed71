"""Structured output: validation against a pydantic model or a JSON schema, bounded re-asks."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from inferpipe.llm import (
    ChatRequest,
    FakeProvider,
    InvalidRequestError,
    Message,
    OutputSchema,
    ScriptedReply,
    StructuredOutputError,
    Usage,
    chat_structured,
)


class Contact(BaseModel):
    name: str
    age: int


CONTACT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def extraction(model: str = "scripted") -> ChatRequest:
    return ChatRequest(model=model, messages=(Message.user("Ada, 36 years old"),))


def usage() -> Usage:
    return Usage(input_tokens=10, output_tokens=5)


async def test_reask_then_success_with_a_pydantic_model() -> None:
    provider = FakeProvider(
        [
            ScriptedReply('{"name": "Ada", "age": "thirty-six"}', usage=usage()),
            ScriptedReply('```json\n{"name": "Ada", "age": 36}\n```', usage=usage()),
        ],
        priced_as="openai/gpt-4o-mini",
    )

    result = await chat_structured(provider.chat, extraction(), Contact, max_reasks=2)

    assert result.value == Contact(name="Ada", age=36)
    assert len(result.attempts) == 2
    assert result.usage == Usage(input_tokens=20, output_tokens=10)
    assert result.cost.known and result.cost.amount_usd is not None
    first, second = provider.requests
    assert first.response_format == Contact.model_json_schema()
    assert second.response_format == first.response_format
    assert [m.role for m in second.messages] == ["user", "assistant", "user"]
    correction = second.messages[-1].content or ""
    assert "age" in correction and "integer" in correction


async def test_exhausted_reasks_raise_with_the_last_errors() -> None:
    provider = FakeProvider(["not json", '{"name": "Ada"}', '{"age": 3}'])

    with pytest.raises(StructuredOutputError) as caught:
        await chat_structured(provider.chat, extraction(), CONTACT_SCHEMA, max_reasks=2)

    error = caught.value
    assert error.attempts == 3
    assert error.errors == ["(root): 'name' is a required property"]
    assert error.last_content == '{"age": 3}'
    assert not error.retryable and error.code == "llm.structured_output_invalid"
    assert len(provider.requests) == 3
    assert "invalid JSON" in (provider.requests[1].messages[-1].content or "")


async def test_zero_reasks_accepts_only_the_first_reply() -> None:
    provider = FakeProvider(["[]", "{}"])
    with pytest.raises(StructuredOutputError, match="1 attempt"):
        await chat_structured(provider.chat, extraction(), CONTACT_SCHEMA, max_reasks=0)
    assert len(provider.requests) == 1


async def test_default_fake_reply_satisfies_the_schema() -> None:
    result = await chat_structured(FakeProvider().chat, extraction("echo"), Contact)
    assert result.value == Contact(name="example", age=0)
    assert len(result.attempts) == 1


def test_schema_value_is_the_decoded_json() -> None:
    schema = OutputSchema.of(CONTACT_SCHEMA)
    assert schema.parse('{"name": "Ada", "age": 36}') == {"name": "Ada", "age": 36}


def test_invalid_schema_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="invalid JSON schema"):
        OutputSchema.of({"type": "no-such-type"})


def test_reply_without_text_is_invalid() -> None:
    with pytest.raises(Exception, match="no text"):
        OutputSchema.of(Contact).parse(None)
