"""Translation of `openai` SDK and transport exceptions into inferpipe LLM errors (one boundary).

The SDK's exceptions carry the request (with its Authorization header) and the provider's raw
body (which some providers fill with the key they refused), so the translated error copies what
is useful (status, Retry-After, the provider's message with the key scrubbed) and the original is
not chained.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterable, Mapping

import httpx2
import openai

from inferpipe.llm import errors
from inferpipe.llm.redaction import scrub_text

#: What the SDK and its transport raise; anything else (a failing token sink) passes through.
SDK_ERRORS: tuple[type[Exception], ...] = (openai.OpenAIError, httpx2.HTTPError)

# A provider message is shown to help, not stored whole: bodies can be HTML error pages.
_MAX_PROVIDER_MESSAGE_CHARS = 300


def map_sdk_error(
    exc: Exception, *, provider: str, model: str, base_url: str, secrets: Iterable[str]
) -> errors.ProviderError:
    """The inferpipe error for an exception raised by the SDK or its HTTP transport."""
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return errors.ProviderTimeoutError(
            f"provider {provider!r} did not answer in time ({base_url})", provider=provider
        )
    if isinstance(exc, openai.APIStatusError):
        return _map_status(exc, provider=provider, model=model, secrets=secrets)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return errors.ProviderUnavailableError(
            f"cannot reach provider {provider!r} at {base_url}: {type(exc).__name__}",
            provider=provider,
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return errors.ProviderError(
            f"provider {provider!r} answered with data that is not a chat completion",
            provider=provider,
        )
    # An APIError without a status: an error event in the middle of a stream.
    detail = _provider_message(exc, secrets)
    return errors.ProviderUnavailableError(
        f"provider {provider!r} failed while answering: {detail}", provider=provider
    )


def _map_status(
    exc: openai.APIStatusError, *, provider: str, model: str, secrets: Iterable[str]
) -> errors.ProviderError:
    status = exc.status_code
    detail = _provider_message(exc, secrets)
    retry_after_s = parse_retry_after(exc.response.headers)
    where = f"provider {provider!r} (HTTP {status})"
    if status == 429:
        if exc.code == "insufficient_quota":
            return errors.QuotaExceededError(
                f"{where}: quota exceeded: {detail}", provider=provider, status_code=status
            )
        return errors.RateLimitedError(
            f"{where}: rate limited"
            + (f", retry after {retry_after_s:g}s" if retry_after_s is not None else ""),
            retry_after_s=retry_after_s,
            provider=provider,
            status_code=status,
        )
    if status in (401, 403):
        return errors.AuthenticationError(
            f"{where} refused the credentials; check the configured key: {detail}",
            provider=provider,
            status_code=status,
        )
    if status == 404 or exc.code == "model_not_found":
        return errors.UnknownModelError(
            f"{where}: model {model!r} not found (or a wrong base_url): {detail}",
            provider=provider,
            status_code=status,
        )
    if status in (408, 409) or status >= 500:
        return errors.ProviderUnavailableError(
            f"{where} failed: {detail}",
            retry_after_s=retry_after_s,
            provider=provider,
            status_code=status,
        )
    return errors.InvalidRequestError(
        f"{where} rejected the request: {detail}", provider=provider, status_code=status
    )


def _provider_message(exc: Exception, secrets: Iterable[str]) -> str:
    body = getattr(exc, "body", None)
    message: object = None
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, Mapping) else inner
    text = str(message) if message else str(getattr(exc, "message", "") or exc)
    text = scrub_text(text, secrets)
    if len(text) > _MAX_PROVIDER_MESSAGE_CHARS:
        text = text[:_MAX_PROVIDER_MESSAGE_CHARS] + "..."
    return text


def parse_retry_after(headers: Mapping[str, str], *, now_s: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` (seconds or an HTTP date)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now_s is None else now_s
    return max(moment.timestamp() - current, 0.0)
