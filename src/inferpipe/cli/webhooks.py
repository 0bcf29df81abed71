"""`inferpipe webhooks sources put|list|delete`: a workspace's webhook sources, on its database.

A sender's secret is read from standard input (`--secret-stdin`), never from the command line;
a generated one is printed once. Secrets are sealed with the workspace secrets' key
(`INFERPIPE_SECRETS_KEY`, else the key file beside an embedded SQLite database).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from inferpipe.cli.loading import workspace_of
from inferpipe.store import store_from_url
from inferpipe.store.base import Store
from inferpipe.webhooks import signing, transform
from inferpipe.webhooks.sources import webhook_sources

console = Console()


async def run(args: argparse.Namespace) -> None:
    """`inferpipe webhooks sources ...`."""
    args.workspace = workspace_of(args.workspace)
    store = store_from_url(args.database, args.workspace)
    await store.open()
    try:
        await _sources(store, args)
    finally:
        await store.close()


async def _sources(store: Store, args: argparse.Namespace) -> None:
    sources = webhook_sources(store)
    if args.webhooks_action == "put":
        secret = sys.stdin.read().strip() if args.secret_stdin else None
        made, shown = await sources.put(
            args.workspace,
            args.name,
            scheme=signing.Scheme(args.scheme),
            secret=secret,
            event_name=args.event,
            tolerance_s=args.tolerance,
            transform_=_transform(args),
        )
        console.print(f"source [bold]{made.name}[/] ready: POST /v1/webhooks/{made.name}")
        if secret is None:
            console.print(f"secret (shown once): {shown}", soft_wrap=True)
    elif args.webhooks_action == "list":
        table = Table("name", "scheme", "event / transform", "tolerance s")
        for found in await sources.list_sources(args.workspace):
            what = found.transform.kind.value if found.transform else found.event_name
            table.add_row(found.name, found.scheme.value, what, str(found.tolerance_s))
        console.print(table)
    else:
        await sources.delete(args.workspace, args.name)
        console.print(f"source [bold]{args.name}[/] deleted from {args.workspace!r}")


def _transform(args: argparse.Namespace) -> transform.Transform | None:
    if args.cel:
        return transform.Transform(transform.TransformKind.CEL, args.cel)
    if args.jinja:
        text = Path(args.jinja).read_text()
        return transform.Transform(transform.TransformKind.JINJA, text)
    return None
