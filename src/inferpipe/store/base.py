"""The `Store` protocol: the only door to persistence.

Every implementation passes `tests/store/test_conformance.py`. A store instance is bound to one
workspace; `for_workspace` returns a view on another, sharing connections. Times are passed in
by the caller (`now_ms`), never read from a clock here, so a virtual clock drives a whole test.

Writes that change a run take the run's `Lease`; a write whose lease token is no longer the
run's raises `LeaseLost`, so a worker that stalled past its lease cannot corrupt the journal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from inferpipe.core.events import Event
from inferpipe.core.json import JSON
from inferpipe.core.records import (
    ClaimedRun,
    IngestResult,
    Lease,
    LogRecord,
    NewRun,
    NewWait,
    Run,
    RunStatus,
    StepRecord,
)
from inferpipe.core.scores import ScoreRecord
from inferpipe.store.blobs.base import BlobStore
from inferpipe.store.graphs import GraphTable
from inferpipe.store.keys import KeyStore
from inferpipe.store.secrets import SecretTable
from inferpipe.store.shadows import ShadowTable
from inferpipe.store.stream_log import StreamLog
from inferpipe.store.webhooks import WebhookTable

DEDUPE_WINDOW_MS = 24 * 3600 * 1000
"""A producer-set event id is deduplicated for this long."""

IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000
"""A function's idempotency key value starts one run within this long."""

FAIR_STEP_MS = 1
"""Fair queueing: how far apart, in queue time, consecutive runs of one key are placed. Keys
with runs queued take turns: each key's n-th run is queued about n steps after the head."""


@dataclass(slots=True)
class PlannedEvent:
    """An event to store with the runs it starts (planned by the engine from triggers)."""

    event: Event
    runs: list[NewRun] = field(default_factory=list)


@dataclass(slots=True)
class Progress:
    """What one step of a run adds to the store, written atomically."""

    steps: list[StepRecord] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    waits: list[NewWait] = field(default_factory=list)
    events: list[PlannedEvent] = field(default_factory=list)
    runs: list[NewRun] = field(default_factory=list)
    scores: list[ScoreRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WakeClaim:
    """Wake-and-claim: an intake takes the runs its events resume under a lease for `owner`,
    in its own transaction, so the sender's worker executes them with no claim. Only runs of
    `function_ids` without flow control to check (concurrency or singleton keys, a throttle)
    or a cancel asked for, that the intake makes ready now; at most `limit`, in id order. The
    lease is the one `claim` would give; if the owner dies, the run is taken over when the
    lease ends."""

    owner: str
    function_ids: list[str]
    lease_ms: int
    limit: int = 1


@dataclass(frozen=True, slots=True)
class Claim:
    """What `Store.claim_ready` took, and what it saw of the runs it left."""

    runs: list[ClaimedRun]
    more: bool
    """Runs may be ready that this claim could not take (it took a page, or as many as it
    was asked for): claim again once a slot is free."""
    looked_ahead: bool = False
    """Whether `next_ready_at_ms` was read, by the claim, in its own snapshot."""
    next_ready_at_ms: int | None = None
    """With `looked_ahead`: what `Store.next_ready_at` with `after_ms` = the claim's time
    would have said then (None: nothing ready later)."""

    @classmethod
    def of(cls, runs: list[ClaimedRun]) -> Claim:
        """A claim that tells nothing but its runs: runs may be left ready when it took
        some (a page at most; rows another claim holds are skipped)."""
        return cls(runs, more=bool(runs))


@dataclass(frozen=True, slots=True)
class ProgressResult:
    cancel_requested: str | None  #: why the run should stop, when it should
    resolved: dict[str, JSON]  #: step key -> event, for waits satisfied at once by lookback
    ingest: IngestResult | None = None
    final: dict[str, StepRecord] = field(default_factory=dict)
    """Steps already final in the journal, whose write was ignored: the stored record wins."""


@dataclass(frozen=True, slots=True)
class FinishResult:
    """What `Store.finish` did."""

    cancel_requested: str | None = None
    """The reason of a cancel accepted before the finish, which refused its outcome: nothing
    was written (finish the run again as cancelled). None once the run is finished."""
    work_ready: bool = True
    """Whether the finish may have made runs ready to claim: its events started runs,
    resolved waits or asked runs to cancel, or the run freed concurrency slots. A worker
    whose run finished with none of these has nothing new to look for."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended."""

    status: RunStatus
    output: JSON = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    scores: list[ScoreRecord] = field(default_factory=list)
    """Scores written with the finish (a scorer run's result, attached to the run it judges)."""


@dataclass(frozen=True, slots=True)
class RunFilter:
    function_id: str | None = None
    status: RunStatus | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    event_id: str | None = None
    parent_run_id: str | None = None


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ScoreFilter:
    run_id: str | None = None
    function_id: str | None = None
    scorer_id: str | None = None
    name: str | None = None
    experiment: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


class Store(Protocol):
    """Persistence for events, runs, journals, waits and logs, scoped to one workspace."""

    workspace: str

    @property
    def blobs(self) -> BlobStore:
        """Where payloads above the offload threshold live, for every workspace of this
        database (each reads only its own; see `inferpipe.store.payloads`)."""

    @property
    def keys(self) -> KeyStore:
        """The API keys of every workspace, in the same database."""

    @property
    def graphs(self) -> GraphTable:
        """The saved graph versions of this workspace, in the same database."""

    @property
    def shadows(self) -> ShadowTable:
        """The shadow policies and comparisons of this workspace, in the same database."""

    @property
    def secrets(self) -> SecretTable:
        """The sealed workspace secrets of every workspace, in the same database."""

    @property
    def webhooks(self) -> WebhookTable:
        """The webhook sources, subscriptions and deliveries of every workspace, in the same
        database."""

    @property
    def stream_log(self) -> StreamLog:
        """The stream topics (of every workspace: topics are global), in the same database."""

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...

    def for_workspace(self, workspace: str) -> Store:
        """A view of the same database scoped to `workspace`."""

    async def listen(
        self, callback: Callable[[], None], *, run_id: str | None = None
    ) -> Callable[[], Awaitable[None]]:
        """Call `callback` (on the event loop; it must not block) when another process may
        have made runs of this workspace ready to claim or, with `run_id`, may have finished
        that run. This process's own changes are the engine's to tell (`Wakeups`); a store
        that cannot tell changes apart calls every listener on any change.

        Returns:
            An async function that stops listening.
        """

    async def count_runs_by_status(self) -> dict[str, int]:
        """How many runs each status has, over every workspace (for the metrics gauge)."""

    async def check_writable(self, now_ms: int) -> None:
        """Commit a tiny durable write; raises StoreError when the store cannot be written."""

    # events -------------------------------------------------------------------------------
    async def ingest(
        self, events: list[PlannedEvent], now_ms: int, *, claim: WakeClaim | None = None
    ) -> IngestResult:
        """Store events (dropping duplicates), create their runs, resume matching waits and
        request cancellation of matching runs, all in one transaction; with `claim`, also take
        resumed runs under a lease (`WakeClaim`, returned in `runs_claimed`).

        Runs are admitted by their `NewRun.flow`, in the same transaction (see
        `create_runs`): `runs_created` lists the runs recorded, skipped ones included; an
        event folded into a pending debounce or batch run creates none (it is linked to that
        run, so filtering runs by the event finds it)."""

    async def get_event(self, event_id: str) -> dict[str, Any] | None: ...

    async def list_events(
        self,
        *,
        name: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[dict[str, Any]]: ...

    # runs ---------------------------------------------------------------------------------
    async def create_runs(self, runs: list[NewRun], now_ms: int) -> None:
        """Insert runs (and their cancel waits), admitting each by its `flow` (also on the runs
        that `ingest`, `commit` and `finish` insert), in this order:

        - `skip_reason`, an unexpired `idempotency_key`, a full `rate_limit` window (hits in
          (now - period, now]), or an unfinished run of a skipping `singleton_key`: the run is
          recorded with status `skipped` and the reason, and a `function.finished` event
          (status "skipped") is ingested after the transaction's waits, so an invoker resumes.
        - otherwise the idempotency key, the rate-limit hit are recorded; a cancelling
          singleton requests cancellation of the key's unfinished runs.
        - `buffer`: the event is folded into the key's pending debounce/batch run when one has
          not started and its window is open (a debounce keeps the last event and moves the
          start to now + wait, capped at first + max_wait; a batch appends the event and starts
          now when full). Else the run becomes the pending one, starting at the window's end.
        - `fair_key`: the run's queue tag is max(key's next tag, min(now, head of the
          function's unstarted ready runs)); the key's next tag becomes tag + FAIR_STEP_MS.
        A queued run's `status_reason` says why it waits (a debounce or batch window, or a
        concurrency key already full when it is inserted)."""

    async def get_run(self, run_id: str) -> Run | None: ...

    async def list_runs(
        self, flt: RunFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Run]:
        """Runs newest first."""

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        """A run's steps by sequence number, then start, then key (a total order)."""

    async def get_logs(self, run_id: str) -> list[LogRecord]: ...

    async def request_cancel(self, run_id: str, reason: str, now_ms: int) -> Run:
        """Mark a run to stop; a worker finalizes it (a step in flight finishes first)."""

    async def rerun(
        self, run_id: str, new_run_id: str, *, from_failed_step: bool, now_ms: int
    ) -> Run:
        """A new run of the same function and input; from the failed step keeps the journal's
        completed steps. The new run keeps the concurrency keys, singleton key and throttle of
        the old one (a skipped run can be re-run this way)."""

    # work ---------------------------------------------------------------------------------
    async def claim(
        self, owner: str, function_ids: list[str], limit: int, now_ms: int, lease_ms: int
    ) -> list[ClaimedRun]:
        """Take up to `limit` ready runs under a lease; runs whose lease expired are taken
        over first. Ready runs are taken in queue order: a run that never started by its fair
        queue tag (a turn of its key), else by its ready time minus `priority` seconds. The
        run that starts in a turn is the one of its queue group (`RunFlow.queue_group`, not
        asked to cancel, without a throttle reservation) first by ready time minus priority;
        the run whose turn it took gets its tag. Inside the claim's transaction, flow control
        applies:

        - concurrency: a run whose key (`flow.concurrency`, or its singleton key with limit 1)
          already has `limit` running runs in the workspace is left queued, with the reason
          (runs asked to cancel are exempt: they only finalize);
        - throttle, on a run's first start: GCRA per key (one start per period/limit, `burst`
          more back to back); a run over the pace gets a reserved start time as its ready time
          (and reason) and keeps that reservation.
        """

    async def claim_ready(
        self, owner: str, function_ids: list[str], limit: int, now_ms: int, lease_ms: int
    ) -> Claim:
        """`claim`, telling the worker whether to claim again and, when the store can read it
        in the same statement, when the next run it left becomes ready (`Claim`): a worker
        whose claim came back short then needs no `next_ready_at` poll."""

    async def start_run(
        self, run: NewRun, now_ms: int, owner: str, lease_ms: int
    ) -> ClaimedRun | None:
        """Insert a run already claimed by `owner`, in one durable write (start-and-claim:
        the caller's process executes it at once, with no claim). Only for a run without flow
        control, cancel waits or journal, ready now. Its lease is the one `claim` would give
        (token 1, first execution); if the caller dies, the run is taken over when the lease
        ends. None when a run with that id already exists and is not under this lease."""

    async def next_ready_at(
        self, function_ids: list[str], *, after_ms: int | None = None
    ) -> int | None:
        """When the next claimable run becomes ready (or a lease expires), if ever. With
        `after_ms`, only ready times after it count: a worker whose claim came back short
        passes its claim time, as the runs ready by then wait for a concurrency slot (a run
        finishing wakes it), so it does not spin on them."""

    async def renew_leases(self, leases: list[Lease], until_ms: int) -> list[str]:
        """Extend leases; returns the run ids whose lease was lost."""

    async def commit(self, lease: Lease, progress: Progress, now_ms: int) -> ProgressResult:
        """Append to a run's journal (and what goes with it) under its lease."""

    async def park(
        self,
        lease: Lease,
        status: RunStatus,
        ready_at_ms: int | None,
        now_ms: int,
        *,
        batch_wakes_ms: int | None = None,
    ) -> None:
        """Release the run until `ready_at_ms` (None: until an event) and drop the lease; a
        cancel request, or an event that resolved one of its waits while it ran, makes it
        ready now instead.

        With `batch_wakes_ms` (the run was resumed and could not continue: its code still waits
        on other steps, e.g. a gather of many invokes), a resolved wait makes it ready at most
        that long later rather than at once, unless no step wait of the run is left open (then
        at once); a cancel still wakes it at once. Until it parks again."""

    async def finish(
        self, lease: Lease, outcome: Outcome, events: list[PlannedEvent], now_ms: int
    ) -> FinishResult:
        """Finalize the run, drop its waits, and ingest the events its end produces; says
        whether that may have made runs ready (`FinishResult.work_ready`).

        A cancel accepted before the finish wins: when the run was asked to cancel and
        `outcome` is not `cancelled`, nothing is written and the cancel reason is returned
        (`FinishResult.cancel_requested`: the caller finishes it again as cancelled). Checked
        in the finish's transaction, so a cancel is either seen here or refused as too late
        (`request_cancel` on a finished run changes nothing)."""

    async def claim_cancelled(
        self, owner: str, run_id: str, function_ids: list[str], now_ms: int, lease_ms: int
    ) -> ClaimedRun | None:
        """Take one run of `function_ids` that was asked to cancel and is not executing
        (queued, sleeping or waiting, ready or not) under a lease, to finalize it now; None
        otherwise."""

    # scores -------------------------------------------------------------------------------
    async def put_score(
        self, score: ScoreRecord, now_ms: int, events: list[PlannedEvent] | None = None
    ) -> ScoreRecord:
        """Attach a score to a run (RunNotFoundError if unknown); same id = update. `events`
        (the score's announcement) are ingested in the same transaction, so a crash cannot keep
        the score and lose what it triggers."""

    async def list_scores(self, flt: ScoreFilter, *, limit: int = 1000) -> list[ScoreRecord]:
        """Scores oldest first, by run, function, scorer, name, experiment or time.

        By experiment: every score of every run assigned to it (a run in two experiments has
        its scores counted in both), each carrying that experiment and the run's variant in
        it. Otherwise `experiment`/`variant` are those of the first experiment of the run."""

    async def blob_refs(self) -> set[str]:
        """The sha256 of every blob this workspace's rows still reference (step and run
        outputs, run inputs, event bodies): what a blob sweep must keep."""
        ...

    async def purge(self, older_than_ms: int) -> int:
        """Delete finished runs (with journals and logs) and events older than a time, and flow
        control state that no longer changes a decision."""
