"""Webhook routes: `POST /v1/webhooks/{source}` (incoming, signed, served without a key) and
`/v1/webhook-sources` (a workspace's sources; writes need an admin key).

A sender posts to ``/v1/webhooks/<source>`` (``?workspace=`` for a workspace other than the
app's). Its signature is its authentication: a bad, stale or replayed one answers 401 and
records nothing; an accepted request answers 202 once its events are committed (200 for a
duplicate of a message already received). See `inferpipe.webhooks.sources`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from inferpipe.server.deps import RequestScope, services
from inferpipe.server.routes import ERROR_RESPONSES
from inferpipe.webhooks import signing, sources, transform
from inferpipe.wire import webhooks as wire

router = APIRouter(tags=["webhooks"], responses=ERROR_RESPONSES)

SourceName = Annotated[str, Path(pattern=wire.SOURCE_NAME_PATTERN, description="e.g. `helpdesk`.")]


def _sources(scope: RequestScope) -> sources.WebhookSources:
    return sources.webhook_sources(scope.services.workspaces.app.engine.store)


@router.post(
    "/v1/webhooks/{source}",
    status_code=202,
    response_model=wire.WebhookReceived,
    summary="Receive a signed webhook",
    responses={
        200: {"model": wire.WebhookReceived, "description": "A duplicate: nothing recorded."}
    },
    openapi_extra={"security": []},
)
async def receive(
    source: SourceName,
    request: Request,
    response: Response,
    workspace: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> wire.WebhookReceived:
    """Verify the request's signature with the source's secret and record the events it
    stands for, durably, before answering. No API key: the signature authenticates."""
    svc = services(request)
    workspace = workspace or svc.workspaces.default
    known = sources.webhook_sources(svc.workspaces.app.engine.store)
    # Before any engine is made for the workspace: an unauthenticated caller naming workspaces
    # must not make the server build engines (and workers) for them.
    await known.get(workspace, source)
    engine = svc.workspaces.engine(workspace)
    body = await request.body()
    found = await known.receive(engine, source, body, dict(request.headers))
    if found.duplicate:
        response.status_code = 200
    else:
        svc.metrics.events_accepted.inc(len(found.event_ids))
    return wire.WebhookReceived(
        message_id=found.message_id,
        event_ids=found.event_ids,
        duplicate=found.duplicate,
        runs_created=found.runs_created,
    )


@router.get(
    "/v1/webhook-sources",
    response_model=list[wire.WebhookSourceInfo],
    summary="The webhook sources",
)
async def list_sources(scope: RequestScope) -> list[wire.WebhookSourceInfo]:
    """This workspace's sources, by name (never their secrets)."""
    return [_info(s) for s in await _sources(scope).list_sources(scope.store.workspace)]


@router.put(
    "/v1/webhook-sources/{name}",
    response_model=wire.WebhookSourceInfo,
    summary="Create or replace a webhook source",
)
async def put_source(
    name: SourceName, body: wire.WebhookSourceIn, scope: RequestScope
) -> wire.WebhookSourceInfo:
    """Admin keys only. The answer holds the secret when it was generated here (the only
    time it is shown)."""
    made, secret = await _sources(scope).put(
        scope.store.workspace,
        name,
        scheme=signing.Scheme(body.scheme),
        secret=body.secret,
        event_name=body.event_name,
        tolerance_s=body.tolerance_s,
        transform_=None
        if body.transform is None
        else transform.Transform(
            transform.TransformKind(body.transform.kind), body.transform.source
        ),
    )
    return _info(made, secret if body.secret is None else None)


@router.get(
    "/v1/webhook-sources/{name}",
    response_model=wire.WebhookSourceInfo,
    summary="Get a webhook source",
)
async def get_source(name: SourceName, scope: RequestScope) -> wire.WebhookSourceInfo:
    return _info(await _sources(scope).get(scope.store.workspace, name))


@router.delete("/v1/webhook-sources/{name}", status_code=204, summary="Delete a webhook source")
async def delete_source(name: SourceName, scope: RequestScope) -> Response:
    """Requests to it answer 404 from now on."""
    await _sources(scope).delete(scope.store.workspace, name)
    return Response(status_code=204)


def _info(source: sources.Source, secret: str | None = None) -> wire.WebhookSourceInfo:
    return wire.WebhookSourceInfo(
        name=source.name,
        scheme=source.scheme.value,
        event_name=source.event_name,
        tolerance_s=source.tolerance_s,
        transform=None
        if source.transform is None
        else wire.TransformInfo(kind=source.transform.kind.value, source=source.transform.source),
        path=f"/v1/webhooks/{source.name}",
        created_at_ms=source.created_at_ms,
        updated_at_ms=source.updated_at_ms,
        secret=secret,
    )
