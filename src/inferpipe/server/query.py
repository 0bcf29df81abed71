"""Query parameters: opaque cursors, time bounds, page sizes.

A cursor is the store's own position (an event sequence number, a run id, a step or log
sequence number) tagged with what it points into and base64url-encoded, so a cursor from one
list cannot be replayed against another and a forged one answers 422, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import Query

from inferpipe.server.errors import FieldProblem, InvalidRequestError

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

_POSITION = {
    "events": re.compile(r"^[0-9]{1,19}$"),
    "runs": re.compile(r"^[0-9A-Z]{1,64}$"),
    "steps": re.compile(r"^-?[0-9]{1,19}$"),
    "logs": re.compile(r"^-?[0-9]{1,19}$"),
}

Limit = Annotated[
    int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page (1-200, default 50).")
]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=512,
        description="`next_cursor` of the previous page; omit for the first.",
    ),
]
TimeBound = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        description="Unix milliseconds, or ISO 8601 (UTC when no offset).",
    ),
]


def encode_cursor(kind: str, position: str | int | None) -> str | None:
    if position is None:
        return None
    raw = f"{kind}:{position}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> str | None:
    """The store position in `cursor`, checked to belong to a list of `kind`."""
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    prefix, _, position = raw.partition(":")
    if prefix != kind or not _POSITION[kind].match(position):
        raise InvalidRequestError(
            "invalid cursor: pass the `next_cursor` of a previous page of this list",
            [FieldProblem("query.cursor", f"not a cursor of this {kind} list")],
        )
    return position


def parse_time(value: str | None, field: str) -> int | None:
    """Unix ms from `123` or an ISO 8601 string; naive times are UTC."""
    if value is None or value == "":
        return None
    text = value.strip()
    if re.fullmatch(r"[0-9]{1,16}", text):
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.year < 1970:
        raise InvalidRequestError(
            f"invalid time in {field!r}: {value!r}",
            [FieldProblem(f"query.{field}", "use Unix milliseconds or ISO 8601")],
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def page_by_seq(
    items: Sequence[T], seq: Callable[[T], int], limit: int, after: str | None
) -> tuple[list[T], int | None]:
    """A page of an ordered in-memory list (steps, logs): items after `after`'s sequence."""
    start = int(after) if after is not None else None
    rest = [i for i in items if start is None or seq(i) > start]
    page = rest[:limit]
    return page, (seq(page[-1]) if len(rest) > limit else None)
