"""Operations: liveness, readiness (the store commits a write), Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from inferpipe.server.deps import services
from inferpipe.server.errors import error_body
from inferpipe.wire import schemas

router = APIRouter(tags=["operations"])

READY_TIMEOUT_S = 2.0
"""A store that takes longer than this to commit a one-row write is not ready."""


@router.get("/healthz", response_model=schemas.Health, summary="Liveness")
async def healthz() -> schemas.Health:
    """The process answers."""
    return schemas.Health(status="ok")


@router.get(
    "/readyz",
    response_model=schemas.Health,
    responses={503: {"model": schemas.ErrorBody, "description": "The store cannot be written."}},
    summary="Readiness",
)
async def readyz(request: Request) -> schemas.Health | JSONResponse:
    """The store commits a one-row write within two seconds (a read-only file, a full disk or
    a database that is down or a standby answer 503, so traffic goes elsewhere)."""
    try:
        engine = services(request).workspaces.app.engine
        async with asyncio.timeout(READY_TIMEOUT_S):
            await engine.store.check_writable(engine.clock.now_ms())
    except TimeoutError:
        return JSONResponse(
            error_body("not_ready", "the store did not commit a write within 2 s"), 503
        )
    except Exception as exc:
        return JSONResponse(error_body("not_ready", f"the store cannot be written: {exc}"), 503)
    return schemas.Health(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    """Events accepted, runs by status, request latency by route."""
    svc = services(request)
    body = await svc.metrics.render(svc.workspaces.app.engine.store)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
