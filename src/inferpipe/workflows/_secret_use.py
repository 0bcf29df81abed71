"""Where a template may put a secret: whole, in an HTTP header or the body, nowhere else.

A secret is placed whole when it is a top-level output of its own, ``{{ secrets.NAME }}``, with
literal text around it at most (``Bearer {{ secrets.TOKEN }}``). A filter, a method call, an
operator, a test or a loop over it would make a value derived from the secret (reversed,
sliced, encoded), which the step's scrubbing (it replaces the exact value) could not find in
what is recorded: such templates are refused when the graph is saved, and again when a node
runs (a graph saved before the rule).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from inferpipe.workflows import spec

_PARSER = SandboxedEnvironment()


@lru_cache(maxsize=4096)
def secret_misuse(source: str) -> str | None:
    """Why `source` uses a secret other than whole, or None when it does not (or has none)."""
    if "secrets" not in source:
        return None
    try:
        tree = _PARSER.parse(source)
    except TemplateSyntaxError:
        return None  # reported as an invalid template
    uses = sum(1 for name in tree.find_all(nodes.Name) if name.name == "secrets")
    whole = [
        child
        for output in tree.body
        if isinstance(output, nodes.Output)
        for child in output.nodes
        if _is_whole_secret(child)
    ]
    if uses == len(whole):
        return None
    return (
        "a secret can only be placed whole, as {{ secrets.NAME }} (with text around it at "
        "most): no filters, methods, operators, tests or loops on it, so no value derived "
        "from it can reach a stored output"
    )


def _is_whole_secret(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Getattr):
        return isinstance(node.node, nodes.Name) and node.node.name == "secrets"
    if isinstance(node, nodes.Getitem):
        return (
            isinstance(node.node, nodes.Name)
            and node.node.name == "secrets"
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        )
    return False


def secret_in_url(source: str) -> bool:
    """Whether the URL template reads a secret (URLs are shown, logged and cached by
    proxies: secrets go in headers or the body)."""
    if "secrets" not in source:
        return False
    try:
        tree = _PARSER.parse(source)
    except TemplateSyntaxError:
        return False
    return any(name.name == "secrets" for name in tree.find_all(nodes.Name))


def http_misuse(node: spec.HttpFields) -> Iterator[tuple[str, str]]:
    """(JSON Pointer suffix, reason) of each template of an HTTP node that misuses a secret."""
    if secret_in_url(node.url):
        yield "/url", "secrets may be placed in headers or the body only, not in the URL"
    for name, value in node.headers.items():
        reason = secret_misuse(value)
        if reason is not None:
            yield f"/headers/{_token(name)}", reason
    yield from _body_misuse(node.body, "/body")


def _body_misuse(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        reason = secret_misuse(value)
        if reason is not None:
            yield path, reason
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _body_misuse(item, f"{path}/{_token(str(key))}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _body_misuse(item, f"{path}/{position}")


def _token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")
