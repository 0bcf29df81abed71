"""Fixtures of the flow control tests: each behaviour runs on the SQLite store and on the
PostgreSQL store (one server for the session, a workspace of its own per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.store.base import Store
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.testing import Harness
from tests.store.conftest import PostgresServer, session_postgres, unique_workspace
from tests.store.pg_harness import PostgresHarness

BACKENDS = ["sqlite", "postgres"]

HarnessFactory = Callable[[ip.App], Harness]
"""Builds a `Harness` for an app on the test's backend."""


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    return session_postgres()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class StoreMaker:
    """Opens stores on one database of the test's backend; each store is what another process
    (or the same one after a restart) would open. Closes them all at the end of the test."""

    backend: str
    path: Path
    url: str | None = None
    workspace: str = field(default_factory=unique_workspace)
    opened: list[Store] = field(default_factory=list)

    def new(self) -> Store:
        """A store, not opened yet (for `app.start(store=...)`, which opens it)."""
        if self.backend == "sqlite":
            return SQLiteStore(self.path, self.workspace)
        assert self.url is not None
        return PostgresStore(self.url, self.workspace)

    async def open(self) -> Store:
        store = self.new()
        await store.open()
        self.opened.append(store)
        return store


@pytest.fixture
async def stores(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StoreMaker]:
    url = request.getfixturevalue("postgres").url if backend == "postgres" else None
    maker = StoreMaker(backend, tmp_path / "flow.db", url)
    try:
        yield maker
    finally:
        for store in maker.opened:
            await store.close()


@pytest.fixture
def harness(backend: str, request: pytest.FixtureRequest) -> HarnessFactory:
    """`harness(app)`: a `Harness` on the test's backend (a virtual clock, a burst worker)."""
    if backend == "sqlite":
        return Harness
    url = request.getfixturevalue("postgres").url

    def make(app: ip.App) -> Harness:
        return PostgresHarness(app, url)

    return make
