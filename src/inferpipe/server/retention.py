"""Retention: delete finished runs (with their steps and logs) and events older than N days.

`purge_older_than` is the operation behind `inferpipe purge --days N`; `RetentionJob` runs it
in the background of a server, across every workspace it serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from rich.console import Console

from inferpipe.core.errors import ConfigurationError
from inferpipe.store import payloads
from inferpipe.store.base import Store

_log = logging.getLogger("inferpipe.retention")

DAY_MS = 86_400_000

DEFAULT_INTERVAL_S = 3600.0
"""How often the background job purges."""


async def purge_older_than(store: Store, days: float, *, now_ms: int | None = None) -> int:
    """Delete the store's workspace's finished runs, events and webhook deliveries older than
    `days` days.

    Runs still in progress are kept whatever their age. Incoming webhook receipts are kept at
    least a day (the longest tolerance window), so a replay is still recognised, and those
    with no signed timestamp (GitHub's scheme) are never purged. Blobs no row
    references any more are deleted (see `inferpipe.store.payloads.sweep`). Returns the rows
    and blobs removed (runs, events, deliveries, receipts and blobs).

    Raises:
        ConfigurationError: `days` is not a positive number.
    """
    if isinstance(days, bool) or not isinstance(days, int | float) or days <= 0:
        raise ConfigurationError(f"retention must be a positive number of days, got {days!r}")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    cutoff = now - int(days * DAY_MS)
    removed = await store.purge(cutoff)
    removed += await store.webhooks.purge(store.workspace, cutoff, min(cutoff, now - DAY_MS))
    # After the rows: the blobs only the purged runs referenced, and orphans of crashes.
    return removed + await payloads.sweep(store, now)


class RetentionJob:
    """Purges every workspace `stores()` returns, every `interval_s`, in the background.

    Args:
        stores: the stores (one per workspace) to purge at each round.
        days: the retention, in days.
        interval_s: time between rounds.
    """

    def __init__(
        self,
        stores: Callable[[], list[Store]],
        days: float,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        if isinstance(days, bool) or not isinstance(days, int | float) or days <= 0:
            raise ConfigurationError(f"retention must be a positive number of days, got {days!r}")
        self.stores = stores
        self.days = days
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="inferpipe-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run_once(self) -> int:
        removed = 0
        for store in self.stores():
            removed += await purge_older_than(store, self.days)
        return removed

    async def _loop(self) -> None:
        while True:
            try:
                removed = await self.run_once()
                if removed:
                    _log.info("retention: removed %d runs and events", removed)
            except Exception:
                _log.exception("retention round failed; retrying at the next one")
            await asyncio.sleep(self.interval_s)


async def purge(
    store: Store,
    days: float,
    *,
    workspaces: Sequence[str] | None = None,
    console: Console | None = None,
) -> int:
    """`inferpipe purge --days N` on an opened store: purge `workspaces` (default: the store's
    workspace and every workspace that has or had an API key); prints and returns rows removed."""
    out = console or Console()
    names = list(workspaces or [])
    if not names:
        names = [store.workspace, *await store.keys.workspaces()]
    total = 0
    for name in dict.fromkeys(names):
        removed = await purge_older_than(store.for_workspace(name), days)
        out.print(f"{name}: removed {removed} runs and events older than {days:g} days")
        total += removed
    return total
