"""Validation and JSON encoding shared by the stream backends."""

from __future__ import annotations

from typing import cast

import orjson

from inferpipe.streams.errors import (
    CorruptEventError,
    InvalidPayloadError,
    InvalidTopicError,
)
from inferpipe.streams.pubsub import JSONInput, JSONValue, StreamEvent

#: Longest accepted topic name; topics become Redis keys and URL path segments.
MAX_TOPIC_CHARS = 512
#: Default limit on one event's encoded data; large outputs belong in a blob store.
DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576


def check_topic(topic: object) -> str:
    """Return ``topic`` if it is a usable topic name, else raise ``InvalidTopicError``."""
    if not isinstance(topic, str):
        raise InvalidTopicError(topic, "must be a string")
    if not topic:
        raise InvalidTopicError(topic, "must not be empty")
    if len(topic) > MAX_TOPIC_CHARS:
        raise InvalidTopicError(topic[:40] + "...", f"longer than {MAX_TOPIC_CHARS} characters")
    return topic


def encode_data(topic: str, data: JSONInput, max_payload_bytes: int) -> bytes:
    """Encode ``data`` as JSON, enforcing the size limit."""
    try:
        raw = orjson.dumps(data)
    except TypeError as exc:  # orjson raises JSONEncodeError, a TypeError subclass
        raise InvalidPayloadError(topic, f"data is not JSON-serializable ({exc})") from exc
    if len(raw) > max_payload_bytes:
        raise InvalidPayloadError(
            topic, f"encoded data is {len(raw)} bytes, over the {max_payload_bytes}-byte limit"
        )
    return raw


def decode_data(topic: str, raw: object) -> JSONValue:
    """Decode JSON produced by :func:`encode_data`, as read back from a backend.

    Raises:
        CorruptEventError: The stored bytes are not JSON (a malformed entry).
    """
    if not isinstance(raw, bytes | bytearray | memoryview | str):
        raise CorruptEventError(topic, f"event data is a {type(raw).__name__}, not JSON text")
    try:
        return cast(JSONValue, orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise CorruptEventError(topic, f"event data is not JSON ({exc})") from exc


def event_to_message(event: StreamEvent) -> JSONValue:
    """Wrap an event into the JSON message carried by a live-only transport."""
    return {"i": event.index, "t": event.ts_ms, "f": event.final, "d": event.data}


def message_to_event(topic: str, message: JSONValue) -> StreamEvent:
    """Unwrap a message made by :func:`event_to_message`; reject anything else loudly."""
    if isinstance(message, dict):
        index, ts_ms, final = message.get("i"), message.get("t"), message.get("f")
        if (
            isinstance(index, int)
            and isinstance(ts_ms, int)
            and isinstance(final, bool)
            and "d" in message
        ):
            return StreamEvent(topic, index, message["d"], ts_ms, final)
    raise CorruptEventError(topic, f"malformed message on the live transport: {message!r:.200}")
