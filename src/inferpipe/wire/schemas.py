"""Wire models of the HTTP API (v1), shared by the server and the Python client.

Request models are strict and forbid unknown fields, so a typo answers 422 naming the field.
Response models ignore unknown fields, so an older client keeps working against a newer server.
Times are Unix milliseconds (`*_at_ms`); large JSON values are cut to a preview and flagged
(`input_truncated`), and `?full=true` returns them whole.

This module imports only pydantic and the core vocabulary: the client uses it without FastAPI.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from inferpipe.core.records import RunStatus, StepKind, StepStatus

API_VERSION = "v1"

MAX_WAIT_S = 60.0
"""The longest `GET /v1/runs/{id}?wait_s=` holds its answer, waiting for the run to finish."""

T = TypeVar("T")


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


# errors -------------------------------------------------------------------------------------
class ErrorDetail(WireModel):
    field: str = Field(description="Dotted path of the field at fault, e.g. `body.name`.")
    message: str


class ErrorInfo(WireModel):
    code: str = Field(description="Stable machine-readable code, e.g. `run_not_found`.")
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(WireModel):
    """The body of every error response."""

    error: ErrorInfo


class Page(WireModel, Generic[T]):
    """A page of a list; pass `next_cursor` as `?cursor=` for the next one (null: the end)."""

    items: list[T]
    next_cursor: str | None = None


# events -------------------------------------------------------------------------------------
class EventIn(RequestModel):
    """An event to send."""

    name: str = Field(min_length=1, max_length=256, description="e.g. `support/ticket.created`")
    data: dict[str, Any] = Field(default_factory=dict)
    user: dict[str, Any] | None = None
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Producer-set id: a second event with this id within 24 h is a duplicate.",
    )
    ts: int | None = Field(default=None, ge=0, description="When it happened (Unix ms).")


class SendResult(WireModel):
    """The events are durably stored when this answer is sent."""

    ids: list[str] = Field(description="The id of each event sent, in order.")
    duplicates: list[str] = Field(description="Ids dropped as duplicates of earlier events.")
    runs_created: list[str] = Field(description="Ids of the runs these events started.")


class EventInfo(WireModel):
    id: str
    name: str
    data: dict[str, Any]
    data_url: str | None = Field(
        default=None,
        description="Where the whole data downloads from (its JSON), when members of it were "
        "offloaded to the blob store.",
    )
    user: dict[str, Any] = Field(default_factory=dict)
    ts: int | None = None
    received_at_ms: int


# runs ---------------------------------------------------------------------------------------
class InvokeIn(RequestModel):
    data: dict[str, Any] = Field(default_factory=dict, description="The run's `ctx.event.data`.")


class Invoked(WireModel):
    run_id: str


class CancelIn(RequestModel):
    reason: str = Field(default="cancelled by request", min_length=1, max_length=1000)


class RerunIn(RequestModel):
    from_: Literal["start", "failed_step"] = Field(
        default="start",
        alias="from",
        description="`start`: run everything again; `failed_step`: keep completed steps.",
    )


class ScoreIn(RequestModel):
    """A feedback score for `POST /v1/runs/{id}/scores`."""

    name: str = Field(min_length=1, max_length=128, description="At most 128 bytes.")
    value: bool | float = Field(description="A finite number, or a bool (stored as 1 or 0).")
    reason: str | None = Field(default=None, max_length=1000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The score's id: the same id again updates that score instead of adding one.",
    )


class ErrorOut(WireModel):
    code: str
    message: str
    type: str | None = None
    traceback: str | None = Field(
        default=None,
        description="Where user code raised: its frames (engine frames dropped, library frames "
        "collapsed), at most 8 000 characters; for a failed step's error raised into the "
        "function, the step's traceback first.",
    )


class RunTokens(WireModel):
    """Tokens a run's model calls used, as their providers reported them."""

    input: int = Field(default=0, description="Prompt tokens (cached ones included).")
    output: int = Field(default=0, description="Completion tokens.")
    total: int = Field(default=0, description="`input` + `output`.")


class RunInfo(WireModel):
    id: str
    function_id: str
    status: RunStatus
    status_reason: str | None = None
    created_at_ms: int
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    input: Any = None
    input_truncated: bool = False
    input_url: str | None = Field(
        default=None,
        description="Where the whole input downloads from (its JSON), when members of it were "
        "offloaded to the blob store; `input` is then a preview unless `full` was asked.",
    )
    output: Any = None
    output_truncated: bool = False
    output_url: str | None = Field(
        default=None,
        description="Where the whole output downloads from (its JSON), when it was offloaded "
        "to the blob store; `output` is then a preview unless `full` was asked.",
    )
    error: ErrorOut | None = None
    executions: int = Field(
        default=0,
        description="Times a worker has executed the run: 1 for the first execution, +1 for each "
        "resume (after a sleep, a wait, a step's retry, or recovery). Retries are counted per "
        "step (`attempt`).",
    )
    parent_run_id: str | None = None
    rerun_of: str | None = None
    event_ids: list[str] = Field(default_factory=list)
    cancel_requested: str | None = None
    trace_id: str = Field(
        default="",
        description="The run's OpenTelemetry trace id (32 hex digits): the trace of the request "
        "that caused it (W3C `traceparent`), or one of its own. Its spans are exported when "
        "telemetry is on (docs/telemetry.md).",
    )
    tokens: RunTokens = Field(
        default_factory=RunTokens,
        description="Tokens of the run's model-call steps so far (0 without any).",
    )
    cost_usd: float | None = Field(
        default=None,
        description="Cost in USD of the run's model-call steps so far (0 without any); null "
        "when one of them could not be priced (e.g. a self-hosted model).",
    )


class StepInfo(WireModel):
    key: str = Field(description="The journal key: the step id, with `:n` for repeats.")
    name: str
    kind: StepKind
    status: StepStatus
    seq: int
    attempt: int = Field(
        description="0 for the step's first try, n for its n-th retry (as `ctx.attempt`); the "
        "dashboard and CLI show it counting from 1."
    )
    input: Any = None
    input_truncated: bool = False
    input_url: str | None = Field(
        default=None,
        description="Where the whole input downloads from (its JSON), when members of it were "
        "offloaded to the blob store; `input` is then a preview unless `full` was asked.",
    )
    output: Any = None
    output_truncated: bool = False
    output_url: str | None = Field(
        default=None,
        description="Where the whole output downloads from (its JSON), when it was offloaded "
        "to the blob store; `output` is then a preview unless `full` was asked.",
    )
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    wake_at_ms: int | None = None
    duration_ms: int | None = None
    error: ErrorOut | None = None
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="Retry history (`attempts`), and for model calls provider, model, "
        "settings, tokens and cost.",
    )


class LogInfo(WireModel):
    seq: int
    level: str
    message: str
    step: str | None = None
    ts_ms: int
    meta: dict[str, Any] = Field(default_factory=dict)


class ScoreInfo(WireModel):
    """A score attached to a run: inline (`ctx.step.score`), from a scorer run, or feedback."""

    id: str
    name: str
    value: float
    source: str = Field(description="`inline`, `scorer` or `feedback`.")
    reason: str | None = None
    function_id: str = ""
    scorer_id: str | None = None
    scorer_run_id: str | None = None
    experiment: str | None = None
    variant: str | None = None
    created_at_ms: int
    updated_at_ms: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


# functions ----------------------------------------------------------------------------------
class TriggerInfo(WireModel):
    type: Literal["event", "cron"]
    event: str | None = None
    if_exp: str | None = None
    cron: str | None = None


class CancelOnInfo(WireModel):
    event: str
    if_exp: str | None = None
    timeout_ms: int | None = None


class BackoffInfo(WireModel):
    base_s: float
    max_s: float
    jitter: float


class TimeoutsInfo(WireModel):
    start_ms: int | None = None
    finish_ms: int | None = None


class FunctionInfo(WireModel):
    id: str
    description: str = ""
    triggers: list[TriggerInfo] = Field(default_factory=list)
    retries: int
    backoff: BackoffInfo
    cancel_on: list[CancelOnInfo] = Field(default_factory=list)
    timeouts: TimeoutsInfo


# workflows ----------------------------------------------------------------------------------
class WorkflowVersionInfo(WireModel):
    """A saved version of a workflow graph."""

    graph_id: str
    version: int
    name: str
    content_hash: str = Field(description="The compiled plan's hash: equal plans, equal hashes.")
    created_at_ms: int
    current: bool = Field(description="Runs that name no version use the current one.")


class WorkflowSaved(WorkflowVersionInfo):
    """The version a save made current."""

    created: bool = Field(
        description="False when the graph equals the current version: nothing new was saved."
    )


class WorkflowNodeInfo(WireModel):
    """A node of a compiled graph, and the step that records it in a run."""

    id: str
    type: str
    step_name: str = Field(description="The node's step in a run: `node-<id>-<type>`.")
    depends_on: list[str] = Field(default_factory=list)
    level: int = Field(description="0 without dependencies, else 1 + the deepest one's level.")


class WorkflowVersionDetail(WorkflowVersionInfo):
    """A saved version with its graph document and its compiled nodes."""

    graph: dict[str, Any] = Field(description="The graph document as saved.")
    nodes: list[WorkflowNodeInfo] = Field(description="In topological order.")


class FieldChangeInfo(WireModel):
    path: str = Field(description="Dotted path of the value, e.g. `prompt` or `cases[0].when`.")
    before: Any = None
    after: Any = None


class NodeChangeInfo(WireModel):
    node_id: str
    fields: list[FieldChangeInfo]


class EdgeInfo(WireModel):
    source: str
    target: str


class WorkflowDiff(WireModel):
    """What changed from one version of a graph to another."""

    graph_id: str
    from_version: int
    to_version: int
    added_nodes: list[str] = Field(default_factory=list)
    removed_nodes: list[str] = Field(default_factory=list)
    changed_nodes: list[NodeChangeInfo] = Field(default_factory=list)
    added_edges: list[EdgeInfo] = Field(default_factory=list)
    removed_edges: list[EdgeInfo] = Field(default_factory=list)
    graph_fields: list[FieldChangeInfo] = Field(
        default_factory=list, description="Changes to name, description, input schema, output."
    )
    text: str = Field(description="The diff as text: `+` added, `-` removed, `~` changed.")


MAX_WORKFLOW_VERSION = 2**31 - 1
"""Version numbers are SQL INTEGERs."""


class RollbackIn(RequestModel):
    version: int = Field(
        ge=1, le=MAX_WORKFLOW_VERSION, description="The version to make current again."
    )


class WorkflowRunIn(RequestModel):
    input: dict[str, Any] = Field(
        default_factory=dict, description="The graph's input, checked against its input schema."
    )
    version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WORKFLOW_VERSION,
        description="A saved version; the current one when omitted.",
    )


class WorkflowRunStarted(WireModel):
    """The run is durably queued; follow it at `/v1/runs/{run_id}`."""

    run_id: str
    graph_id: str
    version: int


# operations ---------------------------------------------------------------------------------
class Health(WireModel):
    status: Literal["ok", "ready"]


SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
"""Secret names are identifiers, so templates read them as `secrets.NAME`."""


class SecretIn(RequestModel):
    value: str = Field(
        min_length=1, description="The value (at most 65536 characters); never shown again."
    )


class SecretInfo(WireModel):
    """A workspace secret, without its value."""

    name: str
    created_at_ms: int
    updated_at_ms: int


__all__ = [
    "API_VERSION",
    "SECRET_NAME_PATTERN",
    "BackoffInfo",
    "CancelIn",
    "CancelOnInfo",
    "EdgeInfo",
    "ErrorBody",
    "ErrorDetail",
    "ErrorInfo",
    "ErrorOut",
    "EventIn",
    "EventInfo",
    "FieldChangeInfo",
    "FunctionInfo",
    "Health",
    "InvokeIn",
    "Invoked",
    "LogInfo",
    "NodeChangeInfo",
    "Page",
    "RequestModel",
    "RerunIn",
    "RollbackIn",
    "RunInfo",
    "RunTokens",
    "ScoreInfo",
    "SecretIn",
    "SecretInfo",
    "SendResult",
    "StepInfo",
    "TimeoutsInfo",
    "TriggerInfo",
    "WireModel",
    "WorkflowDiff",
    "WorkflowNodeInfo",
    "WorkflowRunIn",
    "WorkflowRunStarted",
    "WorkflowSaved",
    "WorkflowVersionDetail",
    "WorkflowVersionInfo",
]
