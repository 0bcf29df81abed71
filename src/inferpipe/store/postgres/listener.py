"""One LISTEN connection per process and database, shared by run wake-ups and stream appends.

The connection is opened with the first subscription and kept until the store closes (`close`),
not closed with the last subscription: a process that awaits results one after another (a
client, an API apart from its workers) subscribes once per result, and connecting each time
cost more than the rest of a short run (33 ms to connect and 15 ms to close, against 20 ms for
the run, at load 12). It LISTENs on every channel some subscription wants (a channel stays
listened to once wanted), and reconnects by itself when it drops. Notifications
sent while it was disconnected are lost, so after each reconnection every subscription is told
(`on_restored`) to assume it missed some.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from asyncpg import exceptions as pgexc

_log = logging.getLogger("inferpipe.store.postgres")

APPLICATION_NAME = "inferpipe-listen"
"""How the LISTEN connection shows in `pg_stat_activity`."""

CONNECT_TIMEOUT_S = 5.0
RECONNECT_MAX_S = 2.0
"""Longest pause between reconnection attempts; the subscribers' fallback polls cover the gap."""

_CONNECT_ERRORS = (OSError, TimeoutError, pgexc.PostgresError, asyncpg.InterfaceError)


@dataclass(eq=False, slots=True)
class _Subscription:
    channel: str
    on_notify: Callable[[str], None]
    on_restored: Callable[[], None]


class Notifications:
    """The process's LISTEN connection to one database (shared by every workspace view).

    Args:
        url: the database URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._subscriptions: list[_Subscription] = []
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._changing = asyncio.Lock()

    async def subscribe(
        self,
        channel: str,
        on_notify: Callable[[str], None],
        on_restored: Callable[[], None],
    ) -> Callable[[], Awaitable[None]]:
        """Call `on_notify(payload)` for every notification on `channel`, and `on_restored()`
        after each reconnection; both on the event loop, and must not block. If the server is
        unreachable, keep trying in the background.

        Returns:
            An async function that ends the subscription.
        """
        subscription = _Subscription(channel, on_notify, on_restored)
        async with self._changing:
            new_channel = all(s.channel != channel for s in self._subscriptions)
            self._subscriptions.append(subscription)
            if self._task is None:
                await self._start()
            elif new_channel and self._conn is not None:
                try:
                    await self._conn.add_listener(channel, self._on_notification)
                except _CONNECT_ERRORS as exc:  # reconnecting LISTENs on every channel
                    _log.debug("cannot LISTEN on %s yet (%r)", channel, exc)
                    self._lost.set()

        async def unsubscribe() -> None:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

        return unsubscribe

    async def close(self) -> None:
        """Close the connection (the store closes): subscriptions left hear nothing more."""
        async with self._changing:
            self._subscriptions.clear()
            await self._stop()

    async def _start(self) -> None:
        try:
            await self._connect()
        except _CONNECT_ERRORS as exc:
            _log.warning("cannot LISTEN yet (%r); retrying in the background", exc)
            self._lost.set()
        self._task = asyncio.create_task(self._supervise(), name="inferpipe-pg-listener")

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=CONNECT_TIMEOUT_S)
            except (*_CONNECT_ERRORS, TimeoutError):
                conn.terminate()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(
            self.url,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": APPLICATION_NAME},
        )
        try:
            conn.add_termination_listener(self._on_terminated)
            for channel in dict.fromkeys(s.channel for s in self._subscriptions):
                await conn.add_listener(channel, self._on_notification)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._lost.clear()

    async def _supervise(self) -> None:
        delay_s = 0.05
        while True:
            await self._lost.wait()
            old, self._conn = self._conn, None
            if old is not None:
                old.terminate()
            try:
                async with self._changing:
                    await self._connect()
            except _CONNECT_ERRORS as exc:
                _log.debug("LISTEN reconnection failed: %r", exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RECONNECT_MAX_S)
                continue
            _log.info("LISTEN connection restored")
            delay_s = 0.05
            for subscription in list(self._subscriptions):
                subscription.on_restored()

    def _on_terminated(self, conn: object) -> None:
        if conn is self._conn:
            _log.warning("LISTEN connection lost; reconnecting")
            self._lost.set()

    def _on_notification(self, conn: object, pid: int, channel: str, payload: object) -> None:
        for subscription in list(self._subscriptions):
            if subscription.channel == channel:
                subscription.on_notify(str(payload))
