"""Serving the API with uvicorn, with workers in the same process (or without, API only)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

import uvicorn

from inferpipe.app import App, shared_streams
from inferpipe.core.errors import ConfigurationError
from inferpipe.server.api import create_api
from inferpipe.server.deps import ApiSettings

_log = logging.getLogger("inferpipe.server")

DEFAULT_PORT = 8288


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, *, require_keys: bool) -> None:
    """Refuse to serve without API keys anywhere but on loopback.

    Raises:
        ConfigurationError: keys are not required and `host` is not a loopback address.
    """
    if not require_keys and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve without API keys on {host!r}: anyone who can reach it could "
            "run and read everything. Bind to 127.0.0.1, or require keys "
            "(create one with `inferpipe keys create`)."
        )


class ApiServer:
    """The API on uvicorn, optionally with a worker per workspace in the same process.

    Args:
        app: the application to serve.
        host: the address to bind; without keys only loopback is allowed.
        port: the TCP port; 0 picks a free one (see `port` once started).
        require_keys: refuse requests without an API key.
        worker: also run workers here (False: an API-only process, `--no-worker`, whose
            streams default to the store and may not be in memory: see `shared_streams`).
        settings: API limits; `retention_days`, `worker_options`: see `create_api`.
        log_level: uvicorn's log level.
    """

    def __init__(
        self,
        app: App,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        require_keys: bool = True,
        worker: bool = True,
        settings: ApiSettings | None = None,
        retention_days: float | None = None,
        worker_options: dict[str, Any] | None = None,
        log_level: str = "info",
    ) -> None:
        check_binding(host, require_keys=require_keys)
        if not worker:
            _log.info(shared_streams(app, "an API without workers"))
        self.require_keys = require_keys
        self.api = create_api(
            app,
            require_keys=require_keys,
            settings=settings,
            run_workers=worker,
            worker_options=worker_options,
            retention_days=retention_days,
        )
        config = uvicorn.Config(
            self.api, host=host, port=port, log_level=log_level, lifespan="on", access_log=False
        )
        self.server = uvicorn.Server(config)

    @property
    def started(self) -> bool:
        """True once the API has started and the socket listens."""
        return bool(self.server.started)

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``); valid once started."""
        for server in getattr(self.server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self.server.config.port)

    async def run(self) -> None:
        """Serve until `stop` (or SIGINT/SIGTERM in the main thread); workers drain on exit."""
        if not self.require_keys:
            _log.warning(
                "serving WITHOUT API keys on loopback: every local request acts as an admin "
                "of the app's workspace"
            )
        await self.server.serve()

    def stop(self) -> None:
        """Ask the server to stop (thread-safe: uvicorn polls the flag)."""
        self.server.should_exit = True


async def serve_async(
    app: App,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    require_keys: bool = True,
    *,
    worker: bool = True,
    settings: ApiSettings | None = None,
    retention_days: float | None = None,
    worker_options: dict[str, Any] | None = None,
    log_level: str = "info",
) -> None:
    """Serve `app`'s API with uvicorn, and run its workers in the same process, until
    SIGINT/SIGTERM. `inferpipe dev` calls it with ``require_keys=False`` on loopback, `inferpipe
    serve` with keys; ``worker=False`` makes an API-only process.

    Raises:
        ConfigurationError: keys are not required and `host` is not loopback, or an API-only
            process (``worker=False``) has in-memory streams.
    """
    server = ApiServer(
        app,
        host=host,
        port=port,
        require_keys=require_keys,
        worker=worker,
        settings=settings,
        retention_days=retention_days,
        worker_options=worker_options,
        log_level=log_level,
    )
    await server.run()


def serve(
    app: App,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    require_keys: bool = True,
    **options: Any,
) -> None:
    """`serve_async` in a new event loop (for scripts; the CLI awaits `serve_async`)."""
    asyncio.run(serve_async(app, host, port, require_keys, **options))
