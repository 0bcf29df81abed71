"""Errors of the LLM layer.

Every error has a stable string `code` (recorded on the step, sent over HTTP/SSE) and a
`retryable` flag that the step's retry policy reads; `retry_after_s` is the provider's own hint
(Retry-After) when it gave one. Messages never contain a credential.

    ProviderError                      llm.provider_error          not retryable
    ├── ProviderConfigError            llm.provider_config         not retryable
    │   ├── UnknownProviderError       llm.unknown_provider
    │   └── MissingCredentialsError    llm.missing_credentials
    ├── AuthenticationError            llm.authentication_failed   not retryable
    ├── UnknownModelError              llm.unknown_model           not retryable
    ├── InvalidRequestError            llm.invalid_request         not retryable
    ├── QuotaExceededError             llm.quota_exceeded          not retryable
    ├── RateLimitedError               llm.rate_limited            retryable
    ├── ProviderUnavailableError       llm.provider_unavailable    retryable
    │   └── ProviderTimeoutError       llm.timeout                 retryable
    └── StructuredOutputError          llm.structured_output_invalid  not retryable
"""

from __future__ import annotations

from typing import Any


class ProviderError(Exception):
    """Base of the LLM layer's errors.

    Args:
        message: What went wrong, for a person; never contains a credential.
        provider: The provider name ("openai", "fake", ...), when known.
        status_code: The HTTP status the provider answered, when there was one.
        retry_after_s: How long the provider asked to wait before trying again.
    """

    code: str = "llm.provider_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields would be lost (or break) with Exception's default pickling.
        return (_restore, (type(self), self.args, dict(self.__dict__)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the error, for the step record."""
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "provider": self.provider,
            "status_code": self.status_code,
            "retry_after_s": self.retry_after_s,
        }


class ProviderConfigError(ProviderError):
    """The provider configuration is wrong; fix the configuration, retrying will not help."""

    code = "llm.provider_config"


class UnknownProviderError(ProviderConfigError):
    """A model reference names a provider that is not registered."""

    code = "llm.unknown_provider"


class MissingCredentialsError(ProviderConfigError):
    """The provider's key is configured by reference, and the reference resolves to nothing."""

    code = "llm.missing_credentials"


class AuthenticationError(ProviderError):
    """The provider refused the key (HTTP 401/403)."""

    code = "llm.authentication_failed"


class UnknownModelError(ProviderError):
    """The provider does not serve the requested model."""

    code = "llm.unknown_model"


class InvalidRequestError(ProviderError):
    """The provider rejected the request itself (HTTP 400/422, ...)."""

    code = "llm.invalid_request"


class QuotaExceededError(ProviderError):
    """The account has no credit left (a 429 that waiting will not fix)."""

    code = "llm.quota_exceeded"


class RateLimitedError(ProviderError):
    """The provider is rate limiting us (HTTP 429); wait `retry_after_s` when given."""

    code = "llm.rate_limited"
    retryable = True


class ProviderUnavailableError(ProviderError):
    """The provider failed or could not be reached (HTTP 5xx, connection error)."""

    code = "llm.provider_unavailable"
    retryable = True


class ProviderTimeoutError(ProviderUnavailableError):
    """The provider did not answer in time."""

    code = "llm.timeout"


class StructuredOutputError(ProviderError):
    """The model kept replying with output that does not match the schema.

    Args:
        errors: The validation errors of the last reply.
        attempts: How many replies were validated (1 + the re-asks).
        last_content: The last reply, as the model wrote it.
    """

    code = "llm.structured_output_invalid"

    def __init__(
        self,
        errors: list[str],
        *,
        attempts: int,
        last_content: str | None,
        provider: str | None = None,
    ) -> None:
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        super().__init__(
            f"the model's reply did not match the schema after {attempts} attempt(s): {shown}",
            provider=provider,
        )
        self.errors = errors
        self.attempts = attempts
        self.last_content = last_content

    def to_dict(self) -> dict[str, Any]:
        """The base description plus the validation errors and the number of attempts."""
        return {**super().to_dict(), "errors": self.errors, "attempts": self.attempts}


def _restore(
    cls: type[ProviderError], args: tuple[Any, ...], state: dict[str, Any]
) -> ProviderError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
