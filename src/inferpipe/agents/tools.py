"""Tools: Python callables offered to a model, described by JSON schemas from their signatures.

The arguments of a tool are validated by a pydantic model built over its signature; the model's
JSON schema is what the model sees. Descriptions come from the docstring (its first paragraph
for the tool, its "Args:" section for the parameters).

Example:
    def lookup_order(order_id: str, include_items: bool = False) -> dict[str, object]:
        '''Find an order.

        Args:
            order_id: The order number, like "A-1001".
        '''

    spec = Tool.of(lookup_order).spec     # ToolSpec(name="lookup_order", parameters={...})
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, overload

import pydantic

from inferpipe.agents.approval import Approval, ApprovalRequired, approval_scope
from inferpipe.agents.errors import ToolDefinitionError
from inferpipe.core import json as jsonc
from inferpipe.core.errors import InferpipeError, RetryAfterError
from inferpipe.llm.types import ToolSpec, parse_json_object

#: Decides from a call's arguments whether a person must approve it before it runs.
ApprovalPolicy = bool | Callable[[dict[str, Any]], bool]

#: What a tool step records: {"ok": True, "result": ...}, {"ok": False, "error": {...}}, or
#: {"approval_required": {"reason": ...}} when the tool asked for a person's approval.
ToolOutcome = dict[str, Any]

_ARGS_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?:\s*(.*)$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Tool:
    """A callable the model may call.

    Attributes:
        fn: The function (sync functions run in a thread, off the event loop).
        name: The name the model uses (the function's name by default).
        description: What it does, for the model (the docstring's first paragraph by default).
        arguments: The pydantic model that validates the model's arguments.
        needs_approval: True, or a function of the arguments that says whether a person must
            approve this call before it runs (the run waits for an `agent/approval` event).
    """

    fn: Callable[..., Any]
    name: str
    description: str
    arguments: type[pydantic.BaseModel]
    needs_approval: ApprovalPolicy = False

    @classmethod
    def of(
        cls,
        fn: Callable[..., Any] | Tool,
        *,
        name: str | None = None,
        description: str | None = None,
        needs_approval: ApprovalPolicy = False,
    ) -> Tool:
        """The tool of a callable (a `Tool` is returned as it is).

        Raises:
            ToolDefinitionError: the name is not valid for a model, or the signature has
                `*args`/`**kwargs` or a type pydantic cannot describe.
        """
        if isinstance(fn, Tool):
            return fn
        tool_name: str = name or str(getattr(fn, "__name__", ""))
        if not _TOOL_NAME.match(tool_name):
            raise ToolDefinitionError(tool_name, "a tool name is 1-64 letters, digits, _ or -")
        doc = inspect.getdoc(fn) or ""
        summary = description if description is not None else doc.split("\n\n")[0].strip()
        return cls(fn, tool_name, summary, arguments_model(tool_name, fn, doc), needs_approval)

    @functools.cached_property
    def spec(self) -> ToolSpec:
        """The tool as the model sees it."""
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(name=self.name, description=self.description, parameters=schema)

    def requires_approval(self, arguments: str) -> bool:
        """Whether a call with these arguments (JSON text) waits for a person first."""
        if not callable(self.needs_approval):
            return bool(self.needs_approval)
        parsed = parse_json_object(arguments)
        if parsed is None:
            return False  # not run at all: the arguments error goes back to the model
        try:
            return bool(self.needs_approval(parsed))
        except Exception:
            return True  # a policy that cannot decide must not let the call through

    async def execute(self, arguments: str, approval: Approval | None = None) -> ToolOutcome:
        """Validate `arguments` (JSON text) and call the tool; never raises for the tool's own
        errors (they become the outcome), except retryable ones, which the step retries."""
        parsed = parse_json_object(arguments)
        if parsed is None:
            return failure("InvalidArguments", f"the arguments are not a JSON object: {arguments}")
        try:
            values = self.arguments.model_validate(parsed)
        except pydantic.ValidationError as exc:
            return failure("InvalidArguments", validation_message(exc))
        kwargs = {
            info.alias or field: getattr(values, field)
            for field, info in type(values).model_fields.items()
        }
        try:
            with approval_scope(approval):
                result = await self._call(kwargs)
            return {"ok": True, "result": jsonc.roundtrip(result, what=f"result of {self.name}")}
        except ApprovalRequired as request:
            if approval is not None:
                return failure("ApprovalRequired", "asked for approval again after approval")
            return {"approval_required": {"reason": request.reason}}
        except RetryAfterError:
            raise
        except Exception as exc:
            if getattr(exc, "retryable", False) is True and not isinstance(exc, InferpipeError):
                raise  # a transient failure the tool flagged: the step retries it
            return failure(type(exc).__name__, str(exc))

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        # to_thread copies the context, so approval_scope is visible in the thread too.
        result = await asyncio.to_thread(functools.partial(self.fn, **kwargs))
        return await result if inspect.isawaitable(result) else result


@overload
def tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    needs_approval: ApprovalPolicy = False,
) -> Tool: ...


@overload
def tool(
    fn: None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    needs_approval: ApprovalPolicy = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    needs_approval: ApprovalPolicy = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a `Tool` of a function; usable as `@tool` or `@tool(needs_approval=True)`."""

    def make(target: Callable[..., Any]) -> Tool:
        return Tool.of(target, name=name, description=description, needs_approval=needs_approval)

    return make(fn) if fn is not None else make


def arguments_model(name: str, fn: Callable[..., Any], doc: str = "") -> type[pydantic.BaseModel]:
    """The pydantic model of `fn`'s keyword arguments (extra arguments are refused).

    A parameter whose name a pydantic model reserves (`json`, `copy`, `model_*`, ...) gets an
    internal field name and keeps its own name as the alias the model sees.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolDefinitionError(name, f"cannot read its signature: {exc}") from exc
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, NameError):
        hints = {}  # a callable object or partial: fall back on the raw annotations
    described = parameter_descriptions(doc)
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ToolDefinitionError(
                name, f"parameter {param.name!r}: tools take named parameters only"
            )
        raw = param.annotation if param.annotation is not param.empty else Any
        annotation = hints.get(param.name, Any if isinstance(raw, str) else raw)
        default = ... if param.default is param.empty else param.default
        reserved = param.name.startswith("model_") or hasattr(pydantic.BaseModel, param.name)
        info = pydantic.Field(
            default,
            description=described.get(param.name),
            alias=param.name if reserved else None,
        )
        fields[f"{param.name}_arg" if reserved else param.name] = (annotation, info)
    try:
        return pydantic.create_model(
            f"{name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", protected_namespaces=()),
            **fields,
        )
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        raise ToolDefinitionError(name, str(exc)) from exc


def parameter_descriptions(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-style "Args:" section of a (dedented) docstring."""
    found: dict[str, str] = {}
    inside, base, current = False, -1, ""
    for line in doc.splitlines():
        if _ARGS_SECTION.match(line):
            inside = True
            continue
        if not inside or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            break  # the next section
        match = _ARG_LINE.match(line)
        if match and base in (-1, indent):
            base, current = indent, match.group(1).lstrip("*")
            found[current] = match.group(2).strip()
        elif current:
            found[current] = f"{found[current]} {line.strip()}"
    return found


def validation_message(exc: pydantic.ValidationError) -> str:
    """The problems of invalid arguments, one per field, without echoing the values."""
    return "invalid arguments: " + "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    )


def failure(kind: str, message: str) -> ToolOutcome:
    """The outcome of a call that failed: sent back to the model, never a run failure."""
    return {"ok": False, "error": {"type": kind, "message": message}}


def outcome_text(outcome: Mapping[str, Any]) -> str:
    """The tool message the model receives for an outcome."""
    if outcome.get("ok"):
        result = outcome.get("result")
        return result if isinstance(result, str) else jsonc.dumps(result).decode()
    error = outcome.get("error") or {}
    return f"Error ({error.get('type', 'Error')}): {error.get('message', '')}"
