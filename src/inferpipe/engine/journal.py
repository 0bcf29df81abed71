"""The state of one execution of a run: its journal, parked steps and pending writes."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from inferpipe.core.errors import (
    LeaseLost,
    NondeterminismError,
    RunCancelled,
    StepNestingError,
    StoreError,
    StoreUnavailable,
    Suspend,
)
from inferpipe.core.events import Event
from inferpipe.core.json import KB, MB
from inferpipe.core.records import (
    ClaimedRun,
    LogRecord,
    NewRun,
    StepKind,
    StepRecord,
    StepStatus,
)
from inferpipe.core.redaction import DEFAULT_REDACTED_KEYS
from inferpipe.core.trace_context import TraceContext, run_span, step_span
from inferpipe.engine.clock import Clock
from inferpipe.engine.group_commit import GroupCommit, Lag
from inferpipe.engine.lifecycle import RunListener
from inferpipe.engine.wakeups import Wakeups
from inferpipe.store import payloads
from inferpipe.store.base import PlannedEvent, Progress, ProgressResult, Store
from inferpipe.store.blobs import BlobError
from inferpipe.store.payloads import Payloads

active_step: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "active_step", default=None
)
"""The step whose callable is running in this context, to refuse nested steps."""


READ_AHEAD_BYTES = 64 * MB
"""How much of a journal's offloaded outputs a replay reads ahead, in one read (the rest are
read as the replay reaches them)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Payload limits, in bytes, and the keys whose values are redacted before storing."""

    event_bytes: int = 64 * MB
    """The ceiling of an event (its data's large members are offloaded above
    `offload_bytes`)."""
    step_output_bytes: int = 256 * MB
    """The ceiling of a step output (offloaded to the blob store above `offload_bytes`)."""
    run_output_bytes: int = 256 * MB
    """The ceiling of a run output (offloaded above `offload_bytes`)."""
    stream_bytes: int = 64 * MB
    """The ceiling of the data of one stream event (offloaded above `offload_bytes`)."""
    offload_bytes: int = 256 * KB
    """Step outputs, run outputs and stream data whose JSON is longer go to the store's blob
    store, and so do the largest members of event data and step inputs; the row keeps a
    reference (see docs/payloads.md)."""
    redact_keys: tuple[str, ...] = DEFAULT_REDACTED_KEYS
    """Matched case-insensitively at any depth of step inputs and outputs, run inputs (events,
    invocation data) and outputs, and log metadata (see `inferpipe.core.redaction`)."""
    pipeline_steps: int = 16
    """Step results a run may compute ahead of its durable journal: a step's record commits
    while the function runs on, and the run waits for it before anything that leaves the run
    (a send, an invoke, a park, its finish, a stream event). A crash re-runs at most this many
    recorded-but-unflushed steps (each step is at-least-once anyway). 0: every step result
    is committed before the step returns."""
    pipeline_bytes: int = 1 * MB
    """The same bound on the JSON size of those step records."""


class Planner(Protocol):
    """Turns events and invocations into runs (the function registry)."""

    def plan(self, event: Event, now_ms: int, *, workspace: str) -> list[NewRun]: ...

    def invocation(
        self,
        function_id: str,
        data: dict[str, Any],
        now_ms: int,
        parent_run_id: str | None,
        trace: TraceContext | None = None,
    ) -> NewRun: ...

    def deferred(
        self,
        function_id: str,
        data: dict[str, Any],
        parent: dict[str, Any],
        now_ms: int,
        trace: TraceContext | None = None,
    ) -> NewRun: ...

    def input_model_of(self, function_id: str) -> type[BaseModel] | None: ...

    def retries_of(self, function_id: str) -> int: ...

    def backoff_ms(self, function_id: str, attempt: int) -> int: ...


class RunJournal:
    """What one execution knows and writes; steps go through it."""

    def __init__(
        self,
        claimed: ClaimedRun,
        store: Store,
        clock: Clock,
        planner: Planner,
        limits: Limits,
        wakeups: Wakeups,
    ) -> None:
        self.run = claimed.run
        self.lease = claimed.lease
        self.records: dict[str, StepRecord] = claimed.journal
        self.store = store
        self.payloads = Payloads(store.blobs, claimed.run.workspace, limits.offload_bytes)
        self._read_ahead: dict[str, bytes] | None = None  #: see `resolve`
        self.clock = clock
        self.planner = planner
        self.limits = limits
        self.wakeups = wakeups
        self.replayed_logs = claimed.log_count
        self.log_seq = 0
        self.pending_logs: list[LogRecord] = []
        self.pending_steps: list[StepRecord] = []  #: recorded without a write of their own
        self.parked: dict[str, int | None] = {}
        self.inflight = 0
        self.cancel_reason: str | None = claimed.run.cancel_requested
        self.taken_over = claimed.taken_over
        """The execution before this one was abandoned (its lease expired); until this one
        records a step, a step it starts may have been in flight there."""
        self.lease_lost = False
        self.fatal: BaseException | None = None
        """A misuse that fails the run whatever the function does after it."""
        self.wrote_steps = False  #: whether this execution recorded a step (it progressed)
        # What the replay has yet to reach; a patch marker is a decision, not a step to reach.
        self._unvisited = {k for k, r in self.records.items() if r.kind is not StepKind.PATCH}
        self._caught_up = asyncio.Event()
        if not self._unvisited:
            self._caught_up.set()
        self.held: list[str] = []
        """New steps waiting for the replay to reach every recorded step (see `reach_new`)."""
        self.on_recorded: Callable[[list[StepRecord]], Awaitable[None]] | None = None
        self.listener: RunListener | None = None  #: None when the engine has no listeners
        self.drain: asyncio.Event | None = None
        self.lease_ending: Callable[[], bool] | None = None
        """Whether this execution's lease, as last renewed, may end soon by the worker's own
        clock: then no step may start (None: no deadline, as in burst mode)."""
        self.changed = asyncio.Event()
        self._occurrences: dict[str, int] = {}
        self._next_seq = max((r.seq for r in self.records.values()), default=0) + 1
        self._group = GroupCommit(self._write, Lag(limits.pipeline_steps, limits.pipeline_bytes))

    def key_for(self, step_id: str) -> str:
        """The journal key of this call of `step_id`: repeated ids get `:1`, `:2`, ..."""
        if not isinstance(step_id, str) or not step_id:
            raise ValueError("a step id must be a non-empty string")
        outer = active_step.get()
        if outer is not None:
            # Kept on the journal too: the run fails even if user code catches the error.
            self.fatal = self.fatal or StepNestingError(step_id, outer)
            raise StepNestingError(step_id, outer)
        n = self._occurrences.get(step_id, 0)
        self._occurrences[step_id] = n + 1
        key = step_id if n == 0 else f"{step_id}:{n}"
        self.visit(key)
        return key

    def visit(self, key: str) -> None:
        self._unvisited.discard(key)
        if not self._unvisited and not self._caught_up.is_set():
            self._caught_up.set()
            self.changed.set()  # held steps go on: the run is not settled

    async def reach_new(self, key: str) -> None:
        """Before a step the journal does not have starts: while recorded steps are still
        unvisited, hold it until they are. Parallel branches replay in their own order, so a
        branch at its frontier waits for its siblings to pass their recorded steps; if the run
        settles with this step held and recorded steps unreached, the replay has diverged and
        the executor fails the run with `divergence()`."""
        if self._caught_up.is_set():
            return
        self.held.append(key)
        self.changed.set()
        await self._caught_up.wait()
        # Not on cancellation: a held step that is cancelled is what `divergence()` names.
        self.held.remove(key)

    def divergence(self) -> NondeterminismError:
        """The error of a replay that settled with new steps held (see `reach_new`)."""
        first = min(self._unvisited, key=lambda k: self.records[k].seq)
        return NondeterminismError(list(self.held), first)

    def patched(self, patch_id: str) -> bool:
        """`ctx.patched`: whether this run takes the code path of change `patch_id`. Decided
        once per run and recorded: True for a run that reaches this point at its frontier
        (new runs, and old ones that had not got this far), False for one whose journal
        already holds steps beyond it (it started under the code before the change)."""
        if not isinstance(patch_id, str) or not patch_id:
            raise ValueError("a patch id must be a non-empty string")
        key = f"patch:{patch_id}"
        rec = self.records.get(key) or next((s for s in self.pending_steps if s.key == key), None)
        if rec is not None:
            return bool(rec.output)
        decided = self._caught_up.is_set()
        now = self.now_ms()
        self.pending_steps.append(
            StepRecord(
                self.run.id,
                key,
                patch_id,
                StepKind.PATCH,
                StepStatus.COMPLETED,
                seq=self.next_seq(),
                started_at_ms=now,
                finished_at_ms=now,
                output=decided,
            )
        )
        return decided

    @property
    def replaying(self) -> bool:
        """True until the function has passed every step its journal already holds."""
        return bool(self._unvisited)

    def next_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def step_trace(self, key: str) -> TraceContext:
        """The trace context of durable step `key`'s span: what the runs and events it causes
        continue (see `inferpipe.core.trace_context`)."""
        return step_span(run_span(self.run.id, self.run.events), self.run.id, key)

    def check_lease(self) -> None:
        """Right before a step's code is called (in its thread, for a sync callable): stop if
        the lease is lost or may have ended. A step that passed this check may run to its end
        even if the lease ends meanwhile (at least once); none is called after it failed."""
        if self.lease_lost:
            raise LeaseLost(self.run.id)
        if self.lease_ending is not None and self.lease_ending():
            # The last renewal this worker saw ends (nearly) now: another worker may hold the
            # run already (this process was paused or starved, or the store is out of reach).
            self.lease_lost = True
            raise LeaseLost(self.run.id, "ended before it could be renewed")

    def check_continue(self) -> None:
        """Before a new step starts: stop if the run was cancelled or ran out of time."""
        self.check_lease()
        if self.fatal is not None:
            raise self.fatal
        if self._group.failure is not None:
            raise self._group.failure
        if self.drain is not None and self.drain.is_set():
            raise Suspend("worker is shutting down")
        if self.cancel_reason is None and self.run.finish_timeout_ms is not None:
            started = self.run.started_at_ms or self.now_ms()
            if self.now_ms() >= started + self.run.finish_timeout_ms:
                self.cancel_reason = "finish timeout reached"
        if self.cancel_reason is not None:
            raise RunCancelled(self.cancel_reason)

    async def record(self, step: StepRecord, size_bytes: int) -> None:
        """Record a step's result and return before it is durable (pipelined): the record
        commits in order behind the writes before it while the function runs on, within the
        lag bound (`Limits.pipeline_steps`, `pipeline_bytes`). Whatever leaves the run waits
        for it (`commit`, `flush`): the durable journal is always a prefix of what was
        recorded, and a crash loses at most the unflushed tail, whose steps run again."""
        if self.lease_lost:
            raise LeaseLost(self.run.id)
        steps, logs = [*self.pending_steps, step], self.pending_logs
        self.pending_logs, self.pending_steps = [], []
        self.records[step.key] = step
        if self.listener is not None:
            self.listener.steps_recorded(self.run, steps)
        await self._group.pipeline(steps, logs, size_bytes)

    async def flush(self) -> None:
        """Return once everything this execution recorded is committed (pending logs and
        records included); raises what a failed write raised."""
        if self.pending_logs or self.pending_steps:
            await self.commit(Progress())
        else:
            await self._group.flush()

    @property
    def write_failure(self) -> BaseException | None:
        """What the first failed write of this execution raised."""
        return self._group.failure

    async def durable(self) -> None:
        """Return once the writes already sent to the store are committed (not the pending
        logs): before something a client can see leaves the run."""
        if self._group.unflushed or self._group.failure is not None:
            await self._group.flush()

    async def commit(self, progress: Progress) -> ProgressResult:
        """Write `progress` (with the writes of parallel branches that meet it: `GroupCommit`);
        returns once it is committed."""
        if self.lease_lost:  # e.g. a parallel branch still running after the run was stopped
            raise LeaseLost(self.run.id)
        progress.logs = self.pending_logs + progress.logs
        progress.steps = self.pending_steps + progress.steps
        self.pending_logs, self.pending_steps = [], []
        # In flight while it commits: a step opening a wait or a sleep is not parked yet, so
        # its parked siblings must not make the run look quiescent (and suspend it) meanwhile.
        self.started()
        try:
            result = await self._group.commit(progress)
        finally:
            self.finished()
        if progress.steps and self.listener is not None:
            # Told here, in the branch's own task (the group writes from a task of its own):
            # a listener may undo in it what it did as the step started (a current span).
            self.listener.steps_recorded(self.run, [self.records[s.key] for s in progress.steps])
        return result

    async def _write(self, progress: Progress) -> ProgressResult:
        if self.lease_lost:
            raise LeaseLost(self.run.id)
        try:
            result = await self.store.commit(self.lease, progress, self.now_ms())
        except LeaseLost:
            self.lease_lost = True
            self.changed.set()  # the executor stops the function's code at once
            raise
        except StoreError as exc:
            self.lease_lost = True
            self.changed.set()
            raise StoreUnavailable(self.run.id, exc) from exc
        self.wrote_steps |= bool(progress.steps)
        for step in progress.steps:
            self.records[step.key] = result.final.get(step.key, step)
        if progress.steps:
            self.taken_over = False
        if self.on_recorded is not None and progress.steps:
            await self.on_recorded([self.records[s.key] for s in progress.steps])
        if result.cancel_requested and self.cancel_reason is None:
            self.cancel_reason = result.cancel_requested
        if progress.events or progress.runs or result.ingest:
            self.wakeups.work_ready()
        return result

    def stays_inline(self, raw: bytes) -> bool:
        """Whether a value whose JSON is `raw` is kept in its row, not offloaded."""
        return len(raw) <= self.payloads.threshold_bytes

    async def offload(self, value: Any, raw: bytes | None = None) -> Any:
        """What the journal row keeps for `value` (a reference when it is large); the blob is
        durable before this returns, so before the row commits. `raw`: its JSON, if known."""
        return await self._written(self.payloads.offload(value, raw))

    async def offload_fields(self, value: Any) -> Any:
        """`value` with its largest members offloaded (`Payloads.offload_fields`)."""
        return await self._written(self.payloads.offload_fields(value))

    async def offload_event(self, planned: PlannedEvent) -> PlannedEvent:
        """`planned` with its event's large data offloaded (`Payloads.offload_event`)."""
        written: PlannedEvent = await self._written(self.payloads.offload_event(planned))
        return written

    async def _written(self, write: Awaitable[Any]) -> Any:
        try:
            return await write
        except BlobError as exc:  # an infrastructure fault: the run is taken up again
            self.lease_lost = True
            raise StoreUnavailable(self.run.id, exc) from exc

    async def resolve(self, value: Any) -> Any:
        """A recorded value as the function sees it: references replaced by their values.

        The first one to resolve reads ahead every offloaded output the journal recorded (up
        to `READ_AHEAD_BYTES`) in one read of the blob store: a replay then takes them from
        memory, one by one as it reaches them, instead of one read each."""
        if not payloads.has_refs(value):
            return value
        try:
            if self._read_ahead is None:
                self._read_ahead = await self.payloads.read_many(self._recorded_refs())
            return await self.payloads.resolve(value, self._read_ahead)
        except BlobError as exc:
            if not exc.retryable:
                raise
            self.lease_lost = True
            raise StoreUnavailable(self.run.id, exc) from exc

    def _recorded_refs(self) -> list[payloads.BlobRef]:
        refs, budget = [], READ_AHEAD_BYTES
        for rec in sorted(self.records.values(), key=lambda r: r.seq):
            for ref in payloads.refs_in(rec.output) if rec.status is StepStatus.COMPLETED else ():
                if ref.size_bytes <= budget:
                    refs.append(ref)
                    budget -= ref.size_bytes
        return refs

    async def park(self, key: str, wake_at_ms: int | None) -> Any:
        """Hold this step until the run suspends; it resumes on a later replay."""
        self.parked[key] = wake_at_ms
        self.changed.set()
        await asyncio.Future()

    def abandoned_attempt(self, attempt: int) -> list[dict[str, Any]]:
        """The history entry of a step attempt that starts right after a takeover, before this
        execution recorded any step: the abandoned execution may have run it (at least once)."""
        if not self.taken_over:
            return []
        previous = self.run.executions - 1
        message = (
            f"execution {previous} may have started this step: its lease expired before the"
            " step was recorded (the worker died, stalled or lost the store), so it runs again"
        )
        return [
            {
                "code": "abandoned",
                "type": "LeaseExpired",
                "message": message,
                "attempt": attempt,
                "execution": previous,
                "at_ms": self.now_ms(),
            }
        ]

    def started(self) -> None:
        self.inflight += 1

    def finished(self) -> None:
        self.inflight -= 1
        if self.parked or self.held:  # only a parked or held run can become quiescent
            self.changed.set()
