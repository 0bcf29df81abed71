"""What a keyless server (`inferpipe dev`) answers: loopback names only, same-origin writes only.

Without API keys, any request that reaches the server acts as an admin. Binding to loopback
keeps other machines out, but not the browser of the developer: a page on another site can
send writes (`fetch(url, {mode: "no-cors"})` needs no CORS answer), and a name the attacker
controls can be re-pointed at 127.0.0.1 (DNS rebinding) to read everything. So:

- the `Host` header must be a loopback name (``localhost``, ``*.localhost``, ``127.x.x.x``,
  ``[::1]``) or one the operator added (`ApiSettings.allowed_hosts`); otherwise 403;
- a request that changes something (not GET, HEAD or OPTIONS) with an `Origin` must come from
  such a host, and one a browser marks ``Sec-Fetch-Site: cross-site`` is refused.

A keyed server does not need this: its dashboard writes carry a session CSRF token and other
writes an API key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from inferpipe.server.auth import READ_METHODS
from inferpipe.server.errors import ForbiddenError, error_response

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback_name(host: str) -> bool:
    """Whether `host` (no port) names this machine only."""
    host = host.strip("[]").rstrip(".").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(value: str) -> str:
    """The host of a `Host` header value or an origin, without port, lowercased."""
    parsed = urlsplit(value if "//" in value else f"//{value}")
    try:
        return (parsed.hostname or "").lower()
    except ValueError:
        return ""


class LocalOriginMiddleware:
    """Refuses foreign `Host` headers, and cross-site writes, before anything else runs.

    Args:
        app: the ASGI application.
        allowed_hosts: names served besides loopback ones (e.g. a dev container's name).
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Collection[str] = ()) -> None:
        self.app = app
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)

    def _allowed(self, host: str) -> bool:
        return bool(host) and (host in self.allowed_hosts or is_loopback_name(host))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        refusal = self._refusal(scope["method"], headers)
        if refusal is not None:
            await error_response(ForbiddenError(refusal))(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, method: str, headers: dict[bytes, str]) -> str | None:
        host = _hostname(headers.get(b"host", ""))
        if not self._allowed(host):
            return (
                f"host {host or '(none)'!r} is not served: this keyless server answers loopback "
                "names only (add others with `inferpipe dev --allow-host`)"
            )
        if method in READ_METHODS:
            return None
        origin = headers.get(b"origin")
        if origin is not None and not self._allowed(_hostname(origin)):
            return f"cross-site write refused: origin {origin!r} is not this server"
        if origin is None and headers.get(b"sec-fetch-site") == "cross-site":
            return "cross-site write refused (Sec-Fetch-Site: cross-site)"
        return None
