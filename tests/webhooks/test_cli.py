"""`inferpipe webhooks ...` on a database: sources put (secret from stdin), listed, deleted."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from inferpipe.cli import main
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.store.webhooks import RecordKind


def test_the_cli_puts_lists_and_deletes_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    where = ["--workspace", "w1", "--database", database]
    monkeypatch.setattr("sys.stdin", io.StringIO("gh-secret-42\n"))
    put = ["webhooks", "sources", "put", "gh", "--scheme", "github", "--secret-stdin"]
    assert main([*put, "--event", "gh/push", *where]) == 0
    cel = ["--cel", '{"name": "x", "data": body}']
    assert main(["webhooks", "sources", "put", "std", *cel, *where]) == 0
    assert main(["webhooks", "sources", "list", *where]) == 0
    out = capsys.readouterr().out
    assert "whsec_" in out  # the generated secret, printed once
    assert "gh-secret-42" not in out and "gh/push" in out and "cel" in out

    async def sealed() -> str:
        store = SQLiteStore(tmp_path / "cli.db")
        await store.open()
        try:
            row = await store.webhooks.get("w1", RecordKind.SOURCE, "gh")
            assert row is not None
            return str(row.body)
        finally:
            await store.close()

    assert "gh-secret-42" not in asyncio.run(sealed())
    assert main(["webhooks", "sources", "put", "bad", "--scheme", "stripe", *where]) == 2
    assert main(["webhooks", "sources", "delete", "gh", *where]) == 0
    assert main(["webhooks", "sources", "delete", "gh", *where]) == 2
