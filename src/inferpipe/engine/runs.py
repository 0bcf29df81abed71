"""The operations on runs, in one place for `App`, the HTTP API and the CLI: send, invoke,
cancel, re-run, feedback scores and awaiting a result."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from inferpipe.core.durations import Duration, to_ms
from inferpipe.core.errors import InvalidEventError, RunNotFoundError, RunStateError
from inferpipe.core.events import Event, validate_event
from inferpipe.core.ids import new_id
from inferpipe.core.records import ClaimedRun, IngestResult, NewRun, Run, RunStatus
from inferpipe.core.redaction import redact, redact_event
from inferpipe.core.scores import ScoreRecord, ScoreSource, score_event, validate_score
from inferpipe.core.trace_context import TraceContext
from inferpipe.engine.clock import Clock
from inferpipe.engine.executor import Executor
from inferpipe.engine.functions import Registry
from inferpipe.engine.journal import Limits
from inferpipe.engine.wakeups import Wakeups
from inferpipe.store.base import PlannedEvent, Store, WakeClaim
from inferpipe.store.payloads import Payloads

FINALIZE_LEASE_MS = 60_000
"""Lease on a cancelled run while this process finalizes it (one store write)."""


class Starter(Protocol):
    """A worker of this process that executes the runs invoked here at once (start-and-claim:
    the run is inserted already claimed by it, with no claim and no wake-up), and a run that
    a send here resumes (wake-and-claim: the send's transaction takes it for the worker)."""

    id: str
    lease_ms: int

    def reserve(self) -> bool:
        """Hold a free slot for one run; False when none is free (or the worker stops)."""

    def adopt(self, start: asyncio.Future[ClaimedRun | None]) -> None:
        """Execute the run `start` inserts or takes, once it is committed; frees the slot held
        (at once when `start` gives None)."""


def _hand_over(
    handed: asyncio.Future[ClaimedRun | None], ingest: asyncio.Task[IngestResult]
) -> None:
    """Give the worker the run its send claimed, or free its slot."""
    if ingest.cancelled() or ingest.exception() is not None:
        handed.set_result(None)
        return
    claimed = ingest.result().runs_claimed
    handed.set_result(claimed[0] if claimed else None)


async def _yield_to_handed_run() -> None:
    """Let the run a send handed to this process's worker take its first slice before the
    send returns: a loop turn for the worker's hand-over callback to create the execution's
    task, one for that task's first step. Otherwise the run waits for what the caller does
    next up to its next await (in a loop of sends, the next send's planning)."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


class Runs:
    """Starts runs and acts on them, for one workspace's store.

    Events are accepted durably: `send` returns only after the events, the runs they start
    and the waits they resume are committed in one transaction. A run a send resumes may be
    taken in that transaction for a worker of this process with a free slot (`WakeClaim`).
    """

    def __init__(self, executor: Executor, wakeups: Wakeups) -> None:
        self.executor = executor
        self.wakeups = wakeups
        self.store: Store = executor.store
        self.registry: Registry = executor.registry
        self.clock: Clock = executor.clock
        self.limits: Limits = executor.limits
        self.payloads = Payloads(self.store.blobs, self.store.workspace, self.limits.offload_bytes)
        """Resolves offloaded outputs for `result`."""
        self.owner = f"engine:{new_id()}"
        """The lease owner of the runs finalized here (cancelled runs no worker executes)."""
        self._starters: list[Starter] = []

    def add_starter(self, starter: Starter) -> Callable[[], None]:
        """Let `starter` execute the runs invoked here while it has a free slot; returns the
        function that stops it."""
        self._starters.append(starter)
        return lambda: self._starters.remove(starter)

    async def get(self, run_id: str) -> Run:
        """The run; RunNotFoundError if this workspace has none with that id."""
        run = await self.store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        return run

    async def send(self, events: Event | list[Event]) -> IngestResult:
        """Validate and durably accept events; start the runs and resume the waits they match.

        Raises:
            InvalidEventError: a bad event, or one named under the engine's reserved
                ``inferpipe/`` prefix (nothing of the batch is accepted).
        """
        return await self._send(events, engine=False)

    async def send_engine_events(self, events: Event | list[Event]) -> IngestResult:
        """`send` for the engine's own senders (cron ticks, webhook deliveries): names under
        the reserved ``inferpipe/`` prefix are accepted. Not for user input."""
        return await self._send(events, engine=True)

    async def _send(self, events: Event | list[Event], *, engine: bool) -> IngestResult:
        batch = events if isinstance(events, list) else [events]
        if not batch:
            raise InvalidEventError("no events to send")
        waker = next((s for s in self._starters if s.reserve()), None)
        if waker is None:
            now = self.clock.now_ms()
            result = await self.store.ingest(await self._planned(batch, now, engine=engine), now)
        else:
            result = await self._send_and_claim(batch, waker, engine=engine)
        if result.work_ready:  # not for a run handed to the worker: nothing left to claim
            self.wakeups.work_ready()
        result = dataclasses.replace(result, runs_claimed=[])
        for run_id in result.runs_cancelled:  # by a `cancel_on` match or a singleton
            if self.executor.executing(run_id):
                cancelled = await self.store.get_run(run_id)
                if cancelled is not None and cancelled.cancel_requested is not None:
                    self.executor.cancel_requested(run_id, cancelled.cancel_requested)
            await self._finalize_cancelled(run_id)
        return result

    async def _send_and_claim(
        self, batch: list[Event], waker: Starter, *, engine: bool
    ) -> IngestResult:
        """Ingest, taking a run the events resume for `waker`'s slot (wake-and-claim: it
        executes with no claim); the result names the run taken (`runs_claimed`)."""
        handed: asyncio.Future[ClaimedRun | None] = asyncio.get_running_loop().create_future()
        waker.adopt(handed)  # before the clock is read: its lease ends no later than the store's
        try:
            now = self.clock.now_ms()
            planned = await self._planned(batch, now, engine=engine)
            claim = WakeClaim(waker.id, self.registry.ids, waker.lease_ms)
            ingest = asyncio.ensure_future(self.store.ingest(planned, now, claim=claim))
        except BaseException:
            handed.set_result(None)  # the slot is free again
            raise
        ingest.add_done_callback(functools.partial(_hand_over, handed))
        # Shielded: a caller that gives up must not strand a run claimed for its worker.
        result = await asyncio.shield(ingest)
        if result.runs_claimed:
            await _yield_to_handed_run()
        return result

    async def invoke(
        self,
        function_id: str,
        data: dict[str, Any] | None = None,
        *,
        trace: TraceContext | None = None,
    ) -> str:
        """Start a run of `function_id` directly; returns its run id. The run continues the
        trace `trace` (the caller's W3C trace context) when given."""
        if data is not None and not isinstance(data, dict):
            raise InvalidEventError("invocation data must be a JSON object")
        now = self.clock.now_ms()
        data = await self.payloads.offload_fields(redact(data or {}, self.limits.redact_keys))
        run = self.registry.invocation(function_id, data, now, None, trace)
        starter = self._starter(run, now)
        if starter is None:
            await asyncio.shield(self.store.create_runs([run], now))
            self.wakeups.work_ready()
            return run.id
        start = asyncio.ensure_future(self._start_run(run, starter))
        starter.adopt(start)
        await asyncio.shield(start)
        return run.id

    async def _start_run(self, run: NewRun, starter: Starter) -> ClaimedRun | None:
        # The lease is timed from now, after `adopt` read the worker's clock (this body runs
        # once it returned), not from when the invoke began: the offload above may take a
        # while, and the worker would think its lease longer than the store does.
        now = self.clock.now_ms()
        return await self.store.start_run(run, now, starter.id, starter.lease_ms)

    def _starter(self, run: NewRun, now_ms: int) -> Starter | None:
        """A local worker with a free slot for `run`, if flow control has nothing to decide
        about it (such runs go through the claim, which applies it)."""
        if run.flow is not None or run.cancel_waits or run.journal or run.ready_at_ms > now_ms:
            return None
        return next((s for s in self._starters if s.reserve()), None)

    async def cancel(self, run_id: str, reason: str = "cancelled by request") -> Run:
        """Cancel a run: a step in flight finishes, nothing after it runs. A cancel accepted
        before the run's finish is committed wins (the run ends `cancelled`, whatever its code
        returned); a run that no worker executes now (queued, sleeping, waiting) is finalized
        here at once, when its function is registered in this process.

        Raises:
            RunNotFoundError: no such run.
            RunStateError: the run has already finished.
        """
        old = await self.get(run_id)
        if old.status.finished:
            raise RunStateError(f"run {run_id} has already finished ({old.status.value})")
        run = await self.store.request_cancel(run_id, reason, self.clock.now_ms())
        self.executor.cancel_requested(run_id, run.cancel_requested or reason)
        self.wakeups.work_ready()
        if await self._finalize_cancelled(run_id):
            return await self.store.get_run(run_id) or run
        return run

    async def _finalize_cancelled(self, run_id: str) -> bool:
        """Finalize a run asked to cancel, if no worker executes it; whether it was."""
        now = self.clock.now_ms()
        claimed = await self.store.claim_cancelled(
            self.owner, run_id, self.registry.ids, now, FINALIZE_LEASE_MS
        )
        if claimed is None:
            return False
        await self.executor.execute(claimed)
        return True

    async def rerun(self, run_id: str, *, from_failed_step: bool = False) -> Run:
        """Run a finished run again: from the start, or (a failed run) from its failed step,
        keeping the completed steps. Returns the new run.

        Raises:
            RunNotFoundError: no such run.
            UnknownFunctionError: its function is not registered here.
            RunStateError: the run is not finished, or `from_failed_step` and it did not fail.
        """
        old = await self.get(run_id)
        if not old.status.finished:
            raise RunStateError(
                f"run {run_id} is still {old.status.value}: cancel it or wait for it to finish"
            )
        if from_failed_step and old.status is not RunStatus.FAILED:
            raise RunStateError(
                f"run {run_id} is {old.status.value}, not failed: it has no failed step to "
                "resume at; re-run it from the start"
            )
        self.registry.get(old.function_id)
        run = await self.store.rerun(
            run_id, new_id(), from_failed_step=from_failed_step, now_ms=self.clock.now_ms()
        )
        self.wakeups.work_ready()
        return run

    async def score(
        self,
        run_id: str,
        name: str,
        value: float | bool,
        *,
        reason: str | None = None,
        metadata: dict[str, Any] | None = None,
        score_id: str | None = None,
    ) -> ScoreRecord:
        """Attach feedback to a run, before or after it completes; the same `score_id` again
        updates the score instead of adding one. Each write sends `inferpipe/score.recorded`.

        Raises:
            InvalidScoreError: a bad name or value.
            RunNotFoundError: no such run.
        """
        number = validate_score(name, value)
        now = self.clock.now_ms()
        record = ScoreRecord(
            id=score_id or new_id(),
            run_id=run_id,
            name=name,
            value=number,
            source=ScoreSource.FEEDBACK,
            created_at_ms=now,
            reason=reason,
            metadata=redact(metadata or {}, self.limits.redact_keys),
        )
        run = await self.get(run_id)
        announcement = await self._planned(
            [score_event(record, now, run.function_id)], now, engine=True
        )
        stored = await self.store.put_score(record, now, announcement)
        self.wakeups.work_ready()
        if self.executor.listeners:
            self.executor.listeners.score_recorded(run, stored)
        return stored

    async def _planned(
        self, events: list[Event], now_ms: int, *, engine: bool
    ) -> list[PlannedEvent]:
        """Events validated, redacted and planned (the runs each one starts), then their large
        data offloaded to the blob store."""
        planned = []
        for event in events:
            valid = validate_event(
                event, limit_bytes=self.limits.event_bytes, now_ms=now_ms, engine=engine
            )
            redacted = redact_event(valid, self.limits.redact_keys)
            planned.append(
                PlannedEvent(
                    redacted, self.registry.plan(redacted, now_ms, workspace=self.store.workspace)
                )
            )
        return [await self.payloads.offload_event(p) for p in planned]

    async def result(self, run_id: str, *, timeout: Duration = 60, resolve: bool = True) -> Run:
        """Wait until a run finishes (some worker must be running it) and return it. The run is
        read again only when its finish may have committed: in this process (`Wakeups`) or in
        another (the store's `listen`), not on a timer.

        Its output is whole, read from the blob store when it was offloaded (with `resolve`;
        False leaves the reference, for a caller that shows a preview).

        Raises:
            RunNotFoundError: no such run.
            TimeoutError: it did not finish within `timeout`.
        """
        changed = asyncio.Event()
        handed: list[Run] = []

        def finished(done_id: str, done: Run | None) -> None:
            if done_id == run_id:
                if done is not None:
                    handed.append(done)
                changed.set()

        unsubscribe = self.wakeups.on_finish(finished)
        unlisten: Callable[[], Awaitable[None]] | None = None
        try:
            async with asyncio.timeout(to_ms(timeout) / 1000):
                while True:
                    changed.clear()
                    if not handed and self.executor.executing(run_id):
                        await changed.wait()  # its execution here ends, with the run if finished
                        continue
                    if handed:
                        run = handed[0]
                    else:
                        if unlisten is None:
                            # Before the read: a finish committed elsewhere after it is told.
                            # Not sooner: a run executed here is handed over when it finishes.
                            unlisten = await self.store.listen(changed.set, run_id=run_id)
                        run = await self.get(run_id)
                    if run.status.finished:
                        if resolve:
                            run.output = await self.payloads.resolve(run.output)
                        return run
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(f"run {run_id} did not finish within {timeout}") from None
        finally:
            unsubscribe()
            if unlisten is not None:
                await unlisten()
