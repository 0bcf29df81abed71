"""`inferpipe dev`, `serve`, `keys` and `purge`: the HTTP API, its keys and retention."""

from __future__ import annotations

import argparse

from rich.console import Console

from inferpipe.app import App, shared_streams
from inferpipe.server import keys_cli, retention, runner
from inferpipe.server.deps import ApiSettings
from inferpipe.store import admin, store_from_url

console = Console(stderr=True)

DEFAULT_PORT = 8288


async def dev(app: App, port: int, concurrency: int, allowed_hosts: tuple[str, ...] = ()) -> None:
    """The app's functions, the API and the dashboard in one process, keyless on loopback
    (answering loopback host names, and `allowed_hosts`, only)."""
    url = f"http://127.0.0.1:{port}"
    console.print(
        f"[bold]inferpipe dev[/] · dashboard and API at [cyan]{url}[/] "
        "(no API keys: loopback only) · Ctrl-C to stop"
    )
    await runner.serve_async(
        app,
        "127.0.0.1",
        port,
        require_keys=False,
        worker_options={"concurrency": concurrency},
        settings=ApiSettings(allowed_hosts=allowed_hosts),
    )


async def serve(app: App, args: argparse.Namespace) -> None:
    """The API (keys required), with workers unless --no-worker. Other processes may serve the
    same database (workers, more APIs): streams default to the store."""
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
                workspace=args.workspace,
                name=args.name,
                role=args.role,
                rate_limit_per_min=args.rate_limit,
            )
        elif args.keys_command == "list":
            await keys_cli.list_keys(store, workspace=args.workspace)
        else:
            await keys_cli.revoke_key(store, args.key_id)
    finally:
        await store.close()


async def purge(args: argparse.Namespace) -> None:
    store = store_from_url(args.database)
    await store.open()
    try:
        await retention.purge(store, args.days)
    finally:
        await store.close()


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `serve`, `keys` and `purge` on the top-level parser."""
    srv = sub.add_parser("serve", help="serve the HTTP API and dashboard (API keys required)")
    srv.add_argument("app", metavar="APP", help="module:attribute or path/to/app.py")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=DEFAULT_PORT)
    srv.add_argument("--no-worker", action="store_true", help="API only; run workers elsewhere")
    srv.add_argument(
        "--retention-days",
        type=float,
        default=None,
        help="purge finished runs and events older than this, hourly",
    )
    srv.add_argument("--database", metavar="URL")

    keys_p = sub.add_parser("keys", help="create, list and revoke API keys")
    keys_sub = keys_p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key (shown once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--workspace", default="default")
    create.add_argument("--role", choices=["admin", "read"], default="admin")
    create.add_argument("--rate-limit", type=int, default=None, help="requests per minute")
    lst = keys_sub.add_parser("list", help="keys (never their secrets)")
    lst.add_argument("--workspace", default=None)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", metavar="ID")
    for p in (create, lst, revoke):
        p.add_argument("--database", metavar="URL")

    prg = sub.add_parser("purge", help="delete finished runs and events older than N days")
    prg.add_argument("--days", type=float, required=True)
    prg.add_argument("--database", metavar="URL")


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


def add_database_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="database schema: migrate, status")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, text in (("migrate", "apply pending migrations"), ("status", "applied and pending")):
        p = db_sub.add_parser(name, help=text)
        p.add_argument("--database", metavar="URL")
    db.set_defaults(handler=database)
