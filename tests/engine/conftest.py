"""Fixtures of the engine tests: a `Harness` on each store (SQLite file, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.testing import Harness
from tests.store.conftest import PostgresServer, session_postgres
from tests.store.pg_harness import PostgresHarness

HarnessFactory = Callable[[ip.App], Harness]
"""Builds a `Harness` for an app on the test's store."""


@pytest.fixture(params=["sqlite", "postgres"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> HarnessFactory:
    """A `Harness` factory on the test's store: a SQLite file, or a PostgreSQL workspace of
    its own on the session's server."""
    if request.param == "sqlite":
        return lambda app: Harness(app, path=tmp_path / "test.db")
    server: PostgresServer = session_postgres()
    return lambda app: PostgresHarness(app, server.url)


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    return session_postgres()
