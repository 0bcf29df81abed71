"""Delivering run lifecycle events to subscriptions, as durable runs of the engine.

`enable_delivery(app)` registers two internal functions:

- ``inferpipe.webhooks.dispatch``, triggered by every run's `inferpipe/function.finished`
  (completed, failed or cancelled) and by `inferpipe/score.recorded`. Its first step matches
  the workspace's subscriptions (types, functions, CEL filter in the sandbox) and records one
  delivery per match; then it sends one `inferpipe/webhook.delivery` event per delivery. The
  dispatch run is created in the same transaction as the run's finish, so no lifecycle event
  is lost to a crash.
- ``inferpipe.webhooks.deliver``, one run per delivery (and per manual redelivery): each
  attempt is a step (POST, signed as Standard Webhooks with the subscription's current
  secrets, through the HTTP node's egress policy), each backoff a durable sleep. A 2xx ends it;
  5xx, 408, 429, timeouts and connection errors are retried until the subscription's
  `retry_window_s` has passed; another answer or a refused URL fails it at once. A worker
  killed between attempts loses nothing: another takes the run over and the next attempt goes
  out on time. A worker killed during an attempt makes that attempt again (at least once), with
  the same ``webhook-id``, so receivers dedupe on it.

Every attempt (status, response head, error, duration) is recorded on the delivery, which the
API (``/v1/webhook-subscriptions/<id>/deliveries``) and the dashboard show.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from inferpipe.core import expr
from inferpipe.core import json as jsonc
from inferpipe.core.errors import ExpressionBudgetError, InvalidExpressionError
from inferpipe.core.events import FUNCTION_FINISHED, SCORE_RECORDED, Event
from inferpipe.engine.context import Context
from inferpipe.engine.engine import Engine
from inferpipe.engine.functions import Backoff, FunctionDef, on_event
from inferpipe.engine.sandbox import default_sandbox
from inferpipe.net import http as http_node
from inferpipe.net.egress import EgressPolicy, UrlRefusedError
from inferpipe.store.base import ScoreFilter, Store
from inferpipe.store.sealing import SecretCipher, cipher_for
from inferpipe.store.webhooks import RecordKind, WebhookRecord
from inferpipe.webhooks import signing
from inferpipe.webhooks.errors import WebhookNotFoundError, WebhooksNotEnabledError
from inferpipe.webhooks.subscriptions import (
    DISABLED_REASON,
    EventType,
    Subscription,
    WebhookSubscriptions,
)
from inferpipe.webhooks.subscriptions import (
    DeliveryStatus as Status,
)

_log = logging.getLogger("inferpipe.webhooks")

DISPATCH_FUNCTION_ID = "inferpipe.webhooks.dispatch"
DELIVER_FUNCTION_ID = "inferpipe.webhooks.deliver"
DELIVERY_EVENT = "inferpipe/webhook.delivery"
"""Starts a delivery run: ``{"delivery_id", "series"}`` (series 0, then one per redelivery)."""
FEATURE = "webhooks"
"""The name of the delivery in `App.features`."""
RESPONSE_HEAD_CHARS = 1024
"""How much of a receiver's answer an attempt keeps."""

_OWN = f"[{expr.cel_literal(DISPATCH_FUNCTION_ID)}, {expr.cel_literal(DELIVER_FUNCTION_ID)}]"
_FINISHED_FILTER = (
    f"!(event.data.function_id in {_OWN})"
    " && event.data.status in ['completed', 'failed', 'cancelled']"
)
_TYPE_BY_STATUS = {
    "completed": EventType.RUN_FINISHED,
    "failed": EventType.RUN_FAILED,
    "cancelled": EventType.RUN_CANCELLED,
}


class AppHost(Protocol):
    """What delivery needs of an application (`inferpipe.App` provides it)."""

    def add(self, fn: FunctionDef) -> None: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def features(self) -> dict[str, object]: ...

    def on_close(self, hook: Callable[[], Awaitable[None]]) -> None: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """One lifecycle event for one subscription, with every attempt made."""

    id: str
    subscription_id: str
    type: str
    payload: dict[str, Any]
    status: Status
    attempts: list[dict[str, Any]]
    series: int
    created_at_ms: int
    updated_at_ms: int
    reason: str | None = None
    """Why it failed or was cancelled without an answer to say so (a filter error, the
    subscription deleted or disabled)."""


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """How deliveries are made (the operator's choice).

    Args:
        egress: which workspaces may deliver to private addresses (loopback, private networks,
            link-local); by default `EgressPolicy.from_env()`, nobody.
        backoff: the delay before each retry (exponential, with jitter).
        timeout_s: one attempt's time limit.
        http: the transport and resolver (tests pass their own).
        recheck_s: how long a workspace found to have no enabled subscription starts no
            dispatch run for its finished runs before it is looked at again. A subscription
            made or enabled in this process counts at once; one made in another process (the
            CLI, another server) counts for runs finishing `recheck_s` after it was saved.
    """

    egress: EgressPolicy = field(default_factory=EgressPolicy.from_env)
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=5.0, max_s=3600.0))
    timeout_s: float = 10.0
    http: http_node.HttpSettings = field(default_factory=http_node.HttpSettings)
    recheck_s: float = 1.0


class SubscriptionPresence:
    """Per workspace, whether it has an enabled subscription, as last read: the gate of the
    dispatch function, so that a workspace with none makes no dispatch run per finished run.

    The rule: a workspace is skipped only on an answer read less than `fresh_ms` ago (on the
    engine's clock) and not invalidated since by a change in this process (`changed`); a read
    that overlaps such a change is not kept. So a run that finishes after a subscription is
    saved is dispatched, at once in this process and `fresh_ms` later in another one. With no
    fresh answer the run is dispatched and, when `read` is given, the answer is read in the
    background (a burst of finishes then makes a few dispatch runs, not one each).
    """

    def __init__(
        self,
        now_ms: Callable[[], int],
        fresh_ms: int,
        read: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._now_ms = now_ms
        self.fresh_ms = fresh_ms
        self._read = read
        self._known: dict[str, tuple[bool, int]] = {}
        self._generation: dict[str, int] = {}
        self._reads: dict[str, asyncio.Task[None]] = {}

    def admits(self, workspace: str) -> bool:
        """False only when the workspace is known, freshly, to have no enabled subscription."""
        known = self._known.get(workspace)
        if known is not None and (known[0] or self._now_ms() - known[1] < self.fresh_ms):
            return known[0]
        self._read_later(workspace)
        return True

    def _read_later(self, workspace: str) -> None:
        if self._read is None or workspace in self._reads:
            return
        read = self._read

        async def refresh() -> None:
            try:
                reading = self.reading(workspace)
                self.record(workspace, await read(workspace), reading)
            except Exception as exc:  # the next dispatch run reads it instead: nothing is lost
                _log.warning("webhooks: could not read the subscriptions of %r: %s", workspace, exc)
            finally:
                self._reads.pop(workspace, None)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # planned outside the event loop: no background read
            return
        self._reads[workspace] = loop.create_task(refresh())

    async def aclose(self) -> None:
        """Stop the background reads."""
        reads = list(self._reads.values())
        for task in reads:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)

    def reading(self, workspace: str) -> tuple[int, int]:
        """Call before reading a workspace's subscriptions; pass the result to `record`."""
        return self._generation.get(workspace, 0), self._now_ms()

    def record(self, workspace: str, has: bool, reading: tuple[int, int]) -> None:
        """What a read begun at `reading` found, unless a change came in since."""
        generation, read_ms = reading
        if self._generation.get(workspace, 0) == generation:
            self._known[workspace] = (has, read_ms)

    def changed(self, workspace: str) -> None:
        """A subscription of the workspace was made, changed or deleted in this process."""
        self._generation[workspace] = self._generation.get(workspace, 0) + 1
        self._known.pop(workspace, None)


class _SharedTransport(httpx.AsyncHTTPTransport):
    """One connection pool and TLS context for every attempt: the client made for an attempt
    borrows it and does not close it."""

    async def __aexit__(self, *exc: object) -> None:
        return None


class WebhookDelivery:
    """Outgoing webhooks of an app: the two internal functions and the delivery log.

    Use `enable_delivery(app)`; see the module's docstring.
    """

    def __init__(self, app: AppHost, settings: DeliverySettings | None = None) -> None:
        self.app = app
        self.settings = settings or DeliverySettings()
        self._transports: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedTransport]
        self._transports = weakref.WeakKeyDictionary()
        self._cipher: SecretCipher | None = None
        self.presence = SubscriptionPresence(
            self._clock_ms, int(self.settings.recheck_s * 1000), self._has_subscriptions
        )
        """Which workspaces have subscriptions (see `SubscriptionPresence`)."""
        app.add(
            FunctionDef(
                id=DISPATCH_FUNCTION_ID,
                handler=self._dispatch,
                triggers=[on_event(FUNCTION_FINISHED, _FINISHED_FILTER), on_event(SCORE_RECORDED)],
                retries=4,
                description="Matches a lifecycle event to the workspace's webhook subscriptions.",
                gate=self.presence.admits,
            )
        )
        app.add(
            FunctionDef(
                id=DELIVER_FUNCTION_ID,
                handler=self._deliver,
                triggers=[on_event(DELIVERY_EVENT)],
                retries=4,
                description="Delivers one webhook, retrying with backoff.",
            )
        )
        app.features[FEATURE] = self
        app.on_close(self.aclose)

    @property
    def _store(self) -> Store:
        return self.app.engine.store

    def subscriptions(self, store: Store) -> WebhookSubscriptions:
        """The subscriptions in `store`'s database, telling this delivery of every change
        (so a new subscription is heard of at once: see `SubscriptionPresence`). The secrets'
        cipher is made once (it may read a key file), not per attempt."""
        if self._cipher is None:
            self._cipher = cipher_for(store.secrets)
        return WebhookSubscriptions(
            store.webhooks, store.secrets, self._cipher, on_change=self.presence.changed
        )

    def _clock_ms(self) -> int:
        """The engine's time, which the backoff sleeps run on: the retry window is measured in
        it (the signature's timestamp stays wall time, for the receiver)."""
        return self.app.engine.clock.now_ms()

    # dispatch -----------------------------------------------------------------------------
    async def _dispatch(self, ctx: Context) -> list[str]:
        found = lifecycle_of(ctx.event)
        if found is None:
            return []
        event_type, payload = found
        ids: list[str] = await ctx.step.run(
            "match", self._match, ctx.workspace, ctx.event.id or "", event_type.value, payload
        )
        for delivery_id in ids:
            event = Event(DELIVERY_EVENT, {"delivery_id": delivery_id, "series": 0})
            await ctx.step.send_event(
                "deliver", [_with_id(event, f"delivery:{delivery_id}:0")], _engine=True
            )
        return ids

    async def _match(
        self, workspace: str, event_id: str, event_type: str, payload: dict[str, Any]
    ) -> list[str]:
        """The deliveries to make (recorded pending); a subscription whose filter fails on
        the event gets a failed delivery saying why instead, and no request."""
        kind = EventType(event_type)
        if not await _happened(self._store.for_workspace(workspace), kind, payload["data"]):
            _log.warning(
                "webhooks: %s event %s does not match the store (workspace %r); not delivered",
                event_type,
                event_id,
                workspace,
            )
            return []
        subs = self.subscriptions(self._store)
        function_id = str(payload["data"].get("function_id") or "")
        table, now = self._store.webhooks, _now_ms()
        reading = self.presence.reading(workspace)
        found = await subs.list_subscriptions(workspace)
        self.presence.record(workspace, any(s.enabled for s in found), reading)
        registry = self.app.engine.registry
        if function_id in registry and registry.get(function_id).quiet:
            return []  # a shadow run's scores fire no webhook (its end sends no event at all)
        ids = []
        for sub in found:
            if not sub.wants(kind, function_id):
                continue
            reason = None
            try:
                if not await _passes(sub, payload):
                    continue
            except (expr.ExpressionEvalError, InvalidExpressionError, ExpressionBudgetError) as exc:
                _log.warning(
                    "webhooks: the filter of subscription %s failed on %s event %s: %s",
                    sub.id,
                    event_type,
                    event_id,
                    exc,
                )
                reason = f"filter: {exc}"
            delivery_id = _delivery_id(sub.id, event_id)
            if await table.get(workspace, RecordKind.DELIVERY, delivery_id) is None:
                body = {
                    "type": event_type,
                    "payload": payload,
                    "status": Status.PENDING if reason is None else Status.FAILED,
                    "attempts": [],
                    "series": 0,
                    **({"reason": reason} if reason else {}),
                }
                await table.put(
                    WebhookRecord(
                        workspace, RecordKind.DELIVERY, delivery_id, body, now, now, sub.id
                    )
                )
            if reason is None:
                ids.append(delivery_id)
        return ids

    # deliver ------------------------------------------------------------------------------
    async def _deliver(self, ctx: Context) -> dict[str, Any]:
        delivery_id = str(ctx.event.data["delivery_id"])
        series = int(ctx.event.data.get("series", 0))
        started = await ctx.step.run("start", self._start, ctx.workspace, delivery_id)
        if started is None:
            return {"delivery_id": delivery_id, "status": "gone"}
        window_ms, first_ms = int(started["window_ms"]), int(started["at_ms"])
        attempt = 0
        while True:
            result = await ctx.step.run(
                "attempt", self._attempt, ctx.workspace, delivery_id, series, attempt
            )
            if result["ok"] or not result["retry"]:
                break
            delay_ms = retry_delay_ms(self.settings.backoff, delivery_id, series, attempt)
            if result["at_ms"] + delay_ms - first_ms > window_ms:
                await ctx.step.run(
                    "give-up", self._settle, ctx.workspace, delivery_id, Status.FAILED
                )
                return {"delivery_id": delivery_id, "status": Status.FAILED}
            await ctx.step.sleep("backoff", timedelta(milliseconds=delay_ms))
            attempt += 1
        return {"delivery_id": delivery_id, "status": result["status"]}

    async def _start(self, workspace: str, delivery_id: str) -> dict[str, int] | None:
        row = await self._store.webhooks.get(workspace, RecordKind.DELIVERY, delivery_id)
        sub = (
            await self._store.webhooks.get(workspace, RecordKind.SUBSCRIPTION, row.parent)
            if row
            else None
        )
        if row is None or sub is None:
            if row is not None:
                await self._settle(workspace, delivery_id, Status.FAILED, "subscription deleted")
            return None
        if row.body.get("status") == Status.CANCELLED:
            return None
        return {"at_ms": self._clock_ms(), "window_ms": int(sub.body["retry_window_s"]) * 1000}

    async def _attempt(
        self, workspace: str, delivery_id: str, series: int, attempt: int
    ) -> dict[str, Any]:
        """One POST; never raises for the receiver's answer (it is recorded instead)."""
        table = self._store.webhooks
        row = await table.get(workspace, RecordKind.DELIVERY, delivery_id)
        if row is None:
            return {"ok": False, "retry": False, "status": Status.FAILED, "at_ms": self._clock_ms()}
        subs = self.subscriptions(self._store)
        try:
            sub = await subs.get(workspace, row.parent)
        except WebhookNotFoundError:
            await self._settle(workspace, delivery_id, Status.FAILED, "subscription deleted")
            return {"ok": False, "retry": False, "status": Status.FAILED, "at_ms": self._clock_ms()}
        if row.body.get("status") == Status.CANCELLED or not sub.enabled:
            # Disabled: its queued deliveries do not go out, even once it is enabled again.
            await self._settle(workspace, delivery_id, Status.CANCELLED, DISABLED_REASON)
            return {
                "ok": False,
                "retry": False,
                "status": Status.CANCELLED,
                "at_ms": self._clock_ms(),
            }
        tick_ms = self._clock_ms()
        at_ms = _now_ms()
        body = jsonc.dumps(row.body["payload"])
        secrets = await subs.signing_secrets(workspace, sub.id, at_ms)
        headers = {
            "content-type": "application/json",
            "user-agent": "inferpipe-webhooks",
            **signing.sign_headers(delivery_id, at_ms // 1000, body, secrets),
        }
        outcome = await self._post(sub, workspace, body, headers)
        record = {
            "series": series,
            "n": attempt,
            "at_ms": at_ms,
            "duration_ms": _now_ms() - at_ms,
            "url": sub.url,
            **outcome,
        }
        status = (
            Status.SUCCEEDED
            if outcome["ok"]
            else Status.RETRYING
            if outcome["retry"]
            else Status.FAILED
        )

        def add(b: dict[str, Any]) -> dict[str, Any]:
            same = [a for a in b["attempts"] if (a["series"], a["n"]) != (series, attempt)]
            return {**b, "attempts": [*same, record], "status": status}

        await table.update(workspace, RecordKind.DELIVERY, delivery_id, add, _now_ms())
        return {"ok": outcome["ok"], "retry": outcome["retry"], "status": status, "at_ms": tick_ms}

    async def _has_subscriptions(self, workspace: str) -> bool:
        found = await self._store.webhooks.list_records(workspace, RecordKind.SUBSCRIPTION)
        return any(r.body.get("enabled", True) for r in found)

    async def aclose(self) -> None:
        """Stop the background reads and close the pooled connections of this event loop (the
        app does, when it closes)."""
        await self.presence.aclose()
        loop = asyncio.get_running_loop()
        transports = list(self._transports.items())
        self._transports = weakref.WeakKeyDictionary()
        for owner, transport in transports:
            if owner is loop:
                await transport.aclose()

    async def _http(self) -> http_node.HttpSettings:
        """The settings' HTTP, with one transport per event loop when they name none: a new
        client per attempt would otherwise load the CA bundle each time (about 0.1 s of CPU
        that blocks the loop)."""
        if self.settings.http.transport is not None:
            return self.settings.http
        loop = asyncio.get_running_loop()
        shared = self._transports.get(loop)
        if shared is None:
            shared = await asyncio.to_thread(_SharedTransport)
            self._transports[loop] = shared
        return dataclasses.replace(self.settings.http, transport=shared)

    async def _post(
        self, sub: Subscription, workspace: str, body: bytes, headers: dict[str, str]
    ) -> dict[str, Any]:
        allow = self.settings.egress.allows_private(workspace)
        try:
            answer = await http_node.exchange(
                await self._http(),
                method="POST",
                url=sub.url,
                headers=headers,
                body=body.decode(),
                timeout_s=self.settings.timeout_s,
                allow_private=allow,
                head_bytes=RESPONSE_HEAD_CHARS,
            )
        except UrlRefusedError as exc:
            return _failed(None, str(exc), retry=False)
        except httpx.HTTPError as exc:
            return _failed(None, f"{type(exc).__name__}: {exc}", retry=True)
        status = answer.status
        text = answer.body.decode("utf-8", errors="replace")[:RESPONSE_HEAD_CHARS]
        if 200 <= status < 300:
            return {
                "ok": True,
                "retry": False,
                "status_code": status,
                "response": text,
                "error": None,
            }
        if 300 <= status < 400:
            # Redirects are not followed (the egress check covers the subscribed URL only):
            # the receiver never got it, and retrying gets the same answer.
            location = answer.headers.get("location")
            failed = _failed(status, f"{sub.url} redirected to {location}", retry=False)
            return {**failed, "response": text, "location": location}
        error = f"{sub.url} answered HTTP {status}: {text[:200]}"
        return {**_failed(status, error, retry=http_node.retryable(status)), "response": text}

    async def _settle(
        self, workspace: str, delivery_id: str, status: str, why: str | None = None
    ) -> None:
        def settle(b: dict[str, Any]) -> dict[str, Any]:
            return {**b, "status": status, **({"reason": why} if why else {})}

        await self._store.webhooks.update(
            workspace, RecordKind.DELIVERY, delivery_id, settle, _now_ms()
        )

    # the delivery log ---------------------------------------------------------------------
    async def redeliver(self, engine: Engine, delivery_id: str) -> Delivery:
        """Deliver again (a new series of attempts, the same ``webhook-id``).

        Raises:
            WebhookNotFoundError: no such delivery in `engine`'s workspace.
        """
        workspace = engine.store.workspace

        def bump(b: dict[str, Any]) -> dict[str, Any]:
            return {**b, "series": int(b.get("series", 0)) + 1, "status": Status.PENDING}

        row = await engine.store.webhooks.update(
            workspace, RecordKind.DELIVERY, delivery_id, bump, engine.clock.now_ms()
        )
        if row is None:
            raise _no_delivery(delivery_id)
        series = int(row.body["series"])
        event = Event(DELIVERY_EVENT, {"delivery_id": delivery_id, "series": series})
        await engine.runs.send_engine_events(_with_id(event, f"delivery:{delivery_id}:{series}"))
        return delivery_from(row)


async def list_deliveries(
    store: Store, subscription_id: str, *, before_ms: int | None = None, limit: int = 50
) -> list[Delivery]:
    """A subscription's deliveries, newest first."""
    rows = await store.webhooks.list_records(
        store.workspace,
        RecordKind.DELIVERY,
        parent=subscription_id,
        before_ms=before_ms,
        limit=limit,
    )
    return [delivery_from(r) for r in rows]


async def get_delivery(store: Store, delivery_id: str) -> Delivery:
    row = await store.webhooks.get(store.workspace, RecordKind.DELIVERY, delivery_id)
    if row is None:
        raise _no_delivery(delivery_id)
    return delivery_from(row)


def delivery_from(row: WebhookRecord) -> Delivery:
    b = row.body
    return Delivery(
        id=row.id,
        subscription_id=row.parent,
        type=str(b["type"]),
        payload=dict(b["payload"]),
        status=Status(b["status"]),
        attempts=sorted(b["attempts"], key=lambda a: (a["series"], a["n"])),
        series=int(b.get("series", 0)),
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
        reason=b.get("reason"),
    )


def lifecycle_of(event: Event) -> tuple[EventType, dict[str, Any]] | None:
    """The subscription event type and the delivered payload (``{type, timestamp, data}``) of
    an internal lifecycle event, None for one no subscription hears of."""
    data = event.data
    if event.name == SCORE_RECORDED:
        event_type = EventType.SCORE_RECORDED
        delivered = {k: data.get(k) for k in ("run_id", "function_id")} | {
            "score": {
                k: data.get(k)
                for k in ("score_id", "name", "value", "source", "reason", "scorer_id")
            }
        }
    else:
        found = _TYPE_BY_STATUS.get(str(data.get("status")))
        if found is None:
            return None
        event_type = found
        delivered = {
            k: data.get(k) for k in ("run_id", "function_id", "status", "output", "error", "reason")
        }
    stamp = datetime.fromtimestamp((event.ts_ms or _now_ms()) / 1000, tz=UTC)
    return event_type, {"type": event_type.value, "timestamp": stamp.isoformat(), "data": delivered}


async def _passes(sub: Subscription, payload: dict[str, Any]) -> bool:
    """Whether the subscription's filter holds.

    Raises:
        ExpressionEvalError, ExpressionBudgetError, InvalidExpressionError: it failed on this
            payload (a missing field, a wrong type, over budget).
    """
    if not sub.filter:
        return True
    return await default_sandbox().evaluate(sub.filter, {"event": payload}) is True


async def _happened(store: Store, kind: EventType, data: dict[str, Any]) -> bool:
    """Whether the store holds what the lifecycle event says: the run finished with that
    status and function, or the score on that run. The reserved ``inferpipe/`` names keep
    forged events out; this makes sure none is delivered anyway."""
    run_id = data.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        return False
    if kind is EventType.SCORE_RECORDED:
        found = await store.list_scores(ScoreFilter(run_id=run_id))
        return any(score.id == data.get("score", {}).get("score_id") for score in found)
    run = await store.get_run(run_id)
    return (
        run is not None
        and run.status.finished
        and run.status.value == data.get("status")
        and run.function_id == data.get("function_id")
    )


def _failed(status_code: int | None, error: str, *, retry: bool) -> dict[str, Any]:
    return {
        "ok": False,
        "retry": retry,
        "status_code": status_code,
        "response": None,
        "error": error[:RESPONSE_HEAD_CHARS],
    }


def _delivery_id(sub_id: str, event_id: str) -> str:
    """The same for a lifecycle event and subscription however often it is matched, and the
    ``webhook-id`` receivers dedupe on."""
    return "msg_" + hashlib.sha256(f"{sub_id}\0{event_id}".encode()).hexdigest()[:26]


def _with_id(event: Event, event_id: str) -> Event:
    return Event(event.name, event.data, event.user, event_id, event.ts_ms)


def _no_delivery(delivery_id: str) -> WebhookNotFoundError:
    return WebhookNotFoundError(f"no webhook delivery {delivery_id!r} in this workspace")


def _now_ms() -> int:
    return int(time.time() * 1000)


def enable_delivery(app: AppHost, settings: DeliverySettings | None = None) -> WebhookDelivery:
    """Deliver `app`'s run lifecycle events to webhook subscriptions (call before it starts).

    Example::

        app = inferpipe.App("support")
        enable_delivery(app, DeliverySettings(egress=EgressPolicy(private_workspaces=...)))
    """
    return WebhookDelivery(app, settings)


def delivery_of(app: AppHost) -> WebhookDelivery:
    """The delivery enabled on `app`; raises WebhooksNotEnabledError when there is none."""
    found = app.features.get(FEATURE)
    if not isinstance(found, WebhookDelivery):
        raise WebhooksNotEnabledError()
    return found


def retry_delay_ms(backoff: Backoff, delivery_id: str, series: int, attempt: int) -> int:
    """The wait before the attempt after `attempt`: jittered, but drawn from the delivery
    itself, so a replay of the delivery's run takes the same backoff and give-up decisions."""
    return backoff.delay_ms(attempt, random.Random(f"{delivery_id}:{series}:{attempt}"))
