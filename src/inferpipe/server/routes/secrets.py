"""`/v1/secrets`: a workspace's secrets, set, listed (names only) and deleted.

HTTP nodes of the workspace's graphs reference them as ``{{ secrets.NAME }}``; no other
workspace sees them. Values are encrypted at rest (`inferpipe.workflows.secret_store`) and no
route ever answers one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from inferpipe.server.deps import RequestScope
from inferpipe.server.errors import NotFoundError
from inferpipe.server.routes import ERROR_RESPONSES
from inferpipe.wire import schemas
from inferpipe.workflows import secret_store

router = APIRouter(prefix="/v1/secrets", tags=["secrets"], responses=ERROR_RESPONSES)

SecretName = Annotated[
    str, Path(pattern=schemas.SECRET_NAME_PATTERN, description="e.g. `HELPDESK_TOKEN`.")
]


class SecretNotFoundError(NotFoundError):
    code = "secret_not_found"


def _secrets(scope: RequestScope) -> secret_store.WorkspaceSecrets:
    return secret_store.workspace_secrets(scope.services.workspaces.app.engine.store)


@router.get("", response_model=schemas.Page[schemas.SecretInfo], summary="The secrets' names")
async def list_secrets(scope: RequestScope) -> schemas.Page[schemas.SecretInfo]:
    """This workspace's secrets by name, without their values."""
    found = await _secrets(scope).names(scope.store.workspace)
    return schemas.Page[schemas.SecretInfo](items=[_info(i) for i in found], next_cursor=None)


@router.put("/{name}", response_model=schemas.SecretInfo, summary="Set a secret")
async def set_secret(
    name: SecretName, body: schemas.SecretIn, scope: RequestScope
) -> schemas.SecretInfo:
    """Create or replace a secret of this workspace (admin keys only); the answer never
    holds the value."""
    return _info(await _secrets(scope).set(scope.store.workspace, name, body.value))


@router.delete("/{name}", status_code=204, summary="Delete a secret")
async def delete_secret(name: SecretName, scope: RequestScope) -> Response:
    """Runs that reference it fail their HTTP node with `secret_missing` from now on."""
    try:
        await _secrets(scope).delete(scope.store.workspace, name)
    except secret_store.SecretNotFoundError as exc:
        raise SecretNotFoundError(str(exc)) from None
    return Response(status_code=204)


def _info(info: secret_store.SecretInfo) -> schemas.SecretInfo:
    return schemas.SecretInfo(
        name=info.name, created_at_ms=info.created_at_ms, updated_at_ms=info.updated_at_ms
    )
