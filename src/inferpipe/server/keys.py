"""API keys: created and shown once, stored as a salted hash, scoping requests to a workspace.

A key reads ``ip_<workspace-hint>_<random>``, e.g. ``ip_acme_3f9c...``. Its first characters
(``ip_acme_3f9c1a2b``) are kept in clear as a `prefix`, to find the row and to show the key in
listings; the rest is only ever compared through its hash, in constant time.

The operations are functions over the store's key table (`Store.keys`, see
`inferpipe.store.keys`), which keeps rows only.

Example::

    keys = app.engine.store.keys
    record, secret = await create_key(keys, workspace="acme", name="ci")
    print(secret)                      # shown once
    principal = await verify_key(keys, secret)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

from inferpipe.core.errors import ConfigurationError
from inferpipe.core.ids import new_id
from inferpipe.server.errors import NotFoundError, UnauthorizedError
from inferpipe.store.keys import DEFAULT_RATE_LIMIT_PER_MIN, ApiKey, KeyStore, Role

KEY_SCHEME = "ip"
"""The first segment of every key, so a leaked key is recognizable by secret scanners."""

SECRET_HEX_CHARS = 40
"""The random part of a key: 160 bits, hex."""

PREFIX_RANDOM_CHARS = 8
"""Characters of the random part kept in clear in the prefix (for lookup and display)."""

HINT_MAX_CHARS = 12
"""The workspace hint in a key is the workspace name's first alphanumerics, lowercased."""

WORKSPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

_HASH_SCHEME = "sha256"


async def create_key(
    keys: KeyStore,
    *,
    workspace: str,
    name: str,
    role: Role | str = Role.ADMIN,
    rate_limit_per_min: int | None = DEFAULT_RATE_LIMIT_PER_MIN,
    now_ms: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns its record and its secret, which is not stored and not shown again.

    Raises:
        ConfigurationError: an invalid workspace name, role or rate limit.
    """
    check_workspace(workspace)
    try:
        role = Role(role)
    except ValueError:
        raise ConfigurationError(f"role must be 'admin' or 'read', not {role!r}") from None
    if rate_limit_per_min is not None and rate_limit_per_min < 1:
        raise ConfigurationError("rate_limit_per_min must be at least 1 (or None: unlimited)")
    hint = re.sub(r"[^a-z0-9]", "", workspace.lower())[:HINT_MAX_CHARS] or "ws"
    secret = f"{KEY_SCHEME}_{hint}_{secrets.token_hex(SECRET_HEX_CHARS // 2)}"
    record = ApiKey(
        id=new_id(),
        workspace=workspace,
        name=name or "unnamed",
        prefix=_prefix_of(secret) or "",
        role=role,
        created_at_ms=now_ms if now_ms is not None else _now_ms(),
        hash=_hash(secret, secrets.token_hex(16)),
        rate_limit_per_min=rate_limit_per_min,
    )
    await keys.insert(record)
    return record, secret


async def verify_key(keys: KeyStore, secret: str) -> ApiKey:
    """The key a secret belongs to.

    Raises:
        UnauthorizedError: the secret is malformed, unknown, or revoked (the message says which).
    """
    prefix = _prefix_of(secret)
    if prefix is None:
        raise UnauthorizedError(
            f"malformed API key: keys look like {KEY_SCHEME}_<workspace>_<40 hex characters>"
        )
    for key in await keys.by_prefix(prefix):
        if _matches(secret, key.hash):
            if key.revoked:
                raise UnauthorizedError(f"API key {key.prefix}... ({key.name!r}) has been revoked")
            return key
    raise UnauthorizedError(f"invalid API key {prefix}...: no such key")


async def revoke_key(keys: KeyStore, key_id: str, now_ms: int | None = None) -> ApiKey:
    """Revoke a key by id; requests with it are refused from now on.

    Raises:
        NotFoundError: no key has this id.
    """
    if not await keys.revoke(key_id, now_ms if now_ms is not None else _now_ms()):
        raise NotFoundError(f"no API key with id {key_id!r}")
    key = await keys.get(key_id)
    assert key is not None
    return key


async def list_keys(keys: KeyStore, workspace: str | None = None) -> list[ApiKey]:
    """Keys (without secrets), oldest first."""
    return await keys.list_keys(workspace)


def check_workspace(workspace: str) -> None:
    if not isinstance(workspace, str) or not WORKSPACE_PATTERN.match(workspace):
        raise ConfigurationError(
            f"invalid workspace name {workspace!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _prefix_of(secret: str) -> str | None:
    parts = secret.split("_", 2) if isinstance(secret, str) else []
    if len(parts) != 3 or parts[0] != KEY_SCHEME or not parts[1]:
        return None
    random_part = parts[2]
    if len(random_part) != SECRET_HEX_CHARS or not re.fullmatch(r"[0-9a-f]+", random_part):
        return None
    return f"{parts[0]}_{parts[1]}_{random_part[:PREFIX_RANDOM_CHARS]}"


def _hash(secret: str, salt: str) -> str:
    digest = hashlib.sha256(salt.encode() + secret.encode()).hexdigest()
    return f"{_HASH_SCHEME}${salt}${digest}"


def _matches(secret: str, stored: str) -> bool:
    scheme, _, rest = stored.partition("$")
    salt, _, _digest = rest.partition("$")
    if scheme != _HASH_SCHEME or not salt:
        return False
    return hmac.compare_digest(_hash(secret, salt), stored)


def _now_ms() -> int:
    return int(time.time() * 1000)
