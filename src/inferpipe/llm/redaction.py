"""Redaction of secrets: the implementation lives in `inferpipe.core.redaction`, shared by the
engine (which redacts before persisting) and the LLM providers (which scrub error messages)."""

from __future__ import annotations

from inferpipe.core.redaction import (
    DEFAULT_REDACTED_KEYS,
    REDACTED,
    is_sensitive_key,
    redact,
    scrub_text,
)

__all__ = ["DEFAULT_REDACTED_KEYS", "REDACTED", "is_sensitive_key", "redact", "scrub_text"]
