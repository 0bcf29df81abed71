"""Cron schedules: each tick becomes an event whose id makes it start exactly one run."""

from __future__ import annotations

from dataclasses import dataclass

from inferpipe.core.events import CRON_TICK, Event
from inferpipe.engine.functions import CronTrigger, Registry


@dataclass(slots=True)
class _Schedule:
    function_id: str
    trigger: CronTrigger
    next_ms: int


class CronSchedule:
    """The next tick of every cron trigger; due ticks become `inferpipe/scheduled.tick` events.

    The event id is `cron:<function>:<tick>`, and events are deduplicated by id, so however many
    workers see the same tick, one run starts.
    """

    def __init__(self, registry: Registry, now_ms: int) -> None:
        self._schedules = [
            _Schedule(fn.id, trig, trig.next_after(now_ms))
            for fn in registry.all()
            for trig in fn.cron_triggers
        ]

    def next_tick_ms(self) -> int | None:
        return min((s.next_ms for s in self._schedules), default=None)

    def due(self, now_ms: int) -> list[Event]:
        events = []
        for sched in self._schedules:
            while sched.next_ms <= now_ms:
                events.append(
                    Event(
                        CRON_TICK,
                        {
                            "function_id": sched.function_id,
                            "cron": sched.trigger.cron,
                            "tick_ms": sched.next_ms,
                        },
                        id=f"cron:{sched.function_id}:{sched.next_ms}",
                        ts_ms=sched.next_ms,
                    )
                )
                sched.next_ms = sched.trigger.next_after(sched.next_ms)
        return events
