"""The HTTP API's errors: one JSON shape, and one table from error codes to statuses.

Every error the API answers has the body::

    {"error": {"code": "run_not_found", "message": "no run with id '01J...'",
               "details": [{"field": "query.limit", "message": "..."}]}}

Errors of the HTTP layer itself (a missing key, a rate limit, a malformed request) are
`InferpipeError`s like the engine's, so a single function, `error_response`, turns any of them
into a response: the exception handlers and the middlewares (which run outside FastAPI's
handlers) both call it.

Hierarchy::

    InferpipeError
    └── ApiRequestError               400  bad_request
        ├── UnauthorizedError         401  no key, wrong key, revoked key
        ├── ForbiddenError            403  read-only key on a mutation
        ├── NotFoundError             404  unknown route or resource
        │   ├── EventNotFoundError
        │   └── StepNotFoundError
        ├── ConflictError             409  the resource is not in a state that allows it
        ├── InvalidRequestError       422  fields that fail validation (with details)
        ├── InvalidJSONError          400  the body is not JSON
        ├── RequestTooLargeError      413  the body is over the server's limit
        └── RateLimitedError          429  per-key rate limit; carries Retry-After
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inferpipe.core.errors import InferpipeError
from inferpipe.wire.errors import STATUS_BY_CODE

_log = logging.getLogger("inferpipe.server")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One field at fault: `field` is a dotted path such as ``body.events[0].name``."""

    field: str
    message: str


class ApiRequestError(InferpipeError):
    """An error of the HTTP layer."""

    code = "bad_request"

    def __init__(self, message: str, details: Sequence[FieldProblem] = ()) -> None:
        super().__init__(message)
        self.details = list(details)


class UnauthorizedError(ApiRequestError):
    code = "unauthorized"


class ForbiddenError(ApiRequestError):
    code = "forbidden"


class NotFoundError(ApiRequestError):
    code = "not_found"


class EventNotFoundError(NotFoundError):
    code = "event_not_found"

    def __init__(self, event_id: str) -> None:
        super().__init__(f"no event with id {event_id!r}")


class StepNotFoundError(NotFoundError):
    code = "step_not_found"

    def __init__(self, run_id: str, step_key: str) -> None:
        super().__init__(f"run {run_id!r} has no step {step_key!r}")


class ConflictError(ApiRequestError):
    code = "conflict"


class InvalidRequestError(ApiRequestError):
    code = "invalid_request"


class InvalidJSONError(ApiRequestError):
    code = "invalid_json"


class RequestTooLargeError(ApiRequestError):
    code = "payload_too_large"

    def __init__(self, size_bytes: int | None, limit_bytes: int) -> None:
        size = f"{size_bytes} bytes" if size_bytes is not None else "larger"
        super().__init__(f"request body is {size}, over the limit of {limit_bytes} bytes")


class RateLimitedError(ApiRequestError):
    code = "rate_limited"

    def __init__(self, limit_per_min: int, retry_after_s: float) -> None:
        super().__init__(
            f"rate limit of {limit_per_min} requests per minute exceeded for this API key; "
            f"retry after {math.ceil(retry_after_s)} s"
        )
        self.retry_after_s = retry_after_s


_CODE_BY_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def status_for(exc: InferpipeError) -> int:
    status = STATUS_BY_CODE.get(exc.code)
    if status is not None:
        return status
    return 503 if exc.retryable else 500


def error_body(
    code: str, message: str, details: Sequence[FieldProblem] = ()
) -> dict[str, dict[str, Any]]:
    """The JSON body of every error response."""
    return {
        "error": {
            "code": code,
            "message": message,
            "details": [{"field": d.field, "message": d.message} for d in details],
        }
    }


def error_response(exc: InferpipeError) -> JSONResponse:
    """The response for an error: its status from `STATUS_BY_CODE`, our shape, Retry-After."""
    status = status_for(exc)
    details = exc.details if isinstance(exc, ApiRequestError) else []
    headers = {}
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if status >= 500:
        _log.error("request failed: %s", exc, exc_info=exc)
    return JSONResponse(error_body(exc.code, str(exc), details), status, headers=headers)


def install_error_handlers(api: FastAPI) -> None:
    """Answer every error, including FastAPI's and Starlette's own, with our shape."""

    async def on_inferpipe_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InferpipeError)
        return error_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(_from_validation(exc.errors()))

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _CODE_BY_STATUS.get(exc.status_code, "bad_request" if exc.status_code < 500 else "")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = "no such route: see /docs for the API"
        body = error_body(code or "internal_error", message)
        return JSONResponse(body, exc.status_code, headers=dict(exc.headers or {}))

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        _log.error("unhandled error in the API", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), 500)

    api.add_exception_handler(InferpipeError, on_inferpipe_error)
    api.add_exception_handler(RequestValidationError, on_validation_error)
    api.add_exception_handler(StarletteHTTPException, on_http_error)
    api.add_exception_handler(Exception, on_unexpected)


def validation_problems(errors: Sequence[Any], prefix: Sequence[Any] = ()) -> list[FieldProblem]:
    """Pydantic's errors as field problems, their locations under `prefix`."""
    return [
        FieldProblem(field_path((*prefix, *e.get("loc", ()))), str(e.get("msg", "invalid value")))
        for e in errors
    ]


def _from_validation(errors: Sequence[Any]) -> ApiRequestError:
    problems = validation_problems(errors)
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next((e.get("ctx", {}).get("error") for e in errors), None) or "invalid JSON"
        return InvalidJSONError(f"the request body is not valid JSON: {detail}")
    fields = ", ".join(dict.fromkeys(p.field for p in problems))
    return InvalidRequestError(f"invalid request: check {fields}", problems)


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "events", 0, "name")`` -> ``body.events[0].name``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"
