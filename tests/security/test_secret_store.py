"""The workspace secret store on both databases: sealed per workspace and name, names listed
without values, a key from the operator (PostgreSQL requires one), rotation keeps old values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from inferpipe.core.errors import ConfigurationError
from inferpipe.store import sealing
from inferpipe.store.base import Store
from inferpipe.store.postgres import PostgresStore
from inferpipe.store.secrets import SealedSecret
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.workflows import secret_store
from tests.store.conftest import session_postgres


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store
    if request.param == "sqlite":
        made = SQLiteStore(tmp_path / "s.db")
    else:
        made = PostgresStore(await session_postgres().new_database())
    await made.open()
    try:
        yield made
    finally:
        await made.close()


async def test_set_list_value_delete_per_workspace(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(sealing.KEY_ENV, Fernet.generate_key().decode())
    secrets = secret_store.workspace_secrets(store)
    first = await secrets.set("w1", "TOKEN", "v1")
    again = await secrets.set("w1", "TOKEN", "v2")
    await secrets.set("w2", "TOKEN", "other")
    assert again.created_at_ms == first.created_at_ms
    assert [i.name for i in await secrets.names("w1")] == ["TOKEN"]
    assert await secrets.value("w1", "TOKEN") == "v2"
    assert await secrets.value("w2", "TOKEN") == "other"
    assert await secrets.value("w3", "TOKEN") is None
    await secrets.delete("w1", "TOKEN")
    assert await secrets.value("w1", "TOKEN") is None
    with pytest.raises(secret_store.SecretNotFoundError):
        await secrets.delete("w1", "TOKEN")
    with pytest.raises(secret_store.InvalidSecretError):
        await secrets.set("w1", "not-an-identifier", "x")


async def test_a_token_moved_to_another_row_is_refused_and_rotation_keeps_values(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv(sealing.KEY_ENV, old)
    table = secret_store.workspace_secrets(store)._table
    await secret_store.workspace_secrets(store).set("w1", "A", "value-a")
    sealed = await table.fetch("w1", "A")
    assert sealed is not None
    await table.upsert(SealedSecret("w2", "A", sealed.ciphertext, 1, 1))
    with pytest.raises(ConfigurationError, match="sealed for another secret"):
        await secret_store.workspace_secrets(store).value("w2", "A")
    monkeypatch.setenv(sealing.KEY_ENV, f"{new},{old}")
    assert await secret_store.workspace_secrets(store).value("w1", "A") == "value-a"
    monkeypatch.setenv(sealing.KEY_ENV, new)
    with pytest.raises(ConfigurationError, match="does not decrypt"):
        await secret_store.workspace_secrets(store).value("w1", "A")


async def test_without_a_configured_key(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sealing.KEY_ENV, raising=False)
    secrets = secret_store.workspace_secrets(store)
    if isinstance(store, PostgresStore):
        with pytest.raises(ConfigurationError, match=sealing.KEY_ENV):
            await secrets.set("w1", "A", "x")
        return
    await secrets.set("w1", "A", "x")  # SQLite: a key file beside the database
    assert isinstance(store, SQLiteStore)
    key_file = Path(store.path).parent / sealing.KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert await secret_store.workspace_secrets(store).value("w1", "A") == "x"
