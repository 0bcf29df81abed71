"""Outgoing webhooks: a workspace's subscriptions to run lifecycle events.

A subscription names a URL, the event types it wants (`EventType`), optionally the functions
whose runs count and a CEL filter over the delivered ``event`` (``{type, timestamp, data}``),
and how long a delivery keeps being retried (`retry_window_s`). Its signing secrets
(``whsec_...``) are sealed at rest with the workspace secrets' key; rotating makes a new one
and keeps the previous one for a grace period, during which each delivery is signed with both
(``webhook-signature: v1,<new> v1,<old>``), so a receiver switching over drops nothing.

Example::

    subs = webhook_subscriptions(app.engine.store)
    sub, secret = await subs.create("acme", "https://example.com/hooks",
                                    events=[EventType.RUN_FAILED])
    secret = await subs.rotate("acme", sub.id, grace_s=3600)
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inferpipe.core import expr
from inferpipe.core.errors import InvalidExpressionError
from inferpipe.core.ids import new_id
from inferpipe.net import egress as netpolicy
from inferpipe.store.base import Store
from inferpipe.store.sealing import SecretCipher, cipher_for
from inferpipe.store.secrets import SealedSecret, SecretTable
from inferpipe.store.webhooks import RecordKind, WebhookRecord, WebhookTable
from inferpipe.webhooks import signing
from inferpipe.webhooks.errors import InvalidWebhookConfigError, WebhookNotFoundError

DEFAULT_RETRY_WINDOW_S = 24 * 3600
"""How long a delivery is retried (on 5xx, 408, 429, timeouts and connection errors)."""
MAX_RETRY_WINDOW_S = 7 * 24 * 3600
DEFAULT_GRACE_S = 24 * 3600
"""How long a rotated-out secret still signs deliveries."""
MAX_URL_CHARS = 2048


class DeliveryStatus(enum.StrEnum):
    """A delivery's state."""

    PENDING = "pending"  #: recorded, no attempt yet
    RETRYING = "retrying"  #: an attempt failed; another is due
    SUCCEEDED = "succeeded"  #: the receiver answered 2xx
    FAILED = "failed"  #: given up: a final answer, a refused URL, the window passed, or the
    #: subscription's filter failed on the event (see `Delivery.reason`)
    CANCELLED = "cancelled"  #: not made: the subscription was disabled before it went out


QUEUED = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
"""The states of a delivery that will still make an attempt."""
DISABLED_REASON = "subscription disabled"


class EventType(enum.StrEnum):
    """What a subscription can be told about."""

    RUN_FINISHED = "run.finished"  #: a run completed (its function returned)
    RUN_FAILED = "run.failed"  #: a run failed
    RUN_CANCELLED = "run.cancelled"  #: a run was cancelled
    SCORE_RECORDED = "score.recorded"  #: a score was attached to a run


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription, without its secrets."""

    workspace: str
    id: str
    url: str
    events: tuple[EventType, ...]
    function_ids: tuple[str, ...]
    filter: str | None
    retry_window_s: int
    enabled: bool
    created_at_ms: int
    updated_at_ms: int

    def wants(self, event_type: EventType, function_id: str) -> bool:
        """Whether the type and function match (the CEL filter is the sandbox's to check)."""
        return (
            self.enabled
            and event_type in self.events
            and (not self.function_ids or function_id in self.function_ids)
        )


class WebhookSubscriptions:
    """The subscription operations over the webhook table and the secrets' cipher."""

    def __init__(
        self,
        table: WebhookTable,
        secrets: SecretTable,
        cipher: SecretCipher | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        """`on_change(workspace)`: after each create, update and delete (webhook delivery
        forgets what it knew of the workspace's subscriptions)."""
        self._table = table
        self._secrets = secrets
        self._cipher = cipher
        self._on_change = on_change

    def _changed(self, workspace: str) -> None:
        if self._on_change is not None:
            self._on_change(workspace)

    def _seal_with(self) -> SecretCipher:
        if self._cipher is None:
            self._cipher = cipher_for(self._secrets)
        return self._cipher

    async def create(
        self,
        workspace: str,
        url: str,
        *,
        events: list[EventType],
        function_ids: list[str] | None = None,
        filter_: str | None = None,
        retry_window_s: int = DEFAULT_RETRY_WINDOW_S,
        secret: str | None = None,
        allow_private: bool = False,
    ) -> tuple[Subscription, str]:
        """A new subscription and its signing secret (generated when None). `allow_private`:
        the operator's egress policy lets this workspace reach private addresses.

        Raises:
            InvalidWebhookConfigError: a bad URL, event type, filter, window or secret.
        """
        body = _checked(url, events, function_ids or [], filter_, retry_window_s, allow_private)
        secret = secret or signing.new_secret()
        signing.check_secret(signing.Scheme.STANDARD, secret)
        sub_id = "whsub_" + new_id()
        now = int(time.time() * 1000)
        body["secrets"] = [self._sealed(workspace, sub_id, secret, now, None)]
        body["enabled"] = True
        row = await self._table.put(
            WebhookRecord(workspace, RecordKind.SUBSCRIPTION, sub_id, body, now, now)
        )
        self._changed(workspace)
        return _subscription(row), secret

    async def update(
        self,
        workspace: str,
        sub_id: str,
        *,
        url: str | None = None,
        events: list[EventType] | None = None,
        function_ids: list[str] | None = None,
        filter_: str | None = None,
        retry_window_s: int | None = None,
        enabled: bool | None = None,
        allow_private: bool = False,
    ) -> Subscription:
        """Change the given fields; deliveries not yet made use the new ones. Disabling it
        cancels its queued deliveries (recorded `cancelled`, reason "subscription disabled"):
        enabling it again does not send them (redeliver one to)."""
        current = await self.get(workspace, sub_id)
        checked = _checked(
            url if url is not None else current.url,
            events if events is not None else list(current.events),
            function_ids if function_ids is not None else list(current.function_ids),
            filter_ if filter_ is not None else current.filter,
            retry_window_s if retry_window_s is not None else current.retry_window_s,
            allow_private,
        )
        if enabled is not None:
            checked["enabled"] = enabled
        row = await self._table.update(
            workspace, RecordKind.SUBSCRIPTION, sub_id, lambda b: {**b, **checked}, _now_ms()
        )
        self._changed(workspace)
        if enabled is False:
            await self._cancel_queued(workspace, sub_id)
        return _subscription(_found(row, sub_id))

    async def _cancel_queued(self, workspace: str, sub_id: str) -> None:
        def cancel(body: dict[str, Any]) -> dict[str, Any]:
            if body.get("status") not in QUEUED:
                return body
            return {**body, "status": DeliveryStatus.CANCELLED.value, "reason": DISABLED_REASON}

        before: int | None = None
        while True:
            page = await self._table.list_records(
                workspace, RecordKind.DELIVERY, parent=sub_id, before_ms=before, limit=500
            )
            for row in page:
                if row.body.get("status") in QUEUED:
                    await self._table.update(
                        workspace, RecordKind.DELIVERY, row.id, cancel, _now_ms()
                    )
            if len(page) < 500:
                return
            before = page[-1].created_at_ms

    async def rotate(self, workspace: str, sub_id: str, *, grace_s: int = DEFAULT_GRACE_S) -> str:
        """A new signing secret; the current ones keep signing for `grace_s` more seconds."""
        if isinstance(grace_s, bool) or not 0 <= grace_s <= MAX_RETRY_WINDOW_S:
            raise InvalidWebhookConfigError(
                f"grace_s must be between 0 and {MAX_RETRY_WINDOW_S} seconds"
            )
        secret = signing.new_secret()
        now = _now_ms()
        fresh = self._sealed(workspace, sub_id, secret, now, None)

        def rotate(body: dict[str, Any]) -> dict[str, Any]:
            until = now + grace_s * 1000
            kept = [
                {**s, "expires_at_ms": min(s["expires_at_ms"] or until, until)}
                for s in body["secrets"]
                if s["expires_at_ms"] is None or s["expires_at_ms"] > now
            ]
            return {**body, "secrets": [fresh, *kept]}

        row = await self._table.update(workspace, RecordKind.SUBSCRIPTION, sub_id, rotate, now)
        _found(row, sub_id)
        return secret

    async def get(self, workspace: str, sub_id: str) -> Subscription:
        return _subscription(_found(await self._row(workspace, sub_id), sub_id))

    async def list_subscriptions(self, workspace: str) -> list[Subscription]:
        rows = await self._table.list_records(workspace, RecordKind.SUBSCRIPTION)
        return [_subscription(r) for r in reversed(rows)]

    async def delete(self, workspace: str, sub_id: str) -> None:
        """Deliveries already queued for it end at their next attempt, as failed."""
        if not await self._table.delete(workspace, RecordKind.SUBSCRIPTION, sub_id):
            raise _not_found(sub_id)
        self._changed(workspace)

    async def signing_secrets(self, workspace: str, sub_id: str, now_ms: int) -> list[str]:
        """The secrets a delivery made now is signed with, newest first."""
        row = _found(await self._row(workspace, sub_id), sub_id)
        cipher = self._seal_with()
        return [
            cipher.open(SealedSecret(workspace, _secret_name(sub_id, s["n"]), s["token"], 0, 0))
            for s in row.body["secrets"]
            if s["expires_at_ms"] is None or s["expires_at_ms"] > now_ms
        ]

    async def _row(self, workspace: str, sub_id: str) -> WebhookRecord | None:
        return await self._table.get(workspace, RecordKind.SUBSCRIPTION, sub_id)

    def _sealed(
        self, workspace: str, sub_id: str, secret: str, now_ms: int, expires_at_ms: int | None
    ) -> dict[str, Any]:
        n = f"{now_ms}-{new_id()}"
        token = self._seal_with().seal(workspace, _secret_name(sub_id, n), secret)
        return {"n": n, "token": token, "created_at_ms": now_ms, "expires_at_ms": expires_at_ms}


def _checked(
    url: str,
    events: list[EventType],
    function_ids: list[str],
    filter_: str | None,
    retry_window_s: int,
    allow_private: bool,
) -> dict[str, Any]:
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise InvalidWebhookConfigError(f"the URL must be a string of at most {MAX_URL_CHARS}")
    # Without DNS here: the scheme, credentials and literal private hosts. The addresses a
    # host resolves to are checked at each attempt, against the operator's egress policy.
    refusal = netpolicy.literal_refusal(url)
    if refusal is not None and not (
        allow_private and netpolicy.check_url(url, allow_private=True, resolver=_unresolved).allowed
    ):
        raise InvalidWebhookConfigError(f"webhook URL refused: {refusal}")
    if not events:
        raise InvalidWebhookConfigError(
            f"a subscription needs at least one event type ({', '.join(EventType)})"
        )
    try:
        types = sorted({EventType(e) for e in events})
    except ValueError as exc:
        raise InvalidWebhookConfigError(f"{exc}; event types are {', '.join(EventType)}") from None
    if filter_:
        try:
            expr.check_variables(filter_, {"event"}, where="webhook subscription filter")
        except InvalidExpressionError as exc:
            raise InvalidWebhookConfigError(str(exc)) from None
    if isinstance(retry_window_s, bool) or not 0 <= retry_window_s <= MAX_RETRY_WINDOW_S:
        raise InvalidWebhookConfigError(
            f"retry_window_s must be between 0 and {MAX_RETRY_WINDOW_S} seconds"
        )
    return {
        "url": url,
        "events": [t.value for t in types],
        "function_ids": sorted(set(function_ids)),
        "filter": filter_ or None,
        "retry_window_s": retry_window_s,
    }


def _unresolved(_host: str, _port: int) -> list[str]:
    """A stand-in resolution for a check that only parses (private addresses are allowed)."""
    return ["192.0.2.1"]


def _subscription(row: WebhookRecord) -> Subscription:
    b = row.body
    return Subscription(
        workspace=row.workspace,
        id=row.id,
        url=str(b["url"]),
        events=tuple(EventType(e) for e in b["events"]),
        function_ids=tuple(b.get("function_ids") or ()),
        filter=b.get("filter"),
        retry_window_s=int(b["retry_window_s"]),
        enabled=bool(b.get("enabled", True)),
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
    )


def _found(row: WebhookRecord | None, sub_id: str) -> WebhookRecord:
    if row is None:
        raise _not_found(sub_id)
    return row


def _not_found(sub_id: str) -> WebhookNotFoundError:
    return WebhookNotFoundError(f"no webhook subscription {sub_id!r} in this workspace")


def _secret_name(sub_id: str, n: str) -> str:
    return f"webhook-subscription/{sub_id}/{n}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def webhook_subscriptions(store: Store, cipher: SecretCipher | None = None) -> WebhookSubscriptions:
    """The webhook subscriptions kept in `store`'s database."""
    return WebhookSubscriptions(store.webhooks, store.secrets, cipher)
