"""The API's routes, one module per resource; `ERROR_RESPONSES` documents the error shape."""

from __future__ import annotations

from typing import Any

from inferpipe.wire import schemas

_ERROR_STATUSES = {
    400: "Malformed request (e.g. the body is not JSON).",
    401: "Missing, wrong or revoked API key.",
    403: "The API key is read-only.",
    404: "No such resource in this workspace, or no such route.",
    413: "The request body is over the limit.",
    422: "A field fails validation; `details` names it.",
    429: "Rate limit of this API key exceeded; see Retry-After.",
    503: "The store is unavailable; retry.",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorBody, "description": text}
    for status, text in _ERROR_STATUSES.items()
}
"""Documented on every `/v1` route: each answers errors in the same JSON shape."""

CONFLICT_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: {"model": schemas.ErrorBody, "description": "The run is not in a state that allows it."}
}
