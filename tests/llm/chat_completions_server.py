"""A real HTTP server on loopback that speaks OpenAI's chat-completions protocol.

The requested model selects the behaviour (see `ChatCompletionsServer.handle`), so one server
serves every test. Streaming uses HTTP/1.1 chunked transfer with SSE `data:` lines, like OpenAI.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "sk-test-0123456789abcdefSECRET"

REPLY_TEXT = "Hello from the test server, nice to meet you."
REPORTED_MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 9,
    "total_tokens": 129,
    "prompt_tokens_details": {"cached_tokens": 100},
}
TOOL_CALLS = [
    {"id": "call_weather", "name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'},
    {"id": "call_lookup", "name": "lookup_order", "arguments": '{"order_id": 42}'},
]


class ChatCompletionsServer:
    """The server, its address, and what it received."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        #: Set to let a "slow" request finish.
        self.release = threading.Event()
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    owner: ChatCompletionsServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # header and body go in separate writes

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on what the server recorded instead."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.owner.requests.append(
            {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
        )
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        given = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if given != API_KEY:
            # Worst case on purpose: the provider echoes the whole key it refused.
            message = f"Incorrect API key provided: {given}."
            self._json(401, {"error": {"message": message, "code": "invalid_api_key"}})
            return
        self._dispatch(body)

    def _dispatch(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        stream = bool(body.get("stream"))
        errors: dict[str, tuple[int, dict[str, str], str | None]] = {
            "rate-limited": (429, {"Retry-After": "7"}, "rate_limit_exceeded"),
            "rate-limited-ms": (429, {"retry-after-ms": "1500"}, "rate_limit_exceeded"),
            "quota": (429, {}, "insufficient_quota"),
            "overloaded": (503, {"Retry-After": "3"}, None),
            "crash": (500, {}, None),
            "bad-request": (400, {}, "invalid_value"),
        }
        if model in errors:
            status, headers, code = errors[model]
            self._json(status, {"error": {"message": f"{model} says no", "code": code}}, headers)
        elif model == "slow":
            self.owner.release.wait(timeout=10)
            self._json(200, _completion(model, REPLY_TEXT, []))
        elif model == "slow-stream":
            self._stream_chunks([_chunk(model, {"role": "assistant", "content": "Hel"})], hang=True)
        elif model == "stream-error":
            first = _chunk(model, {"role": "assistant", "content": "Hel"})
            self._stream_chunks([first, {"error": {"message": "backend exploded"}}])
        elif model in ("gpt-4o-mini", "tool-caller", "no-usage"):
            tool_calls = TOOL_CALLS if model == "tool-caller" else []
            text = None if tool_calls else REPLY_TEXT
            if stream:
                include_usage = (body.get("stream_options") or {}).get("include_usage", False)
                chunks = _stream_of(model, text, tool_calls, include_usage and model != "no-usage")
                self._stream_chunks(chunks)
            else:
                self._json(200, _completion(model, text, tool_calls, model != "no-usage"))
        else:
            message = f"The model `{model}` does not exist or you do not have access to it."
            self._json(404, {"error": {"message": message, "code": "model_not_found"}})

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._write(data)

    def _stream_chunks(self, chunks: list[dict[str, Any]], *, hang: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            self._send_chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        if hang:
            self.owner.release.wait(timeout=10)
        self._send_chunk(b"data: [DONE]\n\n")
        self._write(b"0\r\n\r\n")

    def _send_chunk(self, data: bytes) -> None:
        self._write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing left to do


def _completion(
    model: str, text: str | None, tool_calls: list[dict[str, str]], usage: bool = True
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in tool_calls
        ]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": REPORTED_MODEL if model == "gpt-4o-mini" else model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        **({"usage": USAGE} if usage else {}),
    }


def _chunk(
    model: str, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": REPORTED_MODEL if model == "gpt-4o-mini" else model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        **extra,
    }


def _stream_of(
    model: str, text: str | None, tool_calls: list[dict[str, str]], include_usage: bool
) -> list[dict[str, Any]]:
    chunks = [_chunk(model, {"role": "assistant", "content": "" if text else None})]
    for position, word in enumerate(text.split(" ") if text else []):
        chunks.append(_chunk(model, {"content": word if position == 0 else " " + word}))
    for index, call in enumerate(tool_calls):
        head = {"index": index, "id": call["id"], "type": "function"}
        chunks.append(_chunk(model, {"tool_calls": [{**head, "function": {"name": call["name"]}}]}))
        args = call["arguments"]
        for start in range(0, len(args), 7):
            fragment = {"index": index, "function": {"arguments": args[start : start + 7]}}
            if index == 1:
                fragment["id"] = call["id"]  # some servers repeat the id in every delta
            chunks.append(_chunk(model, {"tool_calls": [fragment]}))
    chunks.append(_chunk(model, {}, "tool_calls" if tool_calls else "stop"))
    if include_usage:
        usage_chunk = _chunk(model, {}, usage=USAGE)
        usage_chunk["choices"] = []
        chunks.append(usage_chunk)
    return chunks
