"""A webhook receiver on loopback (a real HTTP server in a thread) that records every request
and answers from a plan: the statuses of the first requests, then 200. A 3xx answer names a
`Location` elsewhere."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ELSEWHERE = "https://elsewhere.example/hook"
"""Where a 3xx answer points."""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    plan: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            status = self.plan.pop(0) if self.plan else 200
            self.requests.append(Received(path, headers, body, status))
            return status

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.answered < 300]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.requests)


@contextmanager
def receiver(plan: list[int] | None = None, *, reply: bytes | None = None) -> Iterator[Receiver]:
    """A receiver at ``http://127.0.0.1:<free port>/hook``; `reply` replaces every answer's
    body."""
    made = Receiver("", list(plan or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = made.answer(self.path, headers, body)
            answer = reply or (b'{"ok": true}' if status < 300 else b"receiver says no")
            self.send_response(status)
            self.send_header("content-type", "application/json" if status < 300 else "text/plain")
            self.send_header("content-length", str(len(answer)))
            if 300 <= status < 400:
                self.send_header("location", ELSEWHERE)
            self.end_headers()
            with contextlib.suppress(ConnectionError):  # the sender read the head and hung up
                self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    made.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield made
    finally:
        server.shutdown()
        server.server_close()
