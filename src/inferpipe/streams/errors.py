"""Errors raised by the streams layer.

Every error carries a stable string ``code`` (sent to clients over HTTP and SSE) and a
``retryable`` flag, as class attributes. Constructors take typed fields and build the message.

Hierarchy::

    StreamError                          code "stream_error"
    ├── InvalidTopicError (ValueError)   "invalid_topic"       empty or oversized topic name
    ├── InvalidPayloadError (ValueError) "invalid_payload"     data not JSON or too large
    ├── InvalidCursorError (ValueError)  "invalid_cursor"      malformed or negative cursor
    ├── FutureCursorError (ValueError)   "cursor_ahead"        cursor after the topic's last index
    ├── CursorExpiredError               "cursor_expired"      events after the cursor were trimmed
    │   └── SubscriberOverflowError      "subscriber_overflow" a live subscriber fell so far
    │                                                          behind that history no longer covers it
    ├── TopicFinishedError               "topic_finished"      publish after the final event
    ├── CorruptEventError                "corrupt_event"       a stored event cannot be read
    │                                                          (malformed entry in the backend)
    ├── MessagesLostError                "messages_lost"       a live-only transport dropped
    │                                                          messages (CachingPubSub recovers)
    ├── StreamUnavailableError           "stream_unavailable"  backend (Redis) unreachable; retryable
    └── PubSubClosedError                "pubsub_closed"       use after close()

The streams layer never drops events silently: whenever a consumer cannot get every event after
its cursor, it receives one of the cursor errors above instead. Every failure of a backend
reaches callers as one of these errors, never as the backend's own exception.
"""

from __future__ import annotations


class StreamError(Exception):
    """Base class of every error raised by the streams layer."""

    #: Stable identifier sent over the wire; never change an existing value.
    code: str = "stream_error"
    #: Whether retrying the same call later may succeed.
    retryable: bool = False


class InvalidTopicError(StreamError, ValueError):
    """The topic name is empty, not a string, or too long."""

    code = "invalid_topic"

    def __init__(self, topic: object, reason: str) -> None:
        self.topic = topic
        super().__init__(f"invalid stream topic {topic!r}: {reason}")


class InvalidPayloadError(StreamError, ValueError):
    """The published data is not a JSON value, or its encoding exceeds the size limit."""

    code = "invalid_payload"

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        super().__init__(f"cannot publish to {topic!r}: {reason}")


class InvalidCursorError(StreamError, ValueError):
    """A cursor (``after``, ``Last-Event-ID``) is not a non-negative integer."""

    code = "invalid_cursor"

    def __init__(self, cursor: object) -> None:
        self.cursor = cursor
        super().__init__(f"invalid stream cursor {cursor!r}: expected a non-negative integer")


class FutureCursorError(StreamError, ValueError):
    """The cursor is after the topic's last index.

    This happens when a client sends an id it cannot have seen, or when the topic was cleared or
    expired (and possibly restarted) since the client saw it.
    """

    code = "cursor_ahead"

    def __init__(self, topic: str, after: int, last_index: int) -> None:
        self.topic = topic
        self.after = after
        self.last_index = last_index
        super().__init__(
            f"cursor {after} is ahead of topic {topic!r}, whose last index is {last_index} "
            "(the topic is unknown, expired, or the cursor was never issued)"
        )


class CursorExpiredError(StreamError):
    """Events right after the cursor are no longer retained: resuming would leave a gap.

    ``oldest_index`` is the oldest index still retained (``last_index + 1`` when nothing is).
    A client should restart from ``get_history(topic)`` (or from its own durable state).
    """

    code = "cursor_expired"

    def __init__(self, topic: str, after: int, oldest_index: int) -> None:
        self.topic = topic
        self.after = after
        self.oldest_index = oldest_index
        super().__init__(self._describe())

    def _describe(self) -> str:
        return (
            f"cursor {self.after} on topic {self.topic!r} has expired: the oldest retained "
            f"event is {self.oldest_index}, so events {self.after + 1}..{self.oldest_index - 1} "
            "are gone"
        )


class SubscriberOverflowError(CursorExpiredError):
    """A live subscriber fell behind and the events it missed were trimmed from history.

    Subscribers are never allowed to block publishers: a subscriber whose queue fills up resumes
    from history; only when history no longer covers its position does it get this error.
    """

    code = "subscriber_overflow"

    def _describe(self) -> str:
        return (
            f"subscriber on topic {self.topic!r} fell behind at index {self.after} and events "
            f"up to {self.oldest_index - 1} were trimmed before it could read them"
        )


class TopicFinishedError(StreamError):
    """A publish was attempted after the topic's final event."""

    code = "topic_finished"

    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(f"topic {topic!r} has ended with a final event; clear it to reuse it")


class CorruptEventError(StreamError):
    """A stored event cannot be decoded (a malformed entry written into the backend by hand,
    another program or a bug): the stream cannot go past it."""

    code = "corrupt_event"

    def __init__(self, topic: str, detail: str) -> None:
        self.topic = topic
        super().__init__(f"an event of topic {topic!r} cannot be read: {detail}")


class MessagesLostError(StreamError):
    """A live-only transport dropped messages for one subscriber (full queue, reset connection).

    Raised by ``LiveSubscription.__anext__``; ``CachingPubSub`` handles it by re-subscribing and
    reading what was lost from its cache, so application code normally never sees it.
    """

    code = "messages_lost"

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        super().__init__(f"live messages lost on topic {topic!r}: {reason}")


class StreamUnavailableError(StreamError):
    """The stream backend could not be reached, or went away mid-stream."""

    code = "stream_unavailable"
    retryable = True

    def __init__(self, backend: str, detail: str) -> None:
        self.backend = backend
        super().__init__(f"stream backend {backend} is unavailable: {detail}")


class PubSubClosedError(StreamError):
    """The pubsub (or the subscription's pubsub) was closed."""

    code = "pubsub_closed"

    def __init__(self, what: str = "pubsub") -> None:
        super().__init__(f"{what} is closed")
