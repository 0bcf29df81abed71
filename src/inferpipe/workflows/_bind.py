"""Binding run values into a wait's CEL expression, and keeping secret values out of records."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from inferpipe.core import expr
from inferpipe.workflows.errors import ExpressionFailedError, WorkflowError

_STRING = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
# A member followed by "(" is a method call (`input.q.startsWith('x')`), not part of the path.
_REF = re.compile(rf"({_STRING})|(?<![\w.])(input|nodes)((?:\s*\.\s*[A-Za-z_]\w*(?!\w|\s*\())*)")
_SECRET_SHOWN = "[secret]"


def bind_refs(expression: str, scope: Mapping[str, Any]) -> str:
    """Replace `input...` and `nodes.<id>.output...` references with the run's literal values.

    A wait expression is stored with the wait and matched by the engine against incoming
    events, where only `async` (the candidate) and `event` (the trigger) exist; binding the
    graph's own values makes it self-contained (and `async.x == <literal>` pins indexable).

    Raises:
        ExpressionFailedError: a value cannot be written as a CEL literal.
    """

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        path = [part.strip() for part in match.group(3).split(".") if part.strip()]
        value: Any = scope.get(match.group(2))
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        try:
            return expr.cel_literal(value)
        except TypeError as exc:
            raise ExpressionFailedError(f"cannot bind {match.group(0)!r}: {exc}") from None

    return _REF.sub(substitute, expression)


def scrub(value: Any, secrets: Mapping[str, str]) -> Any:
    """`value` with every occurrence of a secret value in its strings replaced."""
    shown = [s for s in secrets.values() if s]
    if not shown:
        return value
    return _scrub(value, shown)


def _scrub(value: Any, shown: list[str]) -> Any:
    if isinstance(value, str):
        for secret in shown:
            value = value.replace(secret, _SECRET_SHOWN)
        return value
    if isinstance(value, dict):
        return {_scrub(k, shown): _scrub(v, shown) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, shown) for item in value]
    return value


class HttpNodeError(WorkflowError):
    """An HTTP node's failure whose message had to be cleaned of a secret value."""

    code = "http_failed"

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def scrubbed_error(exc: Exception, secrets: Mapping[str, str]) -> Exception:
    """`exc` itself when its message holds no secret value, else a cleaned copy that keeps its
    retry behaviour (the engine records error messages)."""
    text = str(exc)
    cleaned = scrub(text, secrets)
    if cleaned == text:
        return exc
    retryable = getattr(exc, "retryable", not isinstance(exc, WorkflowError))
    retry_after = getattr(exc, "retry_after_s", None)
    return HttpNodeError(
        f"{type(exc).__name__}: {cleaned}",
        retryable=bool(retryable),
        retry_after_s=retry_after if isinstance(retry_after, int | float) else None,
    )
