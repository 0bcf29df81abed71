"""A real API server with keys for two tenants, workflows enabled, and what its HTTP nodes send.

HTTP nodes go through an httpx `MockTransport` that records each request (the listener an
attacker would run) and answers it with what it received, echoed back.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from rich.console import Console

import inferpipe as ip
from inferpipe.net.http import HttpSettings
from inferpipe.server import keys_cli
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.workflows.runtime import WorkflowRuntime
from tests.server.conftest import start_server

TENANTS = {"a": "tenant-a", "b": "tenant-b"}


@dataclass
class Listener:
    """The requests HTTP nodes sent, as the receiving server saw them."""

    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        seen = {"headers": dict(request.headers), "body": request.content.decode()}
        return httpx.Response(200, json={"echo": seen})

    def sent(self) -> str:
        """Everything the listener received, as one text."""
        return json.dumps(
            [{"headers": dict(r.headers), "body": r.content.decode()} for r in self.requests]
        )


@dataclass
class SecureServer:
    base_url: str
    keys: dict[str, str]
    listener: Listener
    db_path: Path

    def client(self, tenant: str = "a") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0)


async def resolve(host: str, port: int) -> list[str]:
    """A DNS with no network: `*.internal` names are private, every other name is public."""
    return ["10.0.0.7"] if host.endswith(".internal") else ["93.184.216.34"]


def build_app(database: str, listener: Listener) -> ip.App:
    app = ip.App("security-tests", database=database)

    @app.function(id="echo", trigger=ip.on_event("sec/echo"), retries=0)
    async def echo(ctx: ip.Context) -> object:
        return ctx.event.data

    http = HttpSettings(transport=httpx.MockTransport(listener.handle), resolver=resolve)
    WorkflowRuntime(app, retries=0, http=http)
    return app


async def _create_keys(db_path: Path) -> dict[str, str]:
    store = SQLiteStore(db_path)
    await store.open()
    quiet = Console(file=io.StringIO())
    try:
        return {
            label: await keys_cli.create_key(
                store, workspace=workspace, name=label, console=quiet, rate_limit_per_min=None
            )
            for label, workspace in TENANTS.items()
        }
    finally:
        await store.close()


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    db_path = tmp_path_factory.mktemp("security") / "api.db"
    keys = asyncio.run(_create_keys(db_path))
    listener = Listener()
    server, stop = start_server(build_app(f"sqlite:///{db_path}", listener), require_keys=True)
    try:
        yield SecureServer(f"http://127.0.0.1:{server.port}", keys, listener, db_path)
    finally:
        stop()


def graph(nodes: list[dict[str, object]], **extra: object) -> dict[str, object]:
    """A graph document `attack` with input `q`, whose output maps its last node."""
    return {
        "id": "attack",
        "name": "attack",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "nodes": nodes,
        "edges": [],
        "output": {"result": f"nodes.{nodes[-1]['id']}.output"},
        **extra,
    }
