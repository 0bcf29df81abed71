"""Admission: what becomes of runs as they are inserted. Skipped (a failed key, a duplicate
idempotency key, a rate limit hit, a busy singleton), folded into the key's pending debounce or
batch run, or queued with their fair queue tag and, when a key is full, the reason they wait.

`admit` decides a list of runs, one after another in insertion order, against the state their
keys had when loaded (`Keys` names what to load, `AdmissionState` holds it), and returns the
plan: the rows to insert and the flow state they consume, to write back."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inferpipe.core.events import FUNCTION_FINISHED, Event
from inferpipe.core.records import FlowBuffer, NewRun, RunFlow, RunStatus
from inferpipe.store.base import PlannedEvent
from inferpipe.store.flow import pacing
from inferpipe.store.flow.reasons import concurrency_reason, span

MAX_SINGLETON_VICTIMS = 100
"""Unfinished runs of a singleton key that a cancelling newcomer asks to stop, at most."""


@dataclass(frozen=True, slots=True)
class Keys:
    """The flow keys of runs to admit: the state to load for them."""

    idempotency: list[str]
    rates: dict[str, int]  #: rate-limit key -> its period (ms)
    buffers: list[str]
    singletons: list[str]
    fair: list[str]
    functions: list[str]  #: functions with a fair key (their queue heads)
    slots: list[str]  #: concurrency and singleton keys (their running runs)

    @classmethod
    def of(cls, runs: Iterable[NewRun]) -> Keys:
        runs = list(runs)
        flows = [run.flow for run in runs if run.flow is not None]
        singletons = list({f.singleton_key for f in flows if f.singleton_key})
        return cls(
            idempotency=list({f.idempotency_key for f in flows if f.idempotency_key}),
            rates={f.rate_limit.key: f.rate_limit.period_ms for f in flows if f.rate_limit},
            buffers=list({f.buffer.key for f in flows if f.buffer}),
            singletons=singletons,
            fair=list({f.fair_key for f in flows if f.fair_key}),
            functions=list({r.function_id for r in runs if r.flow and r.flow.fair_key}),
            slots=list({k for f in flows for k, _ in f.concurrency} | set(singletons)),
        )


RUN_COLUMNS = (
    "id, function_id, status, event_ids, input, ready_at_ms, finished_at_ms, status_reason,"
    " parent_run_id, rerun_of, priority, start_deadline_ms, finish_timeout_ms,"
    " concurrency_key1, concurrency_limit1, concurrency_key2, concurrency_limit2,"
    " singleton_key, queue_at_ms, throttle, queue_group"
)
"""The columns of an admitted run's row (`Admitted.values`), besides its workspace and
creation time."""

RUN_WIDTH = RUN_COLUMNS.count(",") + 1


@dataclass(slots=True)
class Admitted:
    """A run to insert, as admission decided."""

    run: NewRun
    ready_at_ms: int | None
    input: Any
    event_ids: list[str]
    reason: str | None = None
    skipped: bool = False
    queue_at_ms: int | None = None
    queue_group: str | None = None  #: `RunFlow.queue_group`, with a fair queue tag

    def values(self, now_ms: int, encode: Callable[[Any], Any]) -> tuple[Any, ...]:
        """The row's `RUN_COLUMNS`; `encode` writes JSON."""
        run, flow = self.run, self.run.flow
        keys: list[tuple[str | None, int | None]] = list(flow.concurrency) if flow else []
        keys += [(None, None)] * (2 - len(keys))
        pace = flow.throttle if flow else None
        return (
            run.id,
            run.function_id,
            (RunStatus.SKIPPED if self.skipped else RunStatus.QUEUED).value,
            encode(self.event_ids),
            encode(self.input),
            self.ready_at_ms,
            now_ms if self.skipped else None,  # a skipped run finishes as it is recorded
            self.reason,
            run.parent_run_id,
            run.rerun_of,
            run.priority,
            run.start_deadline_ms,
            run.finish_timeout_ms,
            *keys[0],
            *keys[1],
            flow.singleton_key if flow else None,
            self.queue_at_ms,
            encode([pace.key, pace.limit, pace.period_ms, pace.burst]) if pace else None,
            self.queue_group,
        )


@dataclass(slots=True)
class Pending:
    """A debounce or batch run that has not started, collecting the events of its key."""

    run_id: str
    first_at_ms: int
    size: int
    ready_at_ms: int
    input: Any
    event_ids: list[str]
    row: Admitted | None = None  #: when inserted by this admission
    reason: str | None = None
    changed: bool = False  #: to write back


@dataclass(slots=True)
class AdmissionState:
    """The flow state the runs' keys decide by, as loaded (consumed by `admit`)."""

    used: dict[str, str] = field(default_factory=dict)  #: live idempotency key -> run id
    hits: dict[str, int] = field(default_factory=dict)  #: rate key -> hits in its window
    pending: dict[str, Pending] = field(default_factory=dict)  #: buffer key -> its run
    unfinished: dict[str, list[str]] = field(default_factory=dict)  #: singleton key -> runs
    tags: dict[str, int] = field(default_factory=dict)  #: fair key -> its next tag
    heads: dict[str, int | None] = field(default_factory=dict)  #: function -> queue head
    running: Mapping[str, int] = field(default_factory=dict)  #: slot key -> running runs


@dataclass(slots=True)
class Admission:
    """What admitting a list of runs decided, and the flow state to write back."""

    rows: list[Admitted] = field(default_factory=list)
    triggers: list[tuple[str, str]] = field(default_factory=list)  #: (event id, run id)
    cancels: list[tuple[str, str]] = field(default_factory=list)  #: (run id, reason)
    idempotency: dict[str, str] = field(default_factory=dict)  #: key -> run id
    rate_hits: list[str] = field(default_factory=list)  #: one key per admitted run
    rate_periods: dict[str, int] = field(default_factory=dict)  #: key -> period_ms
    pending: dict[str, Pending] = field(default_factory=dict)  #: buffer key -> its run
    tags: dict[str, int] = field(default_factory=dict)  #: fair key -> next tag

    @property
    def created(self) -> list[str]:
        """The runs recorded (queued or skipped)."""
        return [row.run.id for row in self.rows]

    @property
    def skipped(self) -> list[tuple[NewRun, str]]:
        """The runs recorded as skipped, with the reason."""
        return [(row.run, row.reason or "skipped") for row in self.rows if row.skipped]

    @property
    def buffers(self) -> list[tuple[str, Pending]]:
        """The pending runs to write back (buffer key, run)."""
        return [(key, p) for key, p in self.pending.items() if p.changed]

    @property
    def folded(self) -> list[Pending]:
        """Stored pending runs that took events."""
        return [p for _, p in self.buffers if p.row is None]

    def ready_now(self, now_ms: int) -> bool:
        """Whether a run became claimable now (queued, folded into a full batch, or asked to
        stop by a singleton newcomer)."""
        return (
            bool(self.cancels)
            or any(not r.skipped and (r.ready_at_ms or 0) <= now_ms for r in self.rows)
            or any(p.changed and p.ready_at_ms <= now_ms for p in self.pending.values())
        )


def admit(
    runs: Iterable[NewRun], state: AdmissionState, now_ms: int, present: Collection[str] = ()
) -> Admission:
    """Decide every run in order (a run without flow control is queued as planned); runs in
    `present` (already stored: a retried write) are left out. Consumes `state`."""
    out = Admission(pending=state.pending)
    decider = _Decider(state, now_ms, out)
    for run in runs:
        if run.id in present:
            continue
        row = (
            Admitted(run, run.ready_at_ms, run.input, list(run.event_ids))
            if run.flow is None
            else decider.admit(run, run.flow)
        )
        if row is not None:
            out.rows.append(row)
            out.triggers += [(eid, run.id) for eid in run.event_ids]
    return out


def finished_events(skipped: list[tuple[NewRun, str]], now_ms: int) -> list[PlannedEvent]:
    """A skipped run finishes at once: its `function.finished` (status "skipped"), so an
    invoker waiting on it resumes with the reason."""
    events = []
    for run, reason in skipped:
        data = {
            "run_id": run.id,
            "function_id": run.function_id,
            "status": RunStatus.SKIPPED.value,
            "output": None,
            "error": {"code": "skipped", "type": "Skipped", "message": reason},
            "reason": reason,
        }
        event = Event(FUNCTION_FINISHED, data, id=f"finished-{run.id}", ts_ms=now_ms)
        events.append(PlannedEvent(event))
    return events


class _Decider:
    """Admits runs one after another, each seeing what those before it consumed."""

    def __init__(self, state: AdmissionState, now_ms: int, out: Admission) -> None:
        self.state, self.now_ms, self.out = state, now_ms, out

    def admit(self, run: NewRun, flow: RunFlow) -> Admitted | None:
        """The run to insert (queued or skipped), or None when its event was folded into the
        key's pending debounce/batch run."""
        row = Admitted(run, run.ready_at_ms, run.input, list(run.event_ids))
        refusal = (
            flow.skip_reason
            or self._duplicate(flow)
            or self._rate_limited(flow)
            or self._singleton_busy(flow)
        )
        if refusal:
            row.ready_at_ms, row.reason, row.skipped = None, refusal, True
            return row
        row.reason = flow.note
        self._remember(run, flow)
        if flow.buffer is not None and self._buffer(run, flow.buffer, row):
            return None
        if flow.fair_key is not None:
            row.queue_at_ms = self._fair_tag(run.function_id, flow.fair_key)
            row.queue_group = flow.queue_group(run.function_id)
        keys = [*flow.concurrency, *([(flow.singleton_key, 1)] if flow.singleton_key else [])]
        if row.reason is None:
            for key, limit in keys:
                if self.state.running.get(key, 0) >= limit:
                    row.reason = concurrency_reason(key, limit)
                    break
        if flow.singleton_key is not None:
            self.state.unfinished.setdefault(flow.singleton_key, []).append(run.id)
        return row

    def _duplicate(self, flow: RunFlow) -> str | None:
        key = flow.idempotency_key
        if key is None or key not in self.state.used:
            return None
        return (
            f"duplicate: idempotency key {key} was used by run {self.state.used[key]} within 24 h"
        )

    def _rate_limited(self, flow: RunFlow) -> str | None:
        pace = flow.rate_limit
        if pace is None or self.state.hits.get(pace.key, 0) < pace.limit:
            return None
        return f"rate limited: {pace.limit} runs per {span(pace.period_ms)} on {pace.key}"

    def _singleton_busy(self, flow: RunFlow) -> str | None:
        if flow.singleton_key is None or flow.singleton_cancels:
            return None
        busy = self.state.unfinished.get(flow.singleton_key)
        if not busy:
            return None
        return f"singleton: run {busy[0]} of key {flow.singleton_key} has not finished"

    def _remember(self, run: NewRun, flow: RunFlow) -> None:
        """Record what an admitted run consumes: its idempotency key, its rate-limit hit, and
        the singleton runs it replaces."""
        if flow.idempotency_key is not None:
            self.state.used[flow.idempotency_key] = run.id
            self.out.idempotency[flow.idempotency_key] = run.id
        if flow.rate_limit is not None:
            key = flow.rate_limit.key
            self.state.hits[key] = self.state.hits.get(key, 0) + 1
            self.out.rate_hits.append(key)
            self.out.rate_periods[key] = flow.rate_limit.period_ms
        if flow.singleton_key is not None and flow.singleton_cancels:
            reason = f"replaced by run {run.id} (singleton {flow.singleton_key})"
            victims = self.state.unfinished.get(flow.singleton_key, [])[:MAX_SINGLETON_VICTIMS]
            self.out.cancels += [(old, reason) for old in victims]

    def _buffer(self, run: NewRun, buf: FlowBuffer, row: Admitted) -> bool:
        """Fold the event into the key's pending run (True), or make this run the pending one."""
        pending = self.out.pending.get(buf.key)
        if pending is not None and pending.ready_at_ms > self.now_ms:
            pending.size += 1
            if buf.batch:
                pending.input = pending.input + run.input
                pending.event_ids = pending.event_ids + run.event_ids
            else:  # debounce: the last event wins
                pending.input, pending.event_ids = run.input, list(run.event_ids)
            pending.ready_at_ms, pending.reason = pacing.window(
                buf, pending.first_at_ms, pending.size, self.now_ms
            )
            pending.changed = True
            self.out.triggers += [(eid, pending.run_id) for eid in run.event_ids]
            if pending.row is not None:  # inserted by this admission: not written yet
                pending.row.input, pending.row.event_ids = pending.input, pending.event_ids
                pending.row.ready_at_ms, pending.row.reason = pending.ready_at_ms, pending.reason
            return True
        row.ready_at_ms, row.reason = pacing.window(buf, self.now_ms, 1, self.now_ms)
        self.out.pending[buf.key] = Pending(
            run.id, self.now_ms, 1, row.ready_at_ms, run.input, list(run.event_ids), row=row
        )
        self.out.pending[buf.key].changed = True
        return False

    def _fair_tag(self, function_id: str, key: str) -> int:
        """The key's next tag (`pacing.fair_tag`). Runs admitted here never move the queue's
        head below min(now, head): their tags are above it."""
        tags = self.state.tags
        tag, tags[key] = pacing.fair_tag(
            self.state.heads.get(function_id), tags.get(key), self.now_ms
        )
        self.out.tags[key] = tags[key]
        return tag
