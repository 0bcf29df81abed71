"""Webhook signatures: verifying what senders sign, and signing what we deliver.

Three schemes are accepted from senders:

- ``standard`` (Standard Webhooks, https://www.standardwebhooks.com): headers ``webhook-id``,
  ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``, several
  separated by spaces during a key rotation), the secret ``whsec_<base64>``. Signed with the
  `standardwebhooks` library.
- ``github``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``, the message id in
  ``X-GitHub-Delivery``. No timestamp is signed, so no tolerance window applies.
- ``stripe``: ``Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "t.body">``, the message id
  the body's ``id``.

Outgoing deliveries are always Standard Webhooks, verifiable with
``standardwebhooks.Webhook(secret).verify(body, headers)``.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import standardwebhooks

from inferpipe.core import json
from inferpipe.webhooks.errors import InvalidWebhookConfigError, SignatureRejectedError

DEFAULT_TOLERANCE_S = 300
"""How far a signed timestamp may be from the receiver's clock (Standard Webhooks: 5 min)."""
SECRET_PREFIX = "whsec_"


class Scheme(enum.StrEnum):
    """How a sender signs its requests."""

    STANDARD = "standard"  #: Standard Webhooks (Svix, and any sender using the spec)
    GITHUB = "github"  #: GitHub's X-Hub-Signature-256
    STRIPE = "stripe"  #: Stripe's Stripe-Signature


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature holds: the sender's message id and the signed timestamp
    (empty when the scheme signs none)."""

    message_id: str
    signed_at: str


def new_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_secret(scheme: Scheme, secret: str) -> None:
    """Raise InvalidWebhookConfigError for an unusable secret (a Standard Webhooks secret is
    base64, optionally prefixed ``whsec_``)."""
    if not isinstance(secret, str) or not secret.strip():
        raise InvalidWebhookConfigError("a webhook secret must be a non-empty string")
    if scheme is Scheme.STANDARD:
        try:
            standardwebhooks.Webhook(secret)
        except Exception:
            raise InvalidWebhookConfigError(
                "a Standard Webhooks secret is base64, optionally prefixed 'whsec_'"
            ) from None


def verify(
    scheme: Scheme,
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance_s: float,
    now_s: float,
) -> Verified:
    """Check a request's signature.

    Args:
        headers: the request headers, names in lower case.

    Raises:
        SignatureRejectedError: a header is missing, no signature matches, or the signed
            timestamp is outside `tolerance_s` of `now_s`.
    """
    if scheme is Scheme.STANDARD:
        return _verify_standard(secret, body, headers, tolerance_s, now_s)
    if scheme is Scheme.GITHUB:
        return _verify_github(secret, body, headers)
    return _verify_stripe(secret, body, headers, tolerance_s, now_s)


def _verify_standard(
    secret: str, body: bytes, headers: Mapping[str, str], tolerance_s: float, now_s: float
) -> Verified:
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    passed = headers.get("webhook-signature", "")
    if not (msg_id and stamp and passed):
        raise SignatureRejectedError(
            "missing Standard Webhooks headers: webhook-id, webhook-timestamp and "
            "webhook-signature are required"
        )
    signed_s = _timestamp(stamp, tolerance_s, now_s)
    # The library's verify() has a fixed 5-minute window; the window here is the source's.
    expected = standardwebhooks.Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(signed_s, tz=UTC), body
    )
    if not any(hmac.compare_digest(expected, sig) for sig in passed.split(" ") if sig):
        raise SignatureRejectedError("no webhook-signature matches the source's secret")
    return Verified(msg_id, stamp)


def _verify_github(secret: str, body: bytes, headers: Mapping[str, str]) -> Verified:
    passed = headers.get("x-hub-signature-256", "")
    if not passed.startswith("sha256="):
        raise SignatureRejectedError("missing X-Hub-Signature-256 header (sha256=<hex>)")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, passed.strip()):
        raise SignatureRejectedError("X-Hub-Signature-256 does not match the source's secret")
    msg_id = headers.get("x-github-delivery") or _digest(body)
    return Verified(msg_id, "")


def _verify_stripe(
    secret: str, body: bytes, headers: Mapping[str, str], tolerance_s: float, now_s: float
) -> Verified:
    parts = [p.partition("=") for p in headers.get("stripe-signature", "").split(",")]
    stamps = [v.strip() for k, _, v in parts if k.strip() == "t"]
    passed = [v.strip() for k, _, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not passed:
        raise SignatureRejectedError("missing or malformed Stripe-Signature header (t=...,v1=...)")
    _timestamp(stamps[0], tolerance_s, now_s)
    signed = stamps[0].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, sig) for sig in passed):
        raise SignatureRejectedError("no Stripe-Signature v1 matches the source's secret")
    try:
        found = json.loads(body)
    except ValueError:
        found = None
    msg_id = found.get("id") if isinstance(found, dict) else None
    return Verified(msg_id if isinstance(msg_id, str) and msg_id else _digest(body), stamps[0])


def _timestamp(text: str, tolerance_s: float, now_s: float) -> float:
    try:
        signed_s = float(int(text))
    except ValueError:
        raise SignatureRejectedError(
            f"the signed timestamp {text[:40]!r} is not Unix seconds"
        ) from None
    if abs(now_s - signed_s) > tolerance_s:
        age = "old" if signed_s < now_s else "far in the future"
        raise SignatureRejectedError(
            f"the signed timestamp is {abs(now_s - signed_s):.0f} s {age}: outside the "
            f"tolerance of {tolerance_s:g} s (a stale or replayed request, or a skewed clock)"
        )
    return signed_s


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def sign_headers(
    msg_id: str, timestamp_s: int, body: bytes, secrets_in_use: list[str]
) -> dict[str, str]:
    """The Standard Webhooks headers of a delivery, signed with every secret in use (the new
    one and, during a rotation, the previous one: a receiver holding either verifies)."""
    signed_at = datetime.fromtimestamp(timestamp_s, tz=UTC)
    signatures = [standardwebhooks.Webhook(s).sign(msg_id, signed_at, body) for s in secrets_in_use]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(signatures),
    }
