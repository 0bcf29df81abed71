"""The engine's wake-up signal: work may be ready, a run has finished (in this process)."""

from __future__ import annotations

from collections.abc import Callable

from inferpipe.core.records import Run


class Wakeups:
    """One signal shared by the parts of an engine: the executor and the run operations notify
    it, workers and result waiters listen. Listeners run on the event loop and must not block.

    Lifecycle listeners (`on_finish`) hear of every run whose finish this process committed.
    """

    def __init__(self) -> None:
        self._work: list[Callable[[], None]] = []
        self._finish: list[Callable[[str, Run | None], None]] = []

    def on_work(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` whenever work may be ready; returns the unsubscribe function."""
        self._work.append(listener)
        return lambda: self._work.remove(listener)

    def on_finish(self, listener: Callable[[str, Run | None], None]) -> Callable[[], None]:
        """Call `listener(run_id, run)` when an execution of a run in this process ends: with
        the run as finished when its finish committed and this process knows it whole, else
        None (read it: it may have finished, or parked, or been handed on); returns the
        unsubscribe function."""
        self._finish.append(listener)
        return lambda: self._finish.remove(listener)

    def work_ready(self) -> None:
        """Runs were created, resumed or asked to cancel: work may be ready to claim."""
        for listener in list(self._work):
            listener()

    def run_finished(self, run_id: str, run: Run | None = None, *, work_ready: bool = True) -> None:
        """A run's finish was committed; `run` is the finished run, when known whole.
        `work_ready`: the finish may have made runs ready (it started or resumed runs, or
        freed concurrency slots; `FinishResult.work_ready`)."""
        if work_ready:
            self.work_ready()
        for listener in list(self._finish):
            listener(run_id, run)

    def execution_ended(self, run_id: str) -> None:
        """An execution of a run here ended without finishing it (parked, handed back, lease
        lost)."""
        for listener in list(self._finish):
            listener(run_id, None)
