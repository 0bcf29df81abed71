"""Comparing a shadow run with its primary: per node and per run.

Both runs are read from their step records: each node's step (``node-<id>-<type>``) gives its
status, output, duration, tokens and cost; a run's latency is the span of its node steps (from
the first start to the last finish: the same measure on both sides, whatever queueing came
before). Outputs are compared as JSON, structurally (`versions.value_changes`): equal, or the
list of paths that differ, with both values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, get_args

from inferpipe.core import json
from inferpipe.core.records import StepKind, StepRecord
from inferpipe.workflows import spec
from inferpipe.workflows.versions import value_changes

MAX_DIFFS = 50
"""Differing paths kept per output (the count is always whole)."""
MAX_SHOWN_CHARS = 2000
"""A differing value longer than this (as JSON text) is cut, marked with '...'."""


LLM_COMPARED_FIELDS = ("content", "tool_calls")
"""What of a model call's recorded reply is its answer (latency, tokens and cost are compared
as figures, not as differences)."""


def node_output(step: StepRecord) -> Any:
    """What a node step's output is compared on: a model call's answer, else the output."""
    if step.kind is StepKind.LLM and isinstance(step.output, dict):
        return {k: step.output.get(k) for k in LLM_COMPARED_FIELDS}
    return step.output


_NODE_STEP = re.compile(r"node-(?P<id>.+)-(?:" + "|".join(get_args(spec.NodeType)) + r")")
"""A node's own step name (``node-<id>-<type>``; not a map item's, nor a re-ask's)."""


def node_steps(steps: Iterable[StepRecord]) -> dict[str, StepRecord]:
    """The step of each node (not its map items or re-asks), by node id."""
    found: dict[str, StepRecord] = {}
    for step in sorted(steps, key=lambda s: s.seq):
        match = _NODE_STEP.fullmatch(step.name)
        if match is not None:
            found[match["id"]] = step
    return found


def run_figures(steps: Iterable[StepRecord]) -> dict[str, Any]:
    """Latency (the span of the node steps), tokens and cost of a run."""
    records = list(steps)
    nodes = list(node_steps(records).values())
    starts = [s.started_at_ms for s in nodes if s.started_at_ms is not None]
    ends = [s.finished_at_ms for s in nodes if s.finished_at_ms is not None]
    latency = max(ends) - min(starts) if starts and ends else None
    tokens_in = tokens_out = 0
    cost: float | None = 0.0
    for step in records:
        usage, price = step.meta.get("usage"), step.meta.get("cost")
        if isinstance(usage, dict):
            tokens_in += int(usage.get("input_tokens", 0))
            tokens_out += int(usage.get("output_tokens", 0))
        if usage is not None or price is not None:
            amount = price.get("amount_usd") if isinstance(price, dict) else None
            cost = None if amount is None or cost is None else cost + float(amount)
    return {
        "latency_ms": latency,
        "tokens": {"input": tokens_in, "output": tokens_out, "total": tokens_in + tokens_out},
        "cost_usd": cost,
    }


def diff(primary: Any, shadow: Any) -> list[dict[str, Any]]:
    """The paths where two JSON values differ (``$`` is the whole value), at most MAX_DIFFS."""
    changes = value_changes("", primary, shadow)
    return [
        {"path": c.path or "$", "primary": _shown(c.before), "shadow": _shown(c.after)}
        for c in changes[:MAX_DIFFS]
    ]


def compare_runs(
    primary: dict[str, Any],
    shadow: dict[str, Any],
    primary_steps: list[StepRecord],
    shadow_steps: list[StepRecord],
) -> dict[str, Any]:
    """The comparison body: `primary` and `shadow` carry each run's `status`, `output` and
    `error`; the figures and node comparisons come from the step records."""
    changes = value_changes("", primary.get("output"), shadow.get("output"))
    both_completed = primary.get("status") == "completed" and shadow.get("status") == "completed"
    equal = both_completed and not changes
    return {
        "equal": equal,
        "compared": both_completed,
        "differences": len(changes) if both_completed else None,
        "output_diff": diff(primary.get("output"), shadow.get("output")) if both_completed else [],
        "primary": {**primary, **run_figures(primary_steps)},
        "shadow": {**shadow, **run_figures(shadow_steps)},
        "nodes": compare_nodes(node_steps(primary_steps), node_steps(shadow_steps)),
    }


def compare_nodes(
    primary: dict[str, StepRecord], shadow: dict[str, StepRecord]
) -> list[dict[str, Any]]:
    """Per node (of either run, in the primary's order then the shadow's): status, equality,
    durations, and what the shadow did (ran, reused the primary's output, skipped)."""
    out = []
    for node_id in [*primary, *(n for n in shadow if n not in primary)]:
        left, right = primary.get(node_id), shadow.get(node_id)
        either = left or right
        assert either is not None  # the node id came from one of the two
        before = node_output(left) if left else None
        after = node_output(right) if right else None
        changes = value_changes("", before, after) if left and right else []
        out.append(
            {
                "node_id": node_id,
                "step": either.name,
                "primary_status": left.status.value if left else None,
                "shadow_status": right.status.value if right else None,
                "equal": bool(left and right and left.status == right.status and not changes),
                "differences": len(changes),
                "diff": diff(before, after) if left and right else [],
                "primary_ms": left.duration_ms if left else None,
                "shadow_ms": right.duration_ms if right else None,
                "shadow_action": (right.meta.get("shadow") or "ran") if right else None,
                "shadow_reason": right.meta.get("shadow_reason") if right else None,
            }
        )
    return out


def _shown(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_SHOWN_CHARS:
        return value[:MAX_SHOWN_CHARS] + "..."
    if isinstance(value, dict | list):
        text = json.dumps(value).decode()
        if len(text) > MAX_SHOWN_CHARS:
            return text[:MAX_SHOWN_CHARS] + "..."
    return value
