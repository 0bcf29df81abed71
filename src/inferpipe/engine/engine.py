"""The engine: a store, a function registry and a clock, with the executor of their runs, the
operations on runs (`Runs`) and the wake-up signal they share (`Wakeups`)."""

from __future__ import annotations

from collections.abc import Callable

from inferpipe.engine.clock import Clock, SystemClock
from inferpipe.engine.executor import Executor
from inferpipe.engine.functions import Registry
from inferpipe.engine.journal import Limits
from inferpipe.engine.lifecycle import Listeners, RunListener
from inferpipe.engine.runs import Runs
from inferpipe.engine.wakeups import Wakeups
from inferpipe.store.base import Store
from inferpipe.streams.pubsub import PubSub


class Engine:
    """Ties a store, a function registry and a clock together. Engines given one `listeners`
    (the workspaces of one app) report their executions to the same listeners."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
        pubsub: PubSub | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock: Clock = clock or SystemClock()
        self.limits = limits or Limits()
        self.pubsub = pubsub
        self.wakeups = Wakeups()
        self.listeners = Listeners() if listeners is None else listeners
        self.executor = Executor(
            store, self.clock, registry, self.limits, self.wakeups, pubsub, self.listeners
        )
        self.runs = Runs(self.executor, self.wakeups)

    def add_listener(self, listener: RunListener) -> Callable[[], None]:
        """Tell `listener` what executions of runs do (see `inferpipe.engine.lifecycle`), from
        the next execution on; returns a function that removes it."""
        self.listeners.add(listener)
        return lambda: self.listeners.remove(listener)
