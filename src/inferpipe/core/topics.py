"""What a topic carries: `StreamEvent`, shared by the streams (which publish and keep them) and
the Python client (which reads them over server-sent events without loading the streams).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

#: A JSON value as read back from a stream (what ``json.loads`` returns).
JSONValue: TypeAlias = "dict[str, JSONValue] | list[JSONValue] | str | int | float | bool | None"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a topic.

    Attributes:
        topic: The topic the event belongs to.
        index: Position in the topic, starting at 1, strictly increasing.
        data: The published JSON value (treat it as read-only: it may be shared by subscribers).
        ts_ms: When the event was appended, in ms since the epoch.
        final: True for the last event of the topic; subscriptions end after delivering it.
    """

    topic: str
    index: int
    data: JSONValue
    ts_ms: int
    final: bool = False
