"""The engine: intake of events and invocations, and the operations on runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from inferpipe.core.errors import InvalidEventError, RunNotFoundError
from inferpipe.core.events import Event, validate_event
from inferpipe.core.ids import new_id
from inferpipe.core.records import IngestResult, Run
from inferpipe.core.redaction import redact, redact_event
from inferpipe.engine.clock import Clock, SystemClock
from inferpipe.engine.executor import Executor
from inferpipe.engine.functions import Registry
from inferpipe.engine.journal import Limits
from inferpipe.engine.lifecycle import Listeners, RunListener
from inferpipe.store.base import PlannedEvent, Store
from inferpipe.streams.pubsub import PubSub

FINALIZE_LEASE_MS = 60_000
"""Lease on a cancelled run while this engine finalizes it (one store write)."""


class Engine:
    """Ties a store, a function registry and a clock together.

    Events are accepted durably: `send` returns only after the events, the runs they start
    and the waits they resume are committed in one transaction.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
        pubsub: PubSub | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock: Clock = clock or SystemClock()
        self.limits = limits or Limits()
        self.pubsub = pubsub
        self._listeners: list[Callable[[], None]] = []
        self.owner = f"engine:{new_id()}"
        """The lease owner of runs this engine finalizes itself (a cancelled run)."""
        self.listeners = Listeners()
        self.executor = Executor(
            store, self.clock, registry, self.limits, self._ingested, pubsub, self.listeners
        )

    def add_listener(self, listener: RunListener) -> Callable[[], None]:
        """Tell `listener` what executions of runs do (see `inferpipe.engine.lifecycle`), from
        the next execution on; returns a function that removes it."""
        self.listeners.add(listener)
        return lambda: self.listeners.remove(listener)

    def subscribe_wakeups(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` whenever new work may be ready; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _ingested(self, _result: IngestResult | None) -> None:
        for listener in list(self._listeners):
            listener()

    async def send(self, events: Event | list[Event]) -> IngestResult:
        """Validate and durably accept events; start the runs and resume the waits they match."""
        batch = events if isinstance(events, list) else [events]
        if not batch:
            raise InvalidEventError("no events to send")
        now = self.clock.now_ms()
        valid = [
            redact_event(
                validate_event(e, limit_bytes=self.limits.event_bytes, now_ms=now),
                self.limits.redact_keys,
            )
            for e in batch
        ]
        planned = [PlannedEvent(e, self.registry.plan(e, now)) for e in valid]
        result = await self.store.ingest(planned, now)
        self._ingested(result)
        for run_id in result.runs_cancelled:  # by a `cancel_on` match
            await self._finalize_cancelled(run_id)
        return result

    async def invoke(self, function_id: str, data: dict[str, object] | None = None) -> str:
        """Start a run of `function_id` directly; returns its run id."""
        if data is not None and not isinstance(data, dict):
            raise InvalidEventError("invocation data must be a JSON object")
        now = self.clock.now_ms()
        data = redact(data or {}, self.limits.redact_keys)
        run = self.registry.invocation(function_id, data, now, None)
        await asyncio.shield(self.store.create_runs([run], now))
        self._ingested(None)
        return run.id

    async def cancel(self, run_id: str, reason: str = "cancelled by request") -> Run:
        """Cancel a run: a step in flight finishes, nothing after it runs. A cancel accepted
        before the run's finish is committed wins (the run ends `cancelled`, whatever its code
        returned); a run that no worker executes now (queued, sleeping, waiting) is finalized
        here at once, when its function is registered in this process."""
        run = await self.store.request_cancel(run_id, reason, self.clock.now_ms())
        self._ingested(None)
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
        """Run a finished run again from the start, or keep its completed steps."""
        old = await self.store.get_run(run_id)
        if old is None:
            raise RunNotFoundError(run_id)
        self.registry.get(old.function_id)
        run = await self.store.rerun(
            run_id, new_id(), from_failed_step=from_failed_step, now_ms=self.clock.now_ms()
        )
        self._ingested(None)
        return run
