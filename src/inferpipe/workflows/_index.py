"""One pass over a graph that validation and compilation share: nodes by id, the references
every template and expression makes, and the dependencies they imply."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferpipe.workflows import _refs, spec


@dataclass(frozen=True, slots=True)
class ScannedExpression:
    """An expression of a node (or of the output mapping) and what it refers to."""

    expression: _refs.Expression
    refs: _refs.RefScan


@dataclass(slots=True)
class GraphIndex:
    """Facts about a graph that checks and the compiler read; built by `index_graph`."""

    graph: spec.Graph
    nodes: dict[str, spec.AnyNode] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    duplicates: list[tuple[str, int]] = field(default_factory=list)
    scans: dict[str, list[ScannedExpression]] = field(default_factory=dict)
    output_scans: dict[str, ScannedExpression] = field(default_factory=dict)
    deps: dict[str, set[str]] = field(default_factory=dict)
    """Known dependencies (edges, references, branch targets) between existing nodes."""
    branch_owners: dict[str, set[str]] = field(default_factory=dict)
    """Branch target -> the branch nodes that target it."""

    @property
    def order(self) -> list[str]:
        """Node ids in document order (first occurrence)."""
        return list(self.nodes)

    def node_path(self, node_id: str) -> str:
        """JSON Pointer of a node in the document."""
        return f"/nodes/{self.positions[node_id]}"


def index_graph(graph: spec.Graph) -> GraphIndex:
    """Scan every template and expression once and derive the dependency map."""
    index = GraphIndex(graph=graph)
    for position, node in enumerate(graph.nodes):
        if node.id in index.nodes:
            index.duplicates.append((node.id, position))
            continue
        index.nodes[node.id] = node
        index.positions[node.id] = position
        index.deps[node.id] = set()
    for node_id, node in index.nodes.items():
        scanned = [
            ScannedExpression(expression, _refs.scan(expression))
            for expression in _refs.node_expressions(node)
        ]
        index.scans[node_id] = scanned
        for item in scanned:
            index.deps[node_id].update(ref for ref in item.refs.nodes if ref in index.nodes)
    for edge in graph.edges:
        if edge.source in index.nodes and edge.target in index.nodes:
            index.deps[edge.target].add(edge.source)
    for node_id, node in index.nodes.items():
        if isinstance(node, spec.BranchNode):
            for target in branch_targets(node):
                if target in index.nodes:
                    index.deps[target].add(node_id)
                    index.branch_owners.setdefault(target, set()).add(node_id)
    for key, source in graph.output.items():
        expression = _refs.Expression(
            "cel", source, f"/output/{_refs.pointer_token(key)}", _refs.BASE_SCOPE
        )
        index.output_scans[key] = ScannedExpression(expression, _refs.scan(expression))
    return index


def branch_targets(node: spec.BranchNode) -> list[str]:
    """Every node a branch may choose, in order of first mention."""
    seen: dict[str, None] = {}
    for case in node.cases:
        seen.update(dict.fromkeys(case.then))
    seen.update(dict.fromkeys(node.else_))
    return list(seen)
