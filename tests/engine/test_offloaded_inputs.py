"""Event data, step inputs, invocation data and stream data go to the blob store when large;
rows keep references, and everything that reads them gets the value."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import inferpipe as ip
from inferpipe.core.run_stream import run_topic
from inferpipe.store import payloads
from inferpipe.streams.errors import InvalidPayloadError
from inferpipe.testing import Harness

BIG = "x" * (300 * 1024)  #: over the 256 KB default threshold


def _longest(db: Path, table: str, column: str) -> int:
    with sqlite3.connect(db) as conn:
        (size,) = conn.execute(f"SELECT max(length({column})) FROM {table}").fetchone()
    return int(size)


async def test_large_event_data_is_offloaded_member_by_member(tmp_path: Path) -> None:
    app = ip.App("blobs")
    seen: list[Any] = []

    @app.function(id="on-doc", trigger=ip.on_event("doc/uploaded", if_exp="event.data.kind == 'a'"))
    async def on_doc(ctx: ip.Context) -> None:
        seen.append(ctx.event.data)
        reply = await ctx.step.wait_for_event(
            "reply",
            event="doc/reply",
            timeout="1h",
            if_exp="async.data.to == event.data.kind",
            lookback="1h",
        )
        assert reply is not None
        seen.append(reply.data)

    async with Harness(app, path=tmp_path / "app.db") as h:
        await h.send(ip.Event("doc/uploaded", {"kind": "b", "text": BIG}))  # filtered out
        await h.send(ip.Event("doc/uploaded", {"kind": "a", "text": BIG}))
        await h.send(ip.Event("doc/reply", {"to": "b", "body": BIG}))  # not for this run
        await h.send(ip.Event("doc/reply", {"to": "a", "body": BIG + "!"}))
        await h.settle()
        (run,) = await h.runs_of("on-doc")
        assert run.status is ip.RunStatus.COMPLETED, run.error
    assert seen == [{"kind": "a", "text": BIG}, {"to": "a", "body": BIG + "!"}]
    db = tmp_path / "app.db"
    assert _longest(db, "events", "body") < 2048
    assert _longest(db, "runs", "input") < 2048
    assert _longest(db, "steps", "output") < 2048
    (stored,) = [e for e in run.input if e["name"] == "doc/uploaded"]
    assert stored["data"]["kind"] == "a"  # small members stay inline, for expressions
    assert payloads.ref_of(stored["data"]["text"]) is not None


async def test_large_step_inputs_and_invocation_data_are_offloaded(tmp_path: Path) -> None:
    app = ip.App("blobs")

    def measure(doc: str, *, suffix: str) -> int:
        return len(doc + suffix)

    @app.function(id="child")
    async def child(ctx: ip.Context) -> int:
        return len(ctx.event.data["doc"])

    @app.function(id="parent")
    async def parent(ctx: ip.Context) -> list[int]:
        sent = await ctx.step.send_event("announce", ip.Event("doc/seen", {"doc": BIG}))
        assert len(sent) == 1
        return [
            await ctx.step.run("measure", measure, BIG, suffix="!"),
            await ctx.step.invoke("call", "child", {"doc": BIG}),
            len(ctx.event.data["doc"]),
        ]

    async with Harness(app, path=tmp_path / "app.db") as h:
        run_id = await h.invoke("parent", {"doc": BIG})
        run = await h.settle(run_id)
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run.error
        assert run.output == [len(BIG) + 1, len(BIG), len(BIG)]
        steps = {s.key: s for s in await h.steps(run_id)}
        assert payloads.ref_of(steps["measure"].input["args"]) is not None
        assert steps["measure"].input["kwargs"] == {"suffix": "!"}
        assert steps["call"].input["function_id"] == "child"
        assert payloads.ref_of(steps["call"].input["data"]["doc"]) is not None
        assert payloads.ref_of(steps["announce"].input[0]["data"]["doc"]) is not None
        shas = await h.engine.store.blob_refs()
    db = tmp_path / "app.db"
    assert _longest(db, "steps", "input") < 2048
    assert _longest(db, "runs", "input") < 2048
    assert _longest(db, "events", "body") < 2048
    assert len(shas) == 2  # BIG's JSON and ["x…x"]: content-addressed, stored once each


async def test_large_stream_data_reaches_subscribers_as_the_value(tmp_path: Path) -> None:
    app = ip.App("blobs")

    @app.function(id="talker")
    async def talker(ctx: ip.Context) -> None:
        await ctx.stream.publish({"chunk": BIG}, kind="doc")
        await ctx.step.run("inside", lambda: None)

    async with Harness(app, path=tmp_path / "app.db") as h:
        run_id = await h.invoke("talker")
        await h.settle(run_id)
        pubsub = h.engine.pubsub
        assert pubsub is not None
        kept = [e.data for e in await pubsub.get_history(run_topic(run_id))]
        (doc,) = [d for d in kept if isinstance(d, dict) and d["type"] == "doc"]
        assert payloads.ref_of(doc["data"]) is not None  # the topic keeps a reference
        got = [e.data async for e in app.stream(run_id)]
    (delivered,) = [d for d in got if isinstance(d, dict) and d["type"] == "doc"]
    assert delivered["data"] == {"chunk": BIG}


async def test_ceilings_refuse_events_and_stream_data_over_them(tmp_path: Path) -> None:
    limits = ip.Limits(event_bytes=400 * 1024, stream_bytes=400 * 1024)
    app = ip.App("blobs", limits=limits)
    refusals: list[str] = []

    @app.function(id="f", retries=0)
    async def f(ctx: ip.Context) -> None:
        with pytest.raises(InvalidPayloadError, match="over the limit"):
            await ctx.stream.publish("y" * (500 * 1024))
        refusals.append("stream")

    async with Harness(app, path=tmp_path / "app.db") as h:
        with pytest.raises(ip.PayloadTooLargeError):
            await h.send(ip.Event("doc/uploaded", {"text": "z" * (500 * 1024)}))
        await h.send(ip.Event("doc/uploaded", {"text": BIG}))  # under the ceiling: offloaded
        run = await h.settle(await h.invoke("f"))
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run.error
        (event,) = (await h.engine.store.list_events(name="doc/uploaded")).items
    assert refusals == ["stream"]
    assert payloads.ref_of(event["data"]["text"]) is not None
