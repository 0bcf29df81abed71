"""Errors of the Python client (`inferpipe.client`): the API's answers as exceptions.

Kept apart so the client's stream reader can raise them too; import them from
`inferpipe.client`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from inferpipe.core.errors import InferpipeError
from inferpipe.wire import schemas


class ApiError(InferpipeError):
    """An error answered by the API (or the failure to reach it).

    Hierarchy::

        ApiError                      code, message, status, details
        ├── ApiConnectionError        the server could not be reached (status None)
        ├── InvalidRequestError       400, 422: malformed body, invalid fields
        ├── AuthenticationError       401: missing, wrong or revoked key
        ├── PermissionDeniedError     403: read-only key on a mutation
        ├── NotFoundError             404: no such resource in this workspace
        ├── ConflictError             409: e.g. cancelling a finished run
        ├── RequestTooLargeError      413: body or payload over the limit
        ├── RateLimitedError          429: see `retry_after_s`
        └── ServerError               5xx
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None,
        details: Sequence[schemas.ErrorDetail] = (),
    ) -> None:
        super().__init__(f"[{status}] {code}: {message}" if status else f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = list(details)


class ApiConnectionError(ApiError):
    pass


class InvalidRequestError(ApiError):
    pass


class AuthenticationError(ApiError):
    pass


class PermissionDeniedError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    pass


class RequestTooLargeError(ApiError):
    pass


class RateLimitedError(ApiError):
    def __init__(self, *args: Any, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_s = retry_after_s  #: from the Retry-After header


class ServerError(ApiError):
    pass


_ERROR_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: InvalidRequestError,
    429: RateLimitedError,
}


def raise_for(response: httpx.Response) -> None:
    """Raise the `ApiError` an error response stands for (the body must have been read)."""
    if response.status_code < 400:
        return
    try:
        info = schemas.ErrorBody.model_validate(response.json()).error
        code, message, details = info.code, info.message, info.details
    except ValueError:
        code, message, details = "http_error", response.text[:500] or response.reason_phrase, []
    status = response.status_code
    cls = _ERROR_BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    if cls is RateLimitedError:
        raise RateLimitedError(code, message, status, details, retry_after_s=retry_after(response))
    raise cls(code, message, status, details)


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds, if any."""
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
