"""Fixtures of the workflow tests: a real PostgreSQL server for the graph store on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store.conftest import PostgresServer, launch_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster on loopback for the session (fails clearly when not installed)."""
    server, stop = launch_postgres()
    try:
        yield server
    finally:
        stop()
