"""Execute one claimed run: replay its journal, run new steps inline, then park or finish."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from inferpipe.core import json as jsonc
from inferpipe.core.errors import (
    InferpipeError,
    LeaseLost,
    RunCancelled,
    StoreError,
    Suspend,
    error_payload,
)
from inferpipe.core.records import (
    ClaimedRun,
    RunStatus,
    StepStatus,
)
from inferpipe.core.redaction import redact
from inferpipe.engine import finalize, streaming
from inferpipe.engine.clock import Clock
from inferpipe.engine.context import Context
from inferpipe.engine.functions import FunctionDef, Registry
from inferpipe.engine.journal import Limits, Planner, RunJournal
from inferpipe.engine.lifecycle import Listeners
from inferpipe.engine.wakeups import Wakeups
from inferpipe.store.base import Outcome, Store
from inferpipe.store.blobs import BlobError
from inferpipe.streams.pubsub import PubSub

_log = logging.getLogger("inferpipe.executor")

T = TypeVar("T")

SETTLE_ROUNDS = 3
"""Event-loop turns to wait, once every step is parked, for sibling branches to start one."""

HELD_GRACE_S = 2.0
"""How long a replay with new steps held and recorded steps unreached may stay unchanged before
it is taken to have diverged (see `RunJournal.reach_new`)."""

WAKE_BATCH_PER_REPLAY = 10
"""A run resumed without progress batches its next wake-ups for this many times as long as its
replay took, so replays take at most about a tenth of the time it waits (a parent gathering N
children is replayed a bounded number of times, not once per child)."""

WAKE_BATCH_MIN_MS = 20
WAKE_BATCH_MAX_MS = 2_000
"""Bounds on that batch time: the longest a resolved wait may wait to resume such a run."""


class Executor:
    """Runs claimed runs of registered functions against the store."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        registry: Registry,
        limits: Limits,
        wakeups: Wakeups,
        pubsub: PubSub | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        self.pubsub = pubsub
        self.listeners = Listeners() if listeners is None else listeners
        self.store = store
        self.clock = clock
        self.registry = registry
        self.planner: Planner = registry
        self.functions: Callable[[str], FunctionDef] = registry.get
        self.limits = limits
        self.wakeups = wakeups
        self._live: dict[str, RunJournal] = {}
        """The executions under way here, by run (until their finish is committed)."""
        self._releasing: set[str] = set()
        """Runs whose execution here is parking, finishing or handing the run back."""

    def releasing(self, run_id: str) -> bool:
        """Whether the execution of the run here gives up its lease (a park, a finish, a hand
        back), from the moment it asks the store until the execution ends: a renewal that
        finds the lease gone then may see the release itself, not a takeover (a release whose
        lease was lost ends the execution with LeaseLost)."""
        return run_id in self._releasing

    def executing(self, run_id: str) -> bool:
        """Whether this process executes the run now (its finish, if it comes here, is told
        with the run: `Wakeups.on_finish`)."""
        return run_id in self._live

    async def execute(
        self,
        claimed: ClaimedRun,
        *,
        drain: asyncio.Event | None = None,
        lease_ending: Callable[[], bool] | None = None,
    ) -> bool:
        """Execute until the run finishes or parks. When `drain` is set, no new step starts and
        the run is handed back once its steps in flight are recorded. No step starts once
        `lease_ending()` is true (checked right before each step's code is called). A lost
        lease or a failing store ends the execution quietly, writing nothing more: the run is
        taken up again under a new lease.

        Returns whether the execution ended with a finish that made no run ready
        (`FinishResult.work_ready`): a worker then has nothing new to claim."""
        journal = RunJournal(
            claimed, self.store, self.clock, self.planner, self.limits, self.wakeups
        )
        journal.drain = drain
        journal.lease_ending = lease_ending
        stream = streaming.RunStream(journal, self.pubsub)
        journal.on_recorded = stream.recorded
        journal.listener = self.listeners if self.listeners else None
        self._live[claimed.run.id] = journal
        quiet = False
        try:
            quiet = await self._execute(journal, stream)
        except LeaseLost as exc:
            _log.warning(
                "run %s: %s; stopped here, the run continues under a new lease", claimed.run.id, exc
            )
        except StoreError as exc:
            _log.warning(
                "run %s: the store failed (%s); the run is taken up again when its lease ends",
                claimed.run.id,
                exc,
            )
        finally:
            self._releasing.discard(claimed.run.id)
            if self._live.get(claimed.run.id) is journal:  # it did not finish here
                del self._live[claimed.run.id]
                self.wakeups.execution_ended(claimed.run.id)
            if journal.listener is not None:
                journal.listener.execution_ended(claimed.run)
        return quiet

    def cancel_requested(self, run_id: str, reason: str) -> None:
        """A cancel of `run_id` was committed: its execution here, if any, starts no more
        steps (its step results are pipelined, so the answer of its next write, which would
        say so too, may come only after the next step has started)."""
        journal = self._live.get(run_id)
        if journal is not None and journal.cancel_reason is None:
            journal.cancel_reason = reason

    async def _execute(self, j: RunJournal, stream: streaming.RunStream) -> bool:
        """Whether it ended with a finish that made no run ready."""
        run = j.run
        if (
            run.start_deadline_ms is not None
            and run.executions <= 1
            and j.now_ms() > run.start_deadline_ms
        ):
            j.cancel_reason = "start timeout reached before the run started"
        with contextlib.suppress(RunCancelled, Suspend):
            j.check_continue()  # a cancel or an expired finish timeout ends the run here
        if j.cancel_reason is not None:
            return await self._finish(j, Outcome(RunStatus.CANCELLED, reason=j.cancel_reason))
        fn = self.functions(run.function_id)
        kind = "started" if run.executions <= 1 else "resumed"
        await streaming.publish(
            self.pubsub, run.id, streaming.run_event(run, kind, execution=run.executions)
        )
        await stream.recover()
        if j.listener is not None:
            j.listener.run_started(run)
        started = time.monotonic()
        # A finished run's output in a trigger (a scorer's input, function.finished) may be
        # a reference: the function sees the value.
        try:
            context = Context(j, stream, await j.resolve(run.events))
        except BlobError as exc:  # a reference sent in an event that this workspace cannot read
            return await self._finish(j, Outcome(RunStatus.FAILED, error=error_payload(exc)))
        task: asyncio.Task[Any] = asyncio.ensure_future(fn.handler(context))
        try:
            if await self._drive(j, task):
                if j.held:  # settled on a step the journal does not have, short of its steps
                    return await self._finish(
                        j, Outcome(RunStatus.FAILED, error=error_payload(j.divergence()))
                    )
                await self._park(j, started)
                return False
        except asyncio.CancelledError:
            j.lease_lost = True  # cancelled from outside: the lease is lost or being given up
            raise
        finally:
            # Whatever stops this execution (a lost lease cancels it) stops the user's code
            # too, at its next await: no step of it may start after the run is handed over.
            task.cancel()
        if not task.cancelled() and isinstance(task.exception(), Suspend):
            await self._hand_back(j)
            return False
        return await self._finish(j, self._outcome(j, task))

    async def _drive(self, j: RunJournal, task: asyncio.Task[Any]) -> bool:
        """Wait for the function to return, or for every live step to be parked."""
        # Its code runs up to its first suspension in this turn of the loop: a function that
        # returns with no step needs no watch on the journal.
        await asyncio.sleep(0)
        while not task.done():
            if not j.changed.is_set():  # what its code did so far may have changed it
                changed = asyncio.create_task(j.changed.wait())
                waiters: set[asyncio.Future[Any]] = {task, changed}
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if task.done():
                    break
            j.changed.clear()
            if j.lease_lost:  # a write failed (a pipelined one maybe): no more of its code runs
                task.cancel()
                failure = j.write_failure
                raise failure if isinstance(failure, LeaseLost) else LeaseLost(j.run.id)
            if await self._quiescent(j, task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return True
        return False

    async def _hand_back(self, j: RunJournal) -> None:
        """Draining: let steps in flight record, then release the run to be claimed again."""
        while j.inflight:
            j.changed.clear()
            await j.changed.wait()
        await j.flush()  # the run's records are durable before it leaves the worker
        self._releasing.add(j.run.id)
        await self.store.park(j.lease, RunStatus.QUEUED, j.now_ms(), j.now_ms())

    async def _quiescent(self, j: RunJournal, task: asyncio.Task[Any]) -> bool:
        if not (j.parked or j.held) or j.inflight:
            return False
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)
            if task.done() or j.inflight:
                return False
        if j.held:
            # Calling the replay diverged is final: first give a sibling branch that is on its
            # way to its recorded steps through an await outside steps (an expression in the
            # sandbox, I/O) time to reach them.
            j.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HELD_GRACE_S):  # a cancel is never dropped
                    await j.changed.wait()
            if task.done() or j.inflight or not j.held or j.changed.is_set():
                return False
        return True

    def _outcome(self, j: RunJournal, task: asyncio.Task[Any]) -> Outcome:
        if task.cancelled():
            return Outcome(RunStatus.CANCELLED, reason="execution was cancelled")
        exc = task.exception()
        if isinstance(exc, LeaseLost):
            raise exc
        if j.fatal is not None:
            return Outcome(RunStatus.FAILED, error=error_payload(j.fatal))
        if isinstance(exc, RunCancelled):
            return Outcome(RunStatus.CANCELLED, reason=exc.reason)
        if exc is not None:
            if not isinstance(exc, InferpipeError):
                _log.info("run %s failed", j.run.id, exc_info=exc)
            return Outcome(RunStatus.FAILED, error=error_payload(exc))
        try:
            output = jsonc.roundtrip(
                task.result(), what="function output", limit_bytes=self.limits.run_output_bytes
            )
        except InferpipeError as err:
            return Outcome(RunStatus.FAILED, error=error_payload(err))
        return Outcome(RunStatus.COMPLETED, output=redact(output, self.limits.redact_keys))

    async def _park(self, j: RunJournal, started: float) -> None:
        await j.flush()
        batch_ms = None
        if not j.wrote_steps:  # replayed, and every branch still waits: batch the next wakes
            replay_ms = (time.monotonic() - started) * 1000 * WAKE_BATCH_PER_REPLAY
            batch_ms = int(min(WAKE_BATCH_MAX_MS, max(WAKE_BATCH_MIN_MS, replay_ms)))
        timed = [w for w in j.parked.values() if w is not None]
        ready_at = min(timed) if timed else None
        sleeping = any(
            j.records.get(k) is not None
            and j.records[k].status in (StepStatus.SLEEPING, StepStatus.RETRYING)
            for k in j.parked
        )
        status = RunStatus.SLEEPING if sleeping else RunStatus.WAITING
        self._releasing.add(j.run.id)
        await _to_its_end(self._parked(j, status, ready_at, batch_ms))

    async def _parked(
        self, j: RunJournal, status: RunStatus, ready_at: int | None, batch_ms: int | None
    ) -> None:
        await self.store.park(j.lease, status, ready_at, j.now_ms(), batch_wakes_ms=batch_ms)
        if j.listener is not None:
            j.listener.run_parked(j.run, status, ready_at)
        await streaming.publish(
            self.pubsub, j.run.id, streaming.run_event(j.run, status.value, ready_at_ms=ready_at)
        )

    async def _finish(self, j: RunJournal, outcome: Outcome) -> bool:
        """Finish the run; returns whether that made no run ready."""
        await j.flush()
        now = j.now_ms()
        fn = self.functions(j.run.function_id)
        outcome = finalize.scorer_outcome(fn, j.run, outcome, now)
        if outcome.output is not None:
            outcome = dataclasses.replace(outcome, output=await j.offload(outcome.output))
        self._releasing.add(j.run.id)
        return await _to_its_end(self._finished(j, fn, outcome, now))

    async def _finished(self, j: RunJournal, fn: FunctionDef, outcome: Outcome, now: int) -> bool:
        planned = finalize.plan_finish(self.registry, fn, j.run, j.records, outcome, now)
        finished = await self.store.finish(j.lease, outcome, planned, now)
        if finished.cancel_requested is not None:  # a cancel accepted first wins
            outcome = Outcome(RunStatus.CANCELLED, reason=finished.cancel_requested)
            planned = finalize.plan_finish(self.registry, fn, j.run, j.records, outcome, now)
            finished = await self.store.finish(j.lease, outcome, planned, now)
        if self._live.get(j.run.id) is j:
            del self._live[j.run.id]
        self.wakeups.run_finished(
            j.run.id,
            finalize.finished_run(j.run, outcome, now),
            work_ready=finished.work_ready,
        )
        if j.listener is not None:
            j.listener.run_finished(j.run, outcome, j.records)
        event = streaming.run_event(
            j.run,
            "finished",
            status=outcome.status.value,
            output=outcome.output,
            error=outcome.error,
            reason=outcome.reason,
        )
        await streaming.publish(self.pubsub, j.run.id, event, final=True)
        return not finished.work_ready


async def _to_its_end(leaving: Coroutine[Any, Any, T]) -> T:
    """Await `leaving` (a park or finish, and the reports of it) to its end even when the
    execution is cancelled meanwhile, then let the cancel go on. The worker cancels an
    execution when its lease looks lost or the store looks out of reach, and a write already
    sent may commit all the same. What committed is then told all the same, before the
    execution ends: else its listeners would never hear that the run parked or finished, nor
    the run's stream subscribers of its end."""
    task = asyncio.ensure_future(leaving)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: the execution ends with its cancel all the same
        raise
