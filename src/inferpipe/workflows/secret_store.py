"""Secrets of a workspace: set, listed (names only) and deleted by the tenant, encrypted at rest.

An HTTP node references ``{{ secrets.NAME }}``; when it runs, NAME is looked up among the
secrets of the run's workspace, and only there (another workspace's secret of the same name
is not visible). Values are stored as Fernet tokens (AES-128-CBC with HMAC-SHA256, from the
`cryptography` package) of ``{"workspace", "name", "value"}``, so a token copied to another
row does not decrypt as that row's secret.

The key is the operator's, never in the database (`inferpipe.store.sealing`, shared with the
webhook secrets): ``INFERPIPE_SECRETS_KEY`` (a Fernet key; several, comma-separated, to rotate:
the first encrypts, all decrypt), else for the embedded SQLite database a key file
``secrets.key`` beside it, created (mode 0600) on first use. A PostgreSQL deployment must set
the variable.

The operations are functions over the store's secret table (`Store.secrets`, see
`inferpipe.store.secrets`), which keeps sealed rows only, like API keys.

Example::

    secrets = workspace_secrets(app.engine.store)
    await secrets.set("acme", "HELPDESK_TOKEN", "hd-123")
    [info.name for info in await secrets.names("acme")]     # ["HELPDESK_TOKEN"]
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from inferpipe.core.errors import InferpipeError
from inferpipe.store.base import Store
from inferpipe.store.sealing import SecretCipher, cipher_for
from inferpipe.store.secrets import SealedSecret, SecretTable

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
"""Secret names are identifiers, so ``secrets.NAME`` reads them in a template."""
MAX_VALUE_CHARS = 64 * 1024


class InvalidSecretError(InferpipeError):
    """A bad secret name or value."""

    code = "invalid_secret"


class SecretNotFoundError(InferpipeError):
    code = "secret_not_found"

    def __init__(self, workspace: str, name: str) -> None:
        super().__init__(f"workspace {workspace!r} has no secret named {name!r}")


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A stored secret, without its value."""

    name: str
    created_at_ms: int
    updated_at_ms: int


class WorkspaceSecrets:
    """The secret operations over a table and a cipher.

    Args:
        table: where sealed secrets are stored.
        cipher: made on first use (so listing and deleting need no key).
    """

    def __init__(self, table: SecretTable, cipher: SecretCipher | None = None):
        self._table = table
        self._cipher = cipher

    def _seal_with(self) -> SecretCipher:
        if self._cipher is None:
            self._cipher = cipher_for(self._table)
        return self._cipher

    async def set(self, workspace: str, name: str, value: str) -> SecretInfo:
        """Create or replace a secret.

        Raises:
            InvalidSecretError: a bad name, or an empty or too long value.
        """
        check_name(name)
        if not isinstance(value, str) or not value:
            raise InvalidSecretError(f"secret {name!r}: the value must be a non-empty string")
        if len(value) > MAX_VALUE_CHARS:
            raise InvalidSecretError(
                f"secret {name!r} is {len(value)} characters; the limit is {MAX_VALUE_CHARS}"
            )
        now = int(time.time() * 1000)
        sealed = self._seal_with().seal(workspace, name, value)
        row = await self._table.upsert(SealedSecret(workspace, name, sealed, now, now))
        return _info(row)

    async def names(self, workspace: str) -> list[SecretInfo]:
        """A workspace's secrets, by name, without values."""
        return [_info(row) for row in await self._table.list_rows(workspace)]

    async def delete(self, workspace: str, name: str) -> None:
        """Raises SecretNotFoundError when there is no such secret."""
        if not await self._table.delete(workspace, name):
            raise SecretNotFoundError(workspace, name)

    async def value(self, workspace: str, name: str) -> str | None:
        """The value of a workspace's secret, None when it has none of that name."""
        row = await self._table.fetch(workspace, name)
        return None if row is None else self._seal_with().open(row)


def check_name(name: str) -> None:
    """Raises InvalidSecretError unless `name` can be referenced as ``secrets.NAME``."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidSecretError(
            f"invalid secret name {name!r}: use a letter or '_' then letters, digits or '_' "
            "(at most 128), so templates can read it as secrets.NAME"
        )


def _info(row: SealedSecret) -> SecretInfo:
    return SecretInfo(row.name, row.created_at_ms, row.updated_at_ms)


def workspace_secrets(store: Store, cipher: SecretCipher | None = None) -> WorkspaceSecrets:
    """The secrets kept in `store`'s database (its `secrets` table)."""
    return WorkspaceSecrets(store.secrets, cipher)
