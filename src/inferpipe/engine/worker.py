"""Workers claim ready runs under a lease, keep the lease alive, and execute them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from inferpipe.core.errors import StoreError
from inferpipe.core.ids import new_id
from inferpipe.core.records import ClaimedRun, Lease
from inferpipe.engine.cron import CronSchedule
from inferpipe.engine.engine import Engine
from inferpipe.store.base import Claim

_log = logging.getLogger("inferpipe.worker")

DEFAULT_LEASE_MS = 10_000
"""A run whose worker stopped heartbeating is taken over after this long."""

FALLBACK_POLL_MS = 1000
"""Safety net for work made ready elsewhere: in-process work wakes the worker at once (the
engine's `Wakeups`), another process's through the store's `listen`."""

LEASE_MARGIN_DIVISOR = 10
"""No step starts in the last tenth of a lease not renewed yet: another worker, whose clock may
run a little ahead, could take the run over then."""

STORE_RETRY_MAX_S = 5.0
"""Longest pause between attempts while the store fails (the database is down or restarting)."""


class Worker:
    """Executes the runs of an engine's functions.

    Args:
        engine: the engine whose functions this worker runs.
        concurrency: runs executed at once.
        lease_ms: how long a claim lasts without a heartbeat.
        poll_ms: the safety-net poll for work made ready elsewhere (default: 1 s).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int = 100,
        lease_ms: int = DEFAULT_LEASE_MS,
        poll_ms: int | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self.lease_ms = lease_ms
        self.poll_ms = FALLBACK_POLL_MS if poll_ms is None else poll_ms
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._drain = asyncio.Event()
        self._active: dict[str, tuple[Lease, asyncio.Task[bool]]] = {}
        self._lease_ends: dict[str, float] = {}
        """When each lease held ends, as far as this worker knows, on `time.monotonic()`: the
        time read before the claim or the last renewal it was told of was asked, plus the
        lease. The store's expiry is the wall time read then plus the lease, so by this clock
        the lease never looks longer than it is, and a wall clock set back cannot stretch it."""
        self._starting: set[asyncio.Future[ClaimedRun | None]] = set()
        """Runs invoked in this process, being inserted already claimed by this worker
        (`Runs.invoke`): each holds a slot until it executes."""
        self._reserved = 0  #: slots held for runs whose insert is about to start
        self._short_claim_at_ms: int | None = None
        """When the last claim returned fewer runs than asked: what was ready then and not
        taken waits for a concurrency slot, which a finishing run frees (and wakes us)."""
        self._ahead: Claim | None = None
        """The last claim, when it came back short and read the next ready time itself: the
        sleep that follows needs no `next_ready_at` poll."""
        self._unclaimed = True
        """Runs may be ready that no claim has looked for since: work was signalled, the last
        claim may have left some (`Claim.more`), an execution parked or handed its run back,
        or a poll time came.
        False after a claim that found nothing, with nothing signalled since: a run that then
        finishes with nothing made ready (`Executor.execute`) frees its slot without a claim
        or a poll (a zero-step run started here costs its start and its finish only)."""
        self._ready_known = False
        """Whether the current sleep waits for the next ready time too (read while a slot
        was free); a slot freed while it does not must look it up."""
        self._unsubscribe = engine.wakeups.on_work(self._work_signalled)
        self.cron = CronSchedule(engine.registry, engine.clock.now_ms())

    @property
    def active_runs(self) -> int:
        return len(self._active)

    async def run(self) -> None:
        """Claim and execute work until `notify_shutdown`; then drain."""
        unlisten = await self.engine.store.listen(self._work_signalled)
        heartbeat = asyncio.create_task(self._heartbeat())
        stop_starts = self.engine.runs.add_starter(self)
        failures = 0
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    await self._fire_cron()
                    claimed = await self._claim_into_slots() if self._unclaimed else 0
                    if claimed and self._busy < self.concurrency:
                        continue
                    await self._sleep()
                    failures = 0
                except StoreError as exc:
                    # The database is unreachable or restarting: keep the runs in flight, and
                    # try again with backoff; the store reconnects by itself.
                    self._unclaimed = True
                    failures += 1
                    delay_s = min(STORE_RETRY_MAX_S, 0.1 * 2**failures)
                    _log.warning("store unavailable (%s); retrying in %.1f s", exc, delay_s)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay_s):
                            await self._stopping.wait()
        finally:
            stop_starts()
            await self.drain()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._unsubscribe()
            await unlisten()

    def _work_signalled(self) -> None:
        self._unclaimed = True
        self._wake.set()

    def notify_shutdown(self) -> None:
        """Stop claiming; runs in flight finish their current step and are handed back."""
        self._stopping.set()
        self._drain.set()
        self._wake.set()

    async def drain(self) -> None:
        """Wait for every run this worker holds to park, finish or be handed back."""
        if self._starting:
            await asyncio.gather(*self._starting, return_exceptions=True)
        tasks = [task for _, task in self._active.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run_until_idle(self) -> int:
        """Burst mode: execute ready work until none is left now; returns runs executed."""
        total = 0
        while True:
            await self._fire_cron()
            claimed = await self.engine.store.claim(
                self.id,
                self.engine.registry.ids,
                self.concurrency,
                self.engine.clock.now_ms(),
                self.lease_ms,
            )
            if not claimed:
                return total
            total += len(claimed)
            await asyncio.gather(*(self.engine.executor.execute(c) for c in claimed))

    async def _fire_cron(self) -> None:
        due = self.cron.due(self.engine.clock.now_ms())
        if due:
            await self.engine.runs.send_engine_events(due)

    def reserve(self) -> bool:
        """Hold a slot for a run invoked in this process (`Runs.invoke`), if one is free."""
        if self._stopping.is_set() or self._busy >= self.concurrency:
            return False
        self._reserved += 1
        return True

    def adopt(self, start: asyncio.Future[ClaimedRun | None]) -> None:
        """Execute the run that `start` inserts claimed by this worker, in the slot held."""
        asked = time.monotonic()  # before the insert is asked: its lease ends no later
        self._reserved -= 1
        self._starting.add(start)

        def started(_: asyncio.Future[ClaimedRun | None]) -> None:
            self._starting.discard(start)
            if start.cancelled() or start.exception() is not None:
                self._work_signalled()  # the slot is free again; the caller sees the failure
                return
            claimed = start.result()
            if claimed is None:  # the run existed already: its slot is free, nothing ran
                self._slot_freed(quiet=True)
            else:
                self._start(claimed, asked + self.lease_ms / 1000)

        start.add_done_callback(started)

    @property
    def _busy(self) -> int:
        return len(self._active) + len(self._starting) + self._reserved

    async def _claim_into_slots(self) -> int:
        free = self.concurrency - self._busy
        if free <= 0:
            return 0
        asked = time.monotonic()
        now = self.engine.clock.now_ms()
        self._unclaimed = False  # a signal from now on is one this claim may not see
        claim = await self.engine.store.claim_ready(
            self.id, self.engine.registry.ids, free, now, self.lease_ms
        )
        claimed = claim.runs
        short = len(claimed) < free
        self._short_claim_at_ms = now if short else None
        self._ahead = claim if short and claim.looked_ahead else None
        if claim.more:
            self._unclaimed = True
        for item in claimed:
            self._start(item, asked + self.lease_ms / 1000)
        return len(claimed)

    def _start(self, claimed: ClaimedRun, lease_ends: float) -> None:
        run_id = claimed.run.id
        margin_s = self.lease_ms / LEASE_MARGIN_DIVISOR / 1000

        def ending() -> bool:
            return time.monotonic() >= self._lease_ends.get(run_id, 0.0) - margin_s

        execution = self.engine.executor.execute(claimed, drain=self._drain, lease_ending=ending)
        task = asyncio.create_task(execution)
        self._active[run_id] = (claimed.lease, task)
        self._lease_ends[run_id] = lease_ends

        def done(_: asyncio.Task[bool]) -> None:
            self._active.pop(run_id, None)
            self._lease_ends.pop(run_id, None)
            if not task.cancelled() and task.exception() is not None:
                _log.error("run %s: executor crashed", run_id, exc_info=task.exception())
            self._slot_freed(
                quiet=not task.cancelled() and task.exception() is None and task.result()
            )

        task.add_done_callback(done)

    def _slot_freed(self, *, quiet: bool) -> None:
        """A slot is free again; `quiet` when what held it made no run ready. Wake the loop
        to claim unless nothing can be waiting for the slot."""
        if not quiet or not self._ready_known:
            self._unclaimed = True
        if self._unclaimed:
            self._wake.set()

    async def _sleep(self) -> None:
        clock = self.engine.clock
        times = [clock.now_ms() + self.poll_ms]
        # With every slot busy, ready work must wait for a slot (a finishing run wakes us),
        # not for its ready time, which may be now: that would spin.
        self._ready_known = self._busy < self.concurrency
        if self._ready_known:
            nxt = await self._next_ready_at()
            if nxt is not None:
                times.append(nxt)
        tick = self.cron.next_tick_ms()
        if tick is not None:
            times.append(tick)
        await clock.sleep_until(min(times), self._wake)
        if not self._wake.is_set():  # its time came: a poll, a ready time or a cron tick
            self._unclaimed = True

    async def _next_ready_at(self) -> int | None:
        if self._ahead is not None:
            return self._ahead.next_ready_at_ms
        ids = self.engine.registry.ids
        if self._short_claim_at_ms is None:
            return await self.engine.store.next_ready_at(ids)
        return await self.engine.store.next_ready_at(ids, after_ms=self._short_claim_at_ms)

    async def _heartbeat(self) -> None:
        interval_s = self.lease_ms / 3000
        while True:
            await asyncio.sleep(interval_s)
            leases = [lease for lease, _ in self._active.values()]
            if not leases:
                continue
            asked = time.monotonic()
            until_ms = self.engine.clock.now_ms() + self.lease_ms
            try:
                # Not `wait_for`: on Python 3.11 it returns an answer that comes as the
                # heartbeat is cancelled and drops the cancel (the worker then never stopped).
                async with asyncio.timeout(interval_s):
                    lost = await self.engine.store.renew_leases(leases, until_ms)
            except Exception as exc:
                _log.warning("heartbeat failed (%r); retrying", exc)
                # Up to two intervals pass before a renewal can succeed again.
                self._stop_unrenewed(2 * self.lease_ms // 3)
                continue
            gone = set(lost)
            for lease in leases:
                if lease.run_id in self._lease_ends:
                    # A lost lease ends now: its code may run again before its cancel lands
                    # (its commit answered), and must then start no step.
                    ends = 0.0 if lease.run_id in gone else asked + self.lease_ms / 1000
                    self._lease_ends[lease.run_id] = ends
            for run_id in lost:
                entry = self._active.get(run_id)
                # A run releasing its lease may have released it already, and an execution
                # that has ended released it: not a loss (if it was lost, the release says so).
                if (
                    entry is not None
                    and not entry[1].done()
                    and not self.engine.executor.releasing(run_id)
                ):
                    _log.warning("run %s: lease lost, stopping local execution", run_id)
                    entry[1].cancel()

    def _stop_unrenewed(self, horizon_ms: int) -> None:
        """The store is unreachable: stop executing runs whose lease may end before it can be
        renewed, as another worker may take them over then (a stalled worker must not run their
        next steps; a step in flight is abandoned, as on a crash, and runs again there)."""
        limit = time.monotonic() + horizon_ms / 1000
        for run_id, ends in list(self._lease_ends.items()):
            entry = self._active.get(run_id)
            if ends <= limit and entry is not None:
                _log.warning("run %s: lease cannot be renewed, stopping local execution", run_id)
                del self._lease_ends[run_id]
                entry[1].cancel()
