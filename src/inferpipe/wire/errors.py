"""The API's error codes: each one's HTTP status, the same for the server and its clients.

An error answers the body `inferpipe.wire.schemas.ErrorBody`, whose `code` is one of these (or
another, answering 500, or 503 when the error is retryable: `inferpipe.server.errors.status_for`).
"""

from __future__ import annotations

STATUS_BY_CODE: dict[str, int] = {
    # the HTTP layer
    "bad_request": 400,
    "invalid_json": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "event_not_found": 404,
    "step_not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "invalid_request": 422,
    "rate_limited": 429,
    "not_ready": 503,
    # the engine (inferpipe.core.errors)
    "invalid_event": 422,
    "output_not_serializable": 422,
    "invalid_expression": 422,
    "expression_over_budget": 422,
    "unknown_function": 404,
    "run_not_found": 404,
    "invalid_score": 422,
    "store_error": 503,
    "blob_error": 503,
    "blob_not_found": 404,
    "blob_forbidden": 403,
    # workflow graphs (inferpipe.workflows; the server's routes/workflows.py)
    "graph_invalid": 422,
    "graph_not_found": 404,
    "workflow_input_invalid": 422,
    "workflows_not_enabled": 404,
    # workspace secrets (the server's routes/secrets.py)
    "secret_not_found": 404,
    "invalid_secret": 422,
    # webhooks (inferpipe.webhooks; the server's routes/webhooks.py)
    "webhook_signature_invalid": 401,
    "webhook_replayed": 401,
    "webhook_malformed": 400,
    "webhook_transform_failed": 422,
    "invalid_webhook": 422,
    "webhook_not_found": 404,
    "webhooks_not_enabled": 404,
    # shadow runs (inferpipe.workflows.shadow; the server's routes/shadow.py)
    "shadow_policy_invalid": 422,
    "shadow_not_found": 404,
    "shadow_state": 409,
}
"""The status of each error code; a code not listed answers 500 (503 when retryable)."""
