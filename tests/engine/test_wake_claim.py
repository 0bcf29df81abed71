"""Wake-and-claim: a send that resumes a parked run takes it, in its own transaction, for a
worker of this process with a free slot, which executes it with no claim; a run with flow
control to decide about is left to the claims."""

from __future__ import annotations

from pathlib import Path

import inferpipe as ip
from inferpipe.core.records import ClaimedRun
from inferpipe.store.sqlite import SQLiteStore


class CountingStore(SQLiteStore):
    """A SQLite store that counts the runs its claims return."""

    claimed = 0

    async def claim(
        self, owner: str, function_ids: list[str], limit: int, now_ms: int, lease_ms: int
    ) -> list[ClaimedRun]:
        taken = await super().claim(owner, function_ids, limit, now_ms, lease_ms)
        self.claimed += len(taken)
        return taken


def waiting_app() -> ip.App:
    app = ip.App("wake-claim")

    async def wait(ctx: ip.Context) -> int:
        event = await ctx.step.wait_for_event(
            "go", event="test/go", timeout="1h", if_exp="async.data.k == event.data.k"
        )
        return -1 if event is None else int(event.data["n"])

    app.function(id="plain", trigger=ip.on_event("test/start"))(wait)
    app.function(id="keyed", trigger=ip.on_event("test/start-keyed"), concurrency=5)(wait)
    return app


async def test_a_send_hands_the_run_it_resumes_to_the_worker_here(tmp_path: Path) -> None:
    app = waiting_app()
    store = CountingStore(tmp_path / "app.db")
    await app.start(store=store)
    try:
        worker = app.worker()
        sent = await app.engine.runs.send(ip.Event("test/start", {"k": 1}))
        await worker.run_until_idle()  # the run parks on its wait
        (run_id,) = sent.runs_created
        assert (await app.get_run(run_id)).status is ip.RunStatus.WAITING
        before = store.claimed
        stop = app.engine.runs.add_starter(worker)  # as `worker.run()` does, with no claims
        try:
            resumed = await app.engine.runs.send(ip.Event("test/go", {"k": 1, "n": 7}))
            assert resumed.waits_resolved == [run_id] and resumed.runs_claimed == []
            run = await app.result(run_id, timeout=30)
        finally:
            stop()
            await worker.drain()
        assert run.status is ip.RunStatus.COMPLETED and run.output == 7
        assert store.claimed == before  # no claim took it
    finally:
        await app.close()


async def test_the_run_a_send_hands_over_resumes_before_the_send_returns(tmp_path: Path) -> None:
    app = ip.App("wake-claim-order")
    resumed: list[int] = []

    @app.function(id="waiter", trigger=ip.on_event("test/start"))
    async def waiter(ctx: ip.Context) -> int:
        event = await ctx.step.wait_for_event("go", event="test/go", timeout="1h")
        assert event is not None
        resumed.append(int(event.data["n"]))
        return len(resumed)

    await app.start(store=SQLiteStore(tmp_path / "app.db"))
    try:
        worker = app.worker()
        (run_id,) = (await app.engine.runs.send(ip.Event("test/start"))).runs_created
        await worker.run_until_idle()
        stop = app.engine.runs.add_starter(worker)
        try:
            await app.send(ip.Event("test/go", {"n": 3}))
            assert resumed == [3]  # its code ran on from the wait before the send returned
            assert (await app.result(run_id, timeout=30)).output == 1
        finally:
            stop()
            await worker.drain()
    finally:
        await app.close()


async def test_a_run_with_flow_control_is_left_to_the_claims(tmp_path: Path) -> None:
    app = waiting_app()
    await app.start(store=SQLiteStore(tmp_path / "app.db"))
    try:
        worker = app.worker()
        sent = await app.engine.runs.send(ip.Event("test/start-keyed", {"k": 2}))
        await worker.run_until_idle()
        (run_id,) = sent.runs_created
        stop = app.engine.runs.add_starter(worker)
        try:
            await app.send(ip.Event("test/go", {"k": 2, "n": 8}))
        finally:
            stop()
        assert (await app.get_run(run_id)).status is ip.RunStatus.QUEUED  # a claim decides
        assert await worker.run_until_idle() == 1
        run = await app.result(run_id, timeout=30)
        assert run.status is ip.RunStatus.COMPLETED and run.output == 8
    finally:
        await app.close()
