"""The engine's wake-up signal: work may be ready, a run has finished (in this process)."""

from __future__ import annotations

from collections.abc import Callable


class Wakeups:
    """One signal shared by the parts of an engine: the executor and the run operations notify
    it, workers and result waiters listen. Listeners run on the event loop and must not block.

    Lifecycle listeners (`on_finish`) hear of every run whose finish this process committed.
    """

    def __init__(self) -> None:
        self._work: list[Callable[[], None]] = []
        self._finish: list[Callable[[str], None]] = []

    def on_work(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` whenever work may be ready; returns the unsubscribe function."""
        self._work.append(listener)
        return lambda: self._work.remove(listener)

    def on_finish(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call `listener(run_id)` once a run's finish is committed; returns the unsubscribe
        function."""
        self._finish.append(listener)
        return lambda: self._finish.remove(listener)

    def work_ready(self) -> None:
        """Runs were created, resumed or asked to cancel: work may be ready to claim."""
        for listener in list(self._work):
            listener()

    def run_finished(self, run_id: str) -> None:
        """A run's finish was committed (which may start or resume other runs, and frees its
        concurrency slot)."""
        self.work_ready()
        for listener in list(self._finish):
            listener(run_id)
