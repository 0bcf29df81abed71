"""Incoming webhooks: a workspace's sources, and turning a signed request into events.

A source has a name (its URL is ``POST /v1/webhooks/<name>``), a signing scheme and secret
(sealed at rest with the workspace secrets' key), a tolerance window for signed timestamps and
an optional transform. A request is accepted only when its signature holds; its events are
committed (`engine.runs.send`) before the sender gets its 2xx. The sender's message id dedupes:

- a new message id: its events are recorded, ids ``webhook:<source>:<message id>[:n]``;
- the same id newly signed (the sender's retry after a lost answer): 200, a duplicate, no
  second event;
- the same id with the same signed timestamp (a captured request sent again): 401, no event.

Example::

    sources = webhook_sources(app.engine.store)
    source, secret = await sources.put("acme", "helpdesk", scheme=Scheme.STANDARD)
    received = await sources.receive(engine, "helpdesk", body, headers)
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from inferpipe.core import json as jsonc
from inferpipe.core.events import Event
from inferpipe.core.json import KB, MB
from inferpipe.engine.engine import Engine
from inferpipe.store.base import Store
from inferpipe.store.sealing import SecretCipher, cipher_for
from inferpipe.store.secrets import SealedSecret, SecretTable
from inferpipe.store.webhooks import RecordKind, WebhookRecord, WebhookTable
from inferpipe.webhooks import signing, transform
from inferpipe.webhooks.errors import (
    InvalidWebhookConfigError,
    MalformedWebhookError,
    ReplayedWebhookError,
    WebhookNotFoundError,
    WebhookTooLargeError,
)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
"""Source names go in URLs: lower-case letters, digits, '-' and '_'."""
MAX_BODY_BYTES = 1 * MB
"""A webhook body over this answers 413 (the API's own limit may be lower)."""
MAX_TOLERANCE_S = 24 * 3600
_MAX_ID_CHARS = 128
_HEADER_VALUE_CHARS = 1 * KB


@dataclass(frozen=True, slots=True)
class Source:
    """A webhook source, without its secret."""

    workspace: str
    name: str
    scheme: signing.Scheme
    event_name: str
    tolerance_s: int
    transform: transform.Transform | None
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class Received:
    """What a request became: its events' ids, and whether it was a duplicate (no event)."""

    message_id: str
    event_ids: list[str]
    duplicate: bool
    runs_created: list[str]


class WebhookSources:
    """The source operations over the webhook table and the secrets' cipher.

    Args:
        table: where sources and receipts are stored.
        secrets: the secret table, whose database names the cipher's key (see `cipher_for`).
        cipher: made on first use from `secrets` when None.
    """

    def __init__(
        self, table: WebhookTable, secrets: SecretTable, cipher: SecretCipher | None = None
    ) -> None:
        self._table = table
        self._secrets = secrets
        self._cipher = cipher

    def _seal_with(self) -> SecretCipher:
        if self._cipher is None:
            self._cipher = cipher_for(self._secrets)
        return self._cipher

    async def put(
        self,
        workspace: str,
        name: str,
        *,
        scheme: signing.Scheme,
        secret: str | None = None,
        event_name: str | None = None,
        tolerance_s: int = signing.DEFAULT_TOLERANCE_S,
        transform_: transform.Transform | None = None,
    ) -> tuple[Source, str]:
        """Create or replace a source; returns it and its secret (generated when None, for
        the standard scheme only: GitHub and Stripe give you theirs).

        Raises:
            InvalidWebhookConfigError: a bad name, secret, tolerance, event name or transform.
        """
        check_name(name)
        if secret is None:
            if scheme is not signing.Scheme.STANDARD:
                raise InvalidWebhookConfigError(
                    f"a {scheme.value} source needs the secret the sender gave you"
                )
            secret = signing.new_secret()
        signing.check_secret(scheme, secret)
        if isinstance(tolerance_s, bool) or not 1 <= tolerance_s <= MAX_TOLERANCE_S:
            raise InvalidWebhookConfigError(
                f"tolerance_s must be between 1 and {MAX_TOLERANCE_S} seconds"
            )
        event_name = event_name or f"webhook/{name}.received"
        if transform_ is not None:
            transform_.check()
        now = int(time.time() * 1000)
        body = {
            "scheme": scheme.value,
            "secret": self._seal_with().seal(workspace, _secret_name(name), secret),
            "event_name": event_name,
            "tolerance_s": tolerance_s,
            "transform": None
            if transform_ is None
            else {"kind": transform_.kind.value, "source": transform_.source},
        }
        row = await self._table.put(
            WebhookRecord(workspace, RecordKind.SOURCE, name, body, now, now)
        )
        return _source(row), secret

    async def get(self, workspace: str, name: str) -> Source:
        """Raises WebhookNotFoundError when there is no such source."""
        return _source(await self._row(workspace, name))

    async def list_sources(self, workspace: str) -> list[Source]:
        rows = await self._table.list_records(workspace, RecordKind.SOURCE)
        return sorted((_source(r) for r in rows), key=lambda s: s.name)

    async def delete(self, workspace: str, name: str) -> None:
        """Raises WebhookNotFoundError when there is no such source."""
        if not await self._table.delete(workspace, RecordKind.SOURCE, name):
            raise WebhookNotFoundError(f"workspace {workspace!r} has no webhook source {name!r}")

    async def receive(
        self, engine: Engine, name: str, body: bytes, headers: Mapping[str, str]
    ) -> Received:
        """Verify a request to source `name` of `engine`'s workspace and record its events.

        Raises:
            WebhookNotFoundError: no such source.
            WebhookTooLargeError: the body is over `MAX_BODY_BYTES`.
            SignatureRejectedError: a bad or stale signature; ReplayedWebhookError for a
                request already accepted.
            MalformedWebhookError: the body is not a JSON value.
            WebhookTransformError: the transform failed on it.
        """
        workspace = engine.store.workspace
        row = await self._row(workspace, name)
        if len(body) > MAX_BODY_BYTES:
            raise WebhookTooLargeError(len(body), MAX_BODY_BYTES)
        source = _source(row)
        lowered = {k.lower(): v for k, v in headers.items()}
        secret = self._seal_with().open(
            SealedSecret(workspace, _secret_name(name), row.body["secret"], 0, 0)
        )
        verified = signing.verify(
            source.scheme,
            secret,
            body,
            lowered,
            tolerance_s=source.tolerance_s,
            now_s=engine.clock.now_ms() / 1000,
        )
        message_id = _short(verified.message_id)
        seen = await self._table.receipt(workspace, name, message_id)
        if seen is not None:
            if verified.signed_at and seen == verified.signed_at:
                raise ReplayedWebhookError(
                    f"message {message_id!r} with this signed timestamp was already accepted: "
                    "a replayed request"
                )
            return Received(message_id, [], True, [])
        events = await self._events(source, message_id, _parse(body), lowered)
        result = await engine.runs.send(events) if events else None
        await self._table.put_receipt(
            workspace, name, message_id, verified.signed_at, engine.clock.now_ms()
        )
        return Received(
            message_id,
            [e.id or "" for e in events],
            bool(result and result.duplicates and not result.accepted),
            list(result.runs_created) if result else [],
        )

    async def _events(
        self, source: Source, message_id: str, payload: Any, headers: dict[str, str]
    ) -> list[Event]:
        base_id = f"webhook:{source.name}:{message_id}"
        if source.transform is None:
            data = payload if isinstance(payload, dict) else {"body": payload}
            return [Event(source.event_name, data, id=base_id)]
        view = {
            "body": payload,
            "headers": {k: v[:_HEADER_VALUE_CHARS] for k, v in headers.items()},
            "source": source.name,
            "message_id": message_id,
        }
        items = await transform.apply(source.transform, view)
        if len(items) == 1:
            return [transform.to_event(items[0], base_id)]
        return [transform.to_event(item, f"{base_id}:{n}") for n, item in enumerate(items)]

    async def _row(self, workspace: str, name: str) -> WebhookRecord:
        row = await self._table.get(workspace, RecordKind.SOURCE, name)
        if row is None:
            raise WebhookNotFoundError(f"workspace {workspace!r} has no webhook source {name!r}")
        return row


def check_name(name: str) -> None:
    """Raises InvalidWebhookConfigError unless `name` can name a source in a URL."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidWebhookConfigError(
            f"invalid webhook source name {name!r}: lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 64"
        )


def _secret_name(name: str) -> str:
    return f"webhook-source/{name}"


def _short(message_id: str) -> str:
    if len(message_id) <= _MAX_ID_CHARS:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


def _parse(body: bytes) -> Any:
    if not body.strip():
        raise MalformedWebhookError("the webhook body is empty: a JSON body is expected")
    try:
        return jsonc.loads_exact(body)
    except (orjson.JSONDecodeError, jsonc.IntegerOutOfRangeError) as exc:
        raise MalformedWebhookError(f"the webhook body is not valid JSON: {exc}") from None


def _source(row: WebhookRecord) -> Source:
    found = row.body.get("transform")
    return Source(
        workspace=row.workspace,
        name=row.id,
        scheme=signing.Scheme(row.body["scheme"]),
        event_name=str(row.body["event_name"]),
        tolerance_s=int(row.body["tolerance_s"]),
        transform=None
        if not found
        else transform.Transform(transform.TransformKind(found["kind"]), found["source"]),
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
    )


def webhook_sources(store: Store, cipher: SecretCipher | None = None) -> WebhookSources:
    """The webhook sources kept in `store`'s database."""
    return WebhookSources(store.webhooks, store.secrets, cipher)
