"""Long-running commands: `dev` and `worker`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from rich.console import Console

from inferpipe.app import App, shared_streams
from inferpipe.cli.loading import load_app
from inferpipe.engine.worker import DEFAULT_LEASE_MS, Worker

console = Console(stderr=True)


async def worker(args: argparse.Namespace) -> None:
    """`inferpipe worker`."""
    app = load_app(args.app)
    if args.database:
        app.database = args.database
    lease_ms = DEFAULT_LEASE_MS if args.lease_ms is None else args.lease_ms
    await run_worker(app, concurrency=args.concurrency, lease_ms=lease_ms, banner="inferpipe")


async def run_worker(app: App, *, concurrency: int, lease_ms: int, banner: str) -> None:
    """Run a worker until SIGINT/SIGTERM, then drain: steps in flight finish, leases go back.
    Its runs' streams must reach an API in another process: they default to the store, and
    in-memory streams are refused."""
    streams = shared_streams(app, f"{banner} worker")
    await app.start()
    worker = Worker(app.engine, concurrency=concurrency, lease_ms=lease_ms)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, worker.notify_shutdown)
    functions = ", ".join(app.registry.ids) or "(none)"
    console.print(
        f"[bold]{banner}[/] worker [cyan]{worker.id}[/] · functions: {functions} · {streams}"
    )
    try:
        await worker.run()
    finally:
        console.print(f"worker {worker.id} stopped; leases released")
        await app.close()
