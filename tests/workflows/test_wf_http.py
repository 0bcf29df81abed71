"""HTTP nodes against a real loopback server: the network policy, secrets, retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

import inferpipe as ip
from inferpipe.net.egress import EgressPolicy
from inferpipe.testing import Harness
from inferpipe.workflows import HttpSettings, MappingSecrets
from tests.workflows import wf_build as b
from tests.workflows.wf_run import run_graph, runtime, steps_by_key

TOKEN = "s3cr3t-token-value"
OPERATOR_ALLOWS = EgressPolicy(allow_private=True)
"""These tests call a listener on loopback: the operator's policy must allow it."""


class _Handler(BaseHTTPRequestHandler):
    failures_left: dict[str, int] = {}

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        left = self.failures_left.get(self.path, 0)
        if left:
            self.failures_left[self.path] = left - 1
            self._reply(503, {"error": "try again"})
            return
        auth = self.headers.get("authorization")
        self._reply(200, {"path": self.path, "body": body, "auth": auth})

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def http_graph(url: str, *, allow_private: bool) -> dict[str, Any]:
    node = {
        "id": "call",
        "type": "http",
        "method": "POST",
        "url": url + "/tickets/{{ input.q }}",
        "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"},
        "body": {"ticket": "{{ input.q }}"},
        "allow_private": allow_private,
    }
    return b.document([node], output={"response": "nodes.call.output.body"})


async def test_loopback_call_works_when_allowed(server_url: str) -> None:
    app, rt = runtime(secrets=MappingSecrets({"API_TOKEN": TOKEN}), egress=OPERATOR_ALLOWS)
    async with Harness(app) as h:
        run = await run_graph(h, rt, http_graph(server_url, allow_private=True), {"q": "t1"})
        step = (await steps_by_key(h, run.id))["node-call-http"]
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert run.output == {
        "response": {"path": "/tickets/t1", "body": {"ticket": "t1"}, "auth": "Bearer [secret]"}
    }
    assert step.output["status"] == 200
    assert step.input["url"] == server_url + "/tickets/t1"
    assert TOKEN not in json.dumps([step.input, step.output, step.meta])


async def test_loopback_call_is_refused_without_allow_private(server_url: str) -> None:
    app, rt = runtime(secrets=MappingSecrets({"API_TOKEN": TOKEN}), egress=OPERATOR_ALLOWS)
    # The URL's host comes from the input, so only the run-time check can refuse it.
    document = http_graph("{{ input.base }}", allow_private=False)
    document["input_schema"]["properties"]["base"] = {"type": "string"}
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "t1", "base": server_url})
        step = (await steps_by_key(h, run.id))["node-call-http"]
    assert run.status is ip.RunStatus.FAILED
    assert step.error is not None and step.error["code"] == "url_refused"
    assert "127.0.0.1 is a loopback address" in step.error["message"]
    assert step.attempt == 0, "a refusal is not retried"
    assert run.error is not None and "node 'call'" in run.error["message"]


async def test_server_errors_are_retried(server_url: str) -> None:
    _Handler.failures_left["/tickets/flaky"] = 2
    app, rt = runtime(
        secrets=MappingSecrets({"API_TOKEN": TOKEN}), retries=3, egress=OPERATOR_ALLOWS
    )
    async with Harness(app) as h:
        run = await run_graph(h, rt, http_graph(server_url, allow_private=True), {"q": "flaky"})
        step = (await steps_by_key(h, run.id))["node-call-http"]
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert step.attempt == 2
    assert [a["code"] for a in step.meta["attempts"]] == ["http_status", "http_status"]


async def test_a_missing_secret_fails_the_node_at_once(server_url: str) -> None:
    app, rt = runtime(secrets=MappingSecrets({}), egress=OPERATOR_ALLOWS)
    async with Harness(app) as h:
        run = await run_graph(h, rt, http_graph(server_url, allow_private=True), {"q": "t"})
        step = (await steps_by_key(h, run.id))["node-call-http"]
    assert run.status is ip.RunStatus.FAILED
    assert step.error is not None and step.error["code"] == "secret_missing"


async def test_requests_go_to_the_checked_address_with_the_original_host() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    http = HttpSettings(transport=httpx.MockTransport(handler), resolver=resolver)
    app, rt = runtime(secrets=MappingSecrets({"API_TOKEN": TOKEN}), http=http)
    document = http_graph("https://api.example.com", allow_private=False)
    async with Harness(app) as h:
        run = await run_graph(h, rt, document, {"q": "t9"})
    assert run.status is ip.RunStatus.COMPLETED, run.error
    assert seen[0].url.host == "93.184.215.14"
    assert seen[0].headers["host"] == "api.example.com"
    assert seen[0].extensions["sni_hostname"] == "api.example.com"
