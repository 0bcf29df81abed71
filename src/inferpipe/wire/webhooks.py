"""Wire models of the webhook routes (`/v1/webhooks/...`, `/v1/webhook-sources`,
`/v1/webhook-subscriptions`), shared by the server and its clients."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from inferpipe.wire.schemas import RequestModel, WireModel

SOURCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
"""Source names go in URLs."""


class TransformIn(RequestModel):
    kind: Literal["cel", "jinja"] = Field(description="`cel` or `jinja` (rendering JSON).")
    source: str = Field(
        min_length=1,
        max_length=16384,
        description="Sees `body`, `headers`, `source`, `message_id`; yields an event "
        "`{name, data, id?, user?}` or a list of them.",
    )


class WebhookSourceIn(RequestModel):
    """A webhook source to create or replace."""

    scheme: Literal["standard", "github", "stripe"] = Field(
        description="How the sender signs: Standard Webhooks, GitHub or Stripe."
    )
    secret: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="The signing secret; generated for `standard` when omitted (answered once).",
    )
    event_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The event each request becomes without a transform "
        "(default `webhook/<name>.received`).",
    )
    tolerance_s: int = Field(
        default=300, ge=1, le=86400, description="How old a signed timestamp may be."
    )
    transform: TransformIn | None = None


class TransformInfo(WireModel):
    kind: str
    source: str


class WebhookSourceInfo(WireModel):
    """A webhook source; `secret` only in the answer that created or replaced it."""

    name: str
    scheme: str
    event_name: str
    tolerance_s: int
    transform: TransformInfo | None = None
    path: str = Field(description="Where the sender posts: `/v1/webhooks/<name>`.")
    created_at_ms: int
    updated_at_ms: int
    secret: str | None = None


class WebhookReceived(WireModel):
    """What an incoming webhook became; committed before this answer."""

    message_id: str
    event_ids: list[str]
    duplicate: bool = Field(description="The message was already received: nothing recorded.")
    runs_created: list[str]


class SubscriptionIn(RequestModel):
    """A subscription to create."""

    url: str = Field(min_length=1, max_length=2048, description="Where deliveries are POSTed.")
    events: list[Literal["run.finished", "run.failed", "run.cancelled", "score.recorded"]] = Field(
        min_length=1, description="The event types to deliver."
    )
    function_ids: list[str] = Field(
        default_factory=list, description="Only runs of these functions (empty: all)."
    )
    filter: str | None = Field(
        default=None, max_length=4096, description="CEL over `event` ({type, timestamp, data})."
    )
    retry_window_s: int = Field(
        default=86400, ge=0, le=604800, description="How long failed deliveries are retried."
    )
    secret: str | None = Field(
        default=None, description="A `whsec_` secret; generated when omitted (answered once)."
    )


class SubscriptionPatch(RequestModel):
    """The fields of a subscription to change."""

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    events: (
        list[Literal["run.finished", "run.failed", "run.cancelled", "score.recorded"]] | None
    ) = Field(default=None, min_length=1)
    function_ids: list[str] | None = None
    filter: str | None = Field(default=None, max_length=4096)
    retry_window_s: int | None = Field(default=None, ge=0, le=604800)
    enabled: bool | None = None


class RotateIn(RequestModel):
    grace_s: int = Field(
        default=86400,
        ge=0,
        le=604800,
        description="How long the previous secret keeps signing deliveries.",
    )


class SubscriptionInfo(WireModel):
    """A subscription; `secret` only in the answer that created or rotated it."""

    id: str
    url: str
    events: list[str]
    function_ids: list[str]
    filter: str | None = None
    retry_window_s: int
    enabled: bool
    created_at_ms: int
    updated_at_ms: int
    secret: str | None = None


class AttemptInfo(WireModel):
    """One POST of a delivery."""

    series: int = Field(description="0 for the first delivery, then one per redelivery.")
    n: int = Field(description="The attempt within its series, from 0.")
    at_ms: int
    duration_ms: int
    url: str
    ok: bool
    status_code: int | None = None
    response: str | None = Field(default=None, description="The answer's first 1024 characters.")
    error: str | None = None


class DeliveryInfo(WireModel):
    """A lifecycle event delivered (or being delivered) to a subscription."""

    id: str = Field(description="Its `webhook-id`, the same on every attempt.")
    subscription_id: str
    type: str
    status: Literal["pending", "retrying", "succeeded", "failed", "cancelled"]
    payload: dict[str, object]
    attempts: list[AttemptInfo]
    created_at_ms: int
    updated_at_ms: int
    reason: str | None = Field(
        default=None,
        description="Why it ended without a 2xx where no attempt says so: `filter: ...` (the "
        "subscription's filter failed on the event), the subscription deleted or disabled.",
    )


__all__ = [
    "SOURCE_NAME_PATTERN",
    "AttemptInfo",
    "DeliveryInfo",
    "RotateIn",
    "SubscriptionIn",
    "SubscriptionInfo",
    "SubscriptionPatch",
    "TransformIn",
    "TransformInfo",
    "WebhookReceived",
    "WebhookSourceIn",
    "WebhookSourceInfo",
]
