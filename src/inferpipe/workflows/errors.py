"""Problems found in a workflow graph, and the errors the workflows feature raises.

Hierarchy (all under `inferpipe.core.errors.InferpipeError`)::

    WorkflowError                     base of this feature's errors
    ├── GraphInvalidError             a graph failed validation; carries every Problem
    ├── TemplateError                 a template failed to parse or render
    │   └── TemplateSecurityError     a template tried to reach outside its sandbox
    ├── PlanIntegrityError            a stored plan's content hash does not match its content
    ├── GraphNotFoundError            no saved graph (or version) with that id
    ├── WorkflowInputError            a run's input does not match the graph's input schema
    ├── NodeFailedError               a node failed after its retries; the run fails naming it
    ├── ExpressionFailedError         a CEL expression failed on the run's data
    ├── UnknownTaskError              a task node names an unregistered function
    ├── ShadowPolicyInvalidError      a shadow policy's fields are wrong; carries every problem
    ├── ShadowPolicyNotFoundError     no shadow policy (or comparison) with that id
    └── ShadowStateError              a promotion or rollback the policy's state does not allow
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from inferpipe.core.errors import InferpipeError


class ProblemCode(StrEnum):
    """What is wrong with a graph; stable strings shown over the API."""

    #: The document is not valid JSON or YAML.
    SYNTAX = "syntax"
    #: The document does not match the graph schema (missing field, wrong type, extra key).
    SCHEMA = "schema"
    #: Two nodes share one id.
    DUPLICATE_ID = "duplicate_id"
    #: The dependencies form a cycle; the message names its nodes in order.
    CYCLE = "cycle"
    #: An edge, branch target, template or expression names a node that does not exist.
    UNKNOWN_NODE = "unknown_node"
    #: A reference reads a node in a way the plan cannot resolve (`nodes[x]`, `nodes.a.foo`).
    BAD_REFERENCE = "bad_reference"
    #: A template or expression uses a variable that is not available where it runs.
    UNKNOWN_VARIABLE = "unknown_variable"
    #: A node is not connected to the graph's flow, or only reachable through a cycle.
    UNREACHABLE = "unreachable"
    #: A reference to `input.<field>` that the input schema does not declare.
    MISSING_INPUT = "missing_input"
    #: A Jinja2 template does not parse, or reaches for unsafe attributes.
    INVALID_TEMPLATE = "invalid_template"
    #: A CEL expression does not compile.
    INVALID_EXPRESSION = "invalid_expression"
    #: The model or its provider is not in the model catalog.
    UNKNOWN_MODEL = "unknown_model"
    #: A task node names a Python function the application has not registered.
    UNKNOWN_TASK = "unknown_task"
    #: The output mapping is empty-keyed, invalid or refers to something that does not exist.
    OUTPUT_MAPPING = "output_mapping"
    #: A branch target that is owned by another branch, or targets the branch itself.
    BRANCH_TARGET = "branch_target"
    #: A secret appears as a literal, or a secret reference appears where it would be persisted.
    SECRET = "secret"
    #: An HTTP node aims at a private, loopback or link-local address without allow_private.
    PRIVATE_ADDRESS = "private_address"
    #: The graph is over a configured limit (nodes, depth, map fan-out).
    TOO_LARGE = "too_large"


class Problem(BaseModel):
    """One problem in a graph: a stable `code`, a readable `message`, where it is.

    `node_id` is the node concerned (None for graph-level problems); `path` is a JSON Pointer
    (RFC 6901) into the submitted document, e.g. ``/nodes/2/prompt``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: ProblemCode
    message: str
    node_id: str | None = None
    path: str = ""

    def __str__(self) -> str:
        where = f"node {self.node_id!r}" if self.node_id else "graph"
        at = f" at {self.path}" if self.path else ""
        return f"[{self.code}] {where}{at}: {self.message}"


class WorkflowError(InferpipeError):
    """Base of the workflows feature's errors."""

    code = "workflow_error"


class GraphInvalidError(WorkflowError):
    """A graph failed validation. `problems` lists every problem found, not only the first."""

    code = "graph_invalid"

    def __init__(self, problems: Iterable[Problem], *, graph_id: str | None = None) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.graph_id = graph_id
        name = f"graph {graph_id!r}" if graph_id else "graph"
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{name} is invalid ({count} {noun}):"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        super().__init__("\n".join(lines))


class TemplateError(WorkflowError):
    """A template failed to parse or to render; the message says where and why."""

    code = "template_error"


class TemplateSecurityError(TemplateError):
    """A template tried to reach outside its sandbox (private attributes, unsafe calls)."""

    code = "template_unsafe"


class PlanIntegrityError(WorkflowError):
    """A stored execution plan does not hash to the content hash it carries."""

    code = "plan_integrity"


class GraphNotFoundError(WorkflowError):
    """No saved graph with this id, or no such version (or content hash) of it."""

    code = "graph_not_found"

    def __init__(self, graph_id: str, version: int | None = None, content_hash: str = "") -> None:
        what = f"graph {graph_id!r}"
        if version is not None:
            what += f" version {version}"
        if content_hash:
            what += f" with content hash {content_hash[:12]}"
        super().__init__(f"{what} is not saved")
        self.graph_id = graph_id
        self.version = version


class WorkflowInputError(WorkflowError):
    """The input of a run does not match the graph's input schema; `problems` lists why."""

    code = "workflow_input_invalid"

    def __init__(self, graph_id: str, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        listed = "; ".join(self.problems)
        super().__init__(f"input of graph {graph_id!r} is invalid: {listed}")
        self.graph_id = graph_id


class NodeFailedError(WorkflowError):
    """A node failed after its retries, so the run failed; `node_id` and `step_name` say which.

    Re-running the run from its failed step resumes at this node; nodes that completed are not
    run (or paid for) again.
    """

    code = "node_failed"

    def __init__(self, node_id: str, step_name: str, reason: str) -> None:
        super().__init__(f"node {node_id!r} ({step_name}) failed: {reason}")
        self.node_id = node_id
        self.step_name = step_name
        self.reason = reason


class ExpressionFailedError(WorkflowError):
    """A CEL expression failed on the run's data (missing field, wrong type, not a list)."""

    code = "expression_failed"


class UnknownTaskError(WorkflowError):
    """A task node names a Python function this runtime has not registered."""

    code = "unknown_task"

    def __init__(self, name: str, known: Iterable[str]) -> None:
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(f"no task named {name!r} is registered (registered: {listed})")
        self.name = name


class ShadowPolicyInvalidError(WorkflowError):
    """A shadow policy was refused; `problems` lists every field at fault (``field: why``)."""

    code = "shadow_policy_invalid"

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("shadow policy is invalid: " + "; ".join(self.problems))


class ShadowPolicyNotFoundError(WorkflowError):
    """No shadow policy, or no comparison of a shadow run, with that id."""

    code = "shadow_not_found"


class ShadowStateError(WorkflowError):
    """The policy's state does not allow this (promote twice, roll back what was not
    promoted)."""

    code = "shadow_state"
