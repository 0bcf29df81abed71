"""`App.result` awaits the run's finish: it reads the run when it may have finished (in this
process, or, told by the store's `listen`, in another), not on a timer or on every wake-up."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import inferpipe as ip
from inferpipe.core.records import ClaimedRun, Run
from inferpipe.store.base import RunFilter
from inferpipe.store.sqlite import SQLiteStore

WAIT_S = 30.0


class CountingStore(SQLiteStore):
    """A SQLite store that counts `get_run` calls per run, and the worker's claims and
    polls."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: Counter[str] = Counter()
        self.looks = 0  #: claims and next-ready polls
        self.polls = 0  #: next-ready polls

    async def get_run(self, run_id: str) -> Run | None:
        self.reads[run_id] += 1
        return await super().get_run(run_id)

    async def claim(
        self, owner: str, function_ids: list[str], limit: int, now_ms: int, lease_ms: int
    ) -> list[ClaimedRun]:
        self.looks += 1
        return await super().claim(owner, function_ids, limit, now_ms, lease_ms)

    async def next_ready_at(
        self, function_ids: list[str], *, after_ms: int | None = None
    ) -> int | None:
        self.looks += 1
        self.polls += 1
        return await super().next_ready_at(function_ids, after_ms=after_ms)


def held_app(release: asyncio.Event, database: str | None = None) -> ip.App:
    app = ip.App("result", database=database)

    @app.function(id="held", retries=0)
    async def held(ctx: ip.Context) -> str:
        return str(await ctx.step.run("hold", release.wait))

    @app.function(id="busy", trigger=ip.on_event("test/busy"), retries=0)
    async def busy(ctx: ip.Context) -> int:
        return int(await ctx.step.run("work", lambda: 1))

    return app


async def _eventually(check: Callable[[], bool]) -> None:
    for _ in range(3_000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_result_reads_the_run_once_then_only_when_it_may_have_finished(
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    app = held_app(release)
    store = CountingStore(tmp_path / "result.db")
    await app.start(store=store)
    worker = app.worker()
    working: asyncio.Task[None] | None = None
    try:
        run_id = await app.invoke("held")  # no worker yet: queued
        waiting = asyncio.create_task(app.result(run_id, timeout=WAIT_S))
        await _eventually(lambda: store.reads[run_id] >= 1)
        working = asyncio.create_task(worker.run())
        # Much else happens meanwhile (each wakes the worker), and time passes: none of it
        # makes the waiter read its run again.
        for _ in range(10):
            (busy,) = (await app.engine.runs.send(ip.Event("test/busy", {}))).runs_created
            assert (await app.result(busy, timeout=WAIT_S)).output == 1
        assert store.reads[run_id] == 1 and not waiting.done()
        release.set()
        done = await waiting
        assert done.status is ip.RunStatus.COMPLETED and done.output == "True"
        assert store.reads[run_id] == 1  # its finish here handed it over
    finally:
        worker.notify_shutdown()
        if working is not None:
            await working
        await app.close()


async def test_a_run_invoked_and_executed_here_is_handed_to_its_waiter(tmp_path: Path) -> None:
    """Start-and-claim: `invoke` inserts the run already claimed by this process's worker, and
    its finish hands the run to `result` as a read would return it, with no read."""
    release = asyncio.Event()
    app = held_app(release)
    store = CountingStore(tmp_path / "result.db")
    await app.start(store=store)
    worker = app.worker()
    working = asyncio.create_task(worker.run())
    try:
        for _ in range(1000):  # the worker offers its slots once it listens to the store
            if worker in app.engine.runs._starters:
                break
            await asyncio.sleep(0.01)
        run_id = await app.invoke("held")
        started = await store.get_run(run_id)
        assert started is not None and started.status is ip.RunStatus.RUNNING
        assert started.lease_owner == worker.id and started.lease_token == 1
        waiting = asyncio.create_task(app.result(run_id, timeout=WAIT_S))
        await asyncio.sleep(0.05)
        release.set()
        done = await waiting
        assert store.reads[run_id] == 1  # ours, above
        assert done == await store.get_run(run_id)
        assert done.status is ip.RunStatus.COMPLETED and done.output == "True"
    finally:
        worker.notify_shutdown()
        await working
        await app.close()


async def test_a_run_that_finishes_with_nothing_made_ready_costs_the_worker_no_claim(
    tmp_path: Path,
) -> None:
    """Start-and-claim, then a finish that starts, resumes and frees nothing: the worker looks
    for work neither after the invoke nor after the finish (its start and its finish are the
    run's only writes). A finish that starts a run still wakes it."""
    app = ip.App("quiet")

    @app.function(id="empty")
    async def empty(ctx: ip.Context) -> int:
        return 0

    @app.function(
        id="after",
        trigger=ip.on_event(
            "inferpipe/function.finished", if_exp="event.data.function_id == 'loud'"
        ),
    )
    async def after(ctx: ip.Context) -> str:
        return str(ctx.event.data["function_id"])

    @app.function(id="loud")
    async def loud(ctx: ip.Context) -> int:
        return 1

    store = CountingStore(tmp_path / "quiet.db")
    await app.start(store=store)
    worker = app.worker(poll_ms=3_600_000)  # no fallback poll during the test
    working = asyncio.create_task(worker.run())
    try:
        # Idle: its claim found nothing, and the poll after it is asked (the worker sleeps).
        await _eventually(lambda: store.polls >= 1 and not worker._unclaimed)
        looks = store.looks
        for _ in range(5):
            run = await app.result(await app.invoke("empty"), timeout=WAIT_S)
            assert run.status is ip.RunStatus.COMPLETED and run.output == 0
        await asyncio.sleep(0.05)
        assert store.looks == looks
        assert (await app.result(await app.invoke("loud"), timeout=WAIT_S)).output == 1
        triggered = RunFilter(function_id="after", status=ip.RunStatus.COMPLETED)
        for _ in range(3_000):  # claimed at once (the worker does not wait for its poll)
            if (await app.list_runs(triggered)).items:
                break
            await asyncio.sleep(0.01)
        assert [r.output for r in (await app.list_runs(triggered)).items] == ["loud"]
    finally:
        worker.notify_shutdown()
        await working
        await app.close()


async def test_a_start_that_inserts_nothing_frees_its_slot_for_ready_work(tmp_path: Path) -> None:
    """A full worker sleeps without looking for ready work; a start-and-claim that inserts
    nothing (the run existed) frees the slot, and the worker claims the run that became ready
    meanwhile unannounced (as another process's insert is on a store with no `listen`)."""
    app = ip.App("freed")

    @app.function(id="empty")
    async def empty(ctx: ip.Context) -> int:
        return 0

    store = CountingStore(tmp_path / "freed.db")
    await app.start(store=store)
    worker = app.worker(concurrency=1, poll_ms=3_600_000)  # no fallback poll during the test
    assert worker.reserve()
    start: asyncio.Future[ClaimedRun | None] = asyncio.get_running_loop().create_future()
    worker.adopt(start)  # the only slot is held by a start in flight
    working = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.2)  # it found no free slot, and sleeps without a ready time
        assert store.looks == 0
        now = app.engine.clock.now_ms()
        queued = app.engine.registry.invocation("empty", {}, now, None, None)
        await store.create_runs([queued], now)  # no work signal: nobody in this process knows
        start.set_result(None)
        run = await app.result(queued.id, timeout=WAIT_S)
        assert run.status is ip.RunStatus.COMPLETED and run.output == 0
    finally:
        worker.notify_shutdown()
        await working
        await app.close()


async def test_result_of_a_run_another_process_finishes(tmp_path: Path) -> None:
    """The waiter's app runs no worker; another (its own store and connection, as another
    process has) executes the run: the store's `listen` tells the waiter."""
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    release = asyncio.Event()
    async with held_app(release, database) as waiter, held_app(release, database) as other:
        worker = other.worker()
        working = asyncio.create_task(worker.run())
        try:
            release.set()
            run_id = await waiter.invoke("held")
            done = await waiter.result(run_id, timeout=WAIT_S)
            assert done.status is ip.RunStatus.COMPLETED
        finally:
            worker.notify_shutdown()
            await working
