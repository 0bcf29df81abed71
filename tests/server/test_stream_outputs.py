"""Over HTTP: a 3 MB step output reaches stream clients as a reference they resolve through the
API (never dropped), `?attempts=final` presents the final attempt once, and a stored event the
backend cannot read ends the client's stream with a clear error, not a reconnect loop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

import inferpipe as ip
from inferpipe.client import ApiError, Client, NotFoundError
from inferpipe.core import run_stream
from inferpipe.engine.streaming import run_topic
from inferpipe.streams.redis import RedisPubSub
from tests.server.conftest import start_server
from tests.servers import start_redis

BIG_TEXT = "x" * (3 * 1024 * 1024)
TOKENS = ("one", "two", "three")


def outputs_app(database: str) -> ip.App:
    app = ip.App("stream-outputs", database=database, streams="store")

    @app.function(id="big-output")
    async def big_output(ctx: ip.Context) -> int:
        text = await ctx.step.run("draft", lambda: {"text": BIG_TEXT})
        return len(text["text"])

    @app.function(id="flaky", retries=1, backoff=ip.Backoff(base_s=0.01, jitter=0))
    async def flaky(ctx: ip.Context) -> str:
        async def write() -> str:
            for n, token in enumerate(TOKENS):
                if n == 2 and ctx.attempt == 0:
                    raise RuntimeError("dropped")
                await ctx.stream.publish(token, kind="token")
            return "ok"

        return str(await ctx.step.run("write", write))

    return app


@dataclass
class Server:
    url: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = f"sqlite:///{tmp_path_factory.mktemp('outputs') / 'api.db'}"
    api, stop = start_server(outputs_app(database), require_keys=False)
    try:
        yield Server(f"http://127.0.0.1:{api.port}")
    finally:
        stop()


def finished_run(client: Client, function_id: str) -> str:
    run_id = client.invoke(function_id)
    run = client.wait_for_run(run_id, timeout_s=30)
    assert run.status is ip.RunStatus.COMPLETED, run
    return run_id


def test_a_3_mb_step_output_is_referenced_on_the_stream(server: Server) -> None:
    with Client(server.url) as client:
        run_id = finished_run(client, "big-output")
        events = list(client.stream(run_id))
        completed = [e.data for e in events if e.data["type"] == "step.completed"]
        assert len(completed) == 1, "the step's event is on the stream, not dropped"
        ref = completed[0]["output_ref"]
        assert completed[0]["output"] is None
        assert ref["run_id"] == run_id and ref["step"] == "draft"
        assert ref["size_bytes"] > 3 * 1024 * 1024 and ref["preview"].startswith('{"text":"xxx')
        assert events[-1].final and events[-1].data["output"] == len(BIG_TEXT)
        step = client.step(run_id, ref["step"])
        assert step.output == {"text": BIG_TEXT} and not step.output_truncated
        with pytest.raises(NotFoundError) as missing:
            client.step(run_id, "no-such-step")
        assert missing.value.code == "step_not_found"


def test_sse_presents_the_final_attempt_once_as_an_option(server: Server) -> None:
    with Client(server.url) as client:
        run_id = finished_run(client, "flaky")
        final = list(client.stream(run_id))
        everything = list(client.stream(run_id, attempts="all"))
    assert [e.data["data"] for e in final if e.data["type"] == "token"] == list(TOKENS)
    assert [e.data["data"] for e in everything if e.data["type"] == "token"] == [
        "one",
        "two",
        *TOKENS,
    ]
    assert run_stream.ABANDONED in [e.data["type"] for e in everything]
    with httpx.Client(base_url=server.url) as http:
        body = http.get(f"/v1/runs/{run_id}/stream", params={"attempts": "final"}).text
        messages = [orjson.loads(line[5:]) for line in body.splitlines() if line[:5] == "data:"]
        omitted = sum(m.get("omitted", 0) for m in messages if "index" in m)
        assert omitted == len(everything) - len(final) == 3  # two tokens and the notice
        refused = http.get(f"/v1/runs/{run_id}/stream", params={"attempts": "some"})
        assert refused.status_code == 422


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        stop()


async def test_an_unreadable_event_ends_the_client_stream_with_its_code(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> None:
    database = f"sqlite:///{tmp_path_factory.mktemp('corrupt') / 'api.db'}"
    app = ip.App("corrupt", database=database, streams=redis_url)

    @app.function(id="quick")
    async def quick(ctx: ip.Context) -> str:
        return "done"

    api, stop = start_server(app, require_keys=False)
    try:
        with Client(f"http://127.0.0.1:{api.port}") as client:
            run_id = finished_run(client, "quick")
            await corrupt_first_event(redis_url, run_topic(run_id))
            for attempts in ("final", "all"):
                with pytest.raises(ApiError) as failed:
                    list(client.stream(run_id, attempts=attempts, retry_for_s=5))
                assert failed.value.code == "corrupt_event"
    finally:
        stop()


async def corrupt_first_event(redis_url: str, topic: str) -> None:
    client: Any = Redis.from_url(redis_url)
    try:
        stream_key, _ = RedisPubSub(client).cache.keys(topic)
        entries = await client.xrange(stream_key)
        await client.delete(stream_key)  # entries are immutable: write the stream again
        for n, (entry_id, fields) in enumerate(entries):
            await client.xadd(
                stream_key, {**fields, b"d": b"{oops"} if n == 0 else fields, id=entry_id
            )
    finally:
        await client.aclose()
