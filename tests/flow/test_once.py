"""Idempotency (one run per key within 24 h) and singleton (one unfinished run per key,
the newcomer skipped or replacing it)."""

from __future__ import annotations

import inferpipe as ip
from inferpipe.engine.flow import Singleton
from inferpipe.testing import Harness
from tests.flow.conftest import HarnessFactory
from tests.flow.kit import by_status


async def test_idempotency_runs_once_per_key_within_a_day(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(id="charge", trigger=ip.on_event("order"), idempotency="event.data.order_id")
    async def charge(ctx: ip.Context) -> str:
        return str(ctx.event.data["order_id"])

    async with harness(app) as h:
        await h.send([ip.Event("order", {"order_id": o}) for o in ("o1", "o1", "o2")])
        await h.settle()
        found = await by_status(h, "charge")
        first = next(r for r in found[ip.RunStatus.COMPLETED] if r.output == "o1")
        (dup,) = found[ip.RunStatus.SKIPPED]
        assert dup.status_reason == (
            f'duplicate: idempotency key idempotency:charge:"o1" was used by run {first.id}'
            " within 24 h"
        )
        await h.advance("23h59m")
        await h.send(ip.Event("order", {"order_id": "o1"}))
        await h.advance("1m")  # 24 h after the first: the key is free again
        await h.send(ip.Event("order", {"order_id": "o1"}))
        await h.settle()
        found = await by_status(h, "charge")
    assert sorted(r.output for r in found[ip.RunStatus.COMPLETED]) == ["o1", "o1", "o2"]
    assert len(found[ip.RunStatus.SKIPPED]) == 2


async def test_a_skipped_run_can_be_re_run_deliberately(harness: HarnessFactory) -> None:
    app = ip.App("t")

    @app.function(id="charge", trigger=ip.on_event("order"), idempotency="event.data.order_id")
    async def charge(ctx: ip.Context) -> str:
        return str(ctx.event.data["order_id"])

    async with harness(app) as h:
        await h.send([ip.Event("order", {"order_id": "o1"}) for _ in range(2)])
        await h.settle()
        (dup,) = (await by_status(h, "charge"))[ip.RunStatus.SKIPPED]
        again = await h.app.rerun(dup.id)
        run = await h.settle(again.id)
    assert run is not None and run.status is ip.RunStatus.COMPLETED and run.rerun_of == dup.id


async def test_idempotency_key_missing_from_the_event_records_a_reason(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")

    @app.function(id="charge", trigger=ip.on_event("order"), idempotency="event.data.order_id")
    async def charge(ctx: ip.Context) -> str:
        return "charged"

    async with harness(app) as h:
        await h.send([ip.Event("order", {"amount": 3}), ip.Event("order", {"order_id": "o9"})])
        await h.settle()
        found = await by_status(h, "charge")
    (bad,) = found[ip.RunStatus.SKIPPED]
    assert bad.status_reason is not None
    assert bad.status_reason.startswith("flow control key failed on the event: expression")
    assert "event.data.order_id" in bad.status_reason and "order_id" in bad.status_reason
    assert len(found[ip.RunStatus.COMPLETED]) == 1


def sleepy_singleton(mode: str) -> tuple[ip.App, list[str]]:
    app = ip.App("t")
    woke: list[str] = []

    @app.function(
        id="deploy",
        trigger=ip.on_event("push"),
        singleton=Singleton(key="event.data.repo", mode=mode),  # type: ignore[arg-type]
    )
    async def deploy(ctx: ip.Context) -> str:
        await ctx.step.sleep("build", "1h")
        woke.append(ctx.event.data["sha"])
        return str(ctx.event.data["sha"])

    return app, woke


async def test_singleton_skips_a_newcomer_while_its_key_is_unfinished(
    harness: HarnessFactory,
) -> None:
    app, woke = sleepy_singleton("skip")
    async with harness(app) as h:
        await h.send(ip.Event("push", {"repo": "r1", "sha": "a"}))
        await h.run_ready()
        (first,) = await h.runs_of("deploy")
        await h.send(ip.Event("push", {"repo": "r1", "sha": "b"}))  # skipped
        await h.send(ip.Event("push", {"repo": "r2", "sha": "c"}))  # another key runs
        await h.settle()
        await h.send(ip.Event("push", {"repo": "r1", "sha": "d"}))  # r1 is free again
        await h.settle()
        found = await by_status(h, "deploy")
    assert sorted(woke) == ["a", "c", "d"]
    (skipped,) = found[ip.RunStatus.SKIPPED]
    assert skipped.status_reason == (
        f'singleton: run {first.id} of key singleton:deploy:"r1" has not finished'
    )


async def test_singleton_newcomer_replaces_its_predecessor(harness: HarnessFactory) -> None:
    app, woke = sleepy_singleton("cancel")
    async with harness(app) as h:
        await h.send(ip.Event("push", {"repo": "r1", "sha": "a"}))
        await h.run_ready()
        (old,) = await h.runs_of("deploy")
        assert (await h.run(old.id)).status is ip.RunStatus.SLEEPING
        await h.advance("30m")
        await h.send(ip.Event("push", {"repo": "r1", "sha": "b"}))
        await h.settle()
        old_run, new_run = await h.runs_of("deploy")
    assert old_run.status is ip.RunStatus.CANCELLED
    assert (
        old_run.status_reason == f'replaced by run {new_run.id} (singleton singleton:deploy:"r1")'
    )
    assert new_run.status is ip.RunStatus.COMPLETED and new_run.output == "b"
    assert woke == ["b"]  # the predecessor never ran past its sleep


async def test_a_replaced_run_in_flight_finishes_its_step_before_the_newcomer_starts(
    harness: HarnessFactory,
) -> None:
    app = ip.App("t")
    events: list[str] = []
    h_ref: list[Harness] = []

    async def step_body(sha: str) -> str:
        events.append(f"start {sha}")
        if sha == "a":  # while a's step runs, b arrives and asks to replace a
            await h_ref[0].send(ip.Event("push", {"repo": "r", "sha": "b"}))
            claimed = await h_ref[0].engine.store.claim("w2", ["deploy"], 10, h_ref[0].now_ms, 1000)
            events.append(f"claimed while a runs: {len(claimed)}")
        events.append(f"end {sha}")
        return sha

    @app.function(id="deploy", trigger=ip.on_event("push"), singleton=Singleton(mode="cancel"))
    async def deploy(ctx: ip.Context) -> str:
        out = str(await ctx.step.run("work", step_body, ctx.event.data["sha"]))
        await ctx.step.run("after", lambda: events.append(f"after {out}"))
        return out

    async with harness(app) as h:
        h_ref.append(h)
        await h.send(ip.Event("push", {"repo": "r", "sha": "a"}))
        await h.settle()
        old, new = await h.runs_of("deploy")
    assert events == ["start a", "claimed while a runs: 0", "end a", "start b", "end b", "after b"]
    assert old.status is ip.RunStatus.CANCELLED and new.status is ip.RunStatus.COMPLETED
