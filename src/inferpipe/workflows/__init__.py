"""Workflow graphs: LLM pipelines defined as data, validated and compiled to an execution plan.

`spec` holds the graph models and loaders, `validate` the save-time checks, `compile` the
execution plan, `schedule` a pure reference scheduler over a plan, `templates` the sandboxed
Jinja2 renderer and `versions` the diff of two versions (the HTTP node's destination policy and
call are `inferpipe.net`, shared with webhook delivery).
`graphstore` keeps saved versions (over a store's `graphs` table, or `MemoryGraphStore`);
`runtime` runs them durably (one generic function,
`workflow-run`; `nodes` and `execution` are its parts); `cli` is `inferpipe workflows ...`.
"""

from __future__ import annotations

from inferpipe.net.egress import UrlRefusedError
from inferpipe.net.http import HttpSettings
from inferpipe.store.graphs import VersionInfo
from inferpipe.workflows.compile import ExecutionPlan, PlanNode, compile_graph
from inferpipe.workflows.errors import (
    GraphInvalidError,
    GraphNotFoundError,
    NodeFailedError,
    Problem,
    ProblemCode,
    TemplateError,
    TemplateSecurityError,
    WorkflowError,
    WorkflowInputError,
)
from inferpipe.workflows.graphstore import GraphStore, GraphVersion, MemoryGraphStore, SaveResult
from inferpipe.workflows.runtime import (
    RunCost,
    WorkflowRuntime,
    register_workflows,
    run_cost,
)
from inferpipe.workflows.schedule import NodeOutcome, PlanCursor
from inferpipe.workflows.secrets import EnvSecrets, MappingSecrets, SecretProvider
from inferpipe.workflows.spec import (
    Graph,
    GraphTrigger,
    graph_json_schema,
    load_graph,
    load_graph_file,
)
from inferpipe.workflows.validate import (
    Limits,
    ModelCatalog,
    PatternModelCatalog,
    ValidationOptions,
    check_graph,
    validate_graph,
)
from inferpipe.workflows.versions import GraphDiff, diff_graphs

__all__ = [
    "EnvSecrets",
    "ExecutionPlan",
    "Graph",
    "GraphDiff",
    "GraphInvalidError",
    "GraphNotFoundError",
    "GraphStore",
    "GraphTrigger",
    "GraphVersion",
    "HttpSettings",
    "Limits",
    "MappingSecrets",
    "MemoryGraphStore",
    "ModelCatalog",
    "NodeFailedError",
    "NodeOutcome",
    "PatternModelCatalog",
    "PlanCursor",
    "PlanNode",
    "Problem",
    "ProblemCode",
    "RunCost",
    "SaveResult",
    "SecretProvider",
    "TemplateError",
    "TemplateSecurityError",
    "UrlRefusedError",
    "ValidationOptions",
    "VersionInfo",
    "WorkflowError",
    "WorkflowInputError",
    "WorkflowRuntime",
    "check_graph",
    "compile_graph",
    "diff_graphs",
    "graph_json_schema",
    "load_graph",
    "load_graph_file",
    "register_workflows",
    "run_cost",
    "validate_graph",
]
