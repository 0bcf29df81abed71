"""Secrets of a workspace: set, listed (names only) and deleted by the tenant, encrypted at rest.

An HTTP node references ``{{ secrets.NAME }}``; when it runs, NAME is looked up among the
secrets of the run's workspace, and only there (another workspace's secret of the same name
is not visible). Values are stored as Fernet tokens (AES-128-CBC with HMAC-SHA256, from the
`cryptography` package) of ``{"workspace", "name", "value"}``, so a token copied to another
row does not decrypt as that row's secret.

The key is the operator's, never in the database: ``INFERPIPE_SECRETS_KEY`` (a Fernet key;
several, comma-separated, to rotate: the first encrypts, all decrypt), else for the embedded
SQLite database a key file ``secrets.key`` beside it, created (mode 0600) on first use. A
PostgreSQL deployment must set the variable.

The operations are functions over the store's secret table (`Store.secrets`, see
`inferpipe.store.secrets`), which keeps sealed rows only, like API keys.

Example::

    secrets = workspace_secrets(app.engine.store)
    await secrets.set("acme", "HELPDESK_TOKEN", "hd-123")
    [info.name for info in await secrets.names("acme")]     # ["HELPDESK_TOKEN"]
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from inferpipe.core.errors import ConfigurationError, InferpipeError
from inferpipe.store.base import Store
from inferpipe.store.secrets import SealedSecret, SecretTable

KEY_ENV = "INFERPIPE_SECRETS_KEY"
"""The operator's Fernet key(s), comma-separated; the first encrypts."""
KEY_FILE = "secrets.key"
"""The key file beside an embedded SQLite database, when the variable is not set."""
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


class SecretCipher:
    """Seals and opens secret values with the operator's Fernet key(s)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError("a secret cipher needs at least one key")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError as exc:
            raise ConfigurationError(
                f"{KEY_ENV} must hold Fernet keys (32 url-safe base64-encoded bytes), "
                f"comma-separated: {exc}"
            ) from None

    def seal(self, workspace: str, name: str, value: str) -> str:
        plain = json.dumps({"workspace": workspace, "name": name, "value": value})
        return self._fernet.encrypt(plain.encode()).decode("ascii")

    def open(self, row: SealedSecret) -> str:
        """The value of `row`.

        Raises:
            ConfigurationError: the token does not decrypt with these keys, or belongs to
                another workspace or name.
        """
        try:
            plain = json.loads(self._fernet.decrypt(row.ciphertext.encode("ascii")))
        except (InvalidToken, ValueError):
            raise ConfigurationError(
                f"secret {row.name!r} of workspace {row.workspace!r} does not decrypt with the "
                f"configured key: was {KEY_ENV} changed without keeping the old key?"
            ) from None
        if plain.get("workspace") != row.workspace or plain.get("name") != row.name:
            raise ConfigurationError(
                f"secret {row.name!r} of workspace {row.workspace!r} was sealed for another "
                "secret: refusing it"
            )
        return str(plain["value"])


def cipher_for(table: SecretTable) -> SecretCipher:
    """The cipher of `table`'s database: the key(s) in `KEY_ENV`, else (SQLite) the key file.

    Raises:
        ConfigurationError: no key is configured and the database has no folder of its own
            (PostgreSQL).
    """
    configured = os.environ.get(KEY_ENV, "").strip()
    if configured:
        return SecretCipher([part.strip().encode() for part in configured.split(",") if part])
    if table.database_file == ":memory:":
        return SecretCipher([_memory_key()])
    if table.database_file is not None:
        return SecretCipher([_key_file(Path(table.database_file).parent / KEY_FILE)])
    raise ConfigurationError(
        f"set {KEY_ENV} to a Fernet key (python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())') to keep workspace secrets in this database"
    )


_MEMORY_KEY: list[bytes] = []


def _memory_key() -> bytes:
    if not _MEMORY_KEY:
        _MEMORY_KEY.append(Fernet.generate_key())
    return _MEMORY_KEY[0]


def _key_file(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
    return key


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
