"""Identifiers: ULIDs, sortable by creation time."""

from __future__ import annotations

from ulid import ULID


def new_id() -> str:
    """A new ULID string (26 characters, time-sortable)."""
    return str(ULID())
