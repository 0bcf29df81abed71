"""Differences between two versions of a graph, as data and as text.

Example::

    diff = diff_graphs(old, new)
    diff.changed_nodes[0].fields[0].path      # e.g. "prompt"
    print(diff.render())
    # graph support-triage: version 3 -> 4
    # + node notify (http)
    # ~ node classify: model 'fake/echo' -> 'openai/gpt-4o-mini'
    # - edge classify -> route
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from inferpipe.workflows import spec

_GRAPH_FIELDS = ("name", "description", "input_schema", "output", "trigger")
_MAX_SHOWN_CHARS = 60
_CONTEXT_CHARS = 20
"""Unchanged characters shown before the first difference of a long value."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldChange(_Frozen):
    """A value that differs: `path` is dotted (``headers.Authorization``, ``cases[0].when``)."""

    path: str
    before: Any = None
    after: Any = None


class NodeChange(_Frozen):
    """A node present in both versions whose definition differs."""

    node_id: str
    fields: tuple[FieldChange, ...]


class GraphDiff(_Frozen):
    """What changed from `old_version` to `new_version` of one graph."""

    graph_id: str
    old_version: int | None
    new_version: int | None
    added_nodes: tuple[str, ...] = ()
    removed_nodes: tuple[str, ...] = ()
    changed_nodes: tuple[NodeChange, ...] = ()
    added_edges: tuple[tuple[str, str], ...] = ()
    removed_edges: tuple[tuple[str, str], ...] = ()
    graph_fields: tuple[FieldChange, ...] = ()
    """Changes to the graph's own fields (name, description, input schema, output, trigger)."""
    node_types: dict[str, str] = {}
    """Type of every added or removed node, for display."""

    @property
    def is_empty(self) -> bool:
        """True when the versions define the same graph."""
        return not (
            self.added_nodes
            or self.removed_nodes
            or self.changed_nodes
            or self.added_edges
            or self.removed_edges
            or self.graph_fields
        )

    def render(self) -> str:
        """A readable, line-per-change text form ('+' added, '-' removed, '~' changed)."""
        old = "?" if self.old_version is None else str(self.old_version)
        new = "?" if self.new_version is None else str(self.new_version)
        lines = [f"graph {self.graph_id}: version {old} -> {new}"]
        if self.is_empty:
            return "\n".join([*lines, "  no changes"])
        lines += [f"~ {change.path}: {_change_text(change)}" for change in self.graph_fields]
        lines += [f"+ node {n} ({self.node_types.get(n, '?')})" for n in self.added_nodes]
        lines += [f"- node {n} ({self.node_types.get(n, '?')})" for n in self.removed_nodes]
        for node in self.changed_nodes:
            details = "; ".join(f"{c.path} {_change_text(c)}" for c in node.fields)
            lines.append(f"~ node {node.node_id}: {details}")
        lines += [f"+ edge {source} -> {target}" for source, target in self.added_edges]
        lines += [f"- edge {source} -> {target}" for source, target in self.removed_edges]
        return "\n".join(lines)


def diff_graphs(old: spec.Graph, new: spec.Graph) -> GraphDiff:
    """Compare two versions of a graph (nodes matched by id, edges by their ends)."""
    old_nodes = {node.id: node for node in old.nodes}
    new_nodes = {node.id: node for node in new.nodes}
    changed = []
    for node_id in [n for n in new_nodes if n in old_nodes]:
        before = old_nodes[node_id].model_dump(mode="json")
        after = new_nodes[node_id].model_dump(mode="json")
        fields = tuple(value_changes("", before, after))
        if fields:
            changed.append(NodeChange(node_id=node_id, fields=fields))
    old_edges = {(e.source, e.target) for e in old.edges}
    new_edges = {(e.source, e.target) for e in new.edges}
    graph_fields = []
    for name in _GRAPH_FIELDS:
        graph_fields += value_changes(
            name, old.model_dump(mode="json")[name], new.model_dump(mode="json")[name]
        )
    added = tuple(n for n in new_nodes if n not in old_nodes)
    removed = tuple(n for n in old_nodes if n not in new_nodes)
    types = {n: str(new_nodes[n].type) for n in added}
    types.update({n: str(old_nodes[n].type) for n in removed})
    return GraphDiff(
        graph_id=new.id,
        old_version=old.version,
        new_version=new.version,
        added_nodes=added,
        removed_nodes=removed,
        changed_nodes=tuple(changed),
        added_edges=tuple(sorted(new_edges - old_edges)),
        removed_edges=tuple(sorted(old_edges - new_edges)),
        graph_fields=tuple(graph_fields),
        node_types=types,
    )


def value_changes(path: str, before: Any, after: Any) -> list[FieldChange]:
    """Leaf-level differences between two JSON values (a structural diff, paths dotted from
    `path`); lists of unequal length differ whole."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        changes = []
        for key in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{key}" if path else str(key)
            changes += value_changes(sub, before.get(key), after.get(key))
        return changes
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        changes = []
        for position, (left, right) in enumerate(zip(before, after, strict=True)):
            changes += value_changes(f"{path}[{position}]", left, right)
        return changes
    return [FieldChange(path=path, before=before, after=after)]


def _change_text(change: FieldChange) -> str:
    """Both sides of a change; long values are shown from a little before where they first
    differ (a cut at a common prefix would show two equal texts)."""
    before, after = repr(change.before), repr(change.after)
    if len(before) <= _MAX_SHOWN_CHARS and len(after) <= _MAX_SHOWN_CHARS:
        return f"{before} -> {after}"
    same = 0
    for left, right in zip(before, after, strict=False):
        if left != right:
            break
        same += 1
    start = max(0, same - _CONTEXT_CHARS)
    return f"{_window(before, start)} -> {_window(after, start)}"


def _window(text: str, start: int) -> str:
    """At most _MAX_SHOWN_CHARS of `text` from `start`, '...' marking what is left out."""
    shown = text[start : start + _MAX_SHOWN_CHARS]
    head = "..." if start > 0 else ""
    tail = "..." if start + _MAX_SHOWN_CHARS < len(text) else ""
    return f"{head}{shown}{tail}"
