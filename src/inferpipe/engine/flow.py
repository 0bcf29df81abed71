"""Flow control options of a function, and planning them for one run (validation at
registration is in `flow_rules`).

The options are declared on a function (``app.function(concurrency=..., throttle=...)``). When a
run is planned, its key expressions are evaluated over the trigger event here, and the result
(a `RunFlow` of scoped key strings) travels with the `NewRun` to the store, which enforces it
inside its own transactions: at insertion (idempotency, rate limit, singleton, debounce, batch,
fair queueing) and at claim (concurrency, throttle). All state lives in the store, so limits
hold across worker processes and survive restarts.

Example::

    @app.function(
        id="summarize",
        trigger=ip.on_event("doc/uploaded"),
        concurrency=[ip.Concurrency(10), ip.Concurrency(2, key="event.data.customer_id")],
        throttle=ip.Throttle(60, "1m", key="event.data.customer_id"),
        priority="event.data.plan == 'pro' ? 30 : 0",
    )
    async def summarize(ctx: ip.Context) -> str: ...
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from inferpipe.core import expr
from inferpipe.core.durations import Duration, to_ms
from inferpipe.core.records import FlowBuffer, FlowPace, RunFlow

MAX_CONCURRENCY_CONSTRAINTS = 2
"""Concurrency constraints per function (e.g. one for the function, one per customer)."""

MAX_PRIORITY_S = 600
"""A priority expression's result is clamped to this many seconds ahead of or behind the queue."""

MAX_BATCH_SIZE = 1000
"""Events per batch: the whole batch is one run's input."""

MAX_THROTTLE_LIMIT = 1_000_000
"""Throttle starts per period: the store keeps its schedule in units of 1/limit ms (64-bit)."""

MAX_KEY_CHARS = 200
"""Longer evaluated keys are stored as a hash, so a key row stays small."""

Scope = Literal["fn", "env"]


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most `limit` runs execute at once: per function, or per value of `key` (a CEL
    expression over `event`). Runs over the limit wait in order, never dropped; runs of
    different keys take turns, so a busy key cannot starve the others. A sleeping or waiting
    run holds no slot. With ``scope="env"`` the limit is shared by every function of the
    workspace that uses the same key value (`key` is then required).

    Example: ``Concurrency(2, key="event.data.customer_id")``
    """

    limit: int
    key: str | None = None
    scope: Scope = "fn"


@dataclass(frozen=True, slots=True)
class Throttle:
    """At most `limit` run starts per `period` (per `key` value), spread evenly (one every
    period/limit); `burst` more may start back to back after a quiet spell. Runs over the
    pace are delayed, not dropped.

    Example: ``Throttle(60, "1m", key="event.data.api_key_id")``
    """

    limit: int
    period: Duration
    burst: int = 0
    key: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` runs per `period` (per `key` value) in any window of that length; the
    rest are recorded as skipped with the reason.

    Example: ``RateLimit(1, "4h", key="event.data.user_id")``
    """

    limit: int
    period: Duration
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Debounce:
    """Run once per quiet `period` (per `key` value) with the last event; with `timeout`, a
    constant stream of events still runs at most `timeout` after its first event.

    Example: ``Debounce("30s", key="event.data.document_id", timeout="5m")``
    """

    period: Duration
    key: str | None = None
    timeout: Duration | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Collect up to `max_size` events (per `key` value), or what arrived within `timeout` of
    the first, and start one run with them all as `ctx.events`.

    Example: ``Batch(100, "5s", key="event.data.tenant")``
    """

    max_size: int
    timeout: Duration
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Priority:
    """`run`: a CEL expression over `event` giving an integer number of seconds: the run is
    queued as if it had been enqueued that much earlier (positive) or later (negative), within
    ±600 s, also behind a backlog (a run 60 s behind waits for the runs enqueued in the next
    60 s, no more: it is never starved). With concurrency keys, keys take turns and priority
    orders the runs of each key.

    Example: ``Priority(run="event.data.plan == 'enterprise' ? 120 : 0")``
    """

    run: str


@dataclass(frozen=True, slots=True)
class Singleton:
    """At most one unfinished run per `key` value: a newcomer is skipped (``mode="skip"``) or
    cancels the unfinished run and replaces it (``mode="cancel"``).

    Example: ``Singleton(key="event.data.repo", mode="cancel")``
    """

    key: str | None = None
    mode: Literal["skip", "cancel"] = "skip"


@dataclass(frozen=True, slots=True)
class FlowControl:
    """All the flow control options of one function (none by default)."""

    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch: Batch | None = None
    priority: Priority | None = None
    idempotency: str | None = None
    """A CEL key over `event`: one run per key value within 24 h; duplicates are skipped."""
    singleton: Singleton | None = None

    @property
    def empty(self) -> bool:
        return self == FlowControl()


def flow_control(
    *,
    concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
    throttle: Throttle | None = None,
    rate_limit: RateLimit | None = None,
    debounce: Debounce | None = None,
    batch: Batch | None = None,
    priority: Priority | str | None = None,
    idempotency: str | None = None,
    singleton: Singleton | None = None,
) -> FlowControl:
    """Normalize `app.function` keyword options: an int is a function-wide concurrency limit,
    a string a priority expression."""
    if concurrency is None:
        limits: tuple[Concurrency, ...] = ()
    elif isinstance(concurrency, int | Concurrency):
        limits = (Concurrency(concurrency) if isinstance(concurrency, int) else concurrency,)
    else:
        limits = tuple(concurrency)
    return FlowControl(
        concurrency=limits,
        throttle=throttle,
        rate_limit=rate_limit,
        debounce=debounce,
        batch=batch,
        priority=Priority(priority) if isinstance(priority, str) else priority,
        idempotency=idempotency,
        singleton=singleton,
    )


# planning ---------------------------------------------------------------------------------


class FlowKeyError(Exception):
    """A flow key expression failed on an event (a missing field, a type mismatch)."""


def key_value(expression: str, event: dict[str, Any]) -> str:
    """The canonical text of a key expression's value over `event` (hashed when long)."""
    try:
        value = expr.evaluate(expression, {"event": event})
    except expr.ExpressionEvalError as exc:
        raise FlowKeyError(str(exc)) from exc
    text = expr.pin_value(value)
    if len(text) > MAX_KEY_CHARS:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return text


def _scoped(kind: str, fn_id: str, key: str | None, event: dict[str, Any]) -> str:
    return f"{kind}:{fn_id}" if key is None else f"{kind}:{fn_id}:{key_value(key, event)}"


def _concurrency_key(fn_id: str, item: Concurrency, event: dict[str, Any]) -> str:
    if item.scope == "env":
        assert item.key is not None  # validated at registration
        return f"env:{key_value(item.key, event)}"
    if item.key is None:
        return f"fn:{fn_id}"
    return f"fn:{fn_id}:{item.key}={key_value(item.key, event)}"


def plan_flow(
    fn_id: str, flow: FlowControl, event: dict[str, Any], *, triggered: bool
) -> tuple[RunFlow | None, int]:
    """Evaluate a function's flow control over a run's trigger event: the `RunFlow` for the
    store (None without flow control) and the run's priority in seconds. Debounce and batch
    apply to event-triggered runs only (`triggered`); invocations start directly.

    A key that fails on the event (a missing field) does not raise: the run is planned to be
    recorded as skipped with the reason."""
    if flow.empty:
        return None, 0
    priority_s, note = _priority(flow.priority, event)
    try:
        planned = _keys(fn_id, flow, event, triggered=triggered)
    except FlowKeyError as exc:
        return RunFlow(skip_reason=f"flow control key failed on the event: {exc}"), priority_s
    return (planned if note is None else dataclasses.replace(planned, note=note)), priority_s


def _keys(fn_id: str, flow: FlowControl, event: dict[str, Any], *, triggered: bool) -> RunFlow:
    concurrency = tuple((_concurrency_key(fn_id, c, event), c.limit) for c in flow.concurrency)
    keyed = [key for (key, _), c in zip(concurrency, flow.concurrency, strict=True) if c.key]
    throttle = rate = buffer = None
    if flow.throttle is not None:
        t = flow.throttle
        key = _scoped("throttle", fn_id, t.key, event)
        throttle = FlowPace(key, t.limit, to_ms(t.period), t.burst)
    if flow.rate_limit is not None:
        r = flow.rate_limit
        rate = FlowPace(_scoped("rate", fn_id, r.key, event), r.limit, to_ms(r.period))
    if triggered and flow.debounce is not None:
        d = flow.debounce
        max_wait_ms = to_ms(d.timeout) if d.timeout is not None else None
        buffer = FlowBuffer(_scoped("debounce", fn_id, d.key, event), to_ms(d.period), max_wait_ms)
    if triggered and flow.batch is not None:
        b = flow.batch
        key = _scoped("batch", fn_id, b.key, event)
        buffer = FlowBuffer(key, to_ms(b.timeout), max_size=b.max_size, batch=True)
    single = flow.singleton
    return RunFlow(
        concurrency=concurrency,
        # the most specific key takes turns with its peers; else the whole function does
        fair_key=keyed[-1] if keyed else (concurrency[0][0] if concurrency else None),
        throttle=throttle,
        rate_limit=rate,
        idempotency_key=(
            _scoped("idempotency", fn_id, flow.idempotency, event) if flow.idempotency else None
        ),
        singleton_key=_scoped("singleton", fn_id, single.key, event) if single else None,
        singleton_cancels=single is not None and single.mode == "cancel",
        buffer=buffer,
    )


def _priority(priority: Priority | None, event: dict[str, Any]) -> tuple[int, str | None]:
    """Seconds ahead in the queue; an expression that fails gives 0 and a note on the run."""
    if priority is None:
        return 0, None
    try:
        value = expr.evaluate(priority.run, {"event": event})
    except expr.ExpressionEvalError as exc:
        return 0, f"priority 0: {exc}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0, f"priority 0: expression {priority.run!r} gave {value!r}, not a number"
    return max(-MAX_PRIORITY_S, min(MAX_PRIORITY_S, int(value))), None
