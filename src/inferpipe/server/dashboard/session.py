"""Dashboard sessions: an API key typed into the login form becomes an HttpOnly cookie.

The cookie never holds the key's secret. It holds the key's id, an expiry and a nonce, signed
with HMAC-SHA256 by a server secret ($INFERPIPE_SESSION_SECRET, else random per process: then
sessions end when the server restarts, and several API processes need the variable to share
them). Every request made with the cookie looks the key up again, so a revoked key ends its
sessions at once, and gets the key's workspace, role and rate limit like a request with the key.

Writes made with the cookie must also send `X-CSRF-Token` (derived from the session; the page
reads it from `GET /v1/dashboard/session`), on top of the cookie's `SameSite=Strict`.

`SessionAuthMiddleware` takes the place of `AuthMiddleware`: requests with an
`Authorization`/`X-API-Key` header, or with neither header nor cookie, are authenticated exactly
as before; the dashboard's shell, static files and login form are served without a key (they
hold no data).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from http.cookies import SimpleCookie

from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from inferpipe.core.errors import InferpipeError
from inferpipe.server.auth import READ_METHODS, Authenticator, AuthMiddleware, Principal
from inferpipe.server.dashboard import pages
from inferpipe.server.errors import (
    ForbiddenError,
    RateLimitedError,
    UnauthorizedError,
    error_response,
)
from inferpipe.server.keys import verify_key

SESSION_COOKIE = "ip_session"
SESSION_TTL_S = 12 * 3600
CSRF_HEADER = b"x-csrf-token"
SECRET_ENV = "INFERPIPE_SESSION_SECRET"
MAX_LOGIN_BODY_BYTES = 8 * 1024
REVOKED_NONCES_MAX = 10_000
"""Logged-out sessions remembered (until they expire) so their cookie stops working at once."""


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    expires_at_s: int
    nonce: str


class SessionSigner:
    """Issues and verifies session tokens `<key id>.<expiry>.<nonce>.<signature>`."""

    def __init__(self, secret: bytes | None = None) -> None:
        env = os.environ.get(SECRET_ENV, "")
        self._secret = secret or (env.encode() if env else secrets.token_bytes(32))
        self._revoked: dict[str, int] = {}

    def issue(self, key_id: str, now_s: float | None = None) -> str:
        expires = int((now_s if now_s is not None else time.time()) + SESSION_TTL_S)
        payload = f"{key_id}.{expires}.{secrets.token_hex(12)}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str, now_s: float | None = None) -> Session | None:
        payload, _, signature = token.rpartition(".")
        parts = payload.split(".")
        if len(parts) != 3 or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        key_id, expires, nonce = parts
        if not expires.isdigit() or nonce in self._revoked:
            return None
        if int(expires) < (now_s if now_s is not None else time.time()):
            return None
        return Session(key_id, int(expires), nonce)

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf:{session.nonce}")

    def revoke(self, session: Session) -> None:
        now = time.time()
        self._revoked = {n: e for n, e in self._revoked.items() if e > now}
        if len(self._revoked) < REVOKED_NONCES_MAX:
            self._revoked[session.nonce] = session.expires_at_s

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._secret, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class SessionAuthMiddleware(AuthMiddleware):
    """`AuthMiddleware` that also accepts a dashboard session cookie, and serves the login."""

    def __init__(
        self, app: ASGIApp, authenticator: Authenticator, signer: SessionSigner | None = None
    ) -> None:
        super().__init__(app, authenticator)
        self.signer = signer or SessionSigner()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        state = scope.setdefault("state", {})
        state["session_signer"] = self.signer
        state["require_keys"] = self.authenticator.require_keys
        if path == pages.LOGIN_PATH and method == "POST":
            await self._login(scope, receive, send)
            return
        if path == pages.LOGOUT_PATH and method == "POST":
            await self._logout(scope, receive, send)
            return
        if pages.is_public(path):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        token = _cookie(headers, SESSION_COOKIE)
        if token is None or b"authorization" in headers or b"x-api-key" in headers:
            await super().__call__(scope, receive, send)
            return
        try:
            principal, session = await self._from_session(token, method, headers)
        except UnauthorizedError as exc:
            if self.authenticator.require_keys:
                await error_response(exc)(scope, receive, send)
                return
            # Keyless dev: a stale cookie must not lock the browser out.
            await super().__call__(scope, receive, send)
            return
        except InferpipeError as exc:
            await error_response(exc)(scope, receive, send)
            return
        state["principal"] = principal
        state["session"] = session
        await self.app(scope, receive, send)

    async def _from_session(
        self, token: str, method: str, headers: dict[bytes, bytes]
    ) -> tuple[Principal, Session]:
        session = self.signer.verify(token)
        keys = self.authenticator.keys
        if session is None or keys is None:
            raise UnauthorizedError("your dashboard session has expired: log in again")
        key = await keys.get(session.key_id)
        if key is None or key.revoked:
            raise UnauthorizedError("the API key of this session was revoked: log in again")
        principal = Principal(key.workspace, key.role, key.id, key.rate_limit_per_min)
        if method not in READ_METHODS:
            sent = headers.get(CSRF_HEADER, b"").decode("latin-1")
            if not hmac.compare_digest(sent, self.signer.csrf_token(session)):
                raise ForbiddenError("missing or wrong X-CSRF-Token header for this session")
            if not principal.can_write:
                raise ForbiddenError(f"this API key is read-only: {method} needs an 'admin' key")
        if principal.rate_limit_per_min is not None:
            wait_s = self.authenticator.limiter.acquire(key.id, principal.rate_limit_per_min)
            if wait_s is not None:
                raise RateLimitedError(principal.rate_limit_per_min, wait_s)
        return principal, session

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        form = await _form(receive)
        secret = form.get("api_key", "").strip()
        target = pages.safe_next(form.get("next"))
        response: Response
        if self.authenticator.keys is None:
            response = pages.login_page(target, "this server has no API keys", 400)
        elif not secret:
            response = pages.login_page(target, "enter an API key", 400)
        else:
            try:
                key = await verify_key(self.authenticator.keys, secret)
            except InferpipeError as exc:
                response = pages.login_page(target, str(exc), 401)
            else:
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(
                    SESSION_COOKIE,
                    self.signer.issue(key.id),
                    max_age=SESSION_TTL_S,
                    path="/",
                    httponly=True,
                    samesite="strict",
                    secure=scope.get("scheme") == "https",
                )
        await response(scope, receive, send)

    async def _logout(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        token = _cookie(headers, SESSION_COOKIE)
        session = self.signer.verify(token) if token else None
        if session is not None:
            self.signer.revoke(session)
        response = RedirectResponse(pages.LOGIN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        await response(scope, receive, send)


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    raw = headers.get(b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except Exception:  # a malformed Cookie header is a missing cookie, not an error
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


async def _form(receive: Receive) -> dict[str, str]:
    """A small urlencoded form body (anything larger is cut, which fails the login)."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > MAX_LOGIN_BODY_BYTES or not message.get("more_body", False):
            break
    fields = urllib.parse.parse_qs(body[:MAX_LOGIN_BODY_BYTES].decode("utf-8", "replace"))
    return {name: values[0] for name, values in fields.items() if values}
