"""What the store keeps: runs, their journal of steps, waits, logs."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from inferpipe.core.json import JSON


class RunStatus(enum.StrEnum):
    """Where a run is in its life.

    A run is `skipped` when flow control decided at intake that it does not run: a rate limit
    was reached, its idempotency key was used within 24 h, a run of its singleton key had not
    finished, or a flow key expression failed on its event. `status_reason` says which. It
    is a distinct status rather than `cancelled` so that dashboards and alerts can tell work
    that was stopped from work that was never admitted. A `queued` run's `status_reason`
    says why it waits (a concurrency slot, a throttle, a debounce or a batch window).
    """

    QUEUED = "queued"  #: ready to be claimed by a worker (or waiting for its ready time)
    RUNNING = "running"  #: a worker holds its lease and executes it
    SLEEPING = "sleeping"  #: parked until a time (sleep, or a step's retry backoff)
    WAITING = "waiting"  #: parked until an event (wait_for_event, invoke) or a timeout
    COMPLETED = "completed"  #: returned a value
    FAILED = "failed"  #: raised; can be re-run
    CANCELLED = "cancelled"  #: by call, by cancel_on, by a timeout, or replaced (singleton)
    SKIPPED = "skipped"  #: never ran: flow control skipped it (see below); can be re-run

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED)


class StepKind(enum.StrEnum):
    RUN = "run"
    SLEEP = "sleep"
    WAIT_FOR_EVENT = "wait_for_event"
    SEND_EVENT = "send_event"
    INVOKE = "invoke"
    SCORE = "score"
    LLM = "llm"
    EXPERIMENT = "experiment"
    DEFER = "defer"
    PATCH = "patch"  #: a `ctx.patched` decision, not a step the code has to reach


def experiment_step_key(experiment_id: str) -> str:
    """The journal key of a run's (first) assignment to `experiment_id`."""
    return f"experiment:{experiment_id}"


class StepStatus(enum.StrEnum):
    COMPLETED = "completed"  #: output recorded; replay returns it
    FAILED = "failed"  #: attempts exhausted; replay raises StepError
    RETRYING = "retrying"  #: an attempt failed; the next one is due at `wake_at_ms`
    SLEEPING = "sleeping"  #: a sleep until `wake_at_ms`
    WAITING = "waiting"  #: waiting for an event until `wake_at_ms` (None = no timeout)


class WaitKind(enum.StrEnum):
    STEP = "step"  #: resolves a wait_for_event / invoke step
    CANCEL = "cancel"  #: a cancel_on match cancels the run


@dataclass(slots=True)
class StepRecord:
    """One entry in a run's journal, keyed by `key` (step id plus occurrence suffix)."""

    run_id: str
    key: str
    name: str
    kind: StepKind
    status: StepStatus
    attempt: int = 0
    """0 for the first try of the step, n for its n-th retry (as `ctx.attempt`)."""
    input: JSON = None
    output: JSON = None
    error: dict[str, Any] | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    wake_at_ms: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    seq: int = 0

    @property
    def duration_ms(self) -> int | None:
        if self.started_at_ms is None or self.finished_at_ms is None:
            return None
        return self.finished_at_ms - self.started_at_ms


@dataclass(slots=True)
class Run:
    """One execution of a function."""

    id: str
    workspace: str
    function_id: str
    status: RunStatus
    event_ids: list[str]
    input: JSON
    created_at_ms: int
    ready_at_ms: int | None
    """When the run may be claimed next; None once it has finished."""
    output: JSON = None
    error: dict[str, Any] | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    parent_run_id: str | None = None
    rerun_of: str | None = None
    priority: int = 0
    executions: int = 0
    """Times a worker has claimed and executed the run: 1 for the first execution, +1 for
    every resume (after a sleep, a wait, a step's retry, a hand-back or a crash). Not a retry
    count: retries are per step (`StepRecord.attempt`). Stored in the `attempts` column."""
    lease_owner: str | None = None
    lease_expires_at_ms: int | None = None
    lease_token: int = 0
    cancel_requested: str | None = None
    start_deadline_ms: int | None = None
    finish_timeout_ms: int | None = None
    status_reason: str | None = None
    """Why a queued run waits (a concurrency slot, a throttle, a debounce or batch window) or
    why a run ended without completing (cancelled, skipped)."""
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's right to write a run; `token` fences out writers with an older claim."""

    run_id: str
    owner: str
    token: int


@dataclass(slots=True)
class NewRun:
    """A run to create, as planned by the engine from an event or an invocation."""

    id: str
    function_id: str
    event_ids: list[str]
    input: JSON
    ready_at_ms: int
    priority: int = 0
    parent_run_id: str | None = None
    rerun_of: str | None = None
    start_deadline_ms: int | None = None
    finish_timeout_ms: int | None = None
    cancel_waits: list[NewWait] = field(default_factory=list)
    journal: list[StepRecord] = field(default_factory=list)
    flow: RunFlow | None = None
    """Flow control the store applies when it inserts and claims the run."""


@dataclass(frozen=True, slots=True)
class FlowPace:
    """A throttle or rate limit on one key: `limit` runs per `period_ms`, `burst` more at once
    (throttle only)."""

    key: str
    limit: int
    period_ms: int
    burst: int = 0


@dataclass(frozen=True, slots=True)
class FlowBuffer:
    """A debounce or a batch on one key. A debounce run starts `wait_ms` after the last event
    (which replaces the earlier ones), at most `max_wait_ms` after the first; a batch run
    collects up to `max_size` events and starts when full or `wait_ms` after its first event."""

    key: str
    wait_ms: int
    max_wait_ms: int | None = None
    max_size: int = 1
    batch: bool = False


@dataclass(frozen=True, slots=True)
class RunFlow:
    """A run's flow control with its keys already evaluated: planned by the engine from the
    function's options, enforced by the store (keys are scoped strings, e.g.
    ``fn:<function id>:<expression>=<value>``)."""

    concurrency: tuple[tuple[str, int], ...] = ()  #: (key, limit) pairs, at most two
    fair_key: str | None = None  #: runs of one fair key take turns with other keys' runs
    throttle: FlowPace | None = None  #: starts over the pace are delayed
    rate_limit: FlowPace | None = None  #: runs over the limit are skipped
    idempotency_key: str | None = None  #: one run per key within 24 h
    singleton_key: str | None = None  #: one unfinished run per key
    singleton_cancels: bool = False  #: a newcomer cancels the unfinished run (else is skipped)
    buffer: FlowBuffer | None = None  #: debounce or batch
    skip_reason: str | None = None  #: record the run as skipped at once (a key failed)
    note: str | None = None  #: a remark kept as the queued run's status reason

    def queue_group(self, function_id: str) -> str | None:
        """The runs that flow control treats alike (same function, concurrency, singleton and
        throttle keys): one may start in another's turn of the fair queue. None without a fair
        key."""
        if self.fair_key is None:
            return None
        throttle = self.throttle.key if self.throttle is not None else ""
        keys = [key for key, _ in self.concurrency]
        return "\x1f".join([function_id, *keys, self.singleton_key or "", throttle])


@dataclass(slots=True)
class NewWait:
    """A wait to register: the run resumes (or is cancelled) when a matching event arrives."""

    run_id: str
    kind: WaitKind
    event_name: str
    expression: str | None
    step_key: str | None = None
    expires_at_ms: int | None = None
    lookback_ms: int | None = None


@dataclass(slots=True)
class LogRecord:
    run_id: str
    seq: int
    level: str
    message: str
    ts_ms: int
    step_key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ClaimedRun:
    """A run a worker now holds, with what it needs to replay it."""

    run: Run
    lease: Lease
    journal: dict[str, StepRecord]
    log_count: int
    taken_over: bool = False
    """The run was taken from an execution whose lease expired (its worker died, stalled or
    lost the store): a step that execution had in flight may have run, and runs again."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What committing a batch of events did."""

    accepted: list[str]  #: ids of events stored
    duplicates: list[str]  #: ids of events dropped as duplicates
    runs_created: list[str]
    waits_resolved: list[str]  #: run ids resumed
    runs_cancelled: list[str]  #: asked to stop (a `cancel_on` match, a replaced singleton)
    runs_claimed: list[ClaimedRun] = field(default_factory=list)
    """Resumed runs taken under a lease in the same transaction, when the intake was asked to
    (`store.base.WakeClaim`): the caller's worker executes them, with no claim."""

    @property
    def work_ready(self) -> bool:
        """Whether runs may have become ready to claim: runs created, resumed (and not taken
        by the intake: `runs_claimed`) or asked to stop."""
        taken = {claimed.run.id for claimed in self.runs_claimed}
        return bool(self.runs_created or self.runs_cancelled or set(self.waits_resolved) - taken)
