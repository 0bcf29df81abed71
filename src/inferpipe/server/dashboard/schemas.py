"""Wire models of the dashboard's endpoints (runs with summaries, waits, re-run previews, costs,
scores, bulk actions, the session). Same conventions as `inferpipe.wire.schemas`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from inferpipe.core.records import RunStatus, StepKind, StepStatus
from inferpipe.wire.schemas import (
    ErrorOut,
    EventInfo,
    FunctionInfo,
    RequestModel,
    RunInfo,
    WireModel,
    WorkflowVersionInfo,
)

BulkAction = Literal["cancel", "rerun"]
RerunFrom = Literal["start", "failed_step"]
CostGroup = Literal["model", "function", "day"]
StatusName = Literal[
    "queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled", "skipped"
]


# runs ---------------------------------------------------------------------------------------
class ScoreSummary(WireModel):
    name: str
    value: float = Field(description="Mean of the run's scores of this name.")
    count: int


class RunRow(WireModel):
    """A run as the runs list shows it: the run's fields and what its journal adds up to."""

    id: str
    function_id: str
    status: RunStatus
    status_reason: str | None = None
    created_at_ms: int
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    duration_ms: int | None = None
    trigger: str | None = Field(default=None, description="The name of the triggering event.")
    event_id: str | None = None
    steps: int = 0
    failed_steps: int = 0
    tokens: int | None = Field(default=None, description="Model tokens (null: no model call).")
    cost_usd: float | None = Field(default=None, description="Known model cost in USD.")
    cost_known: bool = Field(default=True, description="False when a model call has no price.")
    scores: list[ScoreSummary] = Field(default_factory=list)
    executions: int = Field(default=0, description="Times a worker has executed the run.")
    parent_run_id: str | None = None
    rerun_of: str | None = None
    cancel_requested: str | None = None
    error: ErrorOut | None = None


class RunsPage(WireModel):
    items: list[RunRow]
    next_cursor: str | None = None
    scanned: int = Field(description="Runs read to fill this page (more than items with `where`).")


# workflows ----------------------------------------------------------------------------------
class WorkflowSummary(WireModel):
    """A saved graph as the workflows list shows it."""

    current: WorkflowVersionInfo = Field(description="The version runs use.")
    versions: int = Field(description="Versions saved.")
    latest_version: int
    updated_at_ms: int = Field(description="When the latest version was saved.")


class WorkflowRunRow(RunRow):
    """A run of a graph, with the version it runs."""

    graph_version: int | None = Field(
        default=None, description="Resolved in the run's first step; null before it ran."
    )


class WorkflowRunsPage(WireModel):
    items: list[WorkflowRunRow]
    next_cursor: str | None = None
    scanned: int = Field(description="Workflow runs read to fill this page.")


class RunOverview(WireModel):
    """Everything the run page's header shows."""

    run: RunInfo
    summary: RunRow
    trigger_events: list[EventInfo] = Field(default_factory=list)
    children: list[RunRow] = Field(default_factory=list)


# waits --------------------------------------------------------------------------------------
class ClauseResult(WireModel):
    clause: str
    passed: bool
    result: Any = None
    error: str | None = None


class WaitCandidate(WireModel):
    """A recent event of the awaited name, and what the wait's expression made of it."""

    event_id: str
    received_at_ms: int
    data: Any = None
    data_truncated: bool = False
    matched: bool
    result: Any = None
    error: str | None = None
    failed_clause: str | None = None
    clauses: list[ClauseResult] = Field(default_factory=list)
    before_wait: bool = Field(description="Received before the wait began (and its lookback).")


class WaitExplanation(WireModel):
    step_key: str
    step_name: str
    kind: StepKind
    status: StepStatus
    event: str | None = None
    expression: str | None = None
    timeout_ms: int | None = None
    lookback_ms: int | None = None
    started_at_ms: int | None = None
    expires_at_ms: int | None = None
    child_run_id: str | None = None
    candidates: list[WaitCandidate] = Field(default_factory=list)
    summary: str


class WaitingInfo(WireModel):
    run_id: str
    status: RunStatus
    status_reason: str | None = None
    waiting: bool
    message: str
    waits: list[WaitExplanation] = Field(default_factory=list)


# re-run preview -----------------------------------------------------------------------------
class PreviewStep(WireModel):
    key: str
    name: str
    kind: StepKind
    status: StepStatus
    action: Literal["reuse", "execute"]
    side_effect: str | None = Field(
        default=None,
        description="`llm`, `send_event`, `invoke` or `http` when executing again "
        "repeats an effect outside the run.",
    )


class RerunPreview(WireModel):
    run_id: str
    mode: RerunFrom
    allowed: bool
    reason: str | None = None
    reused: int
    executed: int
    side_effects: int
    steps: list[PreviewStep]
    note: str


# costs --------------------------------------------------------------------------------------
class CostRow(WireModel):
    key: str
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = Field(default=0, description="Calls without a known price.")


class CostReport(WireModel):
    group: CostGroup
    rows: list[CostRow]
    total: CostRow
    runs_scanned: int
    truncated: bool = Field(description="True when more runs matched than were scanned.")


# scores -------------------------------------------------------------------------------------
class ScoreNameStats(WireModel):
    name: str
    count: int
    mean: float
    min: float
    max: float
    histogram: list[int] = Field(description="Counts in `len(edges) - 1` equal bins.")
    edges: list[float]
    sources: dict[str, int] = Field(default_factory=dict)


class ScoresReport(WireModel):
    names: list[ScoreNameStats]
    experiments: list[str]
    scanned: int


class VariantOut(WireModel):
    variant: str
    score: str
    count: int
    mean: float
    stdev: float
    ci_low: float
    ci_high: float
    p_value: float | None = None
    significant: bool = False


class ExperimentReport(WireModel):
    experiment: str
    baseline: str | None = None
    variants: list[VariantOut]


# functions ----------------------------------------------------------------------------------
class FunctionStats(WireModel):
    info: FunctionInfo
    flow: dict[str, Any] = Field(default_factory=dict, description="Flow-control settings.")
    is_scorer: bool = False
    recent_runs: int = Field(description="Runs among the most recent `window` looked at.")
    by_status: dict[str, int] = Field(default_factory=dict)
    p95_duration_ms: int | None = None
    cost_usd: float | None = None


# bulk actions -------------------------------------------------------------------------------
class BulkFilter(RequestModel):
    function: str | None = Field(default=None, min_length=1, max_length=256)
    status: StatusName | None = None
    since: str | None = Field(default=None, min_length=1, max_length=64)
    until: str | None = Field(default=None, min_length=1, max_length=64)


class BulkIn(RequestModel):
    """Cancel or re-run several runs: listed by id, or every run matching a filter (then
    `expected_count`, the count the preview showed, must still hold)."""

    action: BulkAction
    run_ids: list[str] | None = Field(default=None, min_length=1, max_length=200)
    filter: BulkFilter | None = None
    expected_count: int | None = Field(default=None, ge=0)
    dry_run: bool = False
    rerun_from: RerunFrom = "start"
    reason: str = Field(default="cancelled from the dashboard", min_length=1, max_length=1000)


class BulkSkip(WireModel):
    run_id: str
    reason: str


class BulkItem(WireModel):
    run_id: str
    ok: bool
    new_run_id: str | None = None
    error: ErrorOut | None = None


class BulkResult(WireModel):
    action: BulkAction
    dry_run: bool
    matched: int
    eligible: list[str]
    ineligible: list[BulkSkip]
    results: list[BulkItem] = Field(default_factory=list)


# session ------------------------------------------------------------------------------------
class SessionInfo(WireModel):
    workspace: str
    role: str
    can_write: bool
    auth: Literal["none", "key", "session"]
    csrf_token: str | None = None
    require_keys: bool
