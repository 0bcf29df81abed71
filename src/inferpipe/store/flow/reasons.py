"""Status reasons that flow control writes on runs, shared by every store."""

from __future__ import annotations

from datetime import UTC, datetime

from inferpipe.core.records import FlowPace


def concurrency_reason(key: str, limit: int) -> str:
    """Why a ready run is not claimed (kept on it until it is)."""
    return f"waiting for a concurrency slot: {key} has {limit} running"


def throttled(start_ms: int, pace: FlowPace) -> str:
    """Why a run waits for its reserved start."""
    return (
        f"throttled: starts at {at(start_ms)} ({pace.limit} per {span(pace.period_ms)}"
        f" on {pace.key})"
    )


def at(ms: int) -> str:
    """A time for a status reason: ISO 8601, UTC, milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def span(ms: int) -> str:
    """A period for a status reason: 250ms, 30s, 5m, 4h, 7d, or a mix such as 1m30s."""
    if ms % 1000:
        return f"{ms}ms"
    seconds, parts = ms // 1000, []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
