"""`/v1/webhook-subscriptions` and `/v1/webhook-deliveries`: outgoing webhooks of a workspace.

Subscriptions (writes need an admin key) name a URL and the run lifecycle events to deliver
there; each delivery, with every attempt and answer, is listed under its subscription and can
be delivered again. Deliveries run on the app's workers (`inferpipe.webhooks.delivery`); an app
without `enable_delivery` answers 404 `webhooks_not_enabled` to everything here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from inferpipe.server.deps import RequestScope
from inferpipe.server.routes import ERROR_RESPONSES
from inferpipe.webhooks import delivery
from inferpipe.webhooks.subscriptions import EventType, Subscription, WebhookSubscriptions
from inferpipe.wire import webhooks as wire

router = APIRouter(tags=["webhooks"], responses=ERROR_RESPONSES)


def _enabled(scope: RequestScope) -> delivery.WebhookDelivery:
    return delivery.delivery_of(scope.services.workspaces.app)


def _subs(scope: RequestScope) -> WebhookSubscriptions:
    """The workspace's subscriptions, through the delivery (which hears of each change)."""
    return _enabled(scope).subscriptions(scope.store)


def _allow_private(scope: RequestScope) -> bool:
    return _enabled(scope).settings.egress.allows_private(scope.store.workspace)


@router.get(
    "/v1/webhook-subscriptions",
    response_model=list[wire.SubscriptionInfo],
    summary="The webhook subscriptions",
)
async def list_subscriptions(scope: RequestScope) -> list[wire.SubscriptionInfo]:
    _enabled(scope)
    subs = _subs(scope)
    return [_info(s) for s in await subs.list_subscriptions(scope.store.workspace)]


@router.post(
    "/v1/webhook-subscriptions",
    status_code=201,
    response_model=wire.SubscriptionInfo,
    summary="Subscribe a URL to run lifecycle events",
)
async def create_subscription(
    body: wire.SubscriptionIn, scope: RequestScope
) -> wire.SubscriptionInfo:
    """Admin keys only. The answer holds the signing secret (when generated: the only time
    it is shown). Private addresses only where the operator's egress policy allows them."""
    made, secret = await _subs(scope).create(
        scope.store.workspace,
        body.url,
        events=[EventType(e) for e in body.events],
        function_ids=body.function_ids,
        filter_=body.filter,
        retry_window_s=body.retry_window_s,
        secret=body.secret,
        allow_private=_allow_private(scope),
    )
    return _info(made, secret if body.secret is None else None)


@router.get(
    "/v1/webhook-subscriptions/{sub_id}",
    response_model=wire.SubscriptionInfo,
    summary="Get a webhook subscription",
)
async def get_subscription(sub_id: str, scope: RequestScope) -> wire.SubscriptionInfo:
    _enabled(scope)
    return _info(await _subs(scope).get(scope.store.workspace, sub_id))


@router.patch(
    "/v1/webhook-subscriptions/{sub_id}",
    response_model=wire.SubscriptionInfo,
    summary="Change a webhook subscription",
)
async def patch_subscription(
    sub_id: str, body: wire.SubscriptionPatch, scope: RequestScope
) -> wire.SubscriptionInfo:
    """Deliveries not yet attempted go to the new URL, with the new filter."""
    changed = await _subs(scope).update(
        scope.store.workspace,
        sub_id,
        url=body.url,
        events=None if body.events is None else [EventType(e) for e in body.events],
        function_ids=body.function_ids,
        filter_=body.filter,
        retry_window_s=body.retry_window_s,
        enabled=body.enabled,
        allow_private=_allow_private(scope),
    )
    return _info(changed)


@router.post(
    "/v1/webhook-subscriptions/{sub_id}/rotate-secret",
    response_model=wire.SubscriptionInfo,
    summary="Rotate a subscription's signing secret",
)
async def rotate_secret(
    sub_id: str, body: wire.RotateIn, scope: RequestScope
) -> wire.SubscriptionInfo:
    """A new secret, in this answer only; deliveries are signed with it and, for `grace_s`,
    with the previous one too, so a receiver switching over verifies every delivery."""
    _enabled(scope)
    subs = _subs(scope)
    secret = await subs.rotate(scope.store.workspace, sub_id, grace_s=body.grace_s)
    return _info(await subs.get(scope.store.workspace, sub_id), secret)


@router.delete(
    "/v1/webhook-subscriptions/{sub_id}", status_code=204, summary="Delete a subscription"
)
async def delete_subscription(sub_id: str, scope: RequestScope) -> Response:
    _enabled(scope)
    await _subs(scope).delete(scope.store.workspace, sub_id)
    return Response(status_code=204)


@router.get(
    "/v1/webhook-subscriptions/{sub_id}/deliveries",
    response_model=list[wire.DeliveryInfo],
    summary="A subscription's delivery log",
)
async def list_deliveries(
    sub_id: str,
    scope: RequestScope,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_ms: Annotated[int | None, Query(ge=0)] = None,
) -> list[wire.DeliveryInfo]:
    """Newest first, each with every attempt and the receiver's answers."""
    _enabled(scope)
    await _subs(scope).get(scope.store.workspace, sub_id)
    found = await delivery.list_deliveries(scope.store, sub_id, before_ms=before_ms, limit=limit)
    return [delivery_info(d) for d in found]


@router.get(
    "/v1/webhook-deliveries/{delivery_id}",
    response_model=wire.DeliveryInfo,
    summary="Get a delivery",
)
async def get_delivery(delivery_id: str, scope: RequestScope) -> wire.DeliveryInfo:
    _enabled(scope)
    return delivery_info(await delivery.get_delivery(scope.store, delivery_id))


@router.post(
    "/v1/webhook-deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=wire.DeliveryInfo,
    summary="Deliver again",
)
async def redeliver(delivery_id: str, scope: RequestScope) -> wire.DeliveryInfo:
    """A new series of attempts with the same `webhook-id`, durable like the first."""
    return delivery_info(await _enabled(scope).redeliver(scope.engine, delivery_id))


def delivery_info(found: delivery.Delivery) -> wire.DeliveryInfo:
    return wire.DeliveryInfo(
        id=found.id,
        subscription_id=found.subscription_id,
        type=found.type,
        status=found.status.value,
        payload=found.payload,
        attempts=[wire.AttemptInfo.model_validate(a) for a in found.attempts],
        created_at_ms=found.created_at_ms,
        updated_at_ms=found.updated_at_ms,
        reason=found.reason,
    )


def _info(sub: Subscription, secret: str | None = None) -> wire.SubscriptionInfo:
    return wire.SubscriptionInfo(
        id=sub.id,
        url=sub.url,
        events=[e.value for e in sub.events],
        function_ids=list(sub.function_ids),
        filter=sub.filter,
        retry_window_s=sub.retry_window_s,
        enabled=sub.enabled,
        created_at_ms=sub.created_at_ms,
        updated_at_ms=sub.updated_at_ms,
        secret=secret,
    )
