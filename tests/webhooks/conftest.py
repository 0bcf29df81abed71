"""A real API server on loopback for the webhook tests, with workers, keys in two workspaces."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from rich.console import Console

import inferpipe as ip
from inferpipe.server import keys_cli
from inferpipe.server.runner import ApiServer
from inferpipe.store.sqlite import SQLiteStore
from tests.server.conftest import start_server

KEYS = {
    "a": ("ws-a", "admin"),
    "a_read": ("ws-a", "read"),
    "b": ("ws-b", "admin"),
}


@dataclass
class Live:
    base_url: str
    keys: dict[str, str]
    db_path: Path
    server: ApiServer | None = None

    def workspaces_served(self) -> set[str]:
        assert self.server is not None
        found = self.server.api.state.services.workspaces.engines()
        return {engine.store.workspace for engine in found}

    def client(self, key: str | None = "a") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10.0)


async def create_keys(db_path: Path) -> dict[str, str]:
    store = SQLiteStore(db_path)
    await store.open()
    quiet = Console(file=io.StringIO())
    try:
        return {
            label: await keys_cli.create_key(
                store,
                workspace=workspace,
                name=label,
                role=role,
                rate_limit_per_min=None,
                console=quiet,
            )
            for label, (workspace, role) in KEYS.items()
        }
    finally:
        await store.close()


def incoming_app(database: str) -> ip.App:
    app = ip.App("webhook-tests", database=database)

    @app.function(id="on-ticket", trigger=ip.on_event("helpdesk/ticket.created"), retries=0)
    async def on_ticket(ctx: ip.Context) -> object:
        return ctx.event.data

    return app


@contextlib.contextmanager
def serving(
    tmp_path_factory: pytest.TempPathFactory, make_app: Callable[[str], ip.App]
) -> Iterator[Live]:
    """An API server with keys on a new SQLite file, over the app `make_app(database)`."""
    db_path = tmp_path_factory.mktemp("webhooks") / "api.db"
    keys = asyncio.run(create_keys(db_path))
    server, stop = start_server(make_app(f"sqlite:///{db_path}"), require_keys=True)
    try:
        yield Live(f"http://127.0.0.1:{server.port}", keys, db_path, server)
    finally:
        stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serving(tmp_path_factory, incoming_app) as served:
        yield served
