"""Save-time validation of a workflow graph: every problem at once, each with node id and path.

Example::

    problems = validate_graph(graph)             # [] when the graph is valid
    check_graph(graph)                           # raises GraphInvalidError listing them all
    check_graph(graph, ValidationOptions(models=PatternModelCatalog(("openai/gpt-4o*",))))
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from croniter import croniter

from inferpipe.core import expr
from inferpipe.core.errors import InvalidExpressionError
from inferpipe.llm.providers import ModelLister, ProviderRegistry
from inferpipe.net import egress as netpolicy
from inferpipe.workflows import _dag, _refs, _secret_use, spec
from inferpipe.workflows._index import GraphIndex, index_graph
from inferpipe.workflows.errors import GraphInvalidError, Problem, ProblemCode


class ModelCatalog(Protocol):
    """The models a graph may use. Injected so an application can list what it has keys for."""

    def check(self, model: str) -> str | None:
        """None when `model` ('provider/name') can be used, else the reason it cannot."""


@dataclass(frozen=True, slots=True)
class PatternModelCatalog:
    """A catalog of glob patterns such as ``openai/*`` or ``openai/gpt-4o*``."""

    patterns: tuple[str, ...] = ("fake/*", "openai/*")

    def check(self, model: str) -> str | None:
        """None when a pattern matches; else name the unknown provider or model."""
        provider, slash, name = model.partition("/")
        if not slash or not provider or not name:
            return f"model {model!r} must be written 'provider/name', e.g. 'openai/gpt-4o-mini'"
        if any(fnmatchcase(model, pattern) for pattern in self.patterns):
            return None
        providers = sorted({pattern.partition("/")[0] for pattern in self.patterns})
        if provider not in providers:
            return f"unknown provider {provider!r} (known providers: {', '.join(providers)})"
        return f"unknown model {model!r} for provider {provider!r}"


@dataclass(frozen=True, slots=True)
class RegistryModelCatalog:
    """The models of registered providers, as each provider lists them, plus an operator's
    allowlist.

    Args:
        providers: the registry whose providers serve the models.
        allow: glob patterns ('openai/ft:*', 'local/*') accepted whatever the provider lists.
        only_allowed: accept nothing but `allow` (the operator's list is the whole catalog).
    """

    providers: ProviderRegistry
    allow: tuple[str, ...] = ()
    only_allowed: bool = False

    def check(self, model: str) -> str | None:
        """None when `model` can be used; else the reason it cannot."""
        provider_name, slash, name = model.partition("/")
        if not slash or not provider_name or not name:
            return f"model {model!r} must be written 'provider/name', e.g. 'openai/gpt-4o-mini'"
        known = self.providers.names()
        if provider_name not in known:
            return f"unknown provider {provider_name!r} (known providers: {', '.join(known)})"
        if any(fnmatchcase(model, pattern) for pattern in self.allow):
            return None
        if self.only_allowed:
            allowed = ", ".join(self.allow) or "none"
            return f"model {model!r} is not in this server's model allowlist ({allowed})"
        provider = self.providers.get(provider_name)
        listed = provider.knows_model(name) if isinstance(provider, ModelLister) else None
        if listed is False:
            return f"unknown model {model!r}: provider {provider_name!r} does not list it"
        return None


DEFAULT_MODEL_CATALOG = RegistryModelCatalog(ProviderRegistry.with_defaults())
"""The built-in providers' models ("fake", and "openai" as genai-prices lists them)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits a graph must stay within."""

    max_nodes: int = 1000
    max_depth: int = 100
    """Longest chain of dependent nodes."""
    max_map_fanout: int = 1000
    """Largest `max_items` a map node may declare."""


@dataclass(frozen=True, slots=True)
class ValidationOptions:
    """What a graph is validated against."""

    models: ModelCatalog = DEFAULT_MODEL_CATALOG
    limits: Limits = field(default_factory=Limits)
    tasks: Collection[str] | None = None
    """Names of registered task functions; None skips the check (no registry at hand)."""
    private_egress: bool = True
    """Whether the operator's egress policy lets this workspace's nodes set `allow_private`
    (True when no policy is at hand)."""


def validate_graph(graph: spec.Graph, options: ValidationOptions | None = None) -> list[Problem]:
    """Every problem in `graph`; an empty list when it is valid."""
    return validate_index(index_graph(graph), options or ValidationOptions())


def check_graph(graph: spec.Graph, options: ValidationOptions | None = None) -> None:
    """Raise GraphInvalidError listing every problem, or return when the graph is valid."""
    problems = validate_graph(graph, options)
    if problems:
        raise GraphInvalidError(problems, graph_id=graph.id)


def validate_index(index: GraphIndex, options: ValidationOptions) -> list[Problem]:
    """Run every check over an indexed graph (the compiler reuses the index)."""
    checks = (
        _duplicates(index),
        _edges(index),
        _branches(index),
        _expressions(index),
        _cycles_and_reachability(index),
        _models_and_tasks(index, options),
        _http(index, options),
        _outputs(index),
        _trigger(index),
        _event_matches(index),
        _limits(index, options.limits),
    )
    return [problem for check in checks for problem in check]


def _duplicates(index: GraphIndex) -> Iterator[Problem]:
    for node_id, position in index.duplicates:
        first = index.positions[node_id]
        message = f"node id {node_id!r} is already used by /nodes/{first}"
        yield Problem(
            code=ProblemCode.DUPLICATE_ID,
            message=message,
            node_id=node_id,
            path=f"/nodes/{position}/id",
        )


def _edges(index: GraphIndex) -> Iterator[Problem]:
    for position, edge in enumerate(index.graph.edges):
        for end in ("source", "target"):
            name = getattr(edge, end)
            if name not in index.nodes:
                yield Problem(
                    code=ProblemCode.UNKNOWN_NODE,
                    message=f"edge {end} {name!r} is not a node of this graph",
                    path=f"/edges/{position}/{end}",
                )


def _branches(index: GraphIndex) -> Iterator[Problem]:
    for node_id, node in index.nodes.items():
        if not isinstance(node, spec.BranchNode):
            continue
        base = index.node_path(node_id)
        arms = [(f"/cases/{i}/then", case.then) for i, case in enumerate(node.cases)]
        for arm_path, targets in [*arms, ("/else", node.else_)]:
            for position, target in enumerate(targets):
                path = f"{base}{arm_path}/{position}"
                if target not in index.nodes:
                    message = f"branch target {target!r} is not a node of this graph"
                    yield Problem(
                        code=ProblemCode.UNKNOWN_NODE, message=message, node_id=node_id, path=path
                    )
                elif target == node_id:
                    message = "a branch cannot target itself"
                    yield Problem(
                        code=ProblemCode.BRANCH_TARGET, message=message, node_id=node_id, path=path
                    )
    for target, owners in index.branch_owners.items():
        if len(owners) > 1:
            names = ", ".join(sorted(owners))
            message = (
                f"node {target!r} is targeted by several branches ({names}); "
                "a node can belong to one branch only"
            )
            yield Problem(
                code=ProblemCode.BRANCH_TARGET,
                message=message,
                node_id=target,
                path=index.node_path(target),
            )


def _expressions(index: GraphIndex) -> Iterator[Problem]:
    properties = index.graph.input_schema.get("properties")
    required = index.graph.input_schema.get("required")
    declared = set(properties if isinstance(properties, dict) else ())
    declared |= set(required if isinstance(required, list) else ())
    for node_id, scanned in index.scans.items():
        base = index.node_path(node_id)
        for item in scanned:
            path = base + item.expression.path
            for code, message in item.refs.issues:
                yield Problem(code=code, message=message, node_id=node_id, path=path)
            for ref in sorted(item.refs.nodes - index.nodes.keys()):
                message = f"refers to nodes.{ref}, which is not a node of this graph"
                yield Problem(
                    code=ProblemCode.UNKNOWN_NODE, message=message, node_id=node_id, path=path
                )
            for field_name in sorted(item.refs.inputs - declared):
                message = f"refers to input.{field_name}, which the input schema does not declare"
                yield Problem(
                    code=ProblemCode.MISSING_INPUT, message=message, node_id=node_id, path=path
                )


def _cycles_and_reachability(index: GraphIndex) -> Iterator[Problem]:
    order = index.order
    cycles = _dag.find_cycles(order, index.deps)
    in_cycle: set[str] = set()
    for cycle in cycles:
        in_cycle.update(cycle)
        chain = " -> ".join([*cycle, cycle[0]])
        yield Problem(
            code=ProblemCode.CYCLE,
            message=f"cycle: {chain}",
            node_id=cycle[0],
            path=index.node_path(cycle[0]),
        )
    levels = _dag.topological_levels(order, index.deps)
    for node_id in order:
        if node_id not in levels and node_id not in in_cycle:
            message = "only reachable through a cycle, so it can never run"
            yield Problem(
                code=ProblemCode.UNREACHABLE,
                message=message,
                node_id=node_id,
                path=index.node_path(node_id),
            )
    yield from _disconnected(index)


def _disconnected(index: GraphIndex) -> Iterator[Problem]:
    """Nodes in a part of the graph linked neither to the input nor to the output.

    The flow starts at the input and ends at the output mapping: a part of the graph where no
    node reads `input` and no node is used by the output can never be fed or observed (a node
    dropped on a builder's canvas and never connected).
    """
    anchors = {ref for item in index.output_scans.values() for ref in item.refs.nodes}
    anchors |= {
        node_id
        for node_id, scanned in index.scans.items()
        if any("input" in item.refs.variables for item in scanned)
    }
    if not anchors & index.nodes.keys():
        return
    for component in _dag.weak_components(index.order, index.deps):
        if component & anchors:
            continue
        for node_id in sorted(component, key=index.positions.__getitem__):
            message = (
                "not connected to the graph's flow: no path links it to a node that reads "
                "the input or to a node used by the output"
            )
            yield Problem(
                code=ProblemCode.UNREACHABLE,
                message=message,
                node_id=node_id,
                path=index.node_path(node_id),
            )


def _models_and_tasks(index: GraphIndex, options: ValidationOptions) -> Iterator[Problem]:
    for node_id, node in index.nodes.items():
        base = index.node_path(node_id)
        inner: spec.AnyNode | spec.ItemNode = node.node if isinstance(node, spec.MapNode) else node
        prefix = "/node" if isinstance(node, spec.MapNode) else ""
        if isinstance(inner, spec.LlmFields):
            reason = options.models.check(inner.model)
            if reason is not None:
                yield Problem(
                    code=ProblemCode.UNKNOWN_MODEL,
                    message=reason,
                    node_id=node_id,
                    path=f"{base}{prefix}/model",
                )
            if inner.output_schema is not None and inner.output != "json":
                message = "output_schema is set but output is 'text'; set output to 'json'"
                yield Problem(
                    code=ProblemCode.SCHEMA,
                    message=message,
                    node_id=node_id,
                    path=f"{base}{prefix}/output",
                )
        if (
            isinstance(inner, spec.TaskFields)
            and options.tasks is not None
            and inner.task not in options.tasks
        ):
            known = ", ".join(sorted(options.tasks)) or "none"
            message = f"no task named {inner.task!r} is registered (registered: {known})"
            yield Problem(
                code=ProblemCode.UNKNOWN_TASK,
                message=message,
                node_id=node_id,
                path=f"{base}{prefix}/task",
            )


_SENSITIVE = re.compile(r"auth|token|secret|passw|api[-_]?key|cookie|credential|signature", re.I)
_TEMPLATE_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_AUTH_SCHEMES = re.compile(r"\b(bearer|basic|token|digest)\b", re.I)


def _literal_secret(value: str) -> bool:
    """True when a value in a sensitive place holds enough literal text to be a credential."""
    literal = _AUTH_SCHEMES.sub("", _TEMPLATE_BLOCK.sub("", value))
    return len(literal.strip()) >= 8


def _http(index: GraphIndex, options: ValidationOptions) -> Iterator[Problem]:
    for node_id, node in index.nodes.items():
        inner = node.node if isinstance(node, spec.MapNode) else node
        if not isinstance(inner, spec.HttpFields):
            continue
        base = index.node_path(node_id) + ("/node" if isinstance(node, spec.MapNode) else "")
        if inner.allow_private and not options.private_egress:
            message = (
                "allow_private is beyond this server's egress policy: the operator decides "
                f"which workspaces may reach private addresses ({netpolicy.PRIVATE_EGRESS_ENV})"
            )
            yield Problem(
                code=ProblemCode.PRIVATE_ADDRESS,
                message=message,
                node_id=node_id,
                path=f"{base}/allow_private",
            )
        static = _static_url(inner.url)
        if static is not None and not inner.allow_private:
            reason = netpolicy.literal_refusal(static)
            if reason is not None:
                yield Problem(
                    code=ProblemCode.PRIVATE_ADDRESS,
                    message=reason,
                    node_id=node_id,
                    path=f"{base}/url",
                )
        for path, reason in _secret_use.http_misuse(inner):
            yield Problem(
                code=ProblemCode.SECRET, message=reason, node_id=node_id, path=base + path
            )
        for where, path, value in _sensitive_values(inner, static):
            if _literal_secret(value):
                message = (
                    f"{where} holds a literal credential; reference a secret instead, "
                    "e.g. 'Bearer {{ secrets.API_TOKEN }}'"
                )
                yield Problem(
                    code=ProblemCode.SECRET, message=message, node_id=node_id, path=base + path
                )


def _static_url(url: str) -> str | None:
    """The URL up to its first template block when scheme and host are static, else None."""
    static = url.split("{", 1)[0]
    if static == url:
        return url
    _, sep, rest = static.partition("://")
    return static if sep and any(mark in rest for mark in "/?#") else None


def _sensitive_values(
    node: spec.HttpFields, static_url: str | None
) -> Iterator[tuple[str, str, str]]:
    """(what, JSON Pointer suffix, value) of headers, query and body fields named like secrets."""
    for name, value in node.headers.items():
        if _SENSITIVE.search(name):
            yield f"header {name!r}", f"/headers/{_refs.pointer_token(name)}", value
    if static_url is not None:
        for name, value in parse_qsl(urlsplit(static_url).query):
            if _SENSITIVE.search(name):
                yield f"query parameter {name!r}", "/url", value
    if isinstance(node.body, dict):
        for name, field_value in node.body.items():
            if _SENSITIVE.search(name) and isinstance(field_value, str):
                yield f"body field {name!r}", f"/body/{_refs.pointer_token(name)}", field_value


def _outputs(index: GraphIndex) -> Iterator[Problem]:
    if not index.graph.output:
        message = (
            "the output mapping is empty: map at least one field, "
            'e.g. {"result": "nodes.<id>.output"}'
        )
        yield Problem(code=ProblemCode.OUTPUT_MAPPING, message=message, path="/output")
    for key, item in index.output_scans.items():
        path = item.expression.path
        if not key.strip():
            yield Problem(
                code=ProblemCode.OUTPUT_MAPPING,
                message="output field names must not be blank",
                path=path,
            )
        for code, message in item.refs.issues:
            yield Problem(
                code=ProblemCode.OUTPUT_MAPPING,
                message=f"output {key!r}: {message} [{code}]",
                path=path,
            )
        for ref in sorted(item.refs.nodes - index.nodes.keys()):
            message = f"output {key!r} refers to nodes.{ref}, which is not a node of this graph"
            yield Problem(code=ProblemCode.OUTPUT_MAPPING, message=message, path=path)


def _trigger(index: GraphIndex) -> Iterator[Problem]:
    trigger = index.graph.trigger
    if trigger is None:
        return
    if trigger.cron is not None and not croniter.is_valid(trigger.cron):
        message = f"invalid cron schedule {trigger.cron!r} (five fields, e.g. '*/15 * * * *')"
        yield Problem(code=ProblemCode.SCHEMA, message=message, path="/trigger/cron")
    if trigger.match is not None:
        try:
            expr.check_variables(trigger.match, {"event"})
        except InvalidExpressionError as exc:
            reason = exc.reason.split("ERROR: ", 1)[-1]
            yield Problem(
                code=ProblemCode.INVALID_EXPRESSION,
                message=f"trigger match: {reason}",
                path="/trigger/match",
            )


_MATCH_COMPREHENSIONS = (
    "{what} is evaluated in the server's process against every incoming event of that name, "
    "so it may not use comprehensions (map, filter, all, exists, exists_one); compare fields "
    "instead, e.g. async.data.ticket_id == input.ticket_id"
)


def _event_matches(index: GraphIndex) -> Iterator[Problem]:
    """Wait and trigger matches run outside the expression sandbox (the store matches them
    against events), so their cost must not grow with the data: no comprehensions."""
    trigger = index.graph.trigger
    if trigger is not None and trigger.match and expr.uses_comprehensions(trigger.match):
        message = _MATCH_COMPREHENSIONS.format(what="a trigger match")
        yield Problem(code=ProblemCode.INVALID_EXPRESSION, message=message, path="/trigger/match")
    for node_id, node in index.nodes.items():
        if isinstance(node, spec.WaitNode) and node.match and expr.uses_comprehensions(node.match):
            yield Problem(
                code=ProblemCode.INVALID_EXPRESSION,
                message=_MATCH_COMPREHENSIONS.format(what="a wait node's match"),
                node_id=node_id,
                path=index.node_path(node_id) + "/match",
            )


def _limits(index: GraphIndex, limits: Limits) -> Iterator[Problem]:
    count = len(index.graph.nodes)
    if count > limits.max_nodes:
        message = f"the graph has {count} nodes; the limit is {limits.max_nodes}"
        yield Problem(code=ProblemCode.TOO_LARGE, message=message, path="/nodes")
    levels = _dag.topological_levels(index.order, index.deps)
    depth = max(levels.values(), default=-1) + 1
    if depth > limits.max_depth:
        deepest = max(levels, key=levels.__getitem__)
        message = (
            f"the longest chain of dependent nodes is {depth} long; the limit is {limits.max_depth}"
        )
        yield Problem(
            code=ProblemCode.TOO_LARGE,
            message=message,
            node_id=deepest,
            path=index.node_path(deepest),
        )
    for node_id, node in index.nodes.items():
        if isinstance(node, spec.MapNode) and node.max_items > limits.max_map_fanout:
            message = (
                f"max_items is {node.max_items}; the map fan-out limit is {limits.max_map_fanout}"
            )
            yield Problem(
                code=ProblemCode.TOO_LARGE,
                message=message,
                node_id=node_id,
                path=index.node_path(node_id) + "/max_items",
            )
