"""Function definitions, their triggers and options, and the registry that plans runs."""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from croniter import croniter
from pydantic import BaseModel

from inferpipe.core import expr
from inferpipe.core.durations import Duration, to_ms
from inferpipe.core.errors import ConfigurationError, DuplicateFunctionError, UnknownFunctionError
from inferpipe.core.events import CRON_TICK, DEFERRED, FUNCTION_FAILED, FUNCTION_INVOKED, Event
from inferpipe.core.experiments import unit_hash
from inferpipe.core.ids import new_id
from inferpipe.core.records import NewRun, NewWait, WaitKind
from inferpipe.core.trace_context import TraceContext
from inferpipe.engine.context import Context
from inferpipe.engine.flow import FlowControl, plan_flow
from inferpipe.engine.flow_rules import validate_flow

Handler = Callable[[Context], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """Start a run for each event named `event` (for which `if_exp` holds, when given)."""

    event: str
    if_exp: str | None = None


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """Start a run at each tick of a cron schedule (UTC)."""

    cron: str

    def next_after(self, after_ms: int) -> int:
        start = datetime.fromtimestamp(after_ms / 1000, tz=UTC)
        nxt: datetime = croniter(self.cron, start).get_next(datetime)
        return int(nxt.timestamp() * 1000)


Trigger = EventTrigger | CronTrigger


def on_event(event: str, if_exp: str | None = None) -> EventTrigger:
    """Trigger on an event name, optionally filtered by a CEL expression over `event`."""
    return EventTrigger(event, if_exp)


def on_cron(cron: str) -> CronTrigger:
    """Trigger on a cron schedule such as ``"*/5 * * * *"`` (UTC)."""
    return CronTrigger(cron)


@dataclass(frozen=True, slots=True)
class CancelOn:
    """Cancel a run when `event` arrives and `if_exp` holds (`event.` = trigger, `async.` =
    the incoming event), within `timeout` of the run's start when given."""

    event: str
    if_exp: str | None = None
    timeout: Duration | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between step attempts."""

    base_s: float = 1.0
    max_s: float = 600.0
    jitter: float = 0.5  #: the fraction of each delay that is randomized

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> int:
        raw = min(self.max_s, self.base_s * (2**attempt))
        spread = (rng or random).random() * self.jitter * raw
        return int((raw - spread) * 1000)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """`start`: cancel a run not started within this long of being queued;
    `finish`: cancel a run still unfinished this long after it started."""

    start: Duration | None = None
    finish: Duration | None = None


@dataclass(frozen=True, slots=True)
class AttachedScorer:
    """A scorer run after each finished run of a function, for a sampled share of runs."""

    scorer_id: str
    rate: float = 1.0

    def samples(self, run_id: str) -> bool:
        """Deterministic per run: a retried or replayed run decides the same way."""
        return unit_hash("sample", self.scorer_id, run_id) < self.rate


@dataclass(slots=True)
class FunctionDef:
    """A registered durable function."""

    id: str
    handler: Handler
    triggers: list[Trigger] = field(default_factory=list)
    retries: int = 4
    backoff: Backoff = field(default_factory=Backoff)
    cancel_on: list[CancelOn] = field(default_factory=list)
    timeouts: Timeouts = field(default_factory=Timeouts)
    description: str = ""
    input_model: type[BaseModel] | None = None
    """Validates `data` at `defer()` and is `ctx.input` in the run."""
    scorers: list[AttachedScorer] = field(default_factory=list)
    is_scorer: bool = False
    """A scorer's returned `Score` is stored on the run that started it (its parent)."""
    flow: FlowControl = field(default_factory=FlowControl)
    """Concurrency, throttle, rate limit, debounce, batch, priority, idempotency, singleton."""
    gate: Callable[[str], bool] | None = None
    """Whether its event triggers start runs in a workspace (False: the event starts none of
    this function there). Called in the commit path of every matching event, so it must be
    quick and must not block: a cached answer (webhook delivery skips its dispatch run in a
    workspace with no subscription)."""
    quiet: bool = False
    """Its runs send no lifecycle events (`function.finished`, `function.failed`): their end
    triggers nothing and fires no webhook, and `step.invoke` cannot wait for them (shadow
    runs). Its deferred runs and scorers still start."""

    @property
    def event_triggers(self) -> list[EventTrigger]:
        return [t for t in self.triggers if isinstance(t, EventTrigger)]

    @property
    def cron_triggers(self) -> list[CronTrigger]:
        return [t for t in self.triggers if isinstance(t, CronTrigger)]


def validate_function(fn: FunctionDef) -> None:
    """Raise ConfigurationError naming the function and the option at fault."""
    where = f"function {fn.id!r}"
    if not isinstance(fn.id, str) or not fn.id.strip():
        raise ConfigurationError("function id must be a non-empty string")
    if not inspect.iscoroutinefunction(fn.handler):
        raise ConfigurationError(f"{where}: the handler must be an `async def` function")
    if isinstance(fn.retries, bool) or not isinstance(fn.retries, int) or fn.retries < 0:
        raise ConfigurationError(f"{where}: retries must be an integer >= 0, got {fn.retries!r}")
    _validate_triggers(fn, where)
    for cancel in fn.cancel_on:
        if cancel.if_exp:
            expr.check_variables(cancel.if_exp, {"event", "async"}, where=f"{where} cancel_on")
        _duration(where, "cancel_on timeout", cancel.timeout)
    for attached in fn.scorers:
        if not 0.0 <= attached.rate <= 1.0:
            raise ConfigurationError(f"{where}: scorer sampling rate must be within 0..1")
    _duration(where, "start timeout", fn.timeouts.start)
    _duration(where, "finish timeout", fn.timeouts.finish)
    validate_flow(fn.id, fn.flow)


def _validate_triggers(fn: FunctionDef, where: str) -> None:
    for trig in fn.event_triggers:
        if not trig.event:
            raise ConfigurationError(f"{where}: an event trigger needs an event name")
        if trig.if_exp:
            expr.check_variables(trig.if_exp, {"event"}, where=f"{where} trigger filter")
    for cron in fn.cron_triggers:
        if not croniter.is_valid(cron.cron):
            raise ConfigurationError(f"{where}: invalid cron schedule {cron.cron!r}")


def _duration(where: str, what: str, value: Duration | None) -> int | None:
    if value is None:
        return None
    try:
        return to_ms(value)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{where}: {what}: {exc}") from exc


class Registry:
    """The functions of an app, and how events turn into runs."""

    def __init__(self) -> None:
        self._functions: dict[str, FunctionDef] = {}
        self._by_event: dict[str, list[tuple[FunctionDef, EventTrigger]]] = {}

    def add(self, fn: FunctionDef) -> None:
        validate_function(fn)
        if fn.id in self._functions:
            raise DuplicateFunctionError(fn.id)
        self._functions[fn.id] = fn
        for trig in fn.event_triggers:
            self._by_event.setdefault(trig.event, []).append((fn, trig))

    def get(self, function_id: str) -> FunctionDef:
        try:
            return self._functions[function_id]
        except KeyError:
            raise UnknownFunctionError(function_id) from None

    def __contains__(self, function_id: object) -> bool:
        return function_id in self._functions

    @property
    def ids(self) -> list[str]:
        return list(self._functions)

    def all(self) -> list[FunctionDef]:
        return list(self._functions.values())

    def plan(self, event: Event, now_ms: int, *, workspace: str) -> list[NewRun]:
        """The runs an (already validated) event starts in `workspace`."""
        body = event.as_dict()
        if event.name == CRON_TICK:
            fn_id = event.data.get("function_id")
            targets = [self._functions[fn_id]] if fn_id in self._functions else []
            return [self.new_run(fn, [body], now_ms) for fn in targets]
        runs = []
        for fn, trig in self._by_event.get(event.name, []):
            if trig.if_exp and not expr.matches(trig.if_exp, {"event": body}):
                continue
            if fn.gate is not None and not fn.gate(workspace):
                continue
            runs.append(self.new_run(fn, [body], now_ms, triggered=True))
        return runs

    def new_run(
        self,
        fn: FunctionDef,
        events: list[dict[str, Any]],
        now_ms: int,
        *,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        triggered: bool = False,
    ) -> NewRun:
        """A run of `fn` for `events`; `triggered`: started by an event trigger (debounce and
        batch apply)."""
        run_id = run_id or new_id()
        start_ms = _duration("", "", fn.timeouts.start)
        run_flow, priority_s = plan_flow(fn.id, fn.flow, events[0], triggered=triggered)
        run = NewRun(
            id=run_id,
            function_id=fn.id,
            event_ids=[e["id"] for e in events],
            input=events,
            ready_at_ms=now_ms,
            parent_run_id=parent_run_id,
            start_deadline_ms=now_ms + start_ms if start_ms is not None else None,
            finish_timeout_ms=_duration("", "", fn.timeouts.finish),
            priority=priority_s,
            flow=run_flow,
        )
        for cancel in fn.cancel_on:
            timeout_ms = _duration("", "", cancel.timeout)
            run.cancel_waits.append(
                NewWait(
                    run_id=run_id,
                    kind=WaitKind.CANCEL,
                    event_name=cancel.event,
                    expression=expr.bind_event(cancel.if_exp, events[0]) if cancel.if_exp else None,
                    expires_at_ms=now_ms + timeout_ms if timeout_ms is not None else None,
                )
            )
        return run

    def invocation(
        self,
        function_id: str,
        data: dict[str, Any],
        now_ms: int,
        parent_run_id: str | None,
        trace: TraceContext | None = None,
    ) -> NewRun:
        """A run started directly, with `data` as its trigger event's data; it continues the
        trace `trace` when given."""
        fn = self.get(function_id)
        event = Event(FUNCTION_INVOKED, data, id=new_id(), ts_ms=now_ms, trace=_headers(trace))
        return self.new_run(fn, [event.as_dict()], now_ms, parent_run_id=parent_run_id)

    def deferred(
        self,
        function_id: str,
        data: dict[str, Any],
        parent: dict[str, Any],
        now_ms: int,
        trace: TraceContext | None = None,
    ) -> NewRun:
        """A run started when its parent finalizes, seeing `data` as input and the parent;
        it continues the trace `trace` (the parent's span) when given."""
        fn = self.get(function_id)
        event = Event(
            DEFERRED,
            {"input": data, "parent": parent},
            id=new_id(),
            ts_ms=now_ms,
            trace=_headers(trace),
        )
        return self.new_run(fn, [event.as_dict()], now_ms, parent_run_id=parent["run_id"])

    def input_model_of(self, function_id: str) -> type[BaseModel] | None:
        return self.get(function_id).input_model

    def retries_of(self, function_id: str) -> int:
        return self.get(function_id).retries

    def backoff_ms(self, function_id: str, attempt: int) -> int:
        return self.get(function_id).backoff.delay_ms(attempt)


def _headers(trace: TraceContext | None) -> dict[str, str] | None:
    return trace.as_dict() if trace is not None else None


def failure_handler(fn_id: str, handler: Handler) -> FunctionDef:
    """The function that runs `handler` when function `fn_id` fails."""
    return FunctionDef(
        id=f"{fn_id}.on_failure",
        handler=handler,
        triggers=[
            on_event(FUNCTION_FAILED, f"event.data.function_id == {expr.cel_literal(fn_id)}")
        ],
        retries=4,
        description=f"on_failure handler of {fn_id}",
    )
