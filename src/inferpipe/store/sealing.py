"""The operator's key for values sealed at rest in the database (workspace secrets, webhook
signing secrets), and the cipher that seals and opens them.

The key is never in the database: ``INFERPIPE_SECRETS_KEY`` (a Fernet key; several,
comma-separated, to rotate: the first encrypts, all decrypt), else for the embedded SQLite
database a key file ``secrets.key`` beside it, created (mode 0600) on first use. A PostgreSQL
deployment must set the variable. A value is sealed as a Fernet token of ``{"workspace",
"name", "value"}``, so a token copied to another row does not open as that row's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from inferpipe.core.errors import ConfigurationError
from inferpipe.store.secrets import SealedSecret, SecretTable

KEY_ENV = "INFERPIPE_SECRETS_KEY"
"""The operator's Fernet key(s), comma-separated; the first encrypts."""
KEY_FILE = "secrets.key"
"""The key file beside an embedded SQLite database, when the variable is not set."""


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
