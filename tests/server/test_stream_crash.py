"""A split deployment with no streams setting, as a new user runs it: `inferpipe serve
--no-worker` and `inferpipe worker` processes on one database (a SQLite file, or PostgreSQL),
nothing about streams in the environment. The API relays the workers' tokens (the default is the store), in-memory streams
are refused at start-up, and a worker SIGKILLed mid-stream costs clients nothing: through the
Python client and over raw SSE, each token is presented once.

Set INFERPIPE_CRASH_LOOPS to run the crash case that many times in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from rich.console import Console

import inferpipe as ip
from inferpipe.app import shared_streams
from inferpipe.client import Client
from inferpipe.core import run_stream
from inferpipe.core.errors import ConfigurationError
from inferpipe.server import keys_cli
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.streams.memory import MemoryPubSub
from tests.servers import free_port
from tests.store.conftest import session_postgres
from tests.streams import stream_app

APP_FILE = Path(stream_app.__file__)
SPOKEN = [f"tok{n}" for n in range(stream_app.TOKENS)]
LOOPS = int(os.environ.get("INFERPIPE_CRASH_LOOPS", "1"))
WAIT_S = 60.0


def environment(hold: Path) -> dict[str, str]:
    """The test's environment without any streams or database setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERPIPE_")}
    return {**env, "STREAM_HOLD": str(hold)}


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m inferpipe ...`; stopped with SIGTERM at the end unless the test killed it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "inferpipe", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def worker(database: str, env: dict[str, str]) -> contextlib.AbstractContextManager[Any]:
    argv = ["worker", str(APP_FILE), "--database", database, "--lease-ms", "1000"]
    return process(argv, env)


@contextlib.contextmanager
def api(database: str, env: dict[str, str]) -> Iterator[str]:
    """`inferpipe serve --no-worker` on a free port; yields its URL once it answers."""
    port = free_port()
    argv = ["serve", str(APP_FILE), "--no-worker", "--port", str(port), "--database", database]
    with process(argv, env) as proc:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT_S
        while not _answers(url):  # start-up polling, not test synchronization
            assert proc.poll() is None, "the API process exited"
            assert time.monotonic() < deadline, "the API did not start in time"
            time.sleep(0.05)
        yield url


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def deployment_database(kind: str, tmp_path: Path) -> tuple[str, str]:
    """A fresh database of `kind` (`sqlite`: a file; `postgres`: a database on the session's
    server) with an API key in it; returns its URL and the key."""

    async def create() -> tuple[str, str]:
        if kind == "sqlite":
            url, store = f"sqlite:///{tmp_path / 'app.db'}", SQLiteStore(tmp_path / "app.db")
        else:
            url = await session_postgres().new_database()
            store = PostgresStore(url)
        await store.open()
        try:
            quiet = Console(file=io.StringIO())
            key = await keys_cli.create_key(store, workspace="default", name="t", console=quiet)
        finally:
            await store.close()
        return url, key

    return asyncio.run(create())


def tokens(events: list[ip.StreamEvent]) -> list[Any]:
    return [
        e.data["data"] for e in events if isinstance(e.data, dict) and e.data["type"] == "token"
    ]


def presented(events: list[ip.StreamEvent]) -> list[Any]:
    """What a client shows once it honours `step.abandoned`: the tokens of every attempt it
    received, minus those of the attempts taken back."""
    shown: list[tuple[run_stream.AttemptId | None, Any]] = []
    for event in events:
        notice = run_stream.abandoned_attempt(event.data)
        if notice is not None:
            shown = [(a, t) for a, t in shown if a != notice[0]]
        elif isinstance(event.data, dict) and event.data["type"] == "token":
            shown.append((run_stream.output_attempt(event.data), event.data["data"]))
    return [t for _, t in shown]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_split_deployment_streams_with_no_setting(tmp_path: Path, kind: str) -> None:
    database, key = deployment_database(kind, tmp_path)
    env = environment(tmp_path / "no-hold")
    with api(database, env) as url, worker(database, env), Client(url, api_key=key) as client:
        run_id = client.invoke("talk")
        events = list(client.stream(run_id))
    assert tokens(events) == SPOKEN
    assert events[-1].final and events[-1].data["status"] == "completed"  # type: ignore[index]
    assert [e.index for e in events] == list(range(1, len(events) + 1))


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_in_memory_streams_are_refused_where_processes_are_split(
    tmp_path: Path, command: str
) -> None:
    env = {**environment(tmp_path / "no-hold"), "INFERPIPE_STREAMS_URL": "memory://"}
    database = f"sqlite:///{tmp_path / 'refused.db'}"
    argv = [command, str(APP_FILE), "--database", database]
    if command == "serve":
        argv += ["--no-worker", "--port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-m", "inferpipe", *argv],
        env=env,
        capture_output=True,
        timeout=WAIT_S,
        check=False,
    )
    assert done.returncode == 2
    message = done.stderr.decode()
    assert "memory" in message and "streams='store'" in message, message


@pytest.mark.parametrize("loop", range(LOOPS))
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sigkill_mid_stream_presents_each_token_once(tmp_path: Path, kind: str, loop: int) -> None:
    database, key = deployment_database(kind, tmp_path)
    hold = tmp_path / "hold"
    hold.touch()
    env = environment(hold)
    with api(database, env) as url, Client(url, api_key=key) as client:
        run_id = client.invoke("talk")
        live: list[ip.StreamEvent] = []
        follower = threading.Thread(target=lambda: live.extend(client.stream(run_id)))
        with worker(database, env) as first:
            follower.start()  # follows from the start, through the crash, to the end
            first_tokens = read_tokens(client, run_id, len(SPOKEN))
            first.send_signal(signal.SIGKILL)  # the step is in flight: its output unrecorded
            first.wait()
        hold.unlink()
        with worker(database, env):
            resumed = list(client.stream(run_id, after=first_tokens[1].index))
            follower.join(WAIT_S)
            assert not follower.is_alive(), "the live client did not reach the end"
            after = list(client.stream(run_id))  # a client that joins after the crash
            everything = list(client.stream(run_id, attempts="all"))
            sse = sse_tokens(url, key, run_id)
        run = client.get_run(run_id)

    assert run.status is ip.RunStatus.COMPLETED
    assert tokens(everything) == SPOKEN + SPOKEN  # the raw topic holds both executions
    # Joined after the crash: each token once, nothing to take back.
    assert tokens(after) == SPOKEN
    assert run_stream.ABANDONED not in [e.data["type"] for e in after]  # type: ignore[index]
    assert sse == SPOKEN
    # Watching through the crash: the first execution's tokens, then the notice taking them
    # back, then the second execution's - each token once as presented.
    assert tokens(live) == SPOKEN + SPOKEN and presented(live) == SPOKEN
    # Reconnected after two tokens: the rest of the first execution's are never sent if the
    # notice was out by then, and the notice comes either way.
    assert presented(first_tokens[:2] + resumed) == SPOKEN
    assert [e.index for e in resumed] == sorted({e.index for e in resumed})


def read_tokens(client: Client, run_id: str, count: int) -> list[ip.StreamEvent]:
    """Follow the stream until `count` tokens arrived; returns the token events."""
    found: list[ip.StreamEvent] = []
    for event in client.stream(run_id):
        if tokens([event]):
            found.append(event)
        if len(found) == count:
            break
    return found


def sse_tokens(url: str, key: str, run_id: str) -> list[Any]:
    """The tokens of `GET /v1/runs/{id}/stream?attempts=final`, read as plain SSE."""
    headers = {"Authorization": f"Bearer {key}"}
    params = {"attempts": "final"}
    body = httpx.get(f"{url}/v1/runs/{run_id}/stream", params=params, headers=headers).text
    messages = [orjson.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]
    return [
        m["data"]["data"] for m in messages if "index" in m and m["data"].get("type") == "token"
    ]


def test_the_shared_streams_rule(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.delenv("INFERPIPE_STREAMS_URL", raising=False)
    unset = ip.App("a")
    assert "in the store" in shared_streams(unset, "a worker") and unset.streams == "store"
    with pytest.raises(ConfigurationError, match="other processes"):
        shared_streams(ip.App("b", streams="memory://"), "a worker")
    with pytest.raises(ConfigurationError):
        shared_streams(ip.App("c", streams=MemoryPubSub()), "a worker")
    assert "memory" in shared_streams(ip.App("d", streams="memory://"), "serve", alone_ok=True)
    assert "only worker" in caplog.text
    monkeypatch.setenv("INFERPIPE_STREAMS_URL", "redis://:secret@cache:6379/0")
    banner = shared_streams(ip.App("e"), "a worker")
    assert banner == "streams: cache:6379/0"  # the setting wins; no credentials shown
