"""Run streams: every run has a topic; the engine publishes its lifecycle there and user code
publishes its own events (tokens, progress).

Publishing never fails a run: a stream backend that is down is logged and skipped, since the
journal (not the stream) is the record of what happened.
"""

from __future__ import annotations

import logging
from typing import Any

from inferpipe.core.records import Run, StepRecord
from inferpipe.engine.journal import RunJournal, active_step
from inferpipe.streams.pubsub import PubSub

_log = logging.getLogger("inferpipe.streams")


def run_topic(run_id: str) -> str:
    """The topic of a run's stream."""
    return f"run:{run_id}"


class RunStream:
    """`ctx.stream`: publish to this run's stream, replay-aware.

    Inside a step, events are published when the step executes (a replay, which returns the
    recorded result, publishes nothing). Outside steps, events are not published again while
    the run replays its journal.
    """

    def __init__(self, journal: RunJournal, pubsub: PubSub | None) -> None:
        self._j = journal
        self._pubsub = pubsub

    @property
    def topic(self) -> str:
        return run_topic(self._j.run.id)

    async def publish(self, data: Any, *, kind: str = "user") -> None:
        """Publish `data` (JSON) to the run's stream as an event of `kind`."""
        if self._pubsub is None:
            return
        if active_step.get() is None and self._j.replaying:
            return
        await publish(self._pubsub, self._j.run.id, {"type": kind, "data": data})


async def publish(
    pubsub: PubSub | None, run_id: str, payload: dict[str, Any], *, final: bool = False
) -> None:
    if pubsub is None:
        return
    try:
        await pubsub.publish(run_topic(run_id), payload, final=final)
    except Exception:
        _log.warning(
            "run %s: could not publish %s to its stream", run_id, payload.get("type"), exc_info=True
        )


def step_event(step: StepRecord) -> dict[str, Any]:
    """The lifecycle event for a recorded step."""
    return {
        "type": f"step.{step.status.value}",
        "step": step.key,
        "kind": step.kind.value,
        "attempt": step.attempt,
        "output": step.output if step.status.value == "completed" else None,
        "error": step.error,
        "wake_at_ms": step.wake_at_ms,
    }


def run_event(run: Run, kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": f"run.{kind}", "run_id": run.id, "function_id": run.function_id, **extra}
