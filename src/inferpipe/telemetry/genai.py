"""GenAI semantic conventions on model-call and tool steps, and scores as evaluation events.

Prompts and completions are recorded on spans only when
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` (the variable OpenTelemetry's GenAI
instrumentations use); they are the step's recorded input and output, so the keys redacted
before storing (`Limits.redact_keys`) are redacted here too.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from inferpipe.core.records import StepRecord

CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
EVALUATION_EVENT = "gen_ai.evaluation.result"


def capture_content() -> bool:
    """Whether prompts and completions go on spans (off by default)."""
    return os.environ.get(CAPTURE_CONTENT, "").strip().lower() == "true"


def _split_model(ref: str) -> tuple[str | None, str]:
    provider, _, model = ref.partition("/")
    return (provider, model) if model else (None, ref)


def chat_attributes(rec: StepRecord, *, capture: bool) -> tuple[dict[str, AttributeValue], str]:
    """The GenAI attributes of a model-call attempt, and its span name ("chat <model>")."""
    meta = rec.meta
    request = rec.input if isinstance(rec.input, dict) else {}
    ref_provider, request_model = _split_model(str(meta.get("model_ref") or request.get("model")))
    attrs: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": request_model,
    }
    provider = meta.get("provider") or ref_provider
    if provider:
        attrs["gen_ai.provider.name"] = str(provider)
    if meta.get("model"):
        attrs["gen_ai.response.model"] = str(meta["model"])
    settings = request.get("settings") if isinstance(request.get("settings"), dict) else {}
    for key in ("temperature", "max_tokens", "top_p", "seed"):
        value = (settings or {}).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[f"gen_ai.request.{key}"] = value
    usage = meta.get("usage")
    if isinstance(usage, dict):
        attrs["gen_ai.usage.input_tokens"] = int(usage.get("input_tokens", 0))
        attrs["gen_ai.usage.output_tokens"] = int(usage.get("output_tokens", 0))
    if meta.get("finish_reason"):
        attrs["gen_ai.response.finish_reasons"] = [str(meta["finish_reason"])]
    if meta.get("cost_usd") is not None:
        attrs["inferpipe.llm.cost_usd"] = float(meta["cost_usd"])
    if capture:
        attrs["gen_ai.input.messages"] = _json(request.get("messages", []))
        if isinstance(rec.output, dict):
            attrs["gen_ai.output.messages"] = _json(_output_messages(rec.output))
    return attrs, f"chat {request_model}"


def _output_messages(output: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "role": "assistant",
            "content": output.get("content"),
            "tool_calls": output.get("tool_calls") or [],
            "finish_reason": output.get("finish_reason"),
        }
    ]


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def tool_attributes(rec: StepRecord) -> dict[str, AttributeValue] | None:
    """An agent's tool call (a step recording `tool` and `tool_call_id`): execute_tool."""
    info = rec.input
    if not isinstance(info, dict) or "tool" not in info or "tool_call_id" not in info:
        return None
    return {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": str(info["tool"]),
        "gen_ai.tool.call.id": str(info["tool_call_id"]),
    }


def tool_name(rec: StepRecord) -> str:
    info = rec.input if isinstance(rec.input, dict) else {}
    return str(info.get("tool", rec.name))


def add_score(
    span: trace.Span, name: str, value: float, reason: str | None, at_ms: int | None
) -> None:
    """A score on the run's span: an evaluation event, and `inferpipe.score.<name>`."""
    attrs: dict[str, AttributeValue] = {
        "gen_ai.evaluation.name": name,
        "gen_ai.evaluation.score.value": value,
    }
    if reason:
        attrs["gen_ai.evaluation.explanation"] = reason
    span.add_event(
        EVALUATION_EVENT, attrs, timestamp=at_ms * 1_000_000 if at_ms is not None else None
    )
    span.set_attribute(f"inferpipe.score.{name}", value)


def scorer_score(output: Any) -> tuple[str, float, str | None] | None:
    """The score a scorer run returned, if it did."""
    if not isinstance(output, dict) or "name" not in output or "value" not in output:
        return None
    value = output["value"]
    if not isinstance(value, int | float):
        return None
    return str(output["name"]), float(value), output.get("reason")
