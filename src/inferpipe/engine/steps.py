"""The step API: each call is recorded once in the run's journal and replayed from it."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from inferpipe.core import expr
from inferpipe.core import json as jsonc
from inferpipe.core.durations import Duration, datetime_to_ms, to_ms
from inferpipe.core.errors import (
    InferpipeError,
    LeaseLost,
    NonRetriableError,
    OutputNotSerializableError,
    PayloadTooLargeError,
    RetryAfterError,
    StepError,
    error_payload,
)
from inferpipe.core.events import FUNCTION_FINISHED, Event, validate_event
from inferpipe.core.records import NewWait, StepKind, StepRecord, StepStatus, WaitKind
from inferpipe.core.redaction import redact, redact_decoded, redact_event, sensitive_key
from inferpipe.engine import streaming
from inferpipe.engine.journal import RunJournal, active_step
from inferpipe.engine.lifecycle import StepStart
from inferpipe.engine.score_steps import ScoringSteps
from inferpipe.store.base import PlannedEvent, Progress

T = TypeVar("T")

_ARGS: Any = object()
"""Sentinel: record the step's arguments as its input."""

_NEVER_RETRIED = (
    NonRetriableError,
    OutputNotSerializableError,
    PayloadTooLargeError,
)
"""Errors another attempt cannot fix."""


class Steps(ScoringSteps):
    """`ctx.step`: durable steps. Every method takes a step id, unique within the function
    (a repeated id gets an occurrence suffix, so loops work)."""

    def __init__(self, journal: RunJournal, trigger: dict[str, Any]) -> None:
        self._j = journal
        self._trigger = trigger
        self._sensitive = sensitive_key(journal.limits.redact_keys)
        self._args_sensitive: bool | None = None  #: "args" or "kwargs" names a secret

    async def run(
        self,
        step_id: str,
        fn: Callable[..., Any],
        *args: Any,
        _kind: StepKind = StepKind.RUN,
        _input: Any = _ARGS,
        _meta: Callable[[Any], dict[str, Any]] | None = None,
        _retries: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` once and record its result; replays return the record.

        A sync `fn` runs in a thread, off the event loop. Failures are retried with backoff
        (the function's `retries`, or `_retries` when given); after the last attempt a
        `StepError` is raised here. An exception with a `retry_after_s` attribute sets the
        delay before the next attempt; one with `retryable = False` is not retried.

        Features built on steps (model calls, graph nodes) pass `_kind` (recorded step kind),
        `_input` (what to record as the input instead of the arguments), `_meta` (computes
        metadata such as tokens and cost from the output, recorded with the step) and
        `_retries` (attempts after the first for this step only, e.g. a graph node's own
        `retries`; the function's backoff still sets the delays).
        """
        j = self._j
        key = j.key_for(step_id)
        rec = j.records.get(key)
        if rec is not None and rec.status is StepStatus.COMPLETED:
            return await j.resolve(rec.output)
        if rec is not None and rec.status is StepStatus.FAILED:
            raise _step_error(rec)
        if (
            rec is not None
            and rec.status is StepStatus.RETRYING
            and (rec.wake_at_ms or 0) > j.now_ms()
        ):
            return await j.park(key, rec.wake_at_ms)
        if rec is None:
            await j.reach_new(key)
        j.check_continue()
        attempt = rec.attempt + 1 if rec is not None else 0
        history = list(rec.meta.get("attempts", [])) if rec is not None else []
        history += j.abandoned_attempt(attempt)
        step = StepRecord(
            j.run.id,
            key,
            step_id,
            _kind,
            StepStatus.COMPLETED,
            attempt,
            seq=rec.seq if rec else j.next_seq(),
            started_at_ms=j.now_ms(),
            input=self._plain_input(args, kwargs, _input)
            or await self._recorded_input(args, kwargs, _input),
        )
        failure: Exception | None = None
        if j.listener is not None:
            j.listener.step_started(j.run, StepStart(key, step_id, _kind, attempt))
        j.started()
        # The step stays in flight until its record is committed: otherwise a run whose other
        # branches are parked looks quiescent during the commit and is suspended too early.
        try:
            try:
                returned = [await _call(step_id, fn, args, kwargs, (key, attempt), j.check_lease)]
                value, raw, extra = _recordable(j, step_id, returned, _meta)
            except LeaseLost:
                raise  # the step's code was not called: the lease may have ended
            except Exception as exc:
                failure = exc
            if failure is not None:
                retry_at_ms = await self._failed(step, failure, history, _retries)
            else:
                if raw is None:  # redacted: the JSON of what is recorded
                    raw = jsonc.dumps(value)
                size = len(raw)
                step.output = value if j.stays_inline(raw) else await j.offload(value, raw)
                raw = None
                step.finished_at_ms = j.now_ms()
                step.meta = {**extra, "attempts": history} if history else extra
                # The function runs on while the record commits (see `RunJournal.record`).
                await j.record(step, size)
        finally:
            j.finished()
        if failure is not None:
            return await j.park(key, retry_at_ms)
        return value

    def _plain_input(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], given: Any
    ) -> dict[str, Any] | None:
        """A step's arguments as recorded, when each one is a plain JSON scalar
        (`jsonc.is_plain`, as in `ctx.step.run("s", fn, i)`), none is named as a secret and
        their JSON is surely small enough to stay in the row: no round trip, redaction walk
        or size check needed. None otherwise (`_recorded_input`)."""
        if given is not _ARGS or not _plain_args(args, kwargs, self._j.limits.offload_bytes):
            return None
        if self._args_sensitive is None:
            sensitive = self._sensitive
            self._args_sensitive = sensitive("args") or sensitive("kwargs")
        if self._args_sensitive or any(map(self._sensitive, kwargs)):
            return None
        return {"args": list(args), "kwargs": kwargs}

    async def _recorded_input(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], given: Any
    ) -> Any:
        """What a step records as its input: `given`, else its arguments; redacted, and with
        its largest members offloaded."""
        j = self._j
        value = _safe_input(args, kwargs) if given is _ARGS else jsonc.roundtrip(given)
        return await j.offload_fields(redact_decoded(value, j.limits.redact_keys))

    async def _run_variant(self, step_id: str, fn: Any) -> Any:
        return await self.run(step_id, fn)

    async def _failed(
        self, step: StepRecord, exc: Exception, history: list[Any], retries: int | None = None
    ) -> int:
        """Record a failed attempt; raise StepError when final, else return when to retry.
        `retries` overrides the function's retries for this step when not None."""
        j = self._j
        if retries is None:
            retries = j.planner.retries_of(j.run.function_id)
        now = j.now_ms()
        step.error = error_payload(exc)
        # The history keeps what each attempt raised; the traceback is the last one's only.
        brief = {k: v for k, v in step.error.items() if k != "traceback"}
        history.append({**brief, "attempt": step.attempt, "at_ms": now})
        step.finished_at_ms = now
        step.meta = {"attempts": history}
        final = isinstance(exc, _NEVER_RETRIED) or getattr(exc, "retryable", None) is False
        if final or step.attempt >= retries:
            step.status = StepStatus.FAILED
            await j.commit(Progress(steps=[step]))
            raise _step_error(j.records[step.key]) from exc
        delay = j.planner.backoff_ms(j.run.function_id, step.attempt)
        if isinstance(exc, RetryAfterError):
            delay = exc.retry_delay_ms(now)
        elif isinstance(getattr(exc, "retry_after_s", None), int | float):
            delay = max(delay, to_ms(exc.retry_after_s))  # type: ignore[attr-defined]
        step.status = StepStatus.RETRYING
        step.wake_at_ms = now + delay
        await j.commit(Progress(steps=[step]))
        return step.wake_at_ms

    async def sleep(self, step_id: str, duration: Duration) -> None:
        """Sleep durably: the run is parked (holding no memory) and resumes after `duration`."""
        key = self._j.key_for(step_id)
        rec = self._j.records.get(key)
        wake = rec.wake_at_ms if rec and rec.wake_at_ms else self._j.now_ms() + to_ms(duration)
        await self._sleep(key, step_id, wake or 0)

    async def sleep_until(self, step_id: str, when: datetime | int) -> None:
        """Sleep until a datetime (timezone-aware) or a Unix time in milliseconds. The target
        is fixed when the sleep is first recorded: a replay uses the recorded wake time, so a
        target computed from the current time (`datetime.now(UTC) + ...`) still wakes."""
        key = self._j.key_for(step_id)
        rec = self._j.records.get(key)
        if rec is not None and rec.wake_at_ms is not None:
            wake = rec.wake_at_ms
        elif isinstance(when, datetime):
            wake = datetime_to_ms(when)
        elif isinstance(when, int) and not isinstance(when, bool):
            wake = when
        else:
            raise ValueError(
                f"sleep_until({step_id!r}) takes a timezone-aware datetime or Unix milliseconds "
                f"(int), not {when!r}"
            )
        await self._sleep(key, step_id, wake)

    async def _sleep(self, key: str, step_id: str, wake_at_ms: int) -> None:
        j = self._j
        rec = j.records.get(key)
        if rec is not None and rec.status is StepStatus.COMPLETED:
            return
        if rec is None:
            await j.reach_new(key)
            j.check_continue()
        now = j.now_ms()
        step = StepRecord(
            j.run.id,
            key,
            step_id,
            StepKind.SLEEP,
            StepStatus.SLEEPING,
            seq=rec.seq if rec else j.next_seq(),
            started_at_ms=rec.started_at_ms if rec else now,
            wake_at_ms=wake_at_ms,
        )
        if now >= wake_at_ms:
            step.status = StepStatus.COMPLETED
            step.finished_at_ms = now
            await j.commit(Progress(steps=[step]))
            return
        if rec is None:
            await j.commit(Progress(steps=[step]))
        await j.park(key, wake_at_ms)

    async def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        timeout: Duration,
        if_exp: str | None = None,
        lookback: Duration | None = None,
    ) -> Event | None:
        """Wait for an event named `event` for which `if_exp` holds (`event.` is this run's
        trigger, `async.` the candidate). Returns it, or None after `timeout`. With `lookback`,
        an event received up to that long before the wait began also matches."""
        j = self._j
        key = j.key_for(step_id)
        rec = j.records.get(key)
        if rec is None:
            if if_exp:
                expr.check_variables(if_exp, {"event", "async"}, where=f"step {step_id!r}")
            await j.reach_new(key)
            j.check_continue()
            bound = expr.bind_event(if_exp, self._trigger) if if_exp else None
            wait = NewWait(
                j.run.id,
                WaitKind.STEP,
                event,
                bound,
                key,
                expires_at_ms=j.now_ms() + to_ms(timeout),
                lookback_ms=to_ms(lookback) if lookback is not None else None,
            )
            rec = await self._open_wait(
                key,
                step_id,
                StepKind.WAIT_FOR_EVENT,
                wait,
                {
                    "event": event,
                    "if": bound,
                    "timeout_ms": to_ms(timeout),
                    "lookback_ms": to_ms(lookback) if lookback is not None else None,
                },
            )
        found = await self._await_wait(key, rec)
        return Event.from_dict(found) if found else None

    async def _open_wait(
        self,
        key: str,
        step_id: str,
        kind: StepKind,
        wait: NewWait,
        info: dict[str, Any],
        progress: Progress | None = None,
    ) -> StepRecord:
        j = self._j
        step = StepRecord(
            j.run.id,
            key,
            step_id,
            kind,
            StepStatus.WAITING,
            seq=j.next_seq(),
            started_at_ms=j.now_ms(),
            wake_at_ms=wait.expires_at_ms,
            input=info,
        )
        progress = progress or Progress()
        progress.steps.append(step)
        progress.waits.append(wait)
        result = await j.commit(progress)
        if key in result.resolved:
            step.status = StepStatus.COMPLETED
            step.output = result.resolved[key]
        return j.records[key]

    async def _await_wait(self, key: str, rec: StepRecord) -> Any:
        j = self._j
        if rec.status is StepStatus.COMPLETED:
            return await j.resolve(rec.output)
        if rec.wake_at_ms is not None and j.now_ms() >= rec.wake_at_ms:
            rec.status, rec.output, rec.finished_at_ms = StepStatus.COMPLETED, None, j.now_ms()
            await j.commit(Progress(steps=[rec]))
            return j.records[key].output
        return await j.park(key, rec.wake_at_ms)

    async def send_event(
        self, step_id: str, events: Event | list[Event], *, _engine: bool = False
    ) -> list[str]:
        """Send events once (not again on replay); returns their ids. Names under the engine's
        reserved ``inferpipe/`` prefix are refused (InvalidEventError); `_engine` is for the
        engine's own functions (webhook dispatch)."""
        j = self._j
        key = j.key_for(step_id)
        rec = j.records.get(key)
        if rec is not None and rec.status is StepStatus.COMPLETED:
            return list(rec.output)
        await j.reach_new(key)
        j.check_continue()
        now = j.now_ms()
        trace = j.step_trace(key).as_dict()
        batch = [
            redact_event(
                _traced(
                    validate_event(e, limit_bytes=j.limits.event_bytes, now_ms=now, engine=_engine),
                    trace,
                ),
                j.limits.redact_keys,
            )
            for e in (events if isinstance(events, list) else [events])
        ]
        planned = [
            await j.offload_event(
                PlannedEvent(e, j.planner.plan(e, now, workspace=j.run.workspace))
            )
            for e in batch
        ]
        batch = [p.event for p in planned]
        ids = [e.id for e in batch if e.id]
        step = StepRecord(
            j.run.id,
            key,
            step_id,
            StepKind.SEND_EVENT,
            StepStatus.COMPLETED,
            seq=j.next_seq(),
            started_at_ms=now,
            finished_at_ms=now,
            input=[e.as_dict() for e in batch],
            output=ids,
        )
        await j.commit(Progress(steps=[step], events=planned))
        return list(j.records[key].output)

    async def invoke(
        self,
        step_id: str,
        function_id: str,
        data: dict[str, Any] | None = None,
        *,
        timeout: Duration | None = None,
    ) -> Any:
        """Start `function_id` as a child run and wait for its result; its failure raises
        `StepError` here. The step records the child's return value (or its error)."""
        j = self._j
        key = j.key_for(step_id)
        rec = j.records.get(key)
        if rec is None:
            await j.reach_new(key)
            j.check_continue()
            now = j.now_ms()
            data = await j.offload_fields(redact(data or {}, j.limits.redact_keys))
            child = j.planner.invocation(function_id, data, now, j.run.id, j.step_trace(key))
            wait = NewWait(
                j.run.id,
                WaitKind.STEP,
                FUNCTION_FINISHED,
                f"async.data.run_id == {expr.cel_literal(child.id)}",
                key,
                expires_at_ms=now + to_ms(timeout) if timeout is not None else None,
            )
            rec = await self._open_wait(
                key,
                step_id,
                StepKind.INVOKE,
                wait,
                {"function_id": function_id, "run_id": child.id, "data": data},
                Progress(runs=[child]),
            )
        if rec.status is StepStatus.COMPLETED:
            return await j.resolve(rec.output)
        if rec.status is StepStatus.FAILED:
            raise _step_error(rec)
        if rec.wake_at_ms is not None and j.now_ms() >= rec.wake_at_ms:
            rec.status, rec.finished_at_ms = StepStatus.FAILED, j.now_ms()
            rec.error = {
                "code": "invoke_timeout",
                "type": "InvokeTimeout",
                "message": f"{function_id} did not finish in time",
            }
            await j.commit(Progress(steps=[rec]))
            raise _step_error(j.records[key])
        return await j.park(key, rec.wake_at_ms)


def _traced(event: Event, trace: dict[str, str]) -> Event:
    """An event sent from a step continues the step's trace, unless it carries its own."""
    return event if event.trace is not None else dataclasses.replace(event, trace=trace)


def _step_error(rec: StepRecord) -> StepError:
    err = rec.error or {}
    return StepError(
        rec.name,
        err.get("code", "step_failed"),
        err.get("message", ""),
        err.get("type", ""),
        err.get("traceback"),
    )


_PLAIN_JSON_BYTES = 26
"""The most JSON a plain scalar other than a string takes, with its separator."""


def _plain_args(args: tuple[Any, ...], kwargs: dict[str, Any], inline_bytes: int) -> bool:
    """Whether each argument is a plain JSON scalar (`jsonc.is_plain`) and their JSON is
    surely at most `inline_bytes`."""
    room = inline_bytes - 32  # the object around them
    for value in args:
        if not jsonc.is_plain(value):
            return False
        room -= 6 * len(value) + 3 if type(value) is str else _PLAIN_JSON_BYTES
    for name, value in kwargs.items():
        if not jsonc.is_plain(value) or not name.isascii():
            return False
        room -= 6 * len(name) + 4
        room -= 6 * len(value) + 3 if type(value) is str else _PLAIN_JSON_BYTES
    return room >= 0  # an ASCII character takes 6 bytes of JSON at most (\u001f)


def _safe_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not args and not kwargs:
        return None
    try:
        return jsonc.roundtrip({"args": list(args), "kwargs": kwargs})
    except InferpipeError:
        return {"repr": repr((args, kwargs))[:1000]}


async def _call(
    step_id: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    attempt: tuple[str, int],
    check_lease: Callable[[], None],
) -> Any:
    """Call a step's code; `check_lease` runs right before it, with nothing in between that
    may wait (a sync callable waits for a thread: it is checked in that thread)."""
    token = active_step.set(step_id)
    attempt_token = streaming.step_attempt.set(attempt)  # so its stream events name it
    try:
        if _is_async(fn):
            check_lease()
            return await fn(*args, **kwargs)
        # The result comes back through a box, not the executor's future: the future outlives
        # this call, and it would keep a 100 MB output alive after the step dropped it.
        box: list[Any] = []
        await asyncio.to_thread(lambda: box.append(_checked(check_lease, fn, args, kwargs)))
        result = box.pop()
        if inspect.isawaitable(result):
            return await result
        return result
    finally:
        streaming.step_attempt.reset(attempt_token)
        active_step.reset(token)


def _recordable(
    j: RunJournal,
    step_id: str,
    returned: list[Any],
    meta: Callable[[Any], dict[str, Any]] | None,
) -> tuple[Any, bytes | None, dict[str, Any]]:
    """What a step returned (taken out of `returned`) as it is recorded and returned: its
    value, redacted before it is stored *and* returned (so a replay sees the same value), its
    JSON when that is the value's (else None), and its metadata (`_meta`). A large output is
    held twice at most: as its JSON and its value, not also as the object the step returned."""
    output = returned.pop()
    extra = redact_decoded(jsonc.roundtrip(meta(output)), j.limits.redact_keys) if meta else {}
    what = f"output of step {step_id!r}"
    raw = jsonc.dumps(output, what=what, limit_bytes=j.limits.step_output_bytes)
    if isinstance(output, str) or jsonc.is_plain(output):  # its own replay value, no secret
        return output, raw, extra
    del output
    loaded = jsonc.loads(raw)
    value = redact_decoded(loaded, j.limits.redact_keys)
    return value, raw if value is loaded else None, extra


def _is_async(fn: Callable[..., Any]) -> bool:
    """`inspect.iscoroutinefunction`, read off the code's flags first when it has them (an
    `async def` function: the flags say so; the full check costs more than the step)."""
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_flags & inspect.CO_COROUTINE:
        return True
    return inspect.iscoroutinefunction(fn)


def _checked(
    check_lease: Callable[[], None],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    check_lease()
    return fn(*args, **kwargs)
