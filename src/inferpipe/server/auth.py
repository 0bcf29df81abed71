"""Who is calling: API key authentication, roles, and per-key rate limits.

Authentication runs as ASGI middleware, before the body is parsed, so a caller without a valid
key learns nothing about the request it sent (not even whether its JSON was valid). The
resolved `Principal` is put in ``request.state.principal`` for the routes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from inferpipe.core.errors import InferpipeError
from inferpipe.server.errors import (
    ForbiddenError,
    RateLimitedError,
    UnauthorizedError,
    error_response,
)
from inferpipe.server.keys import verify_key
from inferpipe.store.keys import KeyStore, Role

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"})
"""Paths served without a key: probes, metrics (aggregates, no workspace names) and the docs."""

WEBHOOK_INTAKE_PREFIX = "/v1/webhooks/"
"""`POST /v1/webhooks/<source>` is served without a key: the sender's signature authenticates
it (`inferpipe.webhooks.sources`)."""

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

MAX_TRACKED_KEYS = 10_000
"""Rate-limit buckets kept in memory; the least recently used are dropped beyond this."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: its workspace, role, and the key it used (None without keys)."""

    workspace: str
    role: Role
    key_id: str | None = None
    rate_limit_per_min: int | None = None

    @property
    def can_write(self) -> bool:
        return self.role is Role.ADMIN


class RateLimiter:
    """Token buckets per key: `limit_per_min` requests per minute, in bursts of that size.

    In memory, per process: behind several API processes each enforces the limit on its own.
    """

    def __init__(self, clock_s: Callable[[], float] = time.monotonic) -> None:
        self._clock_s = clock_s
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, at_s)

    def acquire(self, key_id: str, limit_per_min: int) -> float | None:
        """Take one token; returns None when allowed, else the seconds until one is free."""
        now = self._clock_s()
        rate_per_s = limit_per_min / 60.0
        tokens, at = self._buckets.pop(key_id, (float(limit_per_min), now))
        tokens = min(float(limit_per_min), tokens + (now - at) * rate_per_s)
        if tokens >= 1.0:
            self._buckets[key_id] = (tokens - 1.0, now)
            retry_after = None
        else:
            self._buckets[key_id] = (tokens, now)
            retry_after = (1.0 - tokens) / rate_per_s
        if len(self._buckets) > MAX_TRACKED_KEYS:
            # dicts keep insertion order and each use re-inserts: the first is least recent
            self._buckets.pop(next(iter(self._buckets)))
        return retry_after


class Authenticator:
    """Resolves the principal of a request from its headers.

    Args:
        keys: where API keys are stored; None when the server runs without keys.
        require_keys: refuse requests without a key (otherwise they act as an admin of
            `default_workspace`; only allowed on loopback, see `inferpipe.server.serve`).
        default_workspace: the workspace of requests without a key.
    """

    def __init__(
        self, keys: KeyStore | None, *, require_keys: bool, default_workspace: str
    ) -> None:
        self.keys = keys
        self.require_keys = require_keys
        self.default_workspace = default_workspace
        self.limiter = RateLimiter()

    async def authenticate(self, method: str, authorization: str | None) -> Principal:
        secret = _secret_from(authorization)
        if secret is None:
            if self.require_keys:
                raise UnauthorizedError(
                    "missing API key: send the header `Authorization: Bearer ip_...` "
                    "(create keys with `inferpipe keys create`)"
                )
            principal = Principal(self.default_workspace, Role.ADMIN)
        else:
            if self.keys is None:
                raise UnauthorizedError("this server does not accept API keys")
            key = await verify_key(self.keys, secret)
            principal = Principal(key.workspace, key.role, key.id, key.rate_limit_per_min)
        if method not in READ_METHODS and not principal.can_write:
            raise ForbiddenError(f"this API key is read-only: {method} needs an 'admin' key")
        if principal.key_id is not None and principal.rate_limit_per_min is not None:
            wait_s = self.limiter.acquire(principal.key_id, principal.rate_limit_per_min)
            if wait_s is not None:
                raise RateLimitedError(principal.rate_limit_per_min, wait_s)
        return principal


class AuthMiddleware:
    """Authenticates every request except those to `OPEN_PATHS`."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or _is_intake(scope):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization") or headers.get(b"x-api-key")
        authorization = raw.decode("latin-1") if raw is not None else None
        if raw is not None and b"x-api-key" in headers and b"authorization" not in headers:
            authorization = f"Bearer {authorization}"
        try:
            principal = await self.authenticator.authenticate(scope["method"], authorization)
        except InferpipeError as exc:
            await error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _is_intake(scope: Scope) -> bool:
    path = str(scope["path"])
    return (
        scope["method"] == "POST"
        and path.startswith(WEBHOOK_INTAKE_PREFIX)
        and "/" not in path[len(WEBHOOK_INTAKE_PREFIX) :]
    )


def _secret_from(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise UnauthorizedError(
            "malformed Authorization header: use `Authorization: Bearer ip_...`"
        )
    return value.strip()
