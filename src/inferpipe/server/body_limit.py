"""Request body limit: answered with 413 in our error shape before anything is parsed."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferpipe.server.errors import ApiRequestError, RequestTooLargeError, error_response


class BodyLimitMiddleware:
    """Refuses bodies over `max_body_bytes`: at once when Content-Length says so, otherwise
    while reading (chunked uploads). The body is buffered here (it is bounded by the limit) and
    replayed to the application, so no route ever sees a partial body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await error_response(ApiRequestError("invalid Content-Length header"))(
                scope, receive, send
            )
            return
        if declared is not None and declared > self.max_body_bytes:
            await error_response(RequestTooLargeError(declared, self.max_body_bytes))(
                scope, receive, send
            )
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_body_bytes:
                await error_response(RequestTooLargeError(None, self.max_body_bytes))(
                    scope, receive, send
                )
                return
        await self.app(scope, _replay(bytes(body), receive), send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent, -1 when malformed."""
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as ASGI expects

    return replay
