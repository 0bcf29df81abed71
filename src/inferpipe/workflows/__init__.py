"""Workflow graphs: LLM pipelines defined as data, validated and compiled to an execution plan.

`spec` holds the graph models and loaders, `validate` the save-time checks, `compile` the
execution plan, `schedule` a pure reference scheduler over a plan, `templates` the sandboxed
Jinja2 renderer, `netpolicy` the HTTP destination policy and `versions` the diff of two versions.
"""

from __future__ import annotations

from inferpipe.workflows.compile import ExecutionPlan, PlanNode, compile_graph
from inferpipe.workflows.errors import (
    GraphInvalidError,
    Problem,
    ProblemCode,
    TemplateError,
    TemplateSecurityError,
    UrlRefusedError,
)
from inferpipe.workflows.schedule import NodeOutcome, PlanCursor
from inferpipe.workflows.spec import Graph, graph_json_schema, load_graph, load_graph_file
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
    "ExecutionPlan",
    "Graph",
    "GraphDiff",
    "GraphInvalidError",
    "Limits",
    "ModelCatalog",
    "NodeOutcome",
    "PatternModelCatalog",
    "PlanCursor",
    "PlanNode",
    "Problem",
    "ProblemCode",
    "TemplateError",
    "TemplateSecurityError",
    "UrlRefusedError",
    "ValidationOptions",
    "check_graph",
    "compile_graph",
    "diff_graphs",
    "graph_json_schema",
    "load_graph",
    "load_graph_file",
    "validate_graph",
]
