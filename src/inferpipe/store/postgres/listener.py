"""LISTEN on the ready channel over a dedicated connection that reconnects when it drops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from asyncpg import exceptions as pgexc

from inferpipe.store.postgres.database import CHANNEL

_log = logging.getLogger("inferpipe.store.postgres")

CONNECT_TIMEOUT_S = 5.0
RECONNECT_MAX_S = 2.0
"""Longest pause between reconnection attempts; the worker's fallback poll covers the gap."""

_CONNECT_ERRORS = (OSError, TimeoutError, pgexc.PostgresError, asyncpg.InterfaceError)


class Listener:
    """Calls `callback` for every notification about `workspace`, and once after each
    reconnection (notifications sent while disconnected are lost, so assume work is ready).

    Args:
        url: the database URL.
        workspace: only notifications with this payload call back.
        callback: called on the event loop; must not block.
    """

    def __init__(self, url: str, workspace: str, callback: Callable[[], None]) -> None:
        self.url = url
        self.workspace = workspace
        self.callback = callback
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect (once; if the server is unreachable, keep trying in the background)."""
        try:
            await self._connect()
        except _CONNECT_ERRORS as exc:
            _log.warning("cannot LISTEN yet (%r); retrying in the background", exc)
            self._lost.set()
        self._task = asyncio.create_task(self._supervise(), name="inferpipe-pg-listener")

    async def stop(self) -> None:
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
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        try:
            conn.add_termination_listener(self._on_terminated)
            await conn.add_listener(CHANNEL, self._on_notification)
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
                await self._connect()
            except _CONNECT_ERRORS as exc:
                _log.debug("LISTEN reconnection failed: %r", exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RECONNECT_MAX_S)
                continue
            _log.info("LISTEN connection restored")
            delay_s = 0.05
            self.callback()

    def _on_terminated(self, conn: object) -> None:
        if conn is self._conn:
            _log.warning("LISTEN connection lost; reconnecting")
            self._lost.set()

    def _on_notification(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if payload == self.workspace:
            self.callback()
