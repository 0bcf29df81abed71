"""Errors of the webhooks feature; each `code` has its HTTP status in `inferpipe.wire.errors`.

Hierarchy::

    InferpipeError
    └── WebhookError
        ├── SignatureRejectedError         401  missing, wrong or stale signature
        │   └── ReplayedWebhookError       401  a request already accepted, sent again
        ├── MalformedWebhookError          400  the body is not what the source expects
        ├── WebhookTooLargeError           413  the body is over the source's limit
        ├── WebhookTransformError          422  the source's transform failed on this request
        ├── InvalidWebhookConfigError      422  a bad source or subscription definition
        ├── WebhookNotFoundError           404  no such source, subscription or delivery
        └── WebhooksNotEnabledError        404  the app delivers no outgoing webhooks
"""

from __future__ import annotations

from inferpipe.core.errors import InferpipeError


class WebhookError(InferpipeError):
    code = "webhook_error"


class SignatureRejectedError(WebhookError):
    """The request is not signed by the source's secret, or not recently enough."""

    code = "webhook_signature_invalid"


class ReplayedWebhookError(SignatureRejectedError):
    """The same message, with the same signed timestamp, was already accepted."""

    code = "webhook_replayed"


class MalformedWebhookError(WebhookError):
    code = "webhook_malformed"


class WebhookTooLargeError(WebhookError):
    code = "payload_too_large"

    def __init__(self, size_bytes: int, limit_bytes: int) -> None:
        super().__init__(
            f"webhook body is {size_bytes} bytes, over the source's limit of {limit_bytes}"
        )


class WebhookTransformError(WebhookError):
    code = "webhook_transform_failed"


class InvalidWebhookConfigError(WebhookError):
    code = "invalid_webhook"


class WebhookNotFoundError(WebhookError):
    code = "webhook_not_found"


class WebhooksNotEnabledError(WebhookError):
    code = "webhooks_not_enabled"

    def __init__(self) -> None:
        super().__init__(
            "this app delivers no outgoing webhooks: enable them with "
            "`inferpipe.webhooks.enable_delivery(app)` (see docs/webhooks.md)"
        )
