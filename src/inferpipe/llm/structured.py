"""Structured output: a reply that must match a pydantic model or a JSON schema.

`OutputSchema` turns the model or schema into the request's `response_format` and validates
replies; `chat_structured` asks, validates, and re-asks with the validation errors at most
`max_reasks` times. It takes the chat call as a function, so each attempt can be its own durable
step (a crash between attempts does not pay for an attempt twice).

Example:
    class Contact(BaseModel):
        name: str
        email: str

    result = await chat_structured(registry.chat, request, Contact, max_reasks=2)
    contact: Contact = result.value
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import pydantic

from inferpipe.llm import errors
from inferpipe.llm.types import ChatRequest, ChatResult, Cost, Message, Usage

T = TypeVar("T")
M = TypeVar("M", bound=pydantic.BaseModel)

#: At most this many validation errors are reported per reply (and sent back to the model).
MAX_REPORTED_ERRORS = 10

# Models often wrap JSON in a Markdown code fence even when told not to.
_CODE_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


@dataclass(frozen=True)
class OutputSchema(Generic[T]):
    """A JSON schema and the function that turns a valid reply into a value of type `T`.

    Build one with `OutputSchema.of(Model)` (the value is a `Model` instance) or
    `OutputSchema.of({...json schema...})` (the value is the decoded JSON).
    """

    json_schema: dict[str, Any]
    _parse: Callable[[str], T]

    @overload
    @staticmethod
    def of(spec: type[M]) -> OutputSchema[M]: ...

    @overload
    @staticmethod
    def of(spec: dict[str, Any]) -> OutputSchema[Any]: ...

    @staticmethod
    def of(spec: type[pydantic.BaseModel] | dict[str, Any]) -> OutputSchema[Any]:
        """The output schema of a pydantic model class or of a JSON schema.

        Raises:
            InvalidRequestError: the JSON schema is not a valid schema.
        """
        if isinstance(spec, dict):
            return OutputSchema(spec, _json_schema_parser(spec))
        return OutputSchema(spec.model_json_schema(), _model_parser(spec))

    def parse(self, content: str | None) -> T:
        """The value of a reply.

        Raises:
            ReplyValidationError: the reply is not valid; `.errors` says why.
        """
        if content is None or not content.strip():
            raise ReplyValidationError(["the reply has no text (expected a JSON value)"])
        fenced = _CODE_FENCE.match(content)
        return self._parse(fenced.group(1) if fenced else content)

    def apply_to(self, request: ChatRequest) -> ChatRequest:
        """`request` with this schema as its response format."""
        return request.model_copy(update={"response_format": self.json_schema})


class ReplyValidationError(Exception):
    """A reply does not match its schema."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class StructuredResult(Generic[T]):
    """The validated value, and every call it took (each has its usage and cost)."""

    value: T
    attempts: tuple[ChatResult, ...]

    @property
    def usage(self) -> Usage | None:
        """Tokens of all attempts; None if a provider did not report them for one."""
        total = Usage()
        for attempt in self.attempts:
            if attempt.usage is None:
                return None
            total = total.plus(attempt.usage)
        return total

    @property
    def cost(self) -> Cost:
        """Cost of all attempts; unknown if one of them is."""
        total = Cost(amount_usd=0.0, known=True)
        for attempt in self.attempts:
            total = total.plus(attempt.cost)
        return total


ChatFunction = Callable[[ChatRequest], Awaitable[ChatResult]]


@overload
async def chat_structured(
    chat: ChatFunction, request: ChatRequest, output: OutputSchema[T], *, max_reasks: int = 2
) -> StructuredResult[T]: ...


@overload
async def chat_structured(
    chat: ChatFunction, request: ChatRequest, output: type[M], *, max_reasks: int = 2
) -> StructuredResult[M]: ...


@overload
async def chat_structured(
    chat: ChatFunction, request: ChatRequest, output: dict[str, Any], *, max_reasks: int = 2
) -> StructuredResult[Any]: ...


async def chat_structured(
    chat: ChatFunction,
    request: ChatRequest,
    output: OutputSchema[Any] | type[pydantic.BaseModel] | dict[str, Any],
    *,
    max_reasks: int = 2,
) -> StructuredResult[Any]:
    """Ask for a reply matching `output`; re-ask with the errors up to `max_reasks` times.

    Args:
        chat: Sends one request (e.g. `registry.chat`, or a durable step per attempt).
        request: The request; its `response_format` is set from `output`.
        output: An `OutputSchema`, a pydantic model class or a JSON schema.
        max_reasks: Re-asks after the first reply; 0 accepts the first reply or fails.

    Raises:
        StructuredOutputError: the last reply is still invalid; carries its errors.
        ProviderError: a call failed.
    """
    if max_reasks < 0:
        raise ValueError("max_reasks must be >= 0")
    schema = output if isinstance(output, OutputSchema) else OutputSchema.of(output)
    current = schema.apply_to(request)
    attempts: list[ChatResult] = []
    while True:
        result = await chat(current)
        attempts.append(result)
        try:
            return StructuredResult(schema.parse(result.content), tuple(attempts))
        except ReplyValidationError as invalid:
            if len(attempts) > max_reasks:
                raise errors.StructuredOutputError(
                    invalid.errors,
                    attempts=len(attempts),
                    last_content=result.content,
                    provider=result.provider,
                ) from None
            current = reask_request(current, result, invalid.errors)


def reask_request(request: ChatRequest, reply: ChatResult, problems: list[str]) -> ChatRequest:
    """`request` followed by the invalid reply and a message listing what is wrong with it."""
    listed = "\n".join(f"- {problem}" for problem in problems)
    correction = Message.user(
        "Your reply does not match the required JSON schema:\n"
        f"{listed}\n"
        "Reply again with only a JSON value that matches the schema."
    )
    messages = (*request.messages, Message.assistant(reply.content), correction)
    return request.model_copy(update={"messages": messages})


def _model_parser(model: type[M]) -> Callable[[str], M]:
    def parse(text: str) -> M:
        try:
            return model.model_validate_json(text)
        except pydantic.ValidationError as exc:
            raise ReplyValidationError(
                [
                    f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                    for e in exc.errors()[:MAX_REPORTED_ERRORS]
                ]
            ) from None

    return parse


def _json_schema_parser(schema: dict[str, Any]) -> Callable[[str], Any]:
    validator_class = jsonschema.validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise errors.InvalidRequestError(f"invalid JSON schema: {exc.message}") from None
    validator = validator_class(schema)

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ReplyValidationError([f"(root): invalid JSON: {exc}"]) from None
        problems = [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(
                validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]
            )
        ]
        if problems:
            raise ReplyValidationError(problems[:MAX_REPORTED_ERRORS])
        return value

    return parse
