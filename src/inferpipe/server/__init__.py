"""The HTTP API: `create_api` (FastAPI), `serve` (uvicorn plus workers), API keys, retention.

Importing this package is light; FastAPI and uvicorn load when `create_api` or `serve` is first
used. The models and error codes of the API are `inferpipe.wire`, which the client uses too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from inferpipe.app import App


def create_api(app: App, *, require_keys: bool, **options: Any) -> FastAPI:
    """See `inferpipe.server.api.create_api`."""
    from inferpipe.server import api  # noqa: PLC0415 - keeps FastAPI out of client imports

    return api.create_api(app, require_keys=require_keys, **options)


def serve(
    app: App,
    host: str = "127.0.0.1",
    port: int = 8288,
    require_keys: bool = True,
    **options: Any,
) -> None:
    """See `inferpipe.server.runner.serve`: the API and a worker in one process until
    interrupted; ``worker=False`` for an API-only process."""
    from inferpipe.server import runner  # noqa: PLC0415 - keeps uvicorn out of client imports

    runner.serve(app, host, port, require_keys, **options)


async def serve_async(
    app: App,
    host: str = "127.0.0.1",
    port: int = 8288,
    require_keys: bool = True,
    **options: Any,
) -> None:
    """See `inferpipe.server.runner.serve_async`: `serve` inside a running event loop."""
    from inferpipe.server import runner  # noqa: PLC0415 - keeps uvicorn out of client imports

    await runner.serve_async(app, host, port, require_keys, **options)


__all__ = ["create_api", "serve", "serve_async"]
