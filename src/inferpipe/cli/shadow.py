"""`inferpipe shadow create|list|report|enable|disable|promote|rollback`: shadow runs of a
workflow graph from a terminal (see docs/shadow.md); the arguments are in
`inferpipe.cli.parser`.

Example::

    inferpipe shadow create ticket-triage --set classify.model=fake/summarize --rate 0.2
    inferpipe shadow report 01J...              # match rate, deltas, worst differences
    inferpipe shadow promote 01J...             # the candidate becomes the current version
    inferpipe shadow rollback 01J...            # and the previous one again
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from inferpipe.cli.workflows import open_runtime
from inferpipe.workflows.errors import ShadowPolicyInvalidError
from inferpipe.workflows.runtime import WorkflowRuntime
from inferpipe.workflows.shadow.policy import ShadowPolicy
from inferpipe.workflows.shadow.report import policy_report

console = Console(width=None if sys.stdout.isatty() else 160)


async def shadow_command(args: argparse.Namespace) -> None:
    """Run one `shadow` action."""
    async with open_runtime(args.database, args.app, args.workspace) as (runtime, _):
        policies = runtime.shadow_policies()
        action = args.shadow_command
        if action == "create":
            policy = await policies.create(
                args.graph_id,
                candidate_version=args.version,
                overrides=parse_overrides(args.set or []),
                rate=args.rate,
                enabled=not args.disabled,
                call_nodes=args.call or [],
            )
            _show(policy)
        elif action == "list":
            _table(await policies.list(args.graph_id))
        elif action == "report":
            await _report(runtime, args.policy_id, as_json=args.json)
        elif action in ("enable", "disable"):
            _show(await policies.update(args.policy_id, enabled=action == "enable", rate=args.rate))
        elif action == "promote":
            policy = await policies.promote(args.policy_id)
            assert policy.promotion is not None
            console.print(
                f"{policy.graph_id}: version {policy.promotion.version} is current (was "
                f"{policy.promotion.previous_version}); undo with: inferpipe shadow rollback "
                f"{policy.id}"
            )
        else:
            policy = await policies.rollback(args.policy_id)
            assert policy.promotion is not None
            version = policy.promotion.previous_version
            console.print(f"{policy.graph_id}: version {version} is current again")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`node.field=value` pairs; a value is JSON when it parses as JSON, else text.

    Raises:
        ShadowPolicyInvalidError: a pair without `=`.
    """
    overrides: dict[str, Any] = {}
    for pair in pairs:
        path, sep, text = pair.partition("=")
        if not sep or not path:
            raise ShadowPolicyInvalidError([f"--set {pair!r}: write <node id>.<field>=<value>"])
        try:
            overrides[path] = json.loads(text)
        except ValueError:
            overrides[path] = text
    return overrides


def _show(policy: ShadowPolicy) -> None:
    state = "on" if policy.enabled else "off"
    console.print(
        f"shadow policy {policy.id} for {policy.graph_id}: candidate {policy.describe()}, "
        f"rate {policy.rate:g}, {state}"
    )


def _table(policies: list[ShadowPolicy]) -> None:
    table = Table("id", "graph", "candidate", "rate", "state", "promoted")
    for p in policies:
        promoted = ""
        if p.promotion is not None:
            promoted = f"v{p.promotion.previous_version} -> v{p.promotion.version}"
            promoted += " (rolled back)" if p.promotion.rolled_back_at_ms else ""
        state = "on" if p.enabled else "off"
        table.add_row(p.id, p.graph_id, p.describe(), f"{p.rate:g}", state, promoted)
    console.print(table)


async def _report(runtime: WorkflowRuntime, policy_id: str, *, as_json: bool) -> None:
    policy = await runtime.shadow_policies().get(policy_id)
    report = await policy_report(policy, runtime.store_for())
    if as_json:
        print(json.dumps(report, indent=2))
        return
    counts = report["counts"]
    console.print(f"shadow policy {policy.id}: {policy.graph_id}, candidate {policy.describe()}")
    console.print(
        f"  shadow runs {counts['shadow_runs']}, compared {counts['compared']}, equal "
        f"{counts['equal']}, different {counts['different']}, shadow failed "
        f"{counts['shadow_failed']}"
    )
    if report["match_rate"] is not None:
        low, high = report["match_rate_ci95"]
        console.print(f"  match rate {report['match_rate']:.1%} (95% CI {low:.1%} - {high:.1%})")
    for name in ("latency_ms", "tokens", "cost_usd"):
        figures = report[name]
        console.print(
            f"  {name}: mean primary {_num(figures['primary']['mean'])}, shadow "
            f"{_num(figures['shadow']['mean'])}, delta {_num(figures['delta_mean'])}"
        )
    for worst in report["worst"]:
        console.print(
            f"  differs: primary {worst['primary_run_id']} shadow {worst['shadow_run_id']} "
            f"({worst['differences']} paths, first {worst['first_difference']})"
        )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"
