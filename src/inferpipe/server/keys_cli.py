"""`inferpipe keys create|list|revoke`: functions the CLI wires to its arguments.

Like `inferpipe.cli.runs`, each takes an opened store (its migrations applied), does its work
and prints with rich; the CLI opens and closes the store::

    store = store_from_url(args.database)
    await store.open()
    try:
        await keys_cli.create_key(store, workspace=args.workspace, name=args.name)
    finally:
        await store.close()
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from inferpipe.server import keys as api_keys
from inferpipe.store.base import Store
from inferpipe.store.keys import DEFAULT_RATE_LIMIT_PER_MIN, ApiKey


async def create_key(
    store: Store,
    *,
    workspace: str,
    name: str,
    role: str = "admin",
    rate_limit_per_min: int | None = DEFAULT_RATE_LIMIT_PER_MIN,
    console: Console | None = None,
) -> str:
    """Create a key and print it once; returns the secret."""
    out = console or Console()
    record, secret = await api_keys.create_key(
        store.keys,
        workspace=workspace,
        name=name,
        role=role,
        rate_limit_per_min=rate_limit_per_min,
    )
    out.print(
        Panel.fit(
            f"[bold]{secret}[/bold]\n\n"
            f"workspace [cyan]{record.workspace}[/cyan] · role {record.role.value} · "
            f"id {record.id}\n"
            "[yellow]Copy it now: it is stored hashed and will not be shown again.[/yellow]",
            title=f"API key {record.name!r} created",
        )
    )
    return secret


async def list_keys(
    store: Store, *, workspace: str | None = None, console: Console | None = None
) -> list[ApiKey]:
    """Print the keys (never their secrets), of one workspace or all; returns them."""
    out = console or Console()
    found = await api_keys.list_keys(store.keys, workspace)
    table = Table(title="API keys" + (f" of {workspace}" if workspace else ""))
    for column in ("id", "workspace", "name", "prefix", "role", "limit/min", "created", "status"):
        table.add_column(column)
    for key in found:
        table.add_row(
            key.id,
            key.workspace,
            key.name,
            f"{key.prefix}…",
            key.role.value,
            str(key.rate_limit_per_min) if key.rate_limit_per_min else "unlimited",
            _when(key.created_at_ms),
            f"[red]revoked {_when(key.revoked_at_ms)}[/red]" if key.revoked_at_ms else "active",
        )
    out.print(table if found else "No API keys yet: create one with `inferpipe keys create`.")
    return found


async def revoke_key(store: Store, key_id: str, *, console: Console | None = None) -> ApiKey:
    """Revoke a key by id: requests with it answer 401 from now on.

    Raises:
        NotFoundError: no key has this id.
    """
    out = console or Console()
    key = await api_keys.revoke_key(store.keys, key_id)
    out.print(f"Revoked API key {key.id} ({key.prefix}…, {key.name!r}) of {key.workspace}.")
    return key


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
