"""Engines per workspace, and the workers that run them.

A store view and its engine serve one workspace, and a worker claims the runs of its engine's
workspace only. The server therefore keeps one `Engine` per workspace it meets, built lazily,
all sharing the app's registry, clock, limits and database connection, and (when it runs
workers) one `Worker` per engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from inferpipe.app import App
from inferpipe.engine.cron import CronSchedule
from inferpipe.engine.engine import Engine
from inferpipe.engine.functions import Registry
from inferpipe.engine.worker import Worker
from inferpipe.store.keys import KeyStore

_log = logging.getLogger("inferpipe.server")

DISCOVER_INTERVAL_S = 5.0
"""How often a worker pool looks for workspaces that got their first key in another process."""


class Workspaces:
    """One engine per workspace, built on first use; the app's own engine serves its workspace.
    Engines share the app's registry, clock, limits, stream backend (topics are run ids) and
    lifecycle listeners (telemetry exports every workspace's runs).

    Args:
        app: a started app.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.default = app.workspace
        self._engines: dict[str, Engine] = {app.workspace: app.engine}
        self._listeners: list[Callable[[Engine], None]] = []

    def engine(self, workspace: str) -> Engine:
        """The engine of `workspace`, sharing the app's registry, clock and limits."""
        engine = self._engines.get(workspace)
        if engine is None:
            base = self.app.engine
            engine = Engine(
                base.store.for_workspace(workspace),
                base.registry,
                clock=base.clock,
                limits=base.limits,
                pubsub=base.pubsub,
                listeners=base.listeners,
            )
            self._engines[workspace] = engine
            for listener in list(self._listeners):
                listener(engine)
        return engine

    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    def on_new_engine(self, listener: Callable[[Engine], None]) -> None:
        """Call `listener` with each engine built from now on."""
        self._listeners.append(listener)


class WorkerPool:
    """A worker for each workspace: the app's, every workspace that has an API key, and any
    workspace the API serves. Cron triggers fire in the app's own workspace only, so a
    scheduled function runs once per tick, not once per tenant.

    Args:
        workspaces: the engines to run.
        keys: where to discover workspaces (None: only those the API meets).
        discover_interval_s: how often to look for workspaces created by another process.
        worker_options: passed to each `Worker` (concurrency, lease_ms, ...).
    """

    def __init__(
        self,
        workspaces: Workspaces,
        keys: KeyStore | None,
        *,
        discover_interval_s: float = DISCOVER_INTERVAL_S,
        **worker_options: Any,
    ) -> None:
        self.workspaces = workspaces
        self.keys = keys
        self.discover_interval_s = discover_interval_s
        self.worker_options = worker_options
        self.workers: dict[str, Worker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._discovery: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start workers for the known workspaces, and follow new ones."""
        self.workspaces.on_new_engine(self._add)
        for engine in self.workspaces.engines():
            self._add(engine)
        await self._discover_once()
        if self.keys is not None:
            self._discovery = asyncio.create_task(self._discover())

    async def stop(self) -> None:
        """Stop claiming; runs in flight finish their current step and are handed back."""
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
        for worker in self.workers.values():
            worker.notify_shutdown()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _add(self, engine: Engine) -> None:
        workspace = engine.store.workspace
        if workspace in self.workers:
            return
        worker = Worker(engine, **self.worker_options)
        if workspace != self.workspaces.default:
            worker.cron = CronSchedule(Registry(), engine.clock.now_ms())
        self.workers[workspace] = worker
        task = asyncio.create_task(worker.run(), name=f"inferpipe-worker-{workspace}")
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    async def _discover_once(self) -> None:
        if self.keys is None:
            return
        for workspace in await self.keys.workspaces():
            self.workspaces.engine(workspace)  # builds it; the listener starts its worker

    async def _discover(self) -> None:
        while True:
            await asyncio.sleep(self.discover_interval_s)
            try:
                await self._discover_once()
            except Exception:
                _log.exception("workspace discovery failed; retrying")


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("worker %s stopped", task.get_name(), exc_info=task.exception())
