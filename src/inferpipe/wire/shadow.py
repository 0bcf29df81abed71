"""Wire models of the shadow routes (`/v1/shadow/...`), shared by the server and its clients."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from inferpipe.wire.schemas import MAX_WORKFLOW_VERSION, RequestModel, WireModel

MAX_CALL_NODES = 100


class ShadowPolicyIn(RequestModel):
    """A shadow policy to create."""

    graph_id: str = Field(min_length=1, max_length=128, description="The graph it shadows.")
    candidate_version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WORKFLOW_VERSION,
        description="Another saved version; null: each primary run's own version.",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description='`{"<node id>.<field path>": value}`, e.g. `{"classify.model": '
        '"openai/gpt-4o-mini"}`: model, prompt or any node field of the candidate.',
    )
    rate: float = Field(default=1.0, description="Share of runs shadowed, 0 to 1 (by run id).")
    enabled: bool = True
    call_nodes: list[str] = Field(
        default_factory=list,
        max_length=MAX_CALL_NODES,
        description="Side-effect nodes that call for real in the shadow (default: none).",
    )


class ShadowPolicyPatch(RequestModel):
    """Fields of a policy to change (those not given stay)."""

    rate: float | None = None
    enabled: bool | None = None
    call_nodes: list[str] | None = Field(default=None, max_length=MAX_CALL_NODES)


class PromotionView(WireModel):
    version: int = Field(description="The version the cutover made current.")
    previous_version: int = Field(description="The version current before: rollback target.")
    promoted_at_ms: int
    rolled_back_at_ms: int | None = None


class ShadowPolicyView(WireModel):
    """A shadow policy."""

    id: str
    graph_id: str
    candidate: str = Field(description="The candidate in words, e.g. `version 3 + 1 override`.")
    candidate_version: int | None
    overrides: dict[str, Any]
    rate: float
    enabled: bool
    call_nodes: list[str]
    created_at_ms: int
    updated_at_ms: int
    promotion: PromotionView | None = None


class ShadowReport(WireModel):
    """A policy's parity report over its newest comparisons (see docs/shadow.md)."""

    policy: ShadowPolicyView
    counts: dict[str, int]
    match_rate: float | None = Field(description="Equal outputs among the pairs both completed.")
    match_rate_ci95: list[float] | None = Field(description="95 % Wilson score interval.")
    cost_usd: dict[str, Any]
    latency_ms: dict[str, Any]
    tokens: dict[str, Any]
    nodes: list[dict[str, Any]]
    scores: list[dict[str, Any]]
    worst: list[dict[str, Any]] = Field(description="The worst differences first, with links.")


class ShadowComparison(WireModel):
    """One shadow run compared with its primary, per run and per node."""

    shadow_run_id: str
    primary_run_id: str
    policy_id: str
    created_at_ms: int
    equal: bool
    compared: bool = Field(description="Both runs completed: their outputs were compared.")
    differences: int | None
    output_diff: list[dict[str, Any]]
    primary: dict[str, Any]
    shadow: dict[str, Any]
    nodes: list[dict[str, Any]]
