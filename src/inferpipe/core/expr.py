"""CEL expressions: compile once, evaluate in microseconds, index equality pins.

A wait's expression may refer to the trigger (`event.`) and the candidate (`async.`). When the
wait is created, `event.<path>` references are replaced by the literal values of the trigger, so
the stored expression mentions only `async.`. A conjunct of the form `async.<path> == <literal>`
is a *pin*: the store indexes the wait by (event name, path, value) and looks candidates up
instead of evaluating every waiting expression.

Every expression is checked statically when compiled: at most `MAX_EXPRESSION_CHARS` characters
and `MAX_COMPREHENSION_DEPTH` nested comprehension macros (`map`, `filter`, `all`, `exists`,
`exists_one`), since the CEL library evaluates while holding the GIL: nothing else in the
process runs meanwhile. Expressions a tenant writes (dashboard filters, graph nodes) are also
evaluated with a time budget in worker processes (`inferpipe.engine.sandbox`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from inferpipe.core.errors import InvalidExpressionError

_STRING = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_TOKEN = re.compile(rf"({_STRING})|(?<![\w.])event((?:\.[A-Za-z_]\w*)+)")
_PATH = r"async((?:\.[A-Za-z_]\w*)+)"
_LITERAL = rf"{_STRING}|-?\d+(?:\.\d+)?|true|false"
_PIN_LEFT = re.compile(rf"^\s*{_PATH}\s*==\s*({_LITERAL})\s*$")
_PIN_RIGHT = re.compile(rf"^\s*({_LITERAL})\s*==\s*{_PATH}\s*$")
# CEL string literals in every form (raw, bytes, triple-quoted), blanked before bracket counting.
CEL_STRING = re.compile(
    r"[rRbB]{0,2}(?:'''(?:[^\\]|\\.)*?'''|\"\"\"(?:[^\\]|\\.)*?\"\"\""
    r"|'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")",
    re.DOTALL,
)
_MACRO = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(")

MAX_EXPRESSION_CHARS = 4000
"""Longest expression accepted anywhere (the dashboard's `where` is capped lower, at 2000)."""
MAX_COMPREHENSION_DEPTH = 2
"""Deepest nesting of comprehension macros: each level multiplies the work by a list's size."""


@dataclass(frozen=True, slots=True)
class Pin:
    """An equality the expression requires: `async.<path> == value` (value as canonical JSON)."""

    path: str
    value: str


@lru_cache(maxsize=4096)
def compile_expr(expression: str, where: str = "") -> Any:
    """Compile `expression`; raise InvalidExpressionError naming it and `where` it came from."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidExpressionError(str(expression), "expression is empty", where=where)
    if len(expression) > MAX_EXPRESSION_CHARS:
        reason = f"it is {len(expression)} characters long; the limit is {MAX_EXPRESSION_CHARS}"
        raise InvalidExpressionError(expression[:200] + "...", reason, where=where)
    depth = comprehension_depth(expression)
    if depth > MAX_COMPREHENSION_DEPTH:
        reason = (
            f"comprehensions (map, filter, all, exists, exists_one) are nested {depth} deep; "
            f"the limit is {MAX_COMPREHENSION_DEPTH}"
        )
        raise InvalidExpressionError(expression, reason, where=where)
    # CEL (whose package loads prompt_toolkit for its REPL) loads with the first expression.
    import cel  # noqa: PLC0415

    try:
        return cel.compile(expression)
    except ValueError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise InvalidExpressionError(expression, reason, where=where) from exc


def comprehension_depth(expression: str) -> int:
    """How deeply comprehension macros nest in `expression` (0: none), read lexically."""
    code = CEL_STRING.sub(lambda m: " " * len(m.group(0)), expression)
    starts = {m.end() - 1 for m in _MACRO.finditer(code)}
    stack: list[bool] = []  # per open bracket: does it open a macro's arguments?
    depth = deepest = 0
    for position, ch in enumerate(code):
        if ch in "([{":
            macro = position in starts
            stack.append(macro)
            depth += macro
            deepest = max(deepest, depth)
        elif ch in ")]}" and stack:
            depth -= stack.pop()
    return deepest


def uses_comprehensions(expression: str) -> bool:
    """Whether `expression` calls a comprehension macro (its cost then grows with the data)."""
    return comprehension_depth(expression) > 0


def check_variables(expression: str, allowed: set[str], where: str = "") -> None:
    """Raise when `expression` uses a top-level variable not in `allowed`."""
    program = compile_expr(expression, where)
    used = set(program.variables())
    unknown = sorted(used - allowed)
    if unknown:
        names = ", ".join(sorted(allowed))
        raise InvalidExpressionError(
            expression, f"unknown variable {unknown[0]!r} (available: {names})", where=where
        )


def evaluate(expression: str, variables: dict[str, Any]) -> Any:
    """Evaluate; a missing field or type mismatch raises ExpressionEvalError."""
    try:
        return compile_expr(expression).execute(variables)
    except InvalidExpressionError:
        raise
    except Exception as exc:
        raise ExpressionEvalError(expression, exc) from exc


def matches(expression: str, variables: dict[str, Any]) -> bool:
    """True only when the expression evaluates to boolean true; errors count as no match."""
    try:
        return evaluate(expression, variables) is True
    except ExpressionEvalError:
        return False


class ExpressionEvalError(Exception):
    """An expression failed on the given data (missing field, wrong type)."""

    def __init__(self, expression: str, cause: BaseException | str) -> None:
        if isinstance(cause, BaseException):
            kind = "missing field" if isinstance(cause, KeyError) else type(cause).__name__
            cause = f"{kind} {cause}"
        super().__init__(f"expression {expression!r} failed: {cause}")
        self.expression = expression


def _lookup(data: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        if not isinstance(data, dict) or part not in data:
            raise KeyError(part)
        data = data[part]
    return data


def cel_literal(value: Any) -> str:
    """A CEL literal equal to a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return orjson.dumps(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(cel_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{cel_literal(str(k))}: {cel_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"cannot express {type(value).__name__} as a CEL literal")


def bind_event(expression: str, event: dict[str, Any]) -> str:
    """Replace `event.<path>` references (outside strings) with the trigger's literal values.

    A path missing from the trigger becomes `null`, so the expression still compiles and
    simply does not match.
    """

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        try:
            return cel_literal(_lookup(event, match.group(2)))
        except (KeyError, TypeError):
            return "null"

    return _TOKEN.sub(substitute, expression)


def _split_conjuncts(expression: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    quote: str | None = None
    while i < len(expression):
        ch = expression[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and expression.startswith("&&", i):
            parts.append(expression[start:i])
            start = i + 2
            i += 1
        elif depth == 0 and expression.startswith("||", i):
            return [expression]
        i += 1
    parts.append(expression[start:])
    return parts


def find_pin(expression: str) -> Pin | None:
    """The first `async.<path> == <literal>` conjunct of an and-chain, if any."""
    for part in _split_conjuncts(expression):
        left = _PIN_LEFT.match(part)
        right = _PIN_RIGHT.match(part)
        if left:
            path, literal = left.group(1), left.group(2)
        elif right:
            literal, path = right.group(1), right.group(2)
        else:
            continue
        value = compile_expr(literal).execute({})
        return Pin(path=path.lstrip("."), value=pin_value(value))
    return None


@lru_cache(maxsize=4096)
def is_pin_only(expression: str) -> bool:
    """Whether the expression is its pin and nothing more (`async.<path> == <literal>`): an
    event whose canonical value at the path is the pin's (`pinned_value_of`) matches it, so
    a wait found by its pin need not be evaluated (nor compiled: each wait has its own)."""
    parts = _split_conjuncts(expression)
    return len(parts) == 1 and bool(_PIN_LEFT.match(parts[0]) or _PIN_RIGHT.match(parts[0]))


def pin_value(value: Any) -> str:
    """Canonical JSON text of a pinned value, so `1` and `1.0` index alike."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


_MEMBER = re.compile(r"[A-Za-z_]\w*")


def pinnable_values(event: dict[str, Any], limit: int) -> list[tuple[str, str]] | None:
    """Every (path, canonical value) at which a pin may select the event, as
    `pinned_value_of` gives it: its members that are strings, numbers or booleans, through
    objects whose keys can be path parts, with a value no longer than an expression can be
    (a pin's literal is in one). None when there are more than `limit`."""
    found: list[tuple[str, str]] = []
    pending: list[tuple[str, dict[str, Any]]] = [("", event)]
    while pending:
        prefix, obj = pending.pop()
        for key, value in obj.items():
            if not isinstance(key, str) or not _MEMBER.fullmatch(key):
                continue
            if isinstance(value, dict):
                pending.append((f"{prefix}{key}.", value))
            elif isinstance(value, str | int | float):
                text = pin_value(value)
                if len(text) <= MAX_EXPRESSION_CHARS:
                    if len(found) == limit:
                        return None
                    found.append((prefix + key, text))
    return found


def pinned_value_of(event: dict[str, Any], path: str) -> str | None:
    """The canonical value of `path` in an event, or None when absent."""
    try:
        return pin_value(_lookup(event, path))
    except (KeyError, TypeError):
        return None
