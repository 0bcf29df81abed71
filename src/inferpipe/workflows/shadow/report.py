"""A policy's parity report: how its candidate compares with the primaries, over the shadow
runs it has compared so far.

- counts: shadow runs compared, both completed, outputs equal / different, failures per side;
- the match rate (equal outputs among the pairs where both completed) with a 95 % Wilson
  score interval, which stays inside [0, 1] and is honest for small counts;
- cost and latency: totals and means per pair on each side, and the deltas (shadow - primary);
  a cost is null when any step's cost is unknown, never a silent zero;
- per node: how often its outputs matched;
- scores: the mean of each score name on each side (the workflow's scorers run on both);
- the worst differences first (most differing paths), with links to both runs and to the
  side-by-side view.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import mean, median
from typing import Any

from inferpipe.store.base import ScoreFilter, Store
from inferpipe.store.shadows import ComparisonRow
from inferpipe.workflows.shadow.policy import ShadowPolicy

Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95 % interval."""
WORST_SHOWN = 10
REPORT_PAIRS = 500
"""The newest comparisons a report covers by default."""


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion; None when there are no trials."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def parity_report(
    policy: ShadowPolicy,
    comparisons: Sequence[ComparisonRow],
    scores: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """The report of `policy` over `comparisons` (newest first); `scores` maps a run id to
    its scores by name (the latest of each)."""
    bodies = [row.body for row in comparisons]
    compared = [b for b in bodies if b.get("compared")]
    equal = sum(1 for b in compared if b.get("equal"))
    interval = wilson_interval(equal, len(compared))
    return {
        "policy_id": policy.id,
        "graph_id": policy.graph_id,
        "candidate": policy.describe(),
        "counts": {
            "shadow_runs": len(bodies),
            "compared": len(compared),
            "equal": equal,
            "different": len(compared) - equal,
            "primary_failed": sum(1 for b in bodies if _side(b, "primary") != "completed"),
            "shadow_failed": sum(1 for b in bodies if _side(b, "shadow") != "completed"),
        },
        "match_rate": equal / len(compared) if compared else None,
        "match_rate_ci95": list(interval) if interval else None,
        "cost_usd": _totals(compared, "cost_usd"),
        "latency_ms": _totals(compared, "latency_ms"),
        "tokens": _totals(compared, "tokens.total"),
        "nodes": _nodes(compared),
        "scores": _scores(comparisons, scores or {}),
        "worst": _worst(comparisons),
    }


def _side(body: Mapping[str, Any], side: str) -> Any:
    return (body.get(side) or {}).get("status")


def _figure(body: Mapping[str, Any], side: str, field: str) -> float | None:
    value: Any = body.get(side) or {}
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _totals(bodies: Sequence[Mapping[str, Any]], field: str) -> dict[str, Any]:
    """Sums and means per side and their deltas; null sums when any pair lacks the figure."""
    out: dict[str, Any] = {}
    for side in ("primary", "shadow"):
        values = [_figure(b, side, field) for b in bodies]
        known = [v for v in values if v is not None]
        whole = len(known) == len(values) and bool(values)
        out[side] = {
            "total": sum(known) if whole else None,
            "mean": mean(known) if known else None,
            "median": median(known) if known else None,
        }
    for stat in ("total", "mean", "median"):
        left, right = out["primary"][stat], out["shadow"][stat]
        out[f"delta_{stat}"] = right - left if left is not None and right is not None else None
    return out


def _nodes(bodies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    counts: dict[str, list[int]] = {}
    for body in bodies:
        for node in body.get("nodes") or []:
            seen = counts.setdefault(str(node.get("node_id")), [0, 0])
            seen[0] += 1
            seen[1] += 1 if node.get("equal") else 0
    return [
        {"node_id": node_id, "compared": n, "equal": k, "match_rate": k / n}
        for node_id, (n, k) in counts.items()
    ]


def _scores(
    comparisons: Sequence[ComparisonRow], scores: Mapping[str, Mapping[str, float]]
) -> list[dict[str, Any]]:
    sides: dict[str, dict[str, list[float]]] = {}
    for row in comparisons:
        for side, run_id in (("primary", row.primary_run_id), ("shadow", row.shadow_run_id)):
            for name, value in (scores.get(run_id) or {}).items():
                sides.setdefault(name, {"primary": [], "shadow": []})[side].append(value)
    out = []
    for name, values in sorted(sides.items()):
        left = mean(values["primary"]) if values["primary"] else None
        right = mean(values["shadow"]) if values["shadow"] else None
        out.append(
            {
                "name": name,
                "primary_mean": left,
                "shadow_mean": right,
                "primary_count": len(values["primary"]),
                "shadow_count": len(values["shadow"]),
                "delta_mean": right - left if left is not None and right is not None else None,
            }
        )
    return out


def _worst(comparisons: Sequence[ComparisonRow]) -> list[dict[str, Any]]:
    def badness(row: ComparisonRow) -> tuple[int, int, int]:
        body = row.body
        failed = int(_side(body, "shadow") != "completed")
        return (failed, int(body.get("differences") or 0), row.created_at_ms)

    worst = [r for r in comparisons if not r.body.get("equal")]
    worst.sort(key=badness, reverse=True)
    return [summary(row) for row in worst[:WORST_SHOWN]]


def summary(row: ComparisonRow) -> dict[str, Any]:
    """One comparison in a line of a list: ids, verdict, statuses and links."""
    body = row.body
    return {
        "shadow_run_id": row.shadow_run_id,
        "primary_run_id": row.primary_run_id,
        "created_at_ms": row.created_at_ms,
        "equal": bool(body.get("equal")),
        "differences": body.get("differences"),
        "primary_status": _side(body, "primary"),
        "shadow_status": _side(body, "shadow"),
        "first_difference": (body.get("output_diff") or [{}])[0].get("path"),
        "links": {
            "comparison": f"/v1/shadow/comparisons/{row.shadow_run_id}",
            "primary_run": f"/v1/runs/{row.primary_run_id}",
            "shadow_run": f"/v1/runs/{row.shadow_run_id}",
            "side_by_side": f"/dashboard#/shadow/run/{row.shadow_run_id}",
        },
    }


async def policy_report(
    policy: ShadowPolicy, store: Store, *, limit: int = REPORT_PAIRS
) -> dict[str, Any]:
    """The report of `policy` over its newest `limit` comparisons in `store`, with the
    scores of both runs of each pair (the latest of each name)."""
    rows = await store.shadows.comparisons(policy.id, limit=limit)
    scores: dict[str, dict[str, float]] = {}
    for row in rows:
        for run_id in (row.primary_run_id, row.shadow_run_id):
            found = await store.list_scores(ScoreFilter(run_id=run_id))
            latest = sorted(found, key=lambda s: s.created_at_ms)
            scores[run_id] = {s.name: s.value for s in latest}
    return parity_report(policy, rows, scores)
