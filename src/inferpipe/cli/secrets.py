"""`inferpipe secrets set|list|delete`: a workspace's secrets, on its database.

The value of `set` is read from standard input (or typed at a prompt), never from the command
line, so it does not land in the shell's history or the process list. The key that encrypts
values is `INFERPIPE_SECRETS_KEY`, else the key file beside an embedded SQLite database.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from rich.console import Console
from rich.table import Table

from inferpipe.cli.loading import workspace_of
from inferpipe.store import store_from_url
from inferpipe.workflows.secret_store import workspace_secrets

console = Console()


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `secrets` on the top-level parser."""
    secrets_p = sub.add_parser("secrets", help="set, list and delete a workspace's secrets")
    actions = secrets_p.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    set_p = actions.add_parser("set", help="set a secret (the value is read from stdin)")
    set_p.add_argument("name", metavar="NAME", help="the secret's name")
    lst = actions.add_parser("list", help="the secrets' names (never their values)")
    delete = actions.add_parser("delete", help="delete a secret")
    delete.add_argument("name", metavar="NAME", help="the secret's name")
    for p in (set_p, lst, delete):
        p.add_argument(
            "--workspace",
            metavar="NAME",
            default="default",
            help="the workspace (default: default)",
        )
        p.add_argument(
            "--database",
            metavar="URL",
            help="sqlite:///path or postgresql://... (default: $INFERPIPE_DATABASE_URL)",
        )
    secrets_p.set_defaults(handler=run)


def _value() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("value: ")
    return sys.stdin.read().rstrip("\r\n")


async def run(args: argparse.Namespace) -> None:
    args.workspace = workspace_of(args.workspace)
    store = store_from_url(args.database, args.workspace)
    await store.open()
    try:
        secrets = workspace_secrets(store)
        if args.secrets_command == "set":
            info = await secrets.set(args.workspace, args.name, _value())
            console.print(f"secret [bold]{info.name}[/] set in workspace {args.workspace!r}")
        elif args.secrets_command == "list":
            table = Table("name", "updated")
            for found in await secrets.names(args.workspace):
                table.add_row(found.name, str(found.updated_at_ms))
            console.print(table)
        else:
            await secrets.delete(args.workspace, args.name)
            console.print(f"secret [bold]{args.name}[/] deleted from {args.workspace!r}")
    finally:
        await store.close()
