"""`create_api`: the FastAPI application of the HTTP API (v1).

Requests pass, outermost first, through: latency metrics -> authentication (key, role, rate
limit) -> the body limit -> FastAPI's routing, validation and error handlers. Every error, from
any of these layers, is answered in the JSON shape of `inferpipe.server.errors`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from inferpipe.app import App
from inferpipe.core.errors import ConfigurationError
from inferpipe.server.auth import OPEN_PATHS, Authenticator
from inferpipe.server.body_limit import BodyLimitMiddleware
from inferpipe.server.dashboard import pages as dashboard_pages
from inferpipe.server.dashboard.session import SessionAuthMiddleware
from inferpipe.server.deps import (
    ApiSettings,
    ScoreReader,
    Services,
    StoreScores,
    check_query,
)
from inferpipe.server.errors import install_error_handlers
from inferpipe.server.local_origin import LocalOriginMiddleware
from inferpipe.server.metrics import LatencyMiddleware, Metrics
from inferpipe.server.retention import RetentionJob
from inferpipe.server.routes import (
    dashboard,
    dashboard_workflows,
    events,
    functions,
    ops,
    runs,
    secrets,
    shadow,
    stream,
    webhook_subscriptions,
    webhooks,
    workflows,
)
from inferpipe.server.workspaces import WorkerPool, Workspaces
from inferpipe.wire import schemas

API_TITLE = "inferpipe"
API_DESCRIPTION = (
    "Send events, start and follow runs (status, steps, logs, scores), cancel and re-run them; "
    "save, version and run workflow graphs. "
    "Authenticate with `Authorization: Bearer ip_...`; every key is scoped to one workspace."
)


def create_api(
    app: App,
    *,
    require_keys: bool,
    settings: ApiSettings | None = None,
    run_workers: bool = False,
    worker_options: dict[str, Any] | None = None,
    retention_days: float | None = None,
    scores: ScoreReader | None = None,
) -> FastAPI:
    """The HTTP API of `app`.

    The API opens the app when it starts (unless it is already started) and closes what it
    opened when it stops.

    Args:
        app: the application whose functions and store the API serves.
        require_keys: refuse requests without an API key. Without keys every request acts as
            an admin of `app.workspace`: only for loopback (`inferpipe.server.serve` checks).
        settings: body and batch limits, preview size.
        run_workers: also run a worker per workspace in this process.
        worker_options: passed to each `Worker` (concurrency, lease_ms, ...).
        retention_days: when set, purge runs and events older than this in the background.
        scores: where run scores are read from (the store by default).

    Example::

        api = create_api(app, require_keys=True, run_workers=True)
        uvicorn.run(api, host="127.0.0.1", port=8288)
    """
    settings = settings or ApiSettings()
    metrics = Metrics()
    authenticator = Authenticator(None, require_keys=require_keys, default_workspace=app.workspace)

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        opened_here = not _started(app)
        engine = await app.start()
        try:
            authenticator.keys = engine.store.keys
            workspaces = Workspaces(app)
            api.state.services = Services(
                workspaces,
                settings,
                metrics,
                scores or StoreScores(),
            )
            async with contextlib.AsyncExitStack() as stack:
                if run_workers:
                    pool = WorkerPool(workspaces, authenticator.keys, **(worker_options or {}))
                    await pool.start()
                    stack.push_async_callback(pool.stop)
                if retention_days is not None:
                    job = RetentionJob(
                        lambda: [e.store for e in workspaces.engines()], retention_days
                    )
                    job.start()
                    stack.push_async_callback(job.stop)
                yield
        finally:
            if opened_here:
                await app.close()

    api = FastAPI(
        title=API_TITLE,
        version=schemas.API_VERSION,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served from vendored files (dashboard.pages)
        redoc_url=None,
        dependencies=[Depends(check_query)],
    )
    install_error_handlers(api)
    # `stream` first: its /v1/events/stream must win over /v1/events/{event_id}.
    for router in (
        stream.router,
        events.router,
        runs.router,
        functions.router,
        workflows.router,
        shadow.router,
        secrets.router,
        webhooks.router,
        webhook_subscriptions.router,
        ops.router,
        dashboard.router,
        dashboard_workflows.router,
    ):
        api.include_router(router)
    dashboard_pages.install(api)
    api.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    # AuthMiddleware, plus the dashboard's session cookie and login form.
    api.add_middleware(SessionAuthMiddleware, authenticator=authenticator)
    if not require_keys:  # keyless (inferpipe dev): loopback names and same-origin writes
        api.add_middleware(LocalOriginMiddleware, allowed_hosts=settings.allowed_hosts)
    api.add_middleware(LatencyMiddleware, metrics=metrics)
    api.openapi = lambda: _openapi(api)  # type: ignore[method-assign]
    return api


def _started(app: App) -> bool:
    try:
        app.engine  # noqa: B018 - raises when the app is not started
    except ConfigurationError:
        return False
    return True


def _openapi(api: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the models only referenced by hand-written bodies, and the
    bearer-key security scheme."""
    if api.openapi_schema is None:
        spec = get_openapi(
            title=api.title, version=api.version, description=api.description, routes=api.routes
        )
        components = spec.setdefault("components", {})
        found = components.setdefault("schemas", {})
        event_in = schemas.EventIn.model_json_schema(ref_template="#/components/schemas/{model}")
        found.setdefault("EventIn", event_in)
        components["securitySchemes"] = {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "ip_... API key"}
        }
        spec["security"] = [{"apiKey": []}]
        for path in OPEN_PATHS & spec.get("paths", {}).keys():
            for operation in spec["paths"][path].values():
                operation["security"] = []
        api.openapi_schema = spec
    return api.openapi_schema
