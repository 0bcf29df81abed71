"""Debounce (one run per quiet period, with the last event) and batching (one run for many
events), on the virtual clock."""

from __future__ import annotations

import inferpipe as ip
from inferpipe.engine.flow import Batch, Debounce
from tests.flow.conftest import HarnessFactory
from tests.flow.kit import T0, by_status


def debounced_app(debounce: Debounce) -> tuple[ip.App, list[list[int]]]:
    app = ip.App("t")
    seen: list[list[int]] = []

    @app.function(id="f", trigger=ip.on_event("edit"), debounce=debounce)
    async def f(ctx: ip.Context) -> int:
        seen.append([e.data["v"] for e in ctx.events])
        return int(ctx.event.data["v"])

    return app, seen


async def test_debounce_runs_once_after_the_quiet_period_with_the_last_event(
    harness: HarnessFactory,
) -> None:
    app, seen = debounced_app(Debounce("10s", key="event.data.doc"))
    async with harness(app) as h:
        await h.send(ip.Event("edit", {"doc": "d1", "v": 1}))
        (pending,) = await h.runs_of("f")
        assert pending.status is ip.RunStatus.QUEUED and pending.ready_at_ms == T0 + 10_000
        assert (pending.status_reason or "").startswith("debounced: starts at 2023-11-14T22:13:30")
        await h.advance("5s")
        await h.send(ip.Event("edit", {"doc": "d1", "v": 2}))
        await h.send(ip.Event("edit", {"doc": "d2", "v": 9}))  # another key: its own window
        await h.advance("9999ms")
        assert seen == []  # 14.999 s: d1's quiet period restarted at 5 s
        await h.advance("1ms")
        assert seen == [[2], [9]]
        d1 = await h.run(pending.id)
        assert d1.started_at_ms == T0 + 15_000 and d1.output == 2
        assert len(d1.event_ids) == 1
        # an event after the debounced run started opens a new window
        await h.send(ip.Event("edit", {"doc": "d1", "v": 3}))
        await h.settle()
    assert seen == [[2], [9], [3]]


async def test_debounce_extended_by_late_events_is_cut_by_its_maximum_wait(
    harness: HarnessFactory,
) -> None:
    app, seen = debounced_app(Debounce("10s", timeout="25s"))
    async with harness(app) as h:
        for v, at_s in ((1, 0), (2, 8), (3, 16), (4, 24)):
            await h.advance(f"{T0 + at_s * 1000 - h.now_ms}ms")
            await h.send(ip.Event("edit", {"v": v}))
        (run,) = await h.runs_of("f")
        # the event at 24 s asked for 34 s; the maximum wait from the first event says 25 s
        assert run.ready_at_ms == T0 + 25_000
        assert (run.status_reason or "").endswith("at the latest 2023-11-14T22:13:45.000+00:00")
        await h.settle()
        run = await h.run(run.id)
    assert seen == [[4]]
    assert run.started_at_ms == T0 + 25_000
    assert len(run.event_ids) == 1  # the last event; the others are linked as its triggers


async def test_events_folded_into_a_debounced_run_find_it(harness: HarnessFactory) -> None:
    app, _ = debounced_app(Debounce("1s"))
    async with harness(app) as h:
        first = (await h.send(ip.Event("edit", {"v": 1})))[0]
        await h.send(ip.Event("edit", {"v": 2}))
        await h.settle()
        (run,) = await h.runs_of("f")
        from inferpipe.store.base import RunFilter  # noqa: PLC0415

        page = await h.app.list_runs(RunFilter(event_id=first))
    assert [r.id for r in page.items] == [run.id]


def batched_app(batch: Batch) -> tuple[ip.App, list[list[int]]]:
    app = ip.App("t")
    seen: list[list[int]] = []

    @app.function(id="f", trigger=ip.on_event("item"), batch=batch)
    async def f(ctx: ip.Context) -> int:
        seen.append([e.data["n"] for e in ctx.events])
        return len(ctx.events)

    return app, seen


async def test_batch_closed_by_size_starts_at_once(harness: HarnessFactory) -> None:
    app, seen = batched_app(Batch(3, "10s"))
    async with harness(app) as h:
        await h.send(ip.Event("item", {"n": 1}))
        (pending,) = await h.runs_of("f")
        assert (pending.status_reason or "").startswith("collecting a batch: 1/3 events until")
        await h.send([ip.Event("item", {"n": 2}), ip.Event("item", {"n": 3})])
        await h.run_ready()
        assert seen == [[1, 2, 3]]
        run = await h.run(pending.id)
    assert run.started_at_ms == T0 and len(run.event_ids) == 3 and run.output == 3


async def test_batch_closed_by_timeout_runs_with_what_came(harness: HarnessFactory) -> None:
    app, seen = batched_app(Batch(3, "10s"))
    async with harness(app) as h:
        await h.send(ip.Event("item", {"n": 1}))
        await h.advance("4s")
        await h.send(ip.Event("item", {"n": 2}))
        await h.advance("5999ms")
        assert seen == []
        await h.advance("1ms")
        assert seen == [[1, 2]]
        await h.send([ip.Event("item", {"n": n}) for n in (3, 4, 5, 6)])  # a new batch
        await h.settle()
        runs = await h.runs_of("f")
    assert seen == [[1, 2], [3, 4, 5], [6]]
    assert [r.started_at_ms - T0 for r in runs] == [10_000, 10_000, 20_000]  # type: ignore[operator]


async def test_batches_are_per_key(harness: HarnessFactory) -> None:
    app, seen = batched_app(Batch(2, "1m", key="event.data.tenant"))
    async with harness(app) as h:
        await h.send(
            [ip.Event("item", {"n": n, "tenant": t}) for n, t in enumerate("abab") if n < 3]
        )
        await h.run_ready()
        assert seen == [[0, 2]]  # tenant a is full; b waits for its second event or 1 minute
        await h.settle()
        found = await by_status(h, "f")
    assert seen == [[0, 2], [1]]
    assert len(found[ip.RunStatus.COMPLETED]) == 2


async def test_an_invocation_of_a_batched_function_runs_directly(harness: HarnessFactory) -> None:
    app, seen = batched_app(Batch(10, "1h"))
    async with harness(app) as h:
        run = await h.settle(await h.invoke("f", {"n": 7}))
    assert run is not None and run.status is ip.RunStatus.COMPLETED and seen == [[7]]
