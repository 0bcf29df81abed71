"""A source's transform: from a verified request to the events it stands for.

A transform is a CEL expression or a Jinja template (rendering JSON) over ``body`` (the parsed
JSON body), ``headers`` (names in lower case), ``source`` (its name) and ``message_id``. It
yields one event (an object with ``name``, ``data`` and optionally ``id``, ``user``) or a list
of them (an empty list: nothing to record). CEL runs in the expression sandbox, off the event
loop, under its time and memory budget; Jinja in the immutable sandbox of prompt templates.

Example::

    Transform("cel", '{"name": "github/" + headers["x-github-event"], "data": body}')
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from inferpipe.core import expr
from inferpipe.core import json as jsonc
from inferpipe.core.errors import ExpressionBudgetError, InvalidExpressionError
from inferpipe.core.events import Event
from inferpipe.engine.sandbox import default_sandbox
from inferpipe.webhooks.errors import InvalidWebhookConfigError, WebhookTransformError
from inferpipe.workflows.errors import TemplateError
from inferpipe.workflows.templates import TemplateRenderer

VARIABLES = frozenset({"body", "headers", "source", "message_id"})
"""What a transform sees."""
MAX_EVENTS = 100
"""Events one request may become."""
MAX_SOURCE_CHARS = 16 * 1024

_RENDERER = TemplateRenderer()


class TransformKind(enum.StrEnum):
    """The language of a transform."""

    CEL = "cel"  #: a CEL expression whose value is the event(s)
    JINJA = "jinja"  #: a Jinja template that renders the event(s) as JSON


@dataclass(frozen=True, slots=True)
class Transform:
    kind: TransformKind
    source: str

    def check(self) -> None:
        """Raise InvalidWebhookConfigError unless the transform compiles."""
        if not isinstance(self.source, str) or not self.source.strip():
            raise InvalidWebhookConfigError("a transform needs a non-empty expression")
        if len(self.source) > MAX_SOURCE_CHARS:
            raise InvalidWebhookConfigError(f"a transform is at most {MAX_SOURCE_CHARS} characters")
        try:
            if self.kind is TransformKind.CEL:
                expr.compile_expr(self.source, where="webhook transform")
            else:
                _SYNTAX.parse(self.source)
        except InvalidExpressionError as exc:
            raise InvalidWebhookConfigError(str(exc)) from None
        except TemplateSyntaxError as exc:
            raise InvalidWebhookConfigError(
                f"the Jinja transform does not parse: {exc.message} (line {exc.lineno})"
            ) from None


_SYNTAX = ImmutableSandboxedEnvironment()


async def apply(transform: Transform, view: dict[str, Any]) -> list[dict[str, Any]]:
    """The event objects `transform` makes of `view` (body, headers, source, message_id).

    Raises:
        WebhookTransformError: it failed on this request, or its value is not event(s).
    """
    try:
        if transform.kind is TransformKind.CEL:
            value = await default_sandbox().evaluate(transform.source, view)
        else:
            text = await asyncio.to_thread(
                _RENDERER.render, transform.source, view, where="webhook transform"
            )
            value = jsonc.loads(text)
    except (expr.ExpressionEvalError, ExpressionBudgetError, TemplateError) as exc:
        raise WebhookTransformError(f"the source's transform failed: {exc}") from None
    except ValueError as exc:
        raise WebhookTransformError(
            f"the source's Jinja transform did not render JSON: {exc}"
        ) from None
    return _as_events(value)


def _as_events(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_EVENTS:
        raise WebhookTransformError(
            f"the transform made {len(items)} events; one request makes at most {MAX_EVENTS}"
        )
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise WebhookTransformError(
                f"the transform's event {position} is not an object with a string 'name'"
            )
        if not isinstance(item.get("data", {}), dict):
            raise WebhookTransformError(
                f"the transform's event {position}: 'data' is not an object"
            )
    return items


def to_event(item: dict[str, Any], default_id: str) -> Event:
    """An event from a transform's object; its id is `default_id` unless it sets one."""
    given = item.get("id")
    user = item.get("user")
    return Event(
        name=item["name"],
        data=item.get("data") or {},
        user=user if isinstance(user, dict) else None,
        id=str(given) if given else default_id,
    )
