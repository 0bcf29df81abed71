"""Every run has a stream: lifecycle events from the engine, user events, a final event."""

from __future__ import annotations

import asyncio

import inferpipe as ip
from inferpipe.testing import Harness


def streaming_app() -> ip.App:
    app = ip.App("streams")

    @app.function(id="writer")
    async def writer(ctx: ip.Context) -> str:
        await ctx.stream.publish({"progress": "begin"})

        async def tokens() -> str:
            for word in ("hello", "durable", "world"):
                await ctx.stream.publish(word, kind="token")
            return "hello durable world"

        text = await ctx.step.run("generate", tokens)
        await ctx.step.sleep("pause", "1m")  # the run replays after this
        await ctx.stream.publish({"progress": "end"})
        await ctx.step.sleep("pause-2", "1m")
        return str(text)

    return app


async def collect(app: ip.App, run_id: str, after: int | None = None) -> list[ip.StreamEvent]:
    return [e async for e in app.stream(run_id, after=after)]


async def test_stream_has_lifecycle_and_user_events_once_despite_replays() -> None:
    app = streaming_app()
    async with Harness(app) as h:
        run_id = await h.invoke("writer")
        await h.settle()
        events = await collect(app, run_id)
        types = [e.data["type"] for e in events]
        assert types[0] == "run.started"
        assert [e.data["data"] for e in events if e.data["type"] == "token"] == [
            "hello",
            "durable",
            "world",
        ]
        assert [e.data["data"] for e in events if e.data["type"] == "user"] == [
            {"progress": "begin"},
            {"progress": "end"},
        ]
        assert types.count("step.completed") == 3 and types.count("run.resumed") == 2
        assert events[-1].final and events[-1].data["status"] == "completed"
        assert [e.index for e in events] == list(range(1, len(events) + 1))


async def test_reconnect_with_last_seen_index_gets_exactly_the_rest() -> None:
    app = streaming_app()
    async with Harness(app) as h:
        run_id = await h.invoke("writer")
        await h.settle()
        everything = await collect(app, run_id)
        for cut in (0, 1, 4, len(everything) - 1):
            rest = await collect(app, run_id, after=cut)
            assert [e.index for e in rest] == [e.index for e in everything[cut:]]


async def test_live_subscriber_follows_a_running_run_to_its_end() -> None:
    app = streaming_app()
    async with Harness(app) as h:
        run_id = await h.invoke("writer")
        seen: list[ip.StreamEvent] = []

        async def follow() -> None:
            async for event in app.stream(run_id):
                seen.append(event)

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0)
        await h.settle()
        await asyncio.wait_for(follower, timeout=10)
        assert seen[-1].final and seen == await collect(app, run_id)
