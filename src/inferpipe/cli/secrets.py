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


def _value() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("value: ")
    return sys.stdin.read().rstrip("\r\n")


async def run(args: argparse.Namespace) -> None:
    """`inferpipe secrets set|list|delete`."""
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
