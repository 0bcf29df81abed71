"""`inferpipe webhooks sources put|list|delete` and `inferpipe webhooks subscriptions
create|list|delete|rotate|deliveries|redeliver`: a workspace's webhooks, on its database.

A sender's secret is read from standard input (`--secret-stdin`), never from the command line;
a generated one (and a subscription's) is printed once. `redeliver` goes through the app that
delivers (`--app`), whose workers make the attempts. Secrets are sealed with the workspace secrets' key
(`INFERPIPE_SECRETS_KEY`, else the key file beside an embedded SQLite database).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from inferpipe.cli.loading import load_app, workspace_of
from inferpipe.net.egress import EgressPolicy
from inferpipe.store import store_from_url
from inferpipe.store.base import Store
from inferpipe.webhooks import delivery, signing, transform
from inferpipe.webhooks.sources import webhook_sources
from inferpipe.webhooks.subscriptions import EventType, webhook_subscriptions

console = Console()


async def run(args: argparse.Namespace) -> None:
    """`inferpipe webhooks sources|subscriptions ...`."""
    args.workspace = workspace_of(args.workspace)
    if args.webhooks_action == "redeliver":
        await _redeliver(args)
        return
    store = store_from_url(args.database, args.workspace)
    await store.open()
    try:
        if args.webhooks_kind == "sources":
            await _sources(store, args)
        else:
            await _subscriptions(store, args)
    finally:
        await store.close()


async def _subscriptions(store: Store, args: argparse.Namespace) -> None:
    subs = webhook_subscriptions(store)
    if args.webhooks_action == "create":
        sub, secret = await subs.create(
            args.workspace,
            args.url,
            events=[EventType(e) for e in args.event],
            function_ids=args.function,
            filter_=args.filter,
            retry_window_s=args.window,
            allow_private=EgressPolicy.from_env().allows_private(args.workspace),
        )
        console.print(f"subscription [bold]{sub.id}[/] delivers to {sub.url}")
        console.print(f"secret (shown once): {secret}", soft_wrap=True)
    elif args.webhooks_action == "list":
        table = Table("id", "url", "events", "functions", "enabled")
        for found in await subs.list_subscriptions(args.workspace):
            events = ", ".join(found.events)
            table.add_row(
                found.id,
                found.url,
                events,
                ", ".join(found.function_ids) or "all",
                str(found.enabled),
            )
        console.print(table)
    elif args.webhooks_action == "delete":
        await subs.delete(args.workspace, args.sub_id)
        console.print(f"subscription [bold]{args.sub_id}[/] deleted")
    elif args.webhooks_action == "rotate":
        secret = await subs.rotate(args.workspace, args.sub_id, grace_s=args.grace)
        console.print(f"new secret (shown once): {secret}", soft_wrap=True)
    else:
        await subs.get(args.workspace, args.sub_id)
        table = Table("delivery", "type", "status", "attempts", "last answer")
        for made in await delivery.list_deliveries(store, args.sub_id):
            last = made.attempts[-1] if made.attempts else {}
            answer = str(last.get("status_code") or last.get("error") or "")
            table.add_row(made.id, made.type, made.status, str(len(made.attempts)), answer[:60])
        console.print(table)


async def _redeliver(args: argparse.Namespace) -> None:
    app = load_app(args.app)
    if args.database:
        app.database = args.database
    app.workspace = args.workspace
    async with app:
        found = await delivery.delivery_of(app).redeliver(app.engine, args.delivery_id)
    console.print(f"delivery [bold]{found.id}[/] queued again (series {found.series})")


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
