"""`inferpipe dev`, `serve`, `keys` and `purge`: the HTTP API, its keys and retention."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from rich.console import Console

from inferpipe.app import App, shared_streams
from inferpipe.cli.loading import workspace_of
from inferpipe.server import keys as api_keys
from inferpipe.server import keys_cli, retention, runner
from inferpipe.server.deps import ApiSettings
from inferpipe.store import admin, store_from_url
from inferpipe.store.keys import DEFAULT_RATE_LIMIT_PER_MIN, ApiKey

console = Console(stderr=True)

DEFAULT_PORT = 8288

_PIPED_WIDTH = 1000
"""Console width for piped output: wider than any key table, so nothing is cut."""


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


_DATABASE_HELP = (
    "sqlite:///path or postgresql://... (default: $INFERPIPE_DATABASE_URL or the app's)"
)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `serve`, `keys` and `purge` on the top-level parser."""
    srv = sub.add_parser("serve", help="serve the HTTP API and dashboard (API keys required)")
    srv.add_argument(
        "app",
        metavar="APP",
        nargs="?",
        help="the application: module:attribute, path/to/app.py[:attribute] (or $INFERPIPE_APP)",
    )
    srv.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    srv.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)"
    )
    srv.add_argument("--no-worker", action="store_true", help="API only; run workers elsewhere")
    srv.add_argument(
        "--retention-days",
        type=float,
        default=None,
        help="purge finished runs and events older than this, hourly",
    )
    srv.add_argument("--database", metavar="URL", help=_DATABASE_HELP)

    keys_p = sub.add_parser("keys", help="create, list and revoke API keys")
    keys_sub = keys_p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create a key (shown once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument(
        "--workspace",
        metavar="NAME",
        default=None,
        help="the workspace the key can see (default: $INFERPIPE_WORKSPACE or 'default')",
    )
    create.add_argument(
        "--role",
        choices=["admin", "read"],
        default="admin",
        help="admin: read and write; read: GET requests only (default: %(default)s)",
    )
    limit = create.add_mutually_exclusive_group()
    limit.add_argument(
        "--rate-limit",
        type=int,
        metavar="N",
        default=DEFAULT_RATE_LIMIT_PER_MIN,
        help="requests per minute (default: %(default)s)",
    )
    limit.add_argument(
        "--unlimited",
        dest="rate_limit",
        action="store_const",
        const=None,
        help="no rate limit for this key",
    )
    lst = keys_sub.add_parser("list", help="keys (never their secrets)")
    lst.add_argument(
        "--workspace",
        metavar="NAME",
        default=None,
        help="only this workspace's keys (default: all)",
    )
    lst.add_argument("--json", action="store_true", help="one JSON object per key, for scripts")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", metavar="ID", help="the key's id (see `inferpipe keys list`)")
    for p in (create, lst, revoke):
        p.add_argument("--database", metavar="URL", help=_DATABASE_HELP)

    prg = sub.add_parser("purge", help="delete finished runs and events older than N days")
    prg.add_argument(
        "--days", type=float, required=True, help="age in days (fractions allowed, e.g. 0.5)"
    )
    prg.add_argument("--database", metavar="URL", help=_DATABASE_HELP)


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
        p.add_argument("--database", metavar="URL", help=_DATABASE_HELP)
    db.set_defaults(handler=database)
