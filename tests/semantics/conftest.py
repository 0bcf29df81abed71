"""Fixtures of the run semantics tests: each behaviour runs on the SQLite store and on the
PostgreSQL store (the flow control suite's fixtures: one server for the session, a workspace
of its own per test)."""

from tests.flow.conftest import backend, harness, postgres

__all__ = ["backend", "harness", "postgres"]
