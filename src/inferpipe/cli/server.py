"""`inferpipe dev`, `serve`, `keys`, `purge` and `db`: the HTTP API, its keys, retention, schema."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from rich.console import Console

from inferpipe.app import shared_streams
from inferpipe.cli import process
from inferpipe.cli.loading import load_app, workspace_of
from inferpipe.engine.worker import DEFAULT_LEASE_MS
from inferpipe.server import keys as api_keys
from inferpipe.server import keys_cli, retention, runner
from inferpipe.server.deps import ApiSettings
from inferpipe.store import admin, store_from_url
from inferpipe.store.keys import ApiKey

console = Console(stderr=True)

_PIPED_WIDTH = 1000
"""Console width for piped output: wider than any key table, so nothing is cut."""


async def dev(args: argparse.Namespace) -> None:
    """`inferpipe dev`: the app's functions, the API and the dashboard in one process, keyless
    on loopback (answering loopback host names, and `--allow-host` names, only); with
    `--no-server`, a worker alone."""
    app = load_app(args.app)
    if args.database:
        app.database = args.database
    if args.no_server:
        await process.run_worker(
            app, concurrency=args.concurrency, lease_ms=DEFAULT_LEASE_MS, banner="inferpipe dev"
        )
        return
    url = f"http://127.0.0.1:{args.port}"
    console.print(
        f"[bold]inferpipe dev[/] · dashboard and API at [cyan]{url}[/] "
        "(no API keys: loopback only) · Ctrl-C to stop"
    )
    await runner.serve_async(
        app,
        "127.0.0.1",
        args.port,
        require_keys=False,
        worker_options={"concurrency": args.concurrency},
        settings=ApiSettings(allowed_hosts=tuple(args.allow_host)),
    )


async def serve(args: argparse.Namespace) -> None:
    """`inferpipe serve`: the API (keys required), with workers unless --no-worker. Other
    processes may serve the same database (workers, more APIs): streams default to the store."""
    app = load_app(args.app)
    if args.database:
        app.database = args.database
    streams = (
        "" if args.no_worker else shared_streams(app, "inferpipe serve", alone_ok=True) + " · "
    )
    console.print(
        f"[bold]inferpipe serve[/] on http://{args.host}:{args.port} · {streams}API keys required"
    )
    await runner.serve_async(
        app,
        args.host,
        args.port,
        require_keys=True,
        worker=not args.no_worker,
        retention_days=args.retention_days,
    )


async def keys(args: argparse.Namespace) -> None:
    store = store_from_url(args.database)
    await store.open()
    try:
        if args.keys_command == "create":
            await keys_cli.create_key(
                store,
                workspace=workspace_of(args.workspace),
                name=args.name,
                role=args.role,
                rate_limit_per_min=args.rate_limit,
            )
        elif args.keys_command == "list" and args.json:
            for key in await api_keys.list_keys(store.keys, args.workspace):
                print(json.dumps(_key_json(key)))
        elif args.keys_command == "list":
            # Piped, the table keeps its natural width: ids are never cut or folded.
            wide = None if sys.stdout.isatty() else _PIPED_WIDTH
            await keys_cli.list_keys(store, workspace=args.workspace, console=Console(width=wide))
        else:
            await keys_cli.revoke_key(store, args.key_id)
    finally:
        await store.close()


def _key_json(key: ApiKey) -> dict[str, object]:
    """A key as `keys list --json` prints it: every field but the hash."""
    fields = dataclasses.asdict(key)
    del fields["hash"]
    return {**fields, "role": key.role.value}


async def purge(args: argparse.Namespace) -> None:
    store = store_from_url(args.database)
    await store.open()
    try:
        await retention.purge(store, args.days)
    finally:
        await store.close()


async def database(args: argparse.Namespace) -> None:
    """`inferpipe db migrate|status`."""
    if args.db_command == "migrate":
        report = await admin.migrate(args.database)
        done = report.get("applied_now") or []
        console.print(
            f"{report['url']}: schema version {report['version']}; "
            + (f"applied {', '.join(done)}" if done else "already up to date")
        )
        return
    report = await admin.status(args.database)
    console.print(f"{report['url']} ({report['dialect']}): schema version {report['version']}")
    for item in report["applied"]:
        console.print(f"  [green]✔ applied[/] {item['name']}")
    for name in report["pending"]:
        console.print(f"  [yellow]○ pending[/] {name}")
