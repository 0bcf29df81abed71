"""Fixtures of the store tests: a real PostgreSQL server and one store per backend."""

from __future__ import annotations

import atexit
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from inferpipe.store.base import Store
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore
from tests.servers import ServerStartError, start_postgres


@dataclass
class PostgresServer:
    """A running test cluster: its URL, and a crash-like restart (after an outage of the
    given seconds, 0 by default)."""

    url: str
    restart: Callable[..., None]

    async def new_database(self) -> str:
        """A fresh empty database on this server; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        return self.url.rsplit("/", 1)[0] + f"/{name}"


def launch_postgres() -> tuple[PostgresServer, Callable[[], None]]:
    folder = Path(tempfile.mkdtemp(prefix="inferpipe-pg-"))
    try:
        url, stop, restart = start_postgres(folder)
    except ServerStartError as exc:
        pytest.fail(str(exc))
    atexit.register(stop)  # idempotent; a safety net if the session ends abruptly
    return PostgresServer(url, restart), stop


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A server of the requesting module's own (module scope: one per module), for tests that
    crash or restart it: that must not cut other tests' connections."""
    made, stop = launch_postgres()
    try:
        yield made
    finally:
        stop()


_session_server: PostgresServer | None = None


def session_postgres() -> PostgresServer:
    """The server of the test session, started on first use: shared by the suites that use it
    (store, flow), stopped when the session ends (`launch_postgres` registers the stop)."""
    global _session_server  # one server per test process
    if _session_server is None:
        _session_server, _ = launch_postgres()
    return _session_server


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    return session_postgres()


def unique_workspace() -> str:
    """Tests on PostgreSQL share one database; a workspace of their own keeps them apart."""
    return f"ws-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open store of each backend, empty as far as the test can see."""
    made: Store
    if request.param == "sqlite":
        made = SQLiteStore(tmp_path / "store.db", unique_workspace())
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        made = PostgresStore(server.url, unique_workspace())
    await made.open()
    try:
        yield made
    finally:
        await made.close()
