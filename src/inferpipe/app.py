"""`App`: the facade an application developer uses."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel

from inferpipe import telemetry as export
from inferpipe.core.durations import Duration
from inferpipe.core.errors import ConfigurationError
from inferpipe.core.events import Event
from inferpipe.core.records import LogRecord, Run, StepRecord
from inferpipe.core.run_stream import run_topic
from inferpipe.core.scores import ScoreRecord
from inferpipe.engine.clock import Clock
from inferpipe.engine.engine import Engine
from inferpipe.engine.flow import (
    Batch,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    flow_control,
)
from inferpipe.engine.functions import (
    AttachedScorer,
    Backoff,
    CancelOn,
    FunctionDef,
    Handler,
    Registry,
    Timeouts,
    Trigger,
    failure_handler,
)
from inferpipe.engine.journal import Limits
from inferpipe.engine.streaming import FinalAttemptStream, resolved
from inferpipe.engine.worker import Worker
from inferpipe.scoring.experiments import VariantStats, compare
from inferpipe.store import Store, store_from_url
from inferpipe.store.base import Page, RunFilter, ScoreFilter
from inferpipe.store.payloads import Payloads
from inferpipe.streams.memory import MemoryPubSub
from inferpipe.streams.pubsub import PubSub, StreamEvent, Subscription
from inferpipe.streams.store import StorePubSub

_log = logging.getLogger("inferpipe.app")


class App:
    """An application: its functions, and the engine that runs them.

    Args:
        id: the application's name.
        database: `sqlite:///path`, `postgresql://...`, or None for $INFERPIPE_DATABASE_URL,
            falling back to a SQLite file under ./.inferpipe.
        workspace: the workspace its events and runs belong to.
        limits: payload limits (512 KB per event, 256 MB per step or run output) and the
            offload threshold (outputs over 256 KB go to the blob store).
        blobs: where offloaded outputs go: `file:///path`, `s3://bucket/prefix` (the `s3`
            extra), or None for $INFERPIPE_BLOBS_URL, falling back to a `blobs` folder beside
            the SQLite file. See docs/payloads.md.
        streams: where run streams go: a `PubSub`, `"memory://"` (one process), `"store"`
            (a table in the app's database, shared by every process using it), a `redis://`
            URL, or None for $INFERPIPE_STREAMS_URL, falling back to memory. See docs/streams.md.
        telemetry: export traces and metrics with OpenTelemetry (the `otel` extra), configured
            by the standard `OTEL_*` variables; None for $INFERPIPE_OTEL, off by default.
            `OTEL_SDK_DISABLED=true` keeps it off. See docs/telemetry.md.

    Example::

        app = inferpipe.App("support")

        @app.function(id="greet", trigger=inferpipe.on_event("user/signed.up"))
        async def greet(ctx: inferpipe.Context) -> str:
            return await ctx.step.run("compose", compose, ctx.event.data["name"])
    """

    def __init__(
        self,
        id: str,
        *,
        database: str | None = None,
        workspace: str = "default",
        limits: Limits | None = None,
        streams: PubSub | str | None = None,
        telemetry: bool | None = None,
        blobs: str | None = None,
    ) -> None:
        self.id = id
        self.database = database
        self.blobs = blobs
        self.workspace = workspace
        self.limits = limits or Limits()
        self.registry = Registry()
        self.streams = streams
        self.telemetry = telemetry
        self._engine: Engine | None = None
        self._export: export.Telemetry | None = None
        self._closing: list[Callable[[], Awaitable[None]]] = []
        self.features: dict[str, object] = {}
        """What features enabled on this app keep of it, by name (e.g. webhook delivery's
        ``"webhooks"``), so that whoever serves the app finds them."""

    def function(
        self,
        *,
        id: str,
        trigger: Trigger | Sequence[Trigger] | None = None,
        retries: int = 4,
        backoff: Backoff | None = None,
        on_failure: Handler | None = None,
        cancel_on: CancelOn | Sequence[CancelOn] | None = None,
        timeouts: Timeouts | None = None,
        description: str = "",
        input: type[BaseModel] | None = None,
        scorers: Sequence[FunctionDef | AttachedScorer] = (),
        concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch: Batch | None = None,
        priority: Priority | str | None = None,
        idempotency: str | None = None,
        singleton: Singleton | None = None,
    ) -> Callable[[Handler], FunctionDef]:
        """Register a durable function.

        Args:
            id: unique within the app.
            trigger: `on_event(...)`, `on_cron(...)`, a list of them, or None (invoke only).
            retries: attempts after the first, per step (4 = 5 attempts).
            backoff: delays between attempts (exponential with jitter by default).
            on_failure: an async handler run (durably) when a run of this function fails;
                its `ctx.event.data` holds `run_id`, `function_id`, `error` and `event`.
            cancel_on: events that cancel a running run.
            timeouts: start and finish timeouts.
            input: a pydantic model validating the input (`ctx.input`) of deferred runs.
            scorers: scorers run after each finished run, each as its own durable run, with
                the run's input and output; `sample(scorer, rate)` scores a share of runs.
            concurrency: runs executing at once: an int, or up to two `Concurrency(limit,
                key=...)` (per function and per key); the rest wait their turn, keys fairly.
            throttle: `Throttle(limit, period, burst=0, key=None)`: starts over it are delayed.
            rate_limit: `RateLimit(limit, period, key=None)`: runs over it are skipped.
            debounce: `Debounce(period, key=None, timeout=None)`: one run per quiet period.
            batch: `Batch(max_size, timeout, key=None)`: one run for many events (`ctx.events`).
            priority: a CEL expression (or `Priority`) over `event`: seconds ahead in the queue.
            idempotency: a CEL key over `event`: one run per key value within 24 h.
            singleton: `Singleton(key=None, mode="skip"|"cancel")`: one unfinished run per key.
            (See `inferpipe.engine.flow` for each option's rules; key expressions that fail on
            an event record the run as skipped with the reason.)

        Returns:
            The registered `FunctionDef` (pass it to `ctx.defer` or `scorers=`).
        """

        def register(handler: Handler) -> FunctionDef:
            triggers = [] if trigger is None else _as_list(trigger)
            cancels = [] if cancel_on is None else _as_list(cancel_on)
            fn = FunctionDef(
                id=id,
                handler=handler,
                triggers=triggers,
                retries=retries,
                backoff=backoff or Backoff(),
                cancel_on=cancels,
                timeouts=timeouts or Timeouts(),
                description=description or (handler.__doc__ or "").strip(),
                input_model=input,
                scorers=[s if isinstance(s, AttachedScorer) else sample(s) for s in scorers],
                flow=flow_control(
                    concurrency=concurrency,
                    throttle=throttle,
                    rate_limit=rate_limit,
                    debounce=debounce,
                    batch=batch,
                    priority=priority,
                    idempotency=idempotency,
                    singleton=singleton,
                ),
            )
            self.add(fn)
            if on_failure is not None:
                self.add(failure_handler(id, on_failure))
            return fn

        return register

    def scorer(
        self, *, id: str, input: type[BaseModel] | None = None, retries: int = 4
    ) -> Callable[[Handler], FunctionDef]:
        """Register a scorer: a durable function returning a `Score` (or None) that is stored
        on the run it judges. It has the whole step API (it may wait days for feedback).

        Example::

            @app.scorer(id="feedback", input=Feedback)
            async def feedback(ctx: inferpipe.Context) -> inferpipe.Score:
                ev = await ctx.step.wait_for_event("fb", event="app/feedback", timeout="7d",
                                                   if_exp=f"async.data.id == '{ctx.input.id}'")
                return inferpipe.Score("helpful", ev.data["helpful"] if ev else 0.5)
        """

        def register(handler: Handler) -> FunctionDef:
            fn = create_scorer(id, handler, input=input, retries=retries)
            self.add(fn)
            return fn

        return register

    def add(self, fn: FunctionDef) -> None:
        """Register a prepared function definition."""
        if self._engine is not None:
            raise ConfigurationError(f"cannot register {fn.id!r}: the app has already started")
        self.registry.add(fn)

    # lifecycle ----------------------------------------------------------------------------
    async def start(self, *, store: Store | None = None, clock: Clock | None = None) -> Engine:
        """Open the store (applying migrations) and build the engine."""
        if self._engine is None:
            exporting = export.settings(self.telemetry)  # a mistake there stops nothing half-open
            store = store or store_from_url(self.database, self.workspace, blobs=self.blobs)
            await store.open()
            pubsub = pubsub_from(self.streams, store)
            self._engine = Engine(
                store, self.registry, clock=clock, limits=self.limits, pubsub=pubsub
            )
            if exporting is not None:
                self._export = export.start(self._engine, self.id, exporting)
        return self._engine

    def on_close(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Await `hook` when the app closes, before its store (a feature's connections)."""
        self._closing.append(hook)

    async def close(self) -> None:
        for hook in self._closing:
            await hook()
        if self._export is not None:  # what the last executions reported goes out first
            await asyncio.to_thread(self._export.shutdown)
            self._export = None
        if self._engine is not None:
            # The pubsub first: a store-backed one uses the store's connections.
            if self._engine.pubsub is not None:
                await self._engine.pubsub.close()
            await self._engine.store.close()
            self._engine = None

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise ConfigurationError(
                "the app is not started: use `async with app:` or `await app.start()`"
            )
        return self._engine

    def worker(self, **options: Any) -> Worker:
        """A worker for this app's functions (see `Worker` for options)."""
        return Worker(self.engine, **options)

    # operations (`inferpipe.engine.runs.Runs`) -----------------------------------------------
    async def send(self, events: Event | list[Event]) -> list[str]:
        """Send events durably; returns the ids of those accepted (duplicates are dropped).
        With telemetry on, an event without trace context continues the caller's current
        span."""
        trace = self._export.current_trace() if self._export is not None else None
        if trace is not None:
            batch = events if isinstance(events, list) else [events]
            events = [
                dataclasses.replace(e, trace=trace.as_dict())
                if isinstance(e, Event) and e.trace is None
                else e
                for e in batch
            ]
        return (await self.engine.runs.send(events)).accepted

    async def invoke(self, function_id: str, data: dict[str, Any] | None = None) -> str:
        """Start a run directly; returns its id. With telemetry on, the run continues the
        caller's current span."""
        trace = self._export.current_trace() if self._export is not None else None
        return await self.engine.runs.invoke(function_id, data, trace=trace)

    async def cancel(self, run_id: str, reason: str = "cancelled by request") -> Run:
        """Cancel a run (see `Runs.cancel`); RunStateError if it has already finished."""
        return await self.engine.runs.cancel(run_id, reason)

    async def rerun(self, run_id: str, *, from_failed_step: bool = False) -> Run:
        """Run a finished run again (see `Runs.rerun`); from the failed step of a failed run."""
        return await self.engine.runs.rerun(run_id, from_failed_step=from_failed_step)

    async def get_run(self, run_id: str) -> Run:
        return await self.engine.runs.get(run_id)

    async def list_runs(
        self, flt: RunFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Run]:
        return await self.engine.store.list_runs(flt, limit=limit, cursor=cursor)

    async def steps(self, run_id: str) -> list[StepRecord]:
        return await self.engine.store.get_steps(run_id)

    async def logs(self, run_id: str) -> list[LogRecord]:
        return await self.engine.store.get_logs(run_id)

    async def stream(
        self, run_id: str, after: int | None = None, *, raw: bool = False
    ) -> AsyncIterator[StreamEvent]:
        """The run's stream: lifecycle and user events after index `after`, then live ones,
        each exactly once, ending with the run's final event.

        Each step's output is presented once, the final attempt's: output of an attempt known
        to be abandoned (retried, or cut off by a crash) is left out, and one already yielded
        before that was known is followed by its `step.abandoned` event, so the caller can take
        it back (docs/streams.md). `raw=True` yields every event of the topic.
        """
        await self.get_run(run_id)
        pubsub = self.engine.pubsub
        if pubsub is None:
            raise ConfigurationError("run streams are disabled for this app")
        topic = run_topic(run_id)
        subscription: Subscription | FinalAttemptStream
        if raw:
            subscription = await pubsub.subscribe_with_replay(topic, after)
        else:
            subscription = await FinalAttemptStream.open(pubsub, topic, after)
        readers = Payloads(self.engine.store.blobs, self.engine.store.workspace, 0)
        async with subscription:
            async for event in subscription:
                yield await resolved(event, readers)
                if event.final:
                    return

    async def score(
        self,
        run_id: str,
        name: str,
        value: float | bool,
        *,
        reason: str | None = None,
        metadata: dict[str, Any] | None = None,
        score_id: str | None = None,
    ) -> ScoreRecord:
        """Attach feedback to a run, before or after it completes; the same `score_id` again
        updates the score instead of adding one."""
        return await self.engine.runs.score(
            run_id, name, value, reason=reason, metadata=metadata, score_id=score_id
        )

    async def scores(self, flt: ScoreFilter | None = None, **by: Any) -> list[ScoreRecord]:
        """Scores by run_id, function_id, scorer_id, name, experiment, since_ms, until_ms."""
        return await self.engine.store.list_scores(flt or ScoreFilter(**by))

    async def experiment_results(
        self, experiment_id: str, *, baseline: str | None = None
    ) -> list[VariantStats]:
        """Per variant and score name: count, mean, stdev, 95% CI, significance vs baseline."""
        found = await self.engine.store.list_scores(
            ScoreFilter(experiment=experiment_id), limit=1_000_000
        )
        return compare(experiment_id, found, baseline)

    async def result(self, run_id: str, *, timeout: Duration = 60) -> Run:
        """Wait until a run finishes (some worker must be running it) and return it."""
        return await self.engine.runs.result(run_id, timeout=timeout)


def create_scorer(
    id: str, handler: Handler, *, input: type[BaseModel] | None = None, retries: int = 4
) -> FunctionDef:
    """A scorer definition, to register with `app.add` (what `@app.scorer` does)."""
    return FunctionDef(
        id=id,
        handler=handler,
        retries=retries,
        input_model=input,
        is_scorer=True,
        description=(handler.__doc__ or "").strip(),
    )


def sample(scorer: FunctionDef | str, rate: float = 1.0) -> AttachedScorer:
    """Attach `scorer` to a function for a share `rate` of its runs (decided by run id)."""
    return AttachedScorer(scorer if isinstance(scorer, str) else scorer.id, rate)


def pubsub_from(streams: PubSub | str | None, store: Store | None = None) -> PubSub:
    """The run-stream backend for an `App(streams=...)` setting; `store` is the app's open
    store, which `"store"` puts the streams in."""
    if streams is None:
        streams = os.environ.get("INFERPIPE_STREAMS_URL") or "memory://"
    if not isinstance(streams, str):
        return streams
    if streams.startswith(("redis://", "rediss://", "unix://")):
        from inferpipe.streams.redis import RedisPubSub  # noqa: PLC0415 - optional backend

        return RedisPubSub.from_url(streams)
    if streams == "memory://":
        return MemoryPubSub()
    if streams in ("store", "store://"):
        if store is None:
            raise ConfigurationError("streams='store' needs the app's store")
        return StorePubSub.for_store(store)
    raise ConfigurationError(
        f"unsupported streams URL {streams!r}: use memory://, store or redis://"
    )


def shared_streams(app: App, process: str, *, alone_ok: bool = False) -> str:
    """Settle the streams of a process that shares its runs with other processes: an API
    without workers, a worker serving an API elsewhere. Call it before the app starts.

    With no setting (neither `App(streams=...)` nor $INFERPIPE_STREAMS_URL) the streams go in
    the store, which every process on the database shares. In-memory streams cannot cross
    processes (the API would relay none of its workers' events), so they are refused - or,
    with `alone_ok` (a process that also runs workers, and may be alone), warned about.

    Returns:
        A line for the start-up banner saying where the streams are.

    Raises:
        ConfigurationError: In-memory streams, and not `alone_ok`.
    """
    setting = app.streams if app.streams is not None else os.environ.get("INFERPIPE_STREAMS_URL")
    if app._engine is not None:
        setting = app._engine.pubsub
    if not setting:
        app.streams = "store"
        return "streams: in the store (shared by every process on the database)"
    if setting != "memory://" and not isinstance(setting, MemoryPubSub):
        # A URL's host only: no credentials in a banner.
        shown = setting.rsplit("@", 1)[-1] if isinstance(setting, str) else type(setting).__name__
        return f"streams: {shown}"
    problem = (
        f"{process} keeps run streams in memory (streams='memory://'), which other processes "
        "cannot see: an API would relay none of the events of workers in other processes. "
        "Use streams='store' (the default when none is set) or a redis:// URL"
    )
    if not alone_ok:
        raise ConfigurationError(problem + ".")
    _log.warning("%s; this works only while this process is the app's only worker.", problem)
    return "streams: in memory (this process only)"


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


__all__ = ["App", "create_scorer", "sample", "shared_streams"]
