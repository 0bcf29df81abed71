"""Run streams: every run has a topic; the engine publishes its lifecycle there and user code
publishes its own events (tokens, progress).

Every event carries the `execution` that published it, and events from inside a step carry
the step's key and attempt; abandoned attempts are announced with `step.abandoned` (see
`inferpipe.core.run_stream` for the contract, docs/streams.md for the guide).

Publishing never fails a run: a stream backend that is down is logged and skipped, since the
journal (not the stream) is the record of what happened. Step and run outputs too large to
travel in an event are sent as a reference (size and preview) that a client resolves through
the API, so no event is dropped for its size.
"""

from __future__ import annotations

import collections
import contextvars
import dataclasses
import logging
from typing import Any

from inferpipe.core import json as jsonc
from inferpipe.core import run_stream
from inferpipe.core.errors import InferpipeError
from inferpipe.core.records import Run, StepKind, StepRecord, StepStatus
from inferpipe.core.run_stream import run_topic
from inferpipe.engine.journal import RunJournal
from inferpipe.store import payloads
from inferpipe.store.blobs import BlobError
from inferpipe.streams.errors import InvalidPayloadError
from inferpipe.streams.pubsub import PubSub, StreamEvent, Subscription

_log = logging.getLogger("inferpipe.streams")

INLINE_OUTPUT_BYTES = 16 * jsonc.KB
"""Largest step or run output sent whole in a stream event; a larger one is referenced."""

PREVIEW_CHARS = 200
"""Characters of a referenced output's JSON kept in the event as a preview."""

step_attempt: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "step_attempt", default=None
)
"""The (step key, attempt) whose callable is running in this context; set by `Steps.run`."""


class RunStream:
    """`ctx.stream`: publish to this run's stream, replay-aware, for one execution of the run.

    Inside a step, events are published when the step executes (a replay, which returns the
    recorded result, publishes nothing), and carry the step's key and attempt. Outside steps,
    events are not published again while the run replays its journal. An execution that lost
    its lease publishes nothing more.
    """

    def __init__(self, journal: RunJournal, pubsub: PubSub | None) -> None:
        self._j = journal
        self._pubsub = pubsub
        self._published: dict[tuple[str, int], run_stream.Published] = {}

    @property
    def topic(self) -> str:
        return run_topic(self._j.run.id)

    @property
    def execution(self) -> int:
        """This execution's number (`Run.executions` once claimed: 1, 2, ...)."""
        return self._j.run.executions

    async def publish(self, data: Any, *, kind: str = "user") -> None:
        """Publish `data` (JSON) to the run's stream as an event of `kind`.

        Raises:
            ValueError: `kind` is an engine event type (`run.*`, `step.*`).
            InvalidPayloadError: `data` is not JSON, or too large for the stream.
        """
        if run_stream.is_engine_type(kind):
            raise ValueError(f"stream event kind {kind!r} is reserved for the engine")
        attempt = step_attempt.get()
        if self._pubsub is None or self._j.lease_lost:
            return
        if attempt is None and self._j.replaying:
            return
        # A client must not see what follows a step result that a crash could still lose.
        await self._j.durable()
        payload: dict[str, Any] = {
            "type": kind,
            "data": await self._offloaded(data),
            "execution": self.execution,
        }
        if attempt is not None:
            payload["step"], payload["attempt"] = attempt
        event = await publish(self._pubsub, self._j.run.id, payload, user=True)
        if event is not None and attempt is not None:
            span = self._published.get(attempt)
            if span is None:
                self._published[attempt] = run_stream.Published(event.index, event.index)
            else:
                span.add(event.index)

    async def _offloaded(self, data: Any) -> Any:
        """`data` as the topic keeps it: a reference when it is over the offload threshold
        (the topic's history stays small; readers get the value, `resolved`)."""
        try:
            raw = jsonc.dumps(data)
        except InferpipeError:  # not JSON: the stream refuses it with its own error
            return data
        ceiling = self._j.limits.stream_bytes
        if len(raw) > ceiling:
            raise InvalidPayloadError(
                self.topic, f"its JSON is {len(raw)} bytes, over the limit of {ceiling}"
            )
        try:
            return await self._j.payloads.offload(data, raw)
        except BlobError:  # publishing never fails a run: the topic keeps the value itself
            _log.warning("run %s: could not offload stream data", self._j.run.id, exc_info=True)
            return data

    async def recorded(self, steps: list[StepRecord]) -> None:
        """Publish the lifecycle events of steps just recorded; a failed attempt that will be
        retried and had published output is announced as abandoned."""
        for step in steps:
            if step.kind in (StepKind.DEFER, StepKind.PATCH):  # records, not steps that ran
                continue
            await publish(self._pubsub, step.run_id, step_event(step, self.execution))
            span = self._published.pop((step.key, step.attempt), None)
            if step.status is StepStatus.RETRYING and span is not None:
                attempt = run_stream.AttemptId(step.key, step.attempt, self.execution)
                notice = run_stream.abandoned_event(
                    attempt, span, run_stream.RETRIED, self.execution
                )
                await publish(self._pubsub, step.run_id, notice)

    async def recover(self) -> None:
        """As a resumed execution starts: announce the attempts of earlier executions that
        published output and will never be the step's result (the execution crashed or lost
        its lease before recording them), before this execution publishes anything."""
        if self._pubsub is None or self._j.run.executions <= 1:
            return
        try:
            history = await self._pubsub.get_history(self.topic)
        except Exception:
            _log.warning("run %s: could not read its stream", self._j.run.id, exc_info=True)
            return
        found = run_stream.abandoned_before(
            ((e.index, e.data) for e in history), self._j.records, self.execution
        )
        for attempt, span, reason in found:
            notice = run_stream.abandoned_event(attempt, span, reason, self.execution)
            await publish(self._pubsub, self._j.run.id, notice)


async def publish(
    pubsub: PubSub | None,
    run_id: str,
    payload: dict[str, Any],
    *,
    final: bool = False,
    user: bool = False,
) -> StreamEvent | None:
    """Publish to the run's topic; a backend failure is logged, not raised (None returned).
    With `user`, data the stream refuses (not JSON, too large) raises to the caller."""
    if pubsub is None:
        return None
    try:
        return await pubsub.publish(run_topic(run_id), payload, final=final)
    except ValueError:  # InvalidPayloadError: the data, not the backend
        if user:
            raise
        _log.warning("run %s: stream refused %s", run_id, payload.get("type"), exc_info=True)
    except Exception:
        _log.warning(
            "run %s: could not publish %s to its stream", run_id, payload.get("type"), exc_info=True
        )
    return None


async def resolved(event: StreamEvent, readers: payloads.Payloads) -> StreamEvent:
    """`event` with the offloaded data of a user event read back, for a subscriber (live or
    replaying history). A blob that cannot be read (swept, another workspace's) leaves the
    reference, with its size and preview."""
    data = event.data
    if not isinstance(data, dict) or not payloads.has_refs(data.get("data")):
        return event
    try:
        value = await readers.resolve(data["data"])
    except BlobError:
        _log.warning("stream %s: could not read offloaded data", event.topic, exc_info=True)
        return event
    return dataclasses.replace(event, data={**data, "data": value})


_STEP_EVENT_TYPES = {status: f"step.{status.value}" for status in StepStatus}
_KINDS = {kind: kind.value for kind in StepKind}
"""Looked up, not built per event (an enum's `value` is a descriptor call)."""


def step_event(step: StepRecord, execution: int) -> dict[str, Any]:
    """The lifecycle event for a recorded step, published by `execution`."""
    event: dict[str, Any] = {
        "type": _STEP_EVENT_TYPES[step.status],
        "step": step.key,
        "kind": _KINDS[step.kind],
        "attempt": step.attempt,
        "execution": execution,
        "output": None,
        "error": step.error,
        "wake_at_ms": step.wake_at_ms,
    }
    if step.status is StepStatus.COMPLETED:
        event["output"], ref = _inline_or_ref(step.output)
        if ref is not None:
            event["output_ref"] = {"run_id": step.run_id, "step": step.key, **ref}
    return event


def run_event(run: Run, kind: str, **extra: Any) -> dict[str, Any]:
    """A run lifecycle event (`run.<kind>`) of the execution holding `run`'s current lease."""
    event = {
        "type": f"run.{kind}",
        "run_id": run.id,
        "function_id": run.function_id,
        "execution": run.executions,
        **extra,
    }
    if "output" in event:
        event["output"], ref = _inline_or_ref(event["output"])
        if ref is not None:
            event["output_ref"] = {"run_id": run.id, **ref}
    return event


def _inline_or_ref(output: Any) -> tuple[Any, dict[str, Any] | None]:
    """The output itself if it is small, else None and its size and preview."""
    if output is None or isinstance(output, bool | int | float):
        return output, None
    blob = payloads.ref_of(output)
    if blob is not None:  # offloaded: the row keeps its size and preview already
        return None, {"size_bytes": blob.size_bytes, "preview": blob.preview}
    raw = jsonc.dumps(output)
    if len(raw) <= INLINE_OUTPUT_BYTES:
        return output, None
    preview = raw[: PREVIEW_CHARS * 4].decode("utf-8", errors="ignore")[:PREVIEW_CHARS]
    return None, {"size_bytes": len(raw), "preview": preview}


class FinalAttemptStream:
    """A run's stream as a client presents it: each step's output once, the final attempt's
    (`inferpipe.core.run_stream.FinalAttempts`); other events as they are.

    The retained history after the cursor is read first, so output of an attempt that the
    history itself shows abandoned is never delivered; then live events follow. Open it with
    :meth:`open`, which raises the cursor errors of `PubSub.subscribe_with_replay`.
    """

    def __init__(
        self, history: list[StreamEvent], live: Subscription, view: run_stream.FinalAttempts
    ) -> None:
        self._history = collections.deque(history)
        self._live = live
        self._view = view
        self._skipped = 0
        self.omitted = 0
        """Events left out just before the one last delivered."""

    @classmethod
    async def open(cls, pubsub: PubSub, topic: str, after: int | None) -> FinalAttemptStream:
        history = await pubsub.get_history(topic, after)
        view = run_stream.FinalAttempts(after)
        view.learn(event.data for event in history)
        live = await pubsub.subscribe_with_replay(topic, history[-1].index if history else after)
        return cls(history, live, view)

    def __aiter__(self) -> FinalAttemptStream:
        return self

    async def __anext__(self) -> StreamEvent:
        while True:
            event = self._history.popleft() if self._history else await anext(self._live)
            if self._view.admit(event.data):
                self.omitted, self._skipped = self._skipped, 0
                return event
            self._skipped += 1

    async def close(self) -> None:
        self._history.clear()
        await self._live.close()

    async def __aenter__(self) -> FinalAttemptStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
