"""What a run's stream says about where each event came from, and which output to believe.

Every event the engine publishes on a run's topic is a JSON object with a ``type`` and the
``execution`` that published it: the run's execution number (``Run.executions``), counted up
at every claim of the run, so two executions are never confused - not even a step re-executed
after a crash, whose attempt number is the same as before. An event published from inside a step also names the
attempt it belongs to, with ``step`` (the step's journal key) and ``attempt`` (0 for the first).
An attempt is thus identified by (step, attempt, execution): an :class:`AttemptId`.

An attempt whose output will never be the step's result is *abandoned*: it failed and the step
is retried (``retried``), or its execution ended before recording it - a crash, a lost lease
(``interrupted``). The engine then publishes one ``step.abandoned`` event naming the attempt
and the index range of what it published. :class:`FinalAttempts` is the consumer's side: it
presents each step's output once, the final attempt's, while the topic keeps everything.

Pure functions and data only: the engine publishes (``inferpipe.engine.streaming``); the API,
the client and ``App.stream`` read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeGuard

from inferpipe.core.records import StepRecord, StepStatus

ABANDONED = "step.abandoned"
"""The type of the event naming an abandoned attempt."""

RETRIED = "retried"
"""An abandoned attempt failed; the step runs again as its next attempt."""

INTERRUPTED = "interrupted"
"""An abandoned attempt's execution ended before recording it (crash, lease lost)."""

ENGINE_PREFIXES = ("run.", "step.")
"""Types of the engine's own lifecycle events; user code cannot publish them."""


def run_topic(run_id: str) -> str:
    """The topic of a run's stream."""
    return f"run:{run_id}"


class AttemptId(NamedTuple):
    """One execution of one attempt of a step (a tuple: built and hashed per event read)."""

    step: str
    attempt: int
    execution: int

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "attempt": self.attempt, "execution": self.execution}


@dataclass(slots=True)
class Published:
    """What an attempt published: the first and last index, and how many events."""

    first_index: int
    last_index: int
    events: int = 1

    def add(self, index: int) -> None:
        self.first_index = min(self.first_index, index)
        self.last_index = max(self.last_index, index)
        self.events += 1


def is_engine_type(kind: object) -> bool:
    """Whether `kind` is the type of an engine lifecycle event (`run.*`, `step.*`)."""
    return isinstance(kind, str) and kind.startswith(ENGINE_PREFIXES)


def output_attempt(data: object) -> AttemptId | None:
    """The attempt an event published from inside a step belongs to (None for any other)."""
    if not isinstance(data, Mapping) or is_engine_type(data.get("type")):
        return None
    return _attempt(data)


def abandoned_attempt(data: object) -> tuple[AttemptId, Published] | None:
    """The attempt a `step.abandoned` event names, with the range it published."""
    if not isinstance(data, Mapping) or data.get("type") != ABANDONED:
        return None
    named, span = data.get("abandoned"), data.get("published")
    if not isinstance(named, Mapping) or not isinstance(span, Mapping):
        return None
    attempt = _attempt(named)
    first, last, count = span.get("first_index"), span.get("last_index"), span.get("events")
    if attempt is None or not (_is_int(first) and _is_int(last) and _is_int(count)):
        return None
    return attempt, Published(first, last, count)


def abandoned_event(
    attempt: AttemptId, published: Published, reason: str, execution: int
) -> dict[str, Any]:
    """The `step.abandoned` event, published by `execution`."""
    return {
        "type": ABANDONED,
        "execution": execution,
        "reason": reason,
        "abandoned": attempt.as_dict(),
        "published": {
            "first_index": published.first_index,
            "last_index": published.last_index,
            "events": published.events,
        },
    }


def abandoned_before(
    history: Iterable[tuple[int, object]], journal: Mapping[str, StepRecord], execution: int
) -> list[tuple[AttemptId, Published, str]]:
    """The attempts of earlier executions that published output and were abandoned, not yet
    announced, given the topic's history and the run's journal as `execution` starts.

    An attempt is abandoned unless the journal holds it as the step's result (completed, or
    failed for good); of the executions that published for that attempt, the one whose
    `step.*` event recorded it is kept - else the latest, the one the record can come from.
    """
    published: dict[AttemptId, Published] = {}
    announced: set[AttemptId] = set()
    recorded_by: dict[tuple[str, int], int] = {}
    for index, data in history:
        attempt = output_attempt(data)
        if attempt is not None and attempt.execution < execution:
            span = published.get(attempt)
            if span is None:
                published[attempt] = Published(index, index)
            else:
                span.add(index)
            continue
        notice = abandoned_attempt(data)
        if notice is not None:
            announced.add(notice[0])
        elif isinstance(data, Mapping) and data.get("type") in _RESULT_TYPES:
            key, number, by = data.get("step"), data.get("attempt"), data.get("execution")
            if isinstance(key, str) and _is_int(number) and _is_int(by):
                recorded_by[(key, number)] = by
    found: list[tuple[AttemptId, Published, str]] = []
    for attempt, span in published.items():
        if attempt in announced:
            continue
        record = journal.get(attempt.step)
        kept = _kept_execution(attempt, record, recorded_by, published)
        if kept == attempt.execution:
            continue
        retried = record is not None and (
            record.attempt > attempt.attempt or record.status is StepStatus.RETRYING
        )
        reason = RETRIED if retried else INTERRUPTED
        found.append((attempt, span, reason))
    found.sort(key=lambda item: item[1].first_index)
    return found


_RESULT_TYPES = frozenset({"step.completed", "step.failed"})


def _kept_execution(
    attempt: AttemptId,
    record: StepRecord | None,
    recorded_by: Mapping[tuple[str, int], int],
    published: Mapping[AttemptId, Published],
) -> int | None:
    """The execution whose output of this attempt is the step's result (None: none is)."""
    if record is None or record.attempt != attempt.attempt:
        return None
    if record.status not in (StepStatus.COMPLETED, StepStatus.FAILED):
        return None
    by = recorded_by.get((attempt.step, attempt.attempt))
    if by is not None:
        return by
    return max(
        a.execution for a in published if a.step == attempt.step and a.attempt == attempt.attempt
    )


class FinalAttempts:
    """The consumer's view of a run's stream: each step's output once, the final attempt's.

    Feed it the events in index order through :meth:`admit`; it answers whether to present
    each one. Output of an attempt known to be abandoned is left out. An abandoned attempt
    whose output was already presented - live, before anyone knew - is announced by its
    `step.abandoned` event, which is admitted so the consumer can take that output back; other
    `step.abandoned` events are left out. :meth:`learn` reads ahead (the history a subscriber
    is about to replay), so replayed output of an attempt abandoned later in that history is
    never presented at all.

    Args:
        after: The cursor the consumer resumes from: it may have been shown events up to it.
    """

    def __init__(self, after: int | None = None) -> None:
        self._after = after or 0
        self._abandoned: set[AttemptId] = set()
        self._shown: set[AttemptId] = set()

    def learn(self, events: Iterable[object]) -> None:
        """Note the abandoned attempts that these (upcoming) events announce."""
        for data in events:
            notice = abandoned_attempt(data)
            if notice is not None:
                self._abandoned.add(notice[0])

    def admit(self, data: object) -> bool:
        """Whether to present this event (the next one in index order)."""
        notice = abandoned_attempt(data)
        if notice is not None:
            named, span = notice
            self._abandoned.add(named)
            return named in self._shown or span.first_index <= self._after
        attempt = output_attempt(data)
        if attempt is None:
            return True
        if attempt in self._abandoned:
            return False
        self._shown.add(attempt)
        return True


def _attempt(data: Mapping[str, Any]) -> AttemptId | None:
    step, attempt, execution = data.get("step"), data.get("attempt"), data.get("execution")
    if isinstance(step, str) and _is_int(attempt) and _is_int(execution):
        return AttemptId(step, attempt, execution)
    return None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
