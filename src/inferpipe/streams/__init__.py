"""Streams: per-topic ordered events that clients can join late and resume exactly.

Public modules (extension points):

- :mod:`inferpipe.streams.pubsub` - the ``PubSub`` protocol, ``StreamEvent``, ``Retention``;
- :mod:`inferpipe.streams.front` - ``StreamFront``, the one ``PubSub`` every backend below is:
  a ``StreamCache`` (the log: indices and history) and a ``Live`` transport (wake-ups);
- :mod:`inferpipe.streams.errors` - the ``StreamError`` hierarchy;
- :mod:`inferpipe.streams.memory` - ``MemoryPubSub`` (one process) and ``MemoryLivePubSub``;
- :mod:`inferpipe.streams.caching` - ``CachingPubSub``, the ``StreamCache`` and ``LivePubSub``
  protocols, ``MemoryStreamCache``;
- :mod:`inferpipe.streams.redis` - ``RedisPubSub`` and ``RedisStreamCache`` (needs ``redis``;
  not imported here so the package works without it);
- :mod:`inferpipe.streams.store` - ``StorePubSub``: streams in the application's own database,
  over the store's ``stream_log`` (:mod:`inferpipe.store.stream_log`).

Choosing a backend (docs/streams.md): one process - ``MemoryPubSub``; several processes sharing
a database - ``StorePubSub`` (no extra service; history survives a crashed producer); many
subscribers or a high event rate - ``RedisPubSub``.
"""

from __future__ import annotations

from inferpipe.streams.caching import CachingPubSub, MemoryStreamCache, StreamCache
from inferpipe.streams.errors import (
    CorruptEventError,
    CursorExpiredError,
    FutureCursorError,
    StreamError,
    StreamUnavailableError,
    SubscriberOverflowError,
    TopicFinishedError,
)
from inferpipe.streams.memory import MemoryLivePubSub, MemoryPubSub
from inferpipe.streams.pubsub import (
    PubSub,
    Retention,
    StreamEvent,
    Subscription,
    parse_cursor,
)

__all__ = [
    "CachingPubSub",
    "CorruptEventError",
    "CursorExpiredError",
    "FutureCursorError",
    "MemoryLivePubSub",
    "MemoryPubSub",
    "MemoryStreamCache",
    "PubSub",
    "Retention",
    "StreamCache",
    "StreamError",
    "StreamEvent",
    "StreamUnavailableError",
    "SubscriberOverflowError",
    "Subscription",
    "TopicFinishedError",
    "parse_cursor",
]
