"""Streams in the store across real processes: a worker process publishes, this process reads.

The worker runs `python -m inferpipe worker` with INFERPIPE_STREAMS_URL=store on a SQLite file;
the test subscribes through `app.stream` on the same file. A worker killed with SIGKILL mid-step
is recovered by another one; subscribers see one ordered, duplicate-free stream that ends with
the run's final event. The step that was in flight runs again (at least once), so its tokens are
published again after a `run.resumed` event and a `step.abandoned` event naming the attempt cut
off: the raw topic (read here with `raw=True`) has no duplicate index, every recorded event once
and in order, and the final event. (The presented view, each token once, is tested through the
HTTP client in tests/server/test_stream_crash.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, cast

import inferpipe as ip
from inferpipe.engine.streaming import run_topic
from tests.streams import stream_app

APP_FILE = Path(stream_app.__file__)
WAIT_S = 60.0


@contextlib.contextmanager
def worker(database: str, hold: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process on `database`; stopped with SIGTERM unless the test killed it."""
    env = {**os.environ, "INFERPIPE_STREAMS_URL": "store", "STREAM_HOLD": str(hold)}
    argv = [sys.executable, "-m", "inferpipe", "worker", str(APP_FILE), "--database", database]
    process = subprocess.Popen(
        [*argv, "--lease-ms", "1000"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def observer(database: str) -> ip.App:
    """The test's own app on the worker's database, with streams in the store."""
    app = stream_app.app
    app.database = database
    app.streams = "store"
    return app


async def collect(app: ip.App, run_id: str, after: int | None = None) -> list[ip.StreamEvent]:
    async with asyncio.timeout(WAIT_S):
        return [event async for event in app.stream(run_id, after=after, raw=True)]


def kinds(events: list[ip.StreamEvent]) -> list[str]:
    return [_data(e)["type"] for e in events]


def tokens(events: list[ip.StreamEvent]) -> list[Any]:
    return [_data(e)["data"] for e in events if _data(e)["type"] == "token"]


def _data(event: ip.StreamEvent) -> dict[str, Any]:
    assert isinstance(event.data, dict)
    return event.data


def assert_one_stream(events: list[ip.StreamEvent]) -> None:
    """Indices 1..n, each once, in order, ending with the run's (only) final event."""
    assert [e.index for e in events] == list(range(1, len(events) + 1))
    assert [e.final for e in events] == [False] * (len(events) - 1) + [True]
    assert _data(events[-1])["status"] == "completed"


async def test_a_worker_process_streams_to_a_subscriber_here(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'streams.db'}"
    async with observer(database) as app:
        run_id = await app.invoke("talk")
        follower = asyncio.create_task(collect(app, run_id))  # waits before the worker runs
        with worker(database, tmp_path / "no-hold"):
            events = await follower
    assert_one_stream(events)
    assert kinds(events)[0] == "run.started"
    assert tokens(events) == [f"tok{n}" for n in range(stream_app.TOKENS)]
    assert kinds(events).count("step.completed") == 2
    async with observer(database) as app:
        assert await collect(app, run_id) == events  # the history, read again, is the same
        assert await collect(app, run_id, after=3) == events[3:]


async def test_stream_survives_a_killed_worker_for_staying_and_reconnecting_clients(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'streams.db'}"
    hold = tmp_path / "hold"
    hold.touch()
    async with observer(database) as app:
        run_id = await app.invoke("talk")
        staying = asyncio.create_task(collect(app, run_id))
        with worker(database, hold) as first:
            seen = await read_until_tokens(app, run_id, 2)  # then the client goes away
            await wait_for_tokens(app, run_id, stream_app.TOKENS)
            first.send_signal(signal.SIGKILL)
            first.wait()
        hold.unlink()
        with worker(database, hold):
            rest = await collect(app, run_id, after=seen[-1].index)  # reconnect: last id seen
            everything = await staying
        history = await app.engine.pubsub.get_history(run_topic(run_id))  # type: ignore[union-attr]
        run = await app.get_run(run_id)

    assert run.status is ip.RunStatus.COMPLETED and run.output == ["ready", "spoken"]
    assert_one_stream(everything)
    assert seen + rest == everything == history
    # The step in flight at the crash ran again after the recovery, and said so.
    spoken = [f"tok{n}" for n in range(stream_app.TOKENS)]
    assert tokens(everything) == spoken + spoken
    resumed = kinds(everything).index("run.resumed")
    assert tokens(everything[:resumed]) == spoken and tokens(everything[resumed:]) == spoken
    assert _data(everything[resumed])["execution"] == 2
    # ...and the second execution first named the attempt the first one left unfinished.
    notice = everything[resumed + 1]
    first = [e for e in everything[:resumed] if _data(e)["type"] == "token"]
    assert _data(notice) == {
        "type": "step.abandoned",
        "execution": 2,
        "reason": "interrupted",
        "abandoned": {"step": "speak", "attempt": 0, "execution": 1},
        "published": {
            "first_index": first[0].index,
            "last_index": first[-1].index,
            "events": stream_app.TOKENS,
        },
    }


async def read_until_tokens(app: ip.App, run_id: str, count: int) -> list[ip.StreamEvent]:
    """Follow the stream until `count` tokens arrived, then disconnect."""
    seen: list[ip.StreamEvent] = []
    async with asyncio.timeout(WAIT_S):
        async with contextlib.aclosing(follow(app, run_id)) as stream:
            async for event in stream:
                seen.append(event)
                if len(tokens(seen)) == count:
                    break
    return seen


def follow(app: ip.App, run_id: str) -> AsyncGenerator[ip.StreamEvent, None]:
    """`app.stream`, typed as the generator it is, to close it when leaving early."""
    return cast(AsyncGenerator[ip.StreamEvent, None], app.stream(run_id, raw=True))


async def wait_for_tokens(app: ip.App, run_id: str, count: int) -> None:
    """Until the run's stream holds `count` tokens (the worker is then holding its step)."""
    async with asyncio.timeout(WAIT_S):
        async with contextlib.aclosing(follow(app, run_id)) as stream:
            seen: list[ip.StreamEvent] = []
            async for event in stream:
                seen.append(event)
                if len(tokens(seen)) == count:
                    return
