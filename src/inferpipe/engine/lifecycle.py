"""Run lifecycle listeners: what an execution tells its observers (telemetry, metrics) as it
goes.

A listener subclasses `RunListener` and overrides the calls it needs; `Engine.add_listener`
registers it. Calls are made inline, on the event loop, so a listener must return quickly (one
with I/O to do queues it and returns). A listener that raises is logged and skipped: observing
never fails a run. Each call reports something this execution did, once: replayed steps are not
executed and produce no call, and a run resumed by another process gets its calls there.

The order within one execution: `run_started`, then for each step attempt executed
`step_started` and, once its record is made, `steps_recorded` (which also reports sleeps,
waits, sends and scores as they are recorded; a step result's record is pipelined, reported as
it goes to the store, durable before the run does anything that leaves it), then `run_parked` or `run_finished` when the
execution parks or finishes the run, and always `execution_ended` last, whatever ended it (a
lost lease or a shutdown hand-back included). A feedback score stored later, outside any
execution, is reported by `score_recorded`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from inferpipe.core.records import Run, RunStatus, StepKind, StepRecord
from inferpipe.core.scores import ScoreRecord
from inferpipe.store.base import Outcome

_log = logging.getLogger("inferpipe.lifecycle")


@dataclass(frozen=True, slots=True)
class StepStart:
    """A step attempt about to execute (its callable runs next)."""

    key: str  #: the journal key (step id with its occurrence suffix)
    name: str  #: the step id
    kind: StepKind
    attempt: int  #: 0 for the first try, n for the n-th retry


class RunListener:
    """Observer of run executions; every call does nothing until overridden."""

    def run_started(self, run: Run) -> None:
        """An execution of `run` begins (`run.executions`: 1 for the first, more on resume)."""

    def step_started(self, run: Run, step: StepStart) -> None:
        """A step attempt starts executing."""

    def steps_recorded(self, run: Run, steps: Sequence[StepRecord]) -> None:
        """Step records were made: attempts' results (completed, failed, retrying), and
        sleeps, waits, invocations, sent events and scores as they were opened or resolved
        (committed by then; a completed step's result commits in the background, see
        `RunJournal.record`)."""

    def run_parked(self, run: Run, status: RunStatus, ready_at_ms: int | None) -> None:
        """The execution parked the run (sleeping or waiting, until `ready_at_ms` at the
        latest when not None)."""

    def run_finished(self, run: Run, outcome: Outcome, journal: Mapping[str, StepRecord]) -> None:
        """The run's finish was committed with `outcome`; `journal` is its every step."""

    def execution_ended(self, run: Run) -> None:
        """The execution is over, however it ended."""

    def score_recorded(self, run: Run, score: ScoreRecord) -> None:
        """Feedback `score` was stored for `run`, outside its executions (`Runs.score`: the
        app's `score`, the API's `POST /v1/runs/{id}/scores`)."""


class Listeners(RunListener):
    """The listeners of an engine, called in turn; false when there are none, so call sites
    skip building their arguments."""

    def __init__(self) -> None:
        self._listeners: list[RunListener] = []

    def add(self, listener: RunListener) -> None:
        self._listeners.append(listener)

    def remove(self, listener: RunListener) -> None:
        self._listeners.remove(listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def run_started(self, run: Run) -> None:
        self._each("run_started", run)

    def step_started(self, run: Run, step: StepStart) -> None:
        self._each("step_started", run, step)

    def steps_recorded(self, run: Run, steps: Sequence[StepRecord]) -> None:
        self._each("steps_recorded", run, steps)

    def run_parked(self, run: Run, status: RunStatus, ready_at_ms: int | None) -> None:
        self._each("run_parked", run, status, ready_at_ms)

    def run_finished(self, run: Run, outcome: Outcome, journal: Mapping[str, StepRecord]) -> None:
        self._each("run_finished", run, outcome, journal)

    def execution_ended(self, run: Run) -> None:
        self._each("execution_ended", run)

    def score_recorded(self, run: Run, score: ScoreRecord) -> None:
        self._each("score_recorded", run, score)

    def _each(self, call: str, run: Run, *args: object) -> None:
        for listener in self._listeners:
            try:
                getattr(listener, call)(run, *args)
            except Exception:
                _log.warning(
                    "run %s: listener %r failed in %s", run.id, listener, call, exc_info=True
                )
