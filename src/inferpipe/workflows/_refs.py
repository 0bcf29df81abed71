"""What a template or CEL expression refers to: input fields, upstream nodes, secrets, variables.

Jinja2 templates are read from their AST. CEL programs only report their top-level variables, so
paths (`nodes.<id>.output`, `input.<field>`) are read lexically, outside string literals.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from inferpipe.core import expr
from inferpipe.core.errors import InvalidExpressionError
from inferpipe.workflows import spec
from inferpipe.workflows.errors import ProblemCode

BASE_SCOPE = frozenset({"input", "nodes"})
ITEM_SCOPE = frozenset({"item", "index"})
_PARSER = SandboxedEnvironment()
_JINJA_GLOBALS = frozenset(_PARSER.globals)
_IMPLICIT = frozenset({"loop", "caller", "varargs", "kwargs", "self"})
"""Names Jinja2 defines inside loops, macros and blocks."""

_KEY = r"""(?:\s*\.\s*([A-Za-z_]\w*)|\s*\[\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\])"""
_CEL_REF = re.compile(rf"(?<![\w.])(nodes|input|secrets)\b{_KEY}?{_KEY}?")
_CEL_BOUND = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,"
    r"|\bcel\s*\.\s*bind\s*\(\s*([A-Za-z_]\w*)\s*,"
)
_CEL_STRING = expr.CEL_STRING


@dataclass(frozen=True, slots=True)
class Expression:
    """A template or CEL source inside a node, with the variables in scope where it runs."""

    kind: Literal["template", "cel"]
    source: str
    path: str
    scope: frozenset[str]


@dataclass(slots=True)
class RefScan:
    """What one expression refers to, plus the problems found reading it."""

    inputs: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    variables: set[str] = field(default_factory=set)
    issues: list[tuple[ProblemCode, str]] = field(default_factory=list)


def scan(expression: Expression) -> RefScan:
    """Read `expression`'s references; syntax errors and misuse land in `issues`."""
    if expression.kind == "template":
        return _scan_template(expression)
    return _scan_cel(expression)


def node_expressions(
    node: spec.AnyNode | spec.ItemNode, in_map: bool = False
) -> Iterator[Expression]:
    """Every template and expression of a node, with its JSON Pointer relative to the node."""
    scope = BASE_SCOPE | ITEM_SCOPE if in_map else BASE_SCOPE
    if isinstance(node, spec.LlmFields):
        yield Expression("template", node.prompt, "/prompt", scope)
        if node.system is not None:
            yield Expression("template", node.system, "/system", scope)
    elif isinstance(node, spec.TransformFields):
        yield Expression("cel", node.expression, "/expression", scope)
    elif isinstance(node, spec.HttpFields):
        yield from _http_expressions(node, scope | {"secrets"})
    elif isinstance(node, spec.TaskFields):
        for name, source in node.args.items():
            yield Expression("cel", source, f"/args/{pointer_token(name)}", scope)
    elif isinstance(node, spec.BranchNode):
        for position, case in enumerate(node.cases):
            yield Expression("cel", case.when, f"/cases/{position}/when", scope)
    elif isinstance(node, spec.MapNode):
        yield Expression("cel", node.over, "/over", scope)
        for inner in node_expressions(node.node, in_map=True):
            yield Expression(inner.kind, inner.source, "/node" + inner.path, inner.scope)
    elif isinstance(node, spec.WaitNode) and node.match is not None:
        yield Expression("cel", node.match, "/match", scope | {"async"})


def _http_expressions(node: spec.HttpFields, scope: frozenset[str]) -> Iterator[Expression]:
    yield Expression("template", node.url, "/url", scope)
    for name, value in node.headers.items():
        yield Expression("template", value, f"/headers/{pointer_token(name)}", scope)
    yield from _json_templates(node.body, "/body", scope)


def _json_templates(value: object, path: str, scope: frozenset[str]) -> Iterator[Expression]:
    if isinstance(value, str):
        yield Expression("template", value, path, scope)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _json_templates(item, f"{path}/{pointer_token(str(key))}", scope)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _json_templates(item, f"{path}/{position}", scope)


def pointer_token(token: str) -> str:
    """Escape one JSON Pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


# --- Jinja2 -----------------------------------------------------------------------------------


def _scan_template(expression: Expression) -> RefScan:
    result = RefScan()
    if "{" not in expression.source:
        return result  # plain text: no delimiter, nothing to parse
    try:
        tree = _PARSER.parse(expression.source)
    except TemplateSyntaxError as exc:
        result.issues.append(
            (
                ProblemCode.INVALID_TEMPLATE,
                f"template does not parse: {exc.message} (line {exc.lineno})",
            )
        )
        return result
    walker = _TemplateWalker(result)
    walker.visit(tree)
    result.variables = walker.free_variables()
    for name in sorted(result.variables):
        _check_variable(name, expression.scope, result)
    return result


class _TemplateWalker:
    """Collects `input.<f>`, `nodes.<id>` and `secrets.<NAME>` chains and unsafe attributes."""

    def __init__(self, result: RefScan) -> None:
        self.result = result
        self.loaded: set[str] = set()
        self.bound: set[str] = set()

    def free_variables(self) -> set[str]:
        """Names read but never bound in the template (`for`, `set`, macro parameters).

        Simpler than Jinja2's scoping (a name bound anywhere counts as bound everywhere) and
        several times faster than `jinja2.meta`; the runtime's StrictUndefined catches the rest.
        """
        return self.loaded - self.bound - _JINJA_GLOBALS - _IMPLICIT

    def visit(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            base, keys, dynamic_args = _chain(node)
            for key in keys:
                if isinstance(key, str) and key.startswith("_"):
                    self._unsafe(key)
            if isinstance(base, nodes.Name) and base.ctx == "load":
                _record(base.name, keys, self.result)
                self.loaded.add(base.name)
            else:
                self.visit(base)
            for arg in dynamic_args:
                self.visit(arg)
            return
        if isinstance(node, nodes.Macro):
            self.bound.add(node.name)
        if isinstance(node, nodes.Name):
            if node.ctx == "load":
                _record(node.name, [], self.result)
                self.loaded.add(node.name)
            else:
                self.bound.add(node.name)
        for child in node.iter_child_nodes():
            self.visit(child)

    def _unsafe(self, attribute: str) -> None:
        message = (
            f"attribute {attribute!r} is not accessible: templates may not read private or "
            "internal attributes (the sandbox refuses them)"
        )
        self.result.issues.append((ProblemCode.INVALID_TEMPLATE, message))


def _chain(node: nodes.Node) -> tuple[nodes.Node, list[str | None], list[nodes.Node]]:
    """Unwind `a.b["c"][x]` into its base, its keys (None where dynamic) and dynamic args."""
    keys: list[str | None] = []
    dynamic: list[nodes.Node] = []
    current = node
    while isinstance(current, nodes.Getattr | nodes.Getitem):
        if isinstance(current, nodes.Getattr):
            keys.append(current.attr)
        elif isinstance(current.arg, nodes.Const) and isinstance(current.arg.value, str | int):
            keys.append(str(current.arg.value))
        else:
            keys.append(None)
            dynamic.append(current.arg)
        current = current.node
    keys.reverse()
    return current, keys, dynamic


# --- shared by both languages -----------------------------------------------------------------


def _record(name: str, keys: Sequence[str | None], result: RefScan) -> None:
    first = keys[0] if keys else None
    if name == "nodes":
        if first is None:
            result.issues.append(
                (
                    ProblemCode.BAD_REFERENCE,
                    "nodes must be read by a literal id, as nodes.<id>.output",
                )
            )
            return
        result.nodes.add(first)
        if len(keys) > 1 and keys[1] != "output":
            message = f"nodes.{first}.{keys[1] or '[...]'}: a node exposes only .output"
            result.issues.append((ProblemCode.BAD_REFERENCE, message))
    elif name == "input" and first is not None:
        result.inputs.add(first)
    elif name == "secrets":
        if first is None:
            result.issues.append(
                (ProblemCode.SECRET, "secrets must be referenced by name, as secrets.<NAME>")
            )
        else:
            result.secrets.add(first)


def _check_variable(name: str, scope: frozenset[str], result: RefScan) -> None:
    if name in scope:
        return
    if name == "secrets":
        message = (
            "secrets are available only in an http node's url, headers and body, so they never "
            "reach a prompt, an expression or a stored output"
        )
        result.issues.append((ProblemCode.SECRET, message))
        return
    names = ", ".join(sorted(scope))
    message = f"unknown variable {name!r} (available here: {names})"
    result.issues.append((ProblemCode.UNKNOWN_VARIABLE, message))


# --- CEL --------------------------------------------------------------------------------------


def _scan_cel(expression: Expression) -> RefScan:
    result = RefScan()
    try:
        program = expr.compile_expr(expression.source)
    except InvalidExpressionError as exc:
        reason = exc.reason.split("ERROR: ", 1)[-1]  # drop the parser's echo of the source
        result.issues.append((ProblemCode.INVALID_EXPRESSION, f"CEL does not compile: {reason}"))
        return result
    source = expression.source
    strings = [match.span() for match in _CEL_STRING.finditer(source)]
    bound = {a or b for a, b in _CEL_BOUND.findall(source)}
    for match in _CEL_REF.finditer(source):
        if any(start <= match.start() < end for start, end in strings):
            continue
        groups = match.groups()
        keys = [key for key in (_first(groups[1:4]), _first(groups[4:7])) if key is not None]
        _record(groups[0], keys, result)
    if bound:
        bound.add("cel")  # `cel.bind(...)` shows `cel` as a variable
    result.variables = set(program.variables()) - bound
    for name in sorted(result.variables):
        _check_variable(name, expression.scope, result)
    return result


def _first(options: tuple[str | None, ...]) -> str | None:
    return next((option for option in options if option is not None), None)
