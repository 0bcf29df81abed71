"""An outgoing HTTP call (a workflow `http` node, a webhook delivery): network policy at run
time, then httpx.

The destination is checked when the node runs (the URL is a template), by resolving its host
and refusing private, loopback and link-local addresses unless the node allows them. The
request then goes to the address that was checked, not to a second DNS answer (the Host header
and TLS server name stay the original host), and redirects are not followed: either could
otherwise lead a checked request to a refused address.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from inferpipe.core.errors import InferpipeError
from inferpipe.core.json import MB
from inferpipe.net import egress
from inferpipe.net.egress import UrlRefusedError

_NO_BODY: Any = object()


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """How `http` nodes reach the network.

    Args:
        transport: an httpx transport (a `MockTransport` in tests and demos); httpx's default
            network transport when None.
        resolver: resolves a host to its addresses, for the policy check.
        max_response_bytes: a longer response body fails the node.
    """

    transport: httpx.AsyncBaseTransport | None = None
    resolver: egress.AsyncResolver = egress.resolve_host_async
    max_response_bytes: int = 1 * MB


class HttpStatusError(InferpipeError):
    """The server answered 4xx or 5xx. 408, 429 and 5xx are retried; other 4xx are not."""

    code = "http_status"

    def __init__(self, status: int, url: str, detail: str, retry_after_s: float | None) -> None:
        super().__init__(f"{url} answered HTTP {status}: {detail[:200]}")
        self.status = status
        self.retryable = retryable(status)
        self.retry_after_s = retry_after_s


class ResponseTooLargeError(InferpipeError):
    """The response body is over `HttpSettings.max_response_bytes`."""

    code = "http_response_too_large"


@dataclass(frozen=True, slots=True)
class Answer:
    """A server's answer: its status, headers, and its body or the head of it."""

    status: int
    headers: httpx.Headers
    body: bytes


def retryable(status: int) -> bool:
    """Whether an answer with this status is worth another try (408, 429 and 5xx)."""
    return status in (408, 429) or status >= 500


async def send(
    settings: HttpSettings,
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = _NO_BODY,
    timeout_s: float,
    allow_private: bool,
) -> dict[str, Any]:
    """Check `url` against the network policy, send the request, and describe the response.

    Returns:
        ``{"status": int, "content_type": str | None, "body": JSON or text or None}``.

    Raises:
        UrlRefusedError: the policy refuses the destination (never retried).
        HttpStatusError: a 4xx/5xx answer.
        ResponseTooLargeError: a body over `HttpSettings.max_response_bytes`.
        httpx.HTTPError: the request failed (connection, timeout): retried.
    """
    answer = await exchange(
        settings,
        method=method,
        url=url,
        headers=headers,
        body=body,
        timeout_s=timeout_s,
        allow_private=allow_private,
    )
    content_type = answer.headers.get("content-type")
    decoded = _decode(answer.body, content_type)
    if answer.status >= 400:
        detail = decoded if isinstance(decoded, str) else json.dumps(decoded)
        raise HttpStatusError(answer.status, url, detail or "", _retry_after(answer.headers))
    return {"status": answer.status, "content_type": content_type, "body": decoded}


async def exchange(
    settings: HttpSettings,
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = _NO_BODY,
    timeout_s: float,
    allow_private: bool,
    head_bytes: int | None = None,
) -> Answer:
    """`send`'s request, whatever the status: the answer with its whole body, or with only
    its first `head_bytes` when given (a longer body is then not an error).

    Raises:
        UrlRefusedError: the policy refuses the destination.
        ResponseTooLargeError: no `head_bytes`, and a body over
            `HttpSettings.max_response_bytes`.
        httpx.HTTPError: the request failed (connection, timeout).
    """
    decision = await egress.check_url_async(
        url, allow_private=allow_private, resolver=settings.resolver
    )
    if not decision.allowed:
        raise UrlRefusedError(url, decision.reason)
    target, extensions, sent_headers = _pinned(httpx.URL(url), decision, headers)
    content: dict[str, Any] = {}
    if isinstance(body, str):
        content["content"] = body.encode()
    elif body is not _NO_BODY and body is not None:
        content["json"] = body
    async with httpx.AsyncClient(
        transport=settings.transport, timeout=timeout_s, follow_redirects=False
    ) as client:
        request = client.build_request(
            method, target, headers=sent_headers, extensions=extensions, **content
        )
        response = await client.send(request, stream=True)
        try:
            if head_bytes is None:
                raw = await _read_limited(response, settings.max_response_bytes, url)
            else:
                raw = await _read_head(response, head_bytes)
        finally:
            await response.aclose()
    return Answer(response.status_code, response.headers, raw)


def _pinned(
    url: httpx.URL, decision: egress.UrlDecision, headers: dict[str, str]
) -> tuple[httpx.URL, dict[str, Any], dict[str, str]]:
    """Aim the request at the checked address, keeping the host for Host and TLS."""
    if not decision.addresses or url.host in decision.addresses:
        return url, {}, headers
    address = decision.addresses[0]
    sent = {k: v for k, v in headers.items() if k.lower() != "host"}
    sent["Host"] = url.netloc.decode("ascii")
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return url.copy_with(host=address), extensions, sent


async def _read_limited(response: httpx.Response, limit_bytes: int, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit_bytes:
            raise ResponseTooLargeError(
                f"response from {url} is over the limit of {limit_bytes} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_head(response: httpx.Response, head_bytes: int) -> bytes:
    head = b""
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= head_bytes:
            break
    return head[:head_bytes]


def _decode(raw: bytes, content_type: str | None) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if content_type and "json" in content_type.lower():
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: let the backoff decide
