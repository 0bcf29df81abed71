"""Sandboxed Jinja2 rendering of prompt and HTTP templates.

Templates see ``input``, ``nodes.<id>.output`` and, where they apply, ``item``/``index`` (map
items) and ``secrets.<NAME>`` (HTTP nodes). The environment is Jinja2's immutable sandbox with
`StrictUndefined`: a missing field is an error, not an empty string; private attributes, unsafe
calls and mutating a list or dict are refused; huge repetitions and outputs are bounded.

Example::

    context = template_context({"name": "Ada"}, {"classify": {"label": "billing"}})
    render_template("Hi {{ input.name }} ({{ nodes.classify.output.label }})", context)
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from inferpipe.workflows.errors import TemplateError, TemplateSecurityError

MAX_OUTPUT_CHARS = 1_000_000
"""Longest rendered text; a prompt or body beyond that is a mistake, not a use case."""
MAX_REPEAT_ITEMS = 100_000
"""Longest string or list a template may build with `*`."""
_UNSET: Any = object()


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on `*` and `**` so a template cannot exhaust memory,
    and mapping keys read before attributes: data is JSON, so ``input.items`` is the input's
    `items` field, never the bound method `dict.items` (whose text leaks a memory address)."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and isinstance(attribute, str):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise SecurityError("exponents above 100 are not allowed in templates")
            return operator.pow(left, right)
        sized = [v for v in (left, right) if isinstance(v, str | list | tuple)]
        counts = [v for v in (left, right) if isinstance(v, int)]
        if sized and counts and len(sized[0]) * counts[0] > MAX_REPEAT_ITEMS:
            raise SecurityError(f"repetition beyond {MAX_REPEAT_ITEMS} items is not allowed")
        return operator.mul(left, right)


class TemplateRenderer:
    """Renders templates in the sandbox, caching parsed templates by source."""

    def __init__(self, *, max_output_chars: int = MAX_OUTPUT_CHARS, cache_size: int = 1024) -> None:
        self.max_output_chars = max_output_chars
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Template] = OrderedDict()
        self._env = _BoundedSandbox(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_value_only,
        )

    def render(self, source: str, context: Mapping[str, Any], *, where: str = "") -> str:
        """Render `source` against `context`.

        Raises:
            TemplateSecurityError: the template reached outside its sandbox.
            TemplateError: it does not parse, reads something undefined, or fails otherwise.
        """
        place = f" in {where}" if where else ""
        template = self._template(source, place)
        try:
            text = template.render(context)
        except SecurityError as exc:
            raise TemplateSecurityError(
                f"template{place} was refused by the sandbox: {exc}"
            ) from None
        except UndefinedError as exc:
            raise TemplateError(f"template{place} reads something undefined: {exc}") from None
        except _NotAValueError as exc:
            raise TemplateError(
                f"template{place} prints {exc.args[0]!r}, a method, not a value: "
                "the data has no such field"
            ) from None
        except Exception as exc:  # a template is user input: any failure is a template error
            raise TemplateError(f"template{place} failed: {type(exc).__name__}: {exc}") from None
        if len(text) > self.max_output_chars:
            raise TemplateError(
                f"template{place} rendered {len(text)} characters; "
                f"the limit is {self.max_output_chars}"
            )
        return text

    def render_json(self, value: Any, context: Mapping[str, Any], *, where: str = "") -> Any:
        """Render every string leaf of a JSON value (an HTTP body) as a template."""
        if isinstance(value, str):
            return self.render(value, context, where=where)
        if isinstance(value, dict):
            return {
                key: self.render_json(item, context, where=f"{where}/{key}")
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [
                self.render_json(item, context, where=f"{where}/{position}")
                for position, item in enumerate(value)
            ]
        return value

    def _template(self, source: str, place: str) -> Template:
        template = self._cache.get(source)
        if template is not None:
            self._cache.move_to_end(source)
            return template
        try:
            template = self._env.from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"template{place} does not parse: {exc.message} (line {exc.lineno})"
            ) from None
        self._cache[source] = template
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return template


class _NotAValueError(Exception):
    """A template printed a method or function; `render` reports it with its place."""


def _value_only(value: Any) -> Any:
    """What `{{ ... }}` may print: data, not a method or function (a missing `input.items`
    would otherwise print ``<built-in method items of dict object at 0x...>``)."""
    if callable(value) and not isinstance(value, Undefined):
        name = getattr(value, "__name__", type(value).__name__)
        raise _NotAValueError(name)
    return value


def template_context(
    input_data: Any,
    outputs: Mapping[str, Any],
    *,
    item: Any = _UNSET,
    index: int | None = None,
    secrets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The variables a template sees: ``input``, ``nodes.<id>.output`` and, when given,
    ``item``/``index`` and ``secrets``. Skipped nodes should be passed with output None."""
    context: dict[str, Any] = {
        "input": input_data,
        "nodes": {node_id: {"output": output} for node_id, output in outputs.items()},
    }
    if item is not _UNSET:
        context["item"] = item
        context["index"] = index
    if secrets is not None:
        context["secrets"] = dict(secrets)
    return context


_DEFAULT = TemplateRenderer()


def render_template(source: str, context: Mapping[str, Any], *, where: str = "") -> str:
    """Render with the shared default renderer; see `TemplateRenderer.render`."""
    return _DEFAULT.render(source, context, where=where)
