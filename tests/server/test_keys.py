"""API keys, the rate limiter, the keys commands and retention, on a SQLite store."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rich.console import Console

import inferpipe as ip
from inferpipe.core.errors import ConfigurationError
from inferpipe.server import keys, keys_cli, retention
from inferpipe.server.auth import RateLimiter
from inferpipe.server.errors import NotFoundError, UnauthorizedError
from inferpipe.store.keys import Role
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.testing import Harness


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "keys.db")
    await opened.open()
    yield opened
    await opened.close()


async def test_keys_are_stored_hashed_and_verified(store: SQLiteStore, tmp_path: Path) -> None:
    ks = store.keys
    record, secret = await keys.create_key(ks, workspace="Acme_Corp", name="ci", role="read")
    assert secret.startswith("ip_acmecorp_") and len(secret.split("_", 2)[2]) == 40
    assert record.prefix == secret[: len("ip_acmecorp_") + 8]
    assert secret not in record.hash and record.hash.startswith("sha256$")
    with sqlite3.connect(tmp_path / "keys.db") as conn:
        dump = repr(conn.execute("SELECT * FROM api_keys").fetchall())
    assert secret not in dump and secret[-20:] not in dump

    verified = await keys.verify_key(ks, secret)
    assert (verified.workspace, verified.role) == ("Acme_Corp", Role.READ)
    with pytest.raises(UnauthorizedError, match="no such key"):
        await keys.verify_key(ks, secret[:-1] + ("0" if secret[-1] != "0" else "1"))
    with pytest.raises(UnauthorizedError, match="malformed"):
        await keys.verify_key(ks, "ip_acme_short")

    await keys.revoke_key(ks, record.id)
    with pytest.raises(UnauthorizedError, match="revoked"):
        await keys.verify_key(ks, secret)
    with pytest.raises(NotFoundError):
        await keys.revoke_key(ks, "nope")
    assert await ks.workspaces() == ["Acme_Corp"]  # still served: its runs need a worker


async def test_key_options_are_validated(store: SQLiteStore) -> None:
    ks = store.keys
    for bad in ("", "has space", "-dash-first", "x" * 65):
        with pytest.raises(ConfigurationError, match="workspace"):
            await keys.create_key(ks, workspace=bad, name="n")
    with pytest.raises(ConfigurationError, match="role"):
        await keys.create_key(ks, workspace="w", name="n", role="owner")
    with pytest.raises(ConfigurationError, match="rate_limit"):
        await keys.create_key(ks, workspace="w", name="n", rate_limit_per_min=0)


async def test_keys_commands_print_the_secret_once(store: SQLiteStore) -> None:
    out = io.StringIO()
    console = Console(file=out, width=200)
    secret = await keys_cli.create_key(store, workspace="acme", name="deploy", console=console)
    assert secret in out.getvalue() and "will not be shown again" in out.getvalue()

    out.truncate(0)
    listed = await keys_cli.list_keys(store, workspace="acme", console=console)
    assert [k.name for k in listed] == ["deploy"]
    assert secret not in out.getvalue() and listed[0].prefix in out.getvalue()
    assert "active" in out.getvalue()

    await keys_cli.revoke_key(store, listed[0].id, console=console)
    out.truncate(0)
    await keys_cli.list_keys(store, console=console)
    assert "revoked" in out.getvalue()


def test_rate_limiter_refills_over_time() -> None:
    now = [100.0]
    limiter = RateLimiter(clock_s=lambda: now[0])
    assert [limiter.acquire("k", 2) for _ in range(2)] == [None, None]
    wait = limiter.acquire("k", 2)
    assert wait is not None and 29 < wait <= 30  # one token every 30 s at 2/min
    now[0] += 30
    assert limiter.acquire("k", 2) is None
    assert limiter.acquire("other", 2) is None  # buckets are per key


async def test_purge_older_than_removes_finished_runs(tmp_path: Path) -> None:
    app = ip.App("retention")

    @app.function(id="f", trigger=ip.on_event("e"))
    async def f(ctx: ip.Context) -> int:
        return 1

    async with Harness(app, path=tmp_path / "r.db") as h:
        await h.send(ip.Event("e"))
        await h.settle()
        store = h.engine.store
        with pytest.raises(ConfigurationError):
            await retention.purge_older_than(store, 0)
        assert await retention.purge_older_than(store, 1, now_ms=h.now_ms) == 0
        removed = await retention.purge_older_than(store, 1, now_ms=h.now_ms + 2 * 86_400_000)
        assert removed >= 2  # the run and its event (and the function.finished event)
        assert (await store.list_runs()).items == []
        out = io.StringIO()
        total = await retention.purge(store, 1, console=Console(file=out))
        assert total == 0 and "removed 0" in out.getvalue()
