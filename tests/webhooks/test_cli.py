"""`inferpipe webhooks ...` on a database: sources (secret from stdin) and subscriptions."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from inferpipe.cli import main
from inferpipe.store.base import RunFilter
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.store.webhooks import RecordKind, WebhookRecord
from inferpipe.webhooks.delivery import DELIVER_FUNCTION_ID


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


def test_the_cli_manages_subscriptions_and_redelivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db_file = tmp_path / "subs.db"
    where = ["--workspace", "default", "--database", f"sqlite:///{db_file}"]
    url = "https://hooks.example.com/in"
    made = ["webhooks", "subscriptions", "create", url, "--event", "run.failed"]
    assert main([*made, "--function", "work", *where]) == 0
    assert main(["webhooks", "subscriptions", "list", *where]) == 0
    out = capsys.readouterr().out
    assert "whsec_" in out and "run.failed" in out
    sub_id = next(w for w in out.split() if w.startswith("whsub_"))
    assert main(["webhooks", "subscriptions", "rotate", sub_id, "--grace", "60", *where]) == 0
    assert "new secret" in capsys.readouterr().out
    loopback = [
        "webhooks",
        "subscriptions",
        "create",
        "http://127.0.0.1:9/x",
        "--event",
        "run.failed",
    ]
    assert main([*loopback, *where]) == 2  # private addresses: the operator's decision

    async def add_delivery() -> None:
        store = SQLiteStore(db_file)
        await store.open()
        try:
            body = {"type": "run.failed", "payload": {"type": "run.failed", "data": {}}}
            record = WebhookRecord(
                "default",
                RecordKind.DELIVERY,
                "msg_cli",
                {**body, "status": "failed", "attempts": [], "series": 0},
                1,
                1,
                sub_id,
            )
            await store.webhooks.put(record)
        finally:
            await store.close()

    asyncio.run(add_delivery())
    assert main(["webhooks", "subscriptions", "deliveries", sub_id, *where]) == 0
    assert "msg_cli" in capsys.readouterr().out
    app_file = str(Path(__file__).with_name("delivery_app.py"))
    again = ["webhooks", "subscriptions", "redeliver", "msg_cli", "--app", app_file]
    assert main([*again, *where]) == 0
    assert "series 1" in capsys.readouterr().out

    async def queued() -> list[str]:
        store = SQLiteStore(db_file)
        await store.open()
        try:
            event = await store.get_event("delivery:msg_cli:1")
            assert event is not None
            runs = await store.list_runs(RunFilter(function_id=DELIVER_FUNCTION_ID))
            return [r.id for r in runs.items]
        finally:
            await store.close()

    assert len(asyncio.run(queued())) == 1
    assert main(["webhooks", "subscriptions", "delete", sub_id, *where]) == 0
    assert main(["webhooks", "subscriptions", "delete", sub_id, *where]) == 2
