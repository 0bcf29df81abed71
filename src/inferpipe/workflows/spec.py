"""The workflow graph specification: pydantic models, loading from JSON/YAML, JSON Schema.

A graph is data: an input schema, nodes, edges and an output mapping. Templates (prompts, HTTP
URL/headers/body) are sandboxed Jinja2 over ``input``, ``nodes.<id>.output`` (plus ``item`` and
``index`` inside a map, ``secrets.<NAME>`` in HTTP nodes); expressions (transforms, branch
conditions, map sources, task arguments, wait matches, the output mapping) are CEL.

Example::

    graph = load_graph('''
    {"id": "hello", "name": "Hello",
     "input_schema": {"type": "object", "properties": {"name": {"type": "string"}},
                      "required": ["name"]},
     "nodes": [{"id": "greet", "type": "llm", "model": "fake/echo",
                "prompt": "Say hello to {{ input.name }}"}],
     "output": {"greeting": "nodes.greet.output"}}
    ''')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from inferpipe.core import durations
from inferpipe.workflows.errors import GraphInvalidError, Problem, ProblemCode

NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
"""Node ids are identifiers, so `nodes.<id>.output` parses in Jinja2 and CEL alike and step
names `node-<id>-<type>` split unambiguously on '-'."""

GRAPH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
TASK_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$"
SCHEMA_PATH = Path(__file__).with_name("graph.schema.json")
"""Where the published JSON Schema of a graph lives (kept current by a test)."""

NodeId = Annotated[str, Field(pattern=NODE_ID_PATTERN)]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True
    )


class _NodeCommon(_Spec):
    label: str | None = Field(default=None, description="Display name in a builder.")
    retries: int | None = Field(
        default=None, ge=0, le=20, description="Attempts after the first; None: runtime default."
    )


# --- node bodies (no id): usable at top level and as a map's per-item node -------------------


class LlmFields(_NodeCommon):
    type: Literal["llm"]
    model: str = Field(min_length=1, description="'provider/model', e.g. 'openai/gpt-4o-mini'.")
    prompt: str = Field(description="Jinja2 template of the user message.")
    system: str | None = Field(default=None, description="Jinja2 template of the system message.")
    output: Literal["text", "json"] = "text"
    output_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of the structured output (output: json)."
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)


class TransformFields(_NodeCommon):
    type: Literal["transform"]
    expression: str = Field(description="CEL expression; its value is the node's output.")


class HttpFields(_NodeCommon):
    type: Literal["http"]
    method: HttpMethod = "GET"
    url: str = Field(min_length=1, description="Jinja2 template of the URL.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Header templates; secrets as {{ secrets.NAME }}."
    )
    body: JsonValue | None = Field(
        default=None, description="A template string, or JSON whose string leaves are templates."
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    allow_private: bool = Field(
        default=False, description="Allow private, loopback and link-local addresses."
    )


class TaskFields(_NodeCommon):
    type: Literal["task"]
    task: str = Field(pattern=TASK_NAME_PATTERN, description="A registered Python function.")
    args: dict[str, str] = Field(
        default_factory=dict, description="Keyword argument name -> CEL expression."
    )


MapItemNode = Annotated[
    LlmFields | TransformFields | HttpFields | TaskFields, Field(discriminator="type")
]
"""The node a map applies to each item; `item` and `index` are in scope inside it."""


# --- top-level nodes ---------------------------------------------------------------------------


class _Identified(_Spec):
    id: NodeId


class LlmNode(LlmFields, _Identified):
    """Call a model with a rendered prompt; output is text, or JSON matching `output_schema`."""


class TransformNode(TransformFields, _Identified):
    """Reshape upstream data with a CEL expression (no arbitrary Python from graph authors)."""


class HttpNode(HttpFields, _Identified):
    """Call an HTTP endpoint; templates render URL, headers and body; secrets by reference."""


class TaskNode(TaskFields, _Identified):
    """Call a Python function registered by the application under `task`."""


class BranchCase(_Spec):
    when: str = Field(description="CEL condition; the first true case wins.")
    then: list[NodeId] = Field(description="Nodes that run when this case is chosen.")


class BranchNode(_NodeCommon, _Identified):
    """Choose which downstream nodes run; the targets of the other arms are recorded skipped."""

    type: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1)
    else_: list[NodeId] = Field(default_factory=list, alias="else")


class MapNode(_NodeCommon, _Identified):
    """Apply `node` to each item of the list `over` yields; outputs keep the items' order."""

    type: Literal["map"]
    over: str = Field(description="CEL expression yielding a list.")
    node: MapItemNode
    concurrency: int = Field(default=4, ge=1, description="Items in flight at once.")
    max_items: int = Field(default=100, ge=1, description="Longest list accepted at run time.")


class WaitNode(_NodeCommon, _Identified):
    """Wait for an event (human in the loop); output is the event's data, or null on timeout."""

    type: Literal["wait"]
    event: str = Field(min_length=1, description="Event name to wait for.")
    match: str | None = Field(
        default=None, description="CEL over `async` (the candidate event), `input` and `nodes`."
    )
    timeout: str | float = Field(description="Seconds, or a duration such as '30m' or '7d'.")

    @field_validator("timeout")
    @classmethod
    def _timeout_parses(cls, value: str | float) -> str | float:
        if durations.to_ms(value) <= 0:
            raise ValueError("timeout must be positive")
        return value

    @property
    def timeout_ms(self) -> int:
        """The timeout in milliseconds."""
        return durations.to_ms(self.timeout)


Node = Annotated[
    LlmNode | TransformNode | HttpNode | BranchNode | MapNode | WaitNode | TaskNode,
    Field(discriminator="type"),
]
NodeType = Literal["llm", "transform", "http", "branch", "map", "wait", "task"]
ItemNode = LlmFields | TransformFields | HttpFields | TaskFields
AnyNode = LlmNode | TransformNode | HttpNode | BranchNode | MapNode | WaitNode | TaskNode


class Edge(_Spec):
    """`target` runs after `source` (and only if `source` was not skipped, see the plan)."""

    source: NodeId
    target: NodeId


class GraphTrigger(_Spec):
    """What starts a run of the graph besides a call: an event, or a cron schedule (UTC).

    An event's data is the graph's input; a cron tick runs the graph with `input`.
    """

    event: str | None = Field(default=None, min_length=1, description="Event name.")
    match: str | None = Field(
        default=None, description="CEL over `event` (the incoming event); runs only when true."
    )
    cron: str | None = Field(default=None, description="Cron schedule, e.g. '*/15 * * * *'.")
    input: dict[str, Any] = Field(
        default_factory=dict, description="The graph input of a cron-triggered run."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> GraphTrigger:
        if (self.event is None) == (self.cron is None):
            raise ValueError("a trigger names either an event or a cron schedule")
        if self.match is not None and self.event is None:
            raise ValueError("match applies to event triggers only")
        return self


class Graph(_Spec):
    """A workflow graph as saved by a user or a visual builder."""

    id: str = Field(pattern=GRAPH_ID_PATTERN)
    name: str = Field(min_length=1)
    version: int | None = Field(default=None, ge=1, description="Assigned when saved.")
    description: str | None = None
    input_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"}, description="JSON Schema of the input."
    )
    nodes: list[Node] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)
    output: dict[str, str] = Field(
        default_factory=dict, description="Output field -> CEL expression over input and nodes."
    )
    trigger: GraphTrigger | None = Field(
        default=None, description="An event or cron schedule that starts runs of the graph."
    )


def parse_graph(data: Any) -> Graph:
    """Build a Graph from decoded JSON/YAML data.

    Raises:
        GraphInvalidError: listing every schema problem (path and node id included).
    """
    try:
        return Graph.model_validate(data)
    except ValidationError as exc:
        problems = [_schema_problem(data, error["loc"], error["msg"]) for error in exc.errors()]
        graph_id = data.get("id") if isinstance(data, Mapping) else None
        graph_name = graph_id if isinstance(graph_id, str) else None
        raise GraphInvalidError(problems, graph_id=graph_name) from None


def load_graph(text: str | bytes, *, fmt: Literal["json", "yaml"] | None = None) -> Graph:
    """Parse a graph from JSON or YAML text (format guessed from the first character if None).

    Raises:
        GraphInvalidError: on a syntax error or any schema problem.
    """
    source = text.decode() if isinstance(text, bytes) else text
    if fmt is None:
        fmt = "json" if source.lstrip().startswith(("{", "[")) else "yaml"
    try:
        data = json.loads(source) if fmt == "json" else yaml.safe_load(source)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise GraphInvalidError([Problem(code=ProblemCode.SYNTAX, message=message)]) from exc
    except yaml.YAMLError as exc:
        message = f"invalid YAML: {' '.join(str(exc).split())}"
        raise GraphInvalidError([Problem(code=ProblemCode.SYNTAX, message=message)]) from exc
    return parse_graph(data)


def load_graph_file(path: str | Path) -> Graph:
    """Read a graph from a .json, .yaml or .yml file."""
    file = Path(path)
    fmt: Literal["json", "yaml"] = "json" if file.suffix.lower() == ".json" else "yaml"
    return load_graph(file.read_text(encoding="utf-8"), fmt=fmt)


def graph_json_schema() -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of a workflow graph document."""
    schema = Graph.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://inferpipe.dev/schemas/workflow-graph.json",
        **schema,
    }


def render_graph_schema() -> str:
    """The JSON Schema as the text stored in `SCHEMA_PATH`."""
    return json.dumps(graph_json_schema(), indent=2, sort_keys=True) + "\n"


def write_graph_schema(path: Path = SCHEMA_PATH) -> Path:
    """Write the JSON Schema file (run after changing the models); returns the path."""
    path.write_text(render_graph_schema(), encoding="utf-8")
    return path


def _schema_problem(data: Any, loc: tuple[int | str, ...], message: str) -> Problem:
    """Map a pydantic error location onto a JSON Pointer into the submitted document."""
    parts: list[str] = []
    current = data
    for position, part in enumerate(loc):
        is_last = position == len(loc) - 1
        in_mapping = isinstance(current, Mapping) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and part < len(current)
        if in_mapping or in_list:
            current = current[part]
        elif not is_last:
            continue  # a discriminated union's tag, which is not in the document
        parts.append(str(part).replace("~", "~0").replace("/", "~1"))
    node_id: str | None = None
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        nodes = data.get("nodes") if isinstance(data, Mapping) else None
        if isinstance(nodes, list) and loc[1] < len(nodes) and isinstance(nodes[loc[1]], Mapping):
            raw_id = nodes[loc[1]].get("id")
            node_id = raw_id if isinstance(raw_id, str) else None
    path = "/" + "/".join(parts) if parts else ""
    return Problem(code=ProblemCode.SCHEMA, message=message, node_id=node_id, path=path)


def _main() -> None:  # pragma: no cover - `python -m inferpipe.workflows.spec` regenerates
    print(write_graph_schema())


if __name__ == "__main__":  # pragma: no cover
    _main()
