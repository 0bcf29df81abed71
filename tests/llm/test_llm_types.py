"""The data models of a model call: validation, recording, errors that survive pickling."""

from __future__ import annotations

import json
import pickle

import pytest
from pydantic import ValidationError

from inferpipe.llm import (
    ChatRequest,
    Message,
    RateLimitedError,
    StructuredOutputError,
    ToolCall,
)
from inferpipe.llm.redaction import REDACTED


def test_tool_call_keeps_raw_and_parsed_arguments() -> None:
    call = ToolCall(id="c1", name="f", arguments='{"a": [1, 2]}')
    assert call.parsed_arguments == {"a": [1, 2]}
    broken = ToolCall(id="c2", name="f", arguments='{"a": ')
    assert broken.parsed_arguments is None
    assert ToolCall(id="c3", name="f", arguments="[1]").parsed_arguments is None
    recorded = json.loads(json.dumps(call.model_dump(mode="json")))
    assert ToolCall.model_validate(recorded) == call


def test_messages_need_content_except_assistant_tool_calls() -> None:
    with pytest.raises(ValidationError, match="needs content"):
        Message(role="user")
    with pytest.raises(ValidationError, match="tool_call_id"):
        Message(role="tool", content="42")
    assert Message.assistant(None, (ToolCall.of("f", {}),)).content is None


def test_recorded_settings_are_redacted() -> None:
    request = ChatRequest(
        model="openai/gpt-4o-mini",
        messages=(Message.user("x"),),
        temperature=0.1,
        settings={"seed": 3, "metadata": {"session_token": "abc"}},
    )
    assert request.recorded_settings() == {
        "temperature": 0.1,
        "max_tokens": None,
        "seed": 3,
        "metadata": {"session_token": REDACTED},
        "tools": [],
        "structured": False,
    }


def test_errors_survive_pickling_with_their_fields() -> None:
    limited = pickle.loads(pickle.dumps(RateLimitedError("slow", provider="p", retry_after_s=2.5)))
    assert (limited.retry_after_s, limited.provider, str(limited)) == (2.5, "p", "slow")
    structured = StructuredOutputError(["(root): bad"], attempts=3, last_content="{}")
    copy = pickle.loads(pickle.dumps(structured))
    assert copy.to_dict() == structured.to_dict()
    assert copy.to_dict()["errors"] == ["(root): bad"]
