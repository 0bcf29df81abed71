"""Graph algorithms over a dependency map (node -> the nodes it depends on). Iterative: graphs
of thousands of nodes must not hit the recursion limit."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence

Deps = Mapping[str, Collection[str]]


def dependents_of(order: Sequence[str], deps: Deps) -> dict[str, list[str]]:
    """The reverse map: node -> the nodes that depend on it, in `order`."""
    reverse: dict[str, list[str]] = {node: [] for node in order}
    for node in order:
        for dep in deps.get(node, ()):
            reverse.setdefault(dep, []).append(node)
    return reverse


def find_cycles(order: Sequence[str], deps: Deps) -> list[list[str]]:
    """One cycle per strongly connected component that has one, in flow order.

    Each cycle starts at its component's earliest node in `order` and lists nodes so that each
    runs before the next (the last before the first); a self-dependency is a cycle of one.
    """
    position = {node: index for index, node in enumerate(order)}
    cycles = []
    for component in _strong_components(order, deps):
        members = set(component)
        start = min(component, key=position.__getitem__)
        if len(component) == 1 and start not in deps.get(start, ()):
            continue
        cycles.append(_cycle_through(start, members, deps, position))
    cycles.sort(key=lambda cycle: position[cycle[0]])
    return cycles


def _strong_components(order: Sequence[str], deps: Deps) -> list[list[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in order:
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(deps.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(deps.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _cycle_through(
    start: str, members: set[str], deps: Deps, position: Mapping[str, int]
) -> list[str]:
    """Shortest cycle from `start` back to itself inside one component, in flow order."""
    # Breadth-first search along dependencies (backwards in flow) until one leads to start.
    reached_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for dep in sorted(deps.get(node, ()), key=lambda name: position.get(name, 0)):
            if dep not in members:
                continue
            if dep == start:
                # start depends on ... depends on node depends on start: walking back through
                # reached_from from node yields the flow order start -> node -> ... -> (start).
                flow = [start]
                current = node
                while current != start:
                    flow.append(current)
                    current = reached_from[current]
                return flow
            if dep not in reached_from and dep != start:
                reached_from[dep] = node
                queue.append(dep)
    return [start]


def topological_levels(order: Sequence[str], deps: Deps) -> dict[str, int]:
    """Level of each node (0 for no dependencies, else 1 + its deepest dependency's level).

    Nodes in or behind a cycle get no level.
    """
    reverse = dependents_of(order, deps)
    remaining = {node: len(set(deps.get(node, ()))) for node in order}
    level = {node: 0 for node in order if remaining[node] == 0}
    queue = deque(node for node in order if remaining[node] == 0)
    while queue:
        node = queue.popleft()
        for child in reverse.get(node, ()):
            level[child] = max(level.get(child, 0), level[node] + 1)
            remaining[child] -= 1
            if remaining[child] == 0:
                queue.append(child)
    return {node: level[node] for node in order if remaining[node] == 0}


def weak_components(order: Sequence[str], deps: Deps) -> list[set[str]]:
    """Connected components ignoring edge direction, each found from its earliest node."""
    neighbours: dict[str, set[str]] = {node: set() for node in order}
    for node in order:
        for dep in deps.get(node, ()):
            if dep in neighbours:
                neighbours[node].add(dep)
                neighbours[dep].add(node)
    seen: set[str] = set()
    components = []
    for root in order:
        if root in seen:
            continue
        component = {root}
        queue = deque([root])
        while queue:
            for other in neighbours[queue.popleft()]:
                if other not in component:
                    component.add(other)
                    queue.append(other)
        seen |= component
        components.append(component)
    return components
