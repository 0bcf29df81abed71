"""Durations written as numbers of seconds, timedeltas or strings like "1h30m", "7d", "250ms"."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

Duration = float | int | timedelta | str
"""Seconds (int/float), a timedelta, or a string such as "30s", "5m", "1h30m", "7d", "250ms"."""

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def to_ms(duration: Duration) -> int:
    """Milliseconds in `duration`; raise ValueError with the culprit when malformed."""
    if isinstance(duration, bool):
        raise ValueError(f"invalid duration {duration!r}")
    if isinstance(duration, int | float):
        if duration < 0:
            raise ValueError(f"duration must not be negative: {duration!r}")
        return round(duration * 1000)
    if isinstance(duration, timedelta):
        if duration.total_seconds() < 0:
            raise ValueError(f"duration must not be negative: {duration!r}")
        return round(duration.total_seconds() * 1000)
    if not isinstance(duration, str):
        raise ValueError(
            f"invalid duration {duration!r}: use a number of seconds, a timedelta or a string "
            "like '30s', '5m', '1h30m', '7d'"
        )
    text = duration.strip().replace(" ", "")
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"invalid duration {duration!r}: use a number of seconds or a string like '30s', "
            "'5m', '1h30m', '7d'"
        )
    return round(total)


def datetime_to_ms(when: datetime) -> int:
    """Unix time in milliseconds of a timezone-aware datetime; a naive one is a ValueError
    (it would silently mean the machine's local time)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            f"datetime {when.isoformat()} has no timezone: use an aware one, "
            "e.g. datetime.now(UTC) + timedelta(hours=1)"
        )
    return round(when.timestamp() * 1000)
