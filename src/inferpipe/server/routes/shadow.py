"""`/v1/shadow`: shadow policies (candidate, rate, on/off), their parity reports, one shadow
run's comparison with its primary, and the cutover (promote, rollback).

The routes serve the `WorkflowRuntime` registered on the app (404 `workflows_not_enabled`
without one), in the caller's workspace. See docs/shadow.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from inferpipe.server.routes import ERROR_RESPONSES
from inferpipe.server.routes.workflows import Workflows, WorkflowScope
from inferpipe.wire import shadow as wire
from inferpipe.workflows.errors import ShadowPolicyNotFoundError
from inferpipe.workflows.shadow.policy import ShadowPolicies, ShadowPolicy
from inferpipe.workflows.shadow.report import REPORT_PAIRS, policy_report
from inferpipe.workflows.spec import GRAPH_ID_PATTERN

router = APIRouter(prefix="/v1/shadow", tags=["shadow"], responses=ERROR_RESPONSES)

PolicyId = Annotated[str, Path(min_length=1, max_length=128, description="The policy's id.")]
RunId = Annotated[str, Path(min_length=1, max_length=128, description="A shadow run's id.")]
_CONFLICT: dict[int | str, dict[str, str]] = {
    409: {"description": "Promoted already, or nothing to roll back."}
}


def _policies(wf: WorkflowScope) -> ShadowPolicies:
    return wf.runtime.shadow_policies(wf.scope.store.workspace)


def policy_view(policy: ShadowPolicy) -> wire.ShadowPolicyView:
    """The wire form of a policy."""
    promotion = policy.promotion
    return wire.ShadowPolicyView(
        id=policy.id,
        graph_id=policy.graph_id,
        candidate=policy.describe(),
        candidate_version=policy.candidate_version,
        overrides=policy.overrides,
        rate=policy.rate,
        enabled=policy.enabled,
        call_nodes=list(policy.call_nodes),
        created_at_ms=policy.created_at_ms,
        updated_at_ms=policy.updated_at_ms,
        promotion=wire.PromotionView(**promotion.model_dump()) if promotion else None,
    )


@router.get("/policies", response_model=list[wire.ShadowPolicyView], summary="List policies")
async def list_policies(
    wf: Workflows,
    graph_id: Annotated[
        str | None, Query(pattern=GRAPH_ID_PATTERN, description="Only this graph's.")
    ] = None,
) -> list[wire.ShadowPolicyView]:
    """Every shadow policy of the workspace (of one graph when given), newest first."""
    return [policy_view(p) for p in await _policies(wf).list(graph_id)]


@router.post(
    "/policies", status_code=201, response_model=wire.ShadowPolicyView, summary="Create a policy"
)
async def create_policy(body: wire.ShadowPolicyIn, wf: Workflows) -> wire.ShadowPolicyView:
    """Check and store a policy; an enabled one disables the graph's other policies. 404
    `graph_not_found` for an unknown graph or candidate version, 422 `shadow_policy_invalid`
    listing every problem (a rate outside [0, 1], an override path that names no node or
    field, a candidate that does not validate, an unknown call node)."""
    policy = await _policies(wf).create(
        body.graph_id,
        candidate_version=body.candidate_version,
        overrides=body.overrides,
        rate=body.rate,
        enabled=body.enabled,
        call_nodes=body.call_nodes,
    )
    return policy_view(policy)


@router.get("/policies/{policy_id}", response_model=wire.ShadowPolicyView, summary="Get a policy")
async def get_policy(policy_id: PolicyId, wf: Workflows) -> wire.ShadowPolicyView:
    return policy_view(await _policies(wf).get(policy_id))


@router.patch(
    "/policies/{policy_id}", response_model=wire.ShadowPolicyView, summary="Change a policy"
)
async def update_policy(
    policy_id: PolicyId, body: wire.ShadowPolicyPatch, wf: Workflows
) -> wire.ShadowPolicyView:
    """Turn a policy on or off, change its rate or its real-call nodes."""
    policy = await _policies(wf).update(
        policy_id, rate=body.rate, enabled=body.enabled, call_nodes=body.call_nodes
    )
    return policy_view(policy)


@router.get(
    "/policies/{policy_id}/report", response_model=wire.ShadowReport, summary="Parity report"
)
async def get_report(
    policy_id: PolicyId,
    wf: Workflows,
    limit: Annotated[int, Query(ge=1, le=5000, description="Newest pairs covered.")] = (
        REPORT_PAIRS
    ),
) -> wire.ShadowReport:
    """Counts, the match rate with its 95 % Wilson interval, cost, latency and token deltas,
    per-node match rates, score means on both sides and the worst differences with links."""
    policy = await _policies(wf).get(policy_id)
    report = await policy_report(policy, wf.scope.store, limit=limit)
    fields = {k: v for k, v in report.items() if k not in ("policy_id", "graph_id", "candidate")}
    return wire.ShadowReport(policy=policy_view(policy), **fields)


@router.get(
    "/comparisons/{shadow_run_id}",
    response_model=wire.ShadowComparison,
    summary="A shadow run beside its primary",
)
async def get_comparison(shadow_run_id: RunId, wf: Workflows) -> wire.ShadowComparison:
    """Both runs' status, output, latency, tokens and cost, the output's structural diff, and
    each node's: equal or not, its diff, durations, and what the shadow did (ran, reused the
    primary's output, skipped)."""
    row = await wf.scope.store.shadows.comparison(shadow_run_id)
    if row is None:
        raise ShadowPolicyNotFoundError(f"no comparison of a shadow run {shadow_run_id!r}")
    ids = {
        "shadow_run_id": row.shadow_run_id,
        "primary_run_id": row.primary_run_id,
        "policy_id": row.policy_id,
        "created_at_ms": row.created_at_ms,
    }
    return wire.ShadowComparison.model_validate({**row.body, **ids})


@router.post(
    "/policies/{policy_id}/promote",
    response_model=wire.ShadowPolicyView,
    responses=_CONFLICT,
    summary="Cut over to the candidate",
)
async def promote(policy_id: PolicyId, wf: Workflows) -> wire.ShadowPolicyView:
    """The candidate becomes the graph's current version (an overridden candidate is saved
    as the next version) and the policy is turned off; its report remains."""
    return policy_view(await _policies(wf).promote(policy_id))


@router.post(
    "/policies/{policy_id}/rollback",
    response_model=wire.ShadowPolicyView,
    responses=_CONFLICT,
    summary="Undo a cutover",
)
async def rollback(policy_id: PolicyId, wf: Workflows) -> wire.ShadowPolicyView:
    """The version current before the promotion is current again."""
    return policy_view(await _policies(wf).rollback(policy_id))
