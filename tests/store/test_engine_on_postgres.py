"""Engine scenarios through the public API, on PostgreSQL: a virtual clock drives most of them,
and one runs a real worker loop woken across connections by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio

import inferpipe as ip
from inferpipe.engine.worker import Worker
from inferpipe.store.postgres import PostgresStore
from tests.store.conftest import PostgresServer, unique_workspace
from tests.store.pg_harness import PostgresHarness


async def test_steps_sleep_and_replay(postgres: PostgresServer) -> None:
    app = ip.App("pg")
    calls: list[str] = []

    def compute(x: int) -> int:
        calls.append("compute")
        return x * 2

    @app.function(id="f")
    async def f(ctx: ip.Context) -> object:
        first = await ctx.step.run("compute", compute, 21)
        await ctx.step.sleep("pause", "7d")
        return [first, await ctx.step.run("after", compute, 1)]

    async with PostgresHarness(app, postgres.url) as h:
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED and run.output == [42, 2]
        assert calls == ["compute", "compute"]
        assert [s.key for s in await h.steps(run.id)] == ["compute", "pause", "after"]


async def test_wait_for_event_with_trigger_binding_and_timeout(postgres: PostgresServer) -> None:
    app = ip.App("pg")

    @app.function(id="approval", trigger=ip.on_event("order/created"))
    async def approval(ctx: ip.Context) -> object:
        ev = await ctx.step.wait_for_event(
            "approved",
            event="order/approved",
            timeout="2d",
            if_exp="async.data.order_id == event.data.order_id",
        )
        return ev.data if ev else None

    async with PostgresHarness(app, postgres.url) as h:
        await h.send([ip.Event("order/created", {"order_id": k}) for k in ("A", "B")])
        await h.run_ready()
        await h.send(ip.Event("order/approved", {"order_id": "B", "by": "ann"}))
        await h.run_ready()
        runs = {r.input[0]["data"]["order_id"]: r for r in await h.runs_of("approval")}
        assert (await h.run(runs["B"].id)).output == {"order_id": "B", "by": "ann"}
        assert (await h.run(runs["A"].id)).status is ip.RunStatus.WAITING
        await h.settle()
        timed_out = await h.run(runs["A"].id)
        assert timed_out.status is ip.RunStatus.COMPLETED and timed_out.output is None


async def test_invoke_retries_and_cancel_on(postgres: PostgresServer) -> None:
    app = ip.App("pg")
    attempts: list[int] = []

    @app.function(id="double", retries=3, backoff=ip.Backoff(base_s=1, jitter=0))
    async def double(ctx: ip.Context) -> int:
        def flaky() -> int:
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionError("down")
            return int(ctx.event.data["n"]) * 2

        return int(await ctx.step.run("call", flaky))

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> object:
        return await ctx.step.invoke("child", "double", {"n": 21})

    @app.function(
        id="reminder",
        trigger=ip.on_event("cart/abandoned"),
        cancel_on=ip.CancelOn("cart/purchased", if_exp="async.data.cart == event.data.cart"),
    )
    async def reminder(ctx: ip.Context) -> str:
        await ctx.step.sleep("wait", "1d")
        return "reminded"

    async with PostgresHarness(app, postgres.url) as h:
        parent_id = await h.invoke("parent")
        await h.send([ip.Event("cart/abandoned", {"cart": c}) for c in (1, 2)])
        await h.run_ready()
        await h.send(ip.Event("cart/purchased", {"cart": 2}))
        await h.settle()
        assert (await h.run(parent_id)).output == 42 and len(attempts) == 3
        by_cart = {r.input[0]["data"]["cart"]: r for r in await h.runs_of("reminder")}
        assert by_cart[1].status is ip.RunStatus.COMPLETED
        assert by_cart[2].status is ip.RunStatus.CANCELLED


async def test_failed_run_reruns_from_failed_step(postgres: PostgresServer) -> None:
    app = ip.App("pg")
    fail = {"b": True}
    executed: list[str] = []

    def act(name: str) -> str:
        executed.append(name)
        if fail.get(name):
            raise ip.NonRetriableError(f"{name} broke")
        return name

    @app.function(id="pipeline", retries=0)
    async def pipeline(ctx: ip.Context) -> list[str]:
        return [await ctx.step.run(k, act, k) for k in ("a", "b", "c")]

    async with PostgresHarness(app, postgres.url) as h:
        run = await h.settle(await h.invoke("pipeline"))
        assert run is not None and run.status is ip.RunStatus.FAILED
        fail.clear()
        again = await h.app.rerun(run.id, from_failed_step=True)
        done = await h.settle(again.id)
        assert done is not None and done.output == ["a", "b", "c"]
        assert executed == ["a", "b", "b", "c"]


async def test_running_worker_is_woken_by_notify(postgres: PostgresServer) -> None:
    """A worker loop with a 1-minute fallback poll still starts a run sent through another
    connection at once: the NOTIFY wakes it, not the poll."""
    app = ip.App("pg")
    workspace = unique_workspace()

    @app.function(id="greet", trigger=ip.on_event("user/signed.up"))
    async def greet(ctx: ip.Context) -> str:
        return f"hello {ctx.event.data['name']}"

    await app.start(store=PostgresStore(postgres.url, workspace))
    worker = Worker(app.engine, poll_ms=60_000)
    loop = asyncio.create_task(worker.run())
    sender = ip.App("pg-client")
    sender.registry = app.registry  # another process would register the same functions
    try:
        await sender.start(store=PostgresStore(postgres.url, workspace))
        result = await sender.engine.runs.send(ip.Event("user/signed.up", {"name": "Ada"}))
        (run_id,) = result.runs_created
        run = await app.result(run_id, timeout=10)
        assert run.status is ip.RunStatus.COMPLETED and run.output == "hello Ada"
    finally:
        worker.notify_shutdown()
        await loop
        await sender.close()
        await app.close()


class PollCountingStore(PostgresStore):
    """A PostgreSQL store that counts the `next_ready_at` polls asked of it."""

    polls = 0

    async def next_ready_at(
        self, function_ids: list[str], *, after_ms: int | None = None
    ) -> int | None:
        self.polls += 1
        return await super().next_ready_at(function_ids, after_ms=after_ms)


async def test_two_workers_take_every_run_with_no_poll(postgres: PostgresServer) -> None:
    """Runs started by a process without a worker, one after another, each woken by NOTIFY in
    two workers, and a run sleeping: every one ends though the workers' safety-net poll is an
    hour away, and no worker polls for the next ready time (its short claim read it)."""
    workspace = unique_workspace()
    functions = ip.App("pg-two")

    @functions.function(id="quick")
    async def quick(ctx: ip.Context) -> int:
        return int(await ctx.step.run("double", lambda: 2 * int(ctx.input["i"])))

    @functions.function(id="nap")
    async def nap(ctx: ip.Context) -> str:
        await ctx.step.sleep("pause", "300ms")
        return "rested"

    apps: list[ip.App] = []
    stores: list[PollCountingStore] = []
    workers: list[Worker] = []
    loops: list[asyncio.Task[None]] = []
    for _ in range(2):
        app = ip.App("pg-two")
        app.registry = functions.registry  # each a process running the same functions
        store = PollCountingStore(postgres.url, workspace)
        await app.start(store=store)
        worker = Worker(app.engine, poll_ms=3_600_000)
        apps.append(app)
        stores.append(store)
        workers.append(worker)
        loops.append(asyncio.create_task(worker.run()))
    sender = ip.App("pg-two-client")
    sender.registry = functions.registry
    try:
        await sender.start(store=PostgresStore(postgres.url, workspace))
        napping = await sender.invoke("nap")
        ids = [await sender.invoke("quick", {"i": i}) for i in range(40)]
        for i, run_id in enumerate(ids):
            run = await sender.result(run_id, timeout=30)
            assert run.status is ip.RunStatus.COMPLETED and run.output == 2 * i
        run = await sender.result(napping, timeout=30)
        assert run.status is ip.RunStatus.COMPLETED and run.output == "rested"
        assert [s.key for s in await sender.engine.store.get_steps(napping)] == ["pause"]
        assert [store.polls for store in stores] == [0, 0]
    finally:
        for worker in workers:
            worker.notify_shutdown()
        await asyncio.gather(*loops)
        await sender.close()
        for app in apps:
            await app.close()
