"""`Client.stream` / `AsyncClient.stream` against a real server, through a proxy that cuts the
connection mid-stream: the client resumes from the last id it saw, by itself, and yields every
event once, in order, until the run's final event.

The server keeps its run streams in its SQLite store (`streams="store"`).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import inferpipe as ip
from inferpipe.client import (
    ApiConnectionError,
    AsyncClient,
    Client,
    InvalidRequestError,
    NotFoundError,
)
from inferpipe.streams.pubsub import StreamEvent
from tests.server.conftest import start_server
from tests.servers import free_port

TOKENS_BEFORE, TOKENS_AFTER = 5, 3
#: The blank line that ends an SSE message.
EVENT_END = re.compile(rb"\r?\n\r?\n")


def chat_app(database: str) -> ip.App:
    app = ip.App("client-stream", database=database, streams="store")

    @app.function(id="chatter", trigger=ip.on_event("test/chat"), retries=0)
    async def chatter(ctx: ip.Context) -> str:
        for n in range(TOKENS_BEFORE):
            await ctx.stream.publish(f"t{n}", kind="token")
        await ctx.step.wait_for_event("go", event="test/go", timeout="1d")
        for n in range(TOKENS_BEFORE, TOKENS_BEFORE + TOKENS_AFTER):
            await ctx.stream.publish(f"t{n}", kind="token")
        return "done"

    return app


@dataclass
class StreamServer:
    url: str
    port: int


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamServer]:
    database = f"sqlite:///{tmp_path_factory.mktemp('client-stream') / 'api.db'}"
    api, stop = start_server(chat_app(database), require_keys=False)
    try:
        yield StreamServer(f"http://127.0.0.1:{api.port}", api.port)
    finally:
        stop()


class CuttingProxy:
    """A TCP proxy to the server. Connection n is cut (closed mid-response) once `cuts[n]`
    SSE `id:` lines went through it; later connections pass untouched. Records each request's
    Last-Event-ID header."""

    def __init__(self, upstream_port: int, cuts: list[int]) -> None:
        self._upstream_port = upstream_port
        self._cuts = cuts
        self.last_event_ids: list[str | None] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                number = len(self.last_event_ids)
                self.last_event_ids.append(None)
                cut = self._cuts[number] if number < len(self._cuts) else None
                threading.Thread(
                    target=self._serve, args=(client, number, cut), daemon=True
                ).start()

    def _serve(self, client: socket.socket, number: int, cut: int | None) -> None:
        upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
        threading.Thread(
            target=self._requests, args=(client, upstream, number), daemon=True
        ).start()
        ids = 0
        with contextlib.suppress(OSError), client, upstream:
            while chunk := upstream.recv(65536):
                end = None
                for found in re.finditer(rb"(?m)^id: ", chunk):
                    ids += 1
                    if ids == cut:
                        end = EVENT_END.search(chunk, found.end())
                        break
                if end is None:
                    client.sendall(chunk)
                    continue
                client.sendall(chunk[: end.end()])  # up to the end of event number `cut`
                break  # the response ends mid-body
            # shutdown, not only close: the other direction's thread still holds the sockets
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _requests(self, client: socket.socket, upstream: socket.socket, number: int) -> None:
        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                found = re.search(rb"(?im)^last-event-id:\s*(\d+)", chunk)
                if found:
                    self.last_event_ids[number] = found.group(1).decode()
                upstream.sendall(chunk)


MakeProxy = Callable[[list[int]], CuttingProxy]


@pytest.fixture
def proxy_factory(server: StreamServer) -> Iterator[MakeProxy]:
    made: list[CuttingProxy] = []

    def make(cuts: list[int]) -> CuttingProxy:
        made.append(CuttingProxy(server.port, cuts))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def kinds(events: list[StreamEvent]) -> list[str]:
    return [str(e.data["type"]) for e in events if isinstance(e.data, dict)]


def tokens(events: list[StreamEvent]) -> list[object]:
    return [
        e.data["data"] for e in events if isinstance(e.data, dict) and e.data["type"] == "token"
    ]


def assert_complete(events: list[StreamEvent], first: int = 1) -> None:
    assert [e.index for e in events] == list(range(first, first + len(events)))
    assert [e.final for e in events] == [False] * (len(events) - 1) + [True]
    assert events[-1].topic.startswith("run:")


def test_sync_client_resumes_a_live_stream_after_dropped_connections(
    server: StreamServer, proxy_factory: MakeProxy
) -> None:
    proxy = proxy_factory([2, 4])  # cut after events 2, then 6; the third connection stays
    with Client(server.url) as direct, Client(proxy.url) as client:
        run_id = direct.send({"name": "test/chat"}).runs_created[0]
        direct.wait_for_run(run_id, statuses=["waiting"], timeout_s=10)
        received: list[StreamEvent] = []
        for event in client.stream(run_id):
            received.append(event)
            if kinds(received)[-1] == "run.waiting":
                direct.send({"name": "test/go"})  # the rest is published while we listen
        replayed = list(direct.stream(run_id))
    assert_complete(received)
    assert tokens(received) == [f"t{n}" for n in range(TOKENS_BEFORE + TOKENS_AFTER)]
    assert received[-1].data["status"] == "completed"  # type: ignore[call-overload, index]
    assert proxy.last_event_ids == [None, "2", "6"]
    assert received == replayed


async def test_async_client_resumes_from_its_cursor(
    server: StreamServer, proxy_factory: MakeProxy
) -> None:
    async with AsyncClient(server.url) as direct:
        run_id = (await direct.send({"name": "test/chat"})).runs_created[0]
        await direct.wait_for_run(run_id, statuses=["waiting"], timeout_s=10)
        await direct.send({"name": "test/go"})
        await direct.wait_for_run(run_id, timeout_s=10)
        everything = [event async for event in direct.stream(run_id)]
    proxy = proxy_factory([3])
    async with AsyncClient(proxy.url) as client:
        rest = [event async for event in client.stream(run_id, after=1)]
    assert_complete(everything)
    assert rest == everything[1:]
    assert proxy.last_event_ids == ["1", "4"]


def test_stream_errors_are_clear(server: StreamServer) -> None:
    with Client(server.url) as client:
        with pytest.raises(NotFoundError) as missing:
            next(client.stream("no-such-run"))
        assert missing.value.code == "run_not_found"
        run_id = client.send({"name": "test/chat"}).runs_created[0]
        with pytest.raises(InvalidRequestError) as ahead:
            next(client.stream(run_id, after=10_000))
        assert ahead.value.code == "cursor_ahead"
        with pytest.raises(ValueError, match="after"):
            next(client.stream(run_id, after=-1))
        client.send({"name": "test/go"})


def test_stream_gives_up_on_an_unreachable_server() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}") as client,
        pytest.raises(ApiConnectionError) as lost,
    ):
        next(client.stream("run", retry_for_s=0.2))
    assert lost.value.code == "stream_lost"
