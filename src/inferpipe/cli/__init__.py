"""The `inferpipe` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from inferpipe.cli import process, runs, secrets, server
from inferpipe.cli.loading import add_workspace_option, load_app, workspace_of
from inferpipe.cli.workflows import add_workflow_commands
from inferpipe.core.errors import InferpipeError
from inferpipe.core.records import RunStatus
from inferpipe.engine.worker import DEFAULT_LEASE_MS
from inferpipe.store import DEFAULT_DATABASE, store_from_url

if TYPE_CHECKING:
    from inferpipe.app import App

_Command = Callable[[argparse.Namespace], Coroutine[Any, Any, None]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _add_database(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database",
        metavar="URL",
        help=f"sqlite:///path or postgresql://... (default: $INFERPIPE_DATABASE_URL or {DEFAULT_DATABASE})",
    )


def _add_app(p: argparse.ArgumentParser) -> None:
    # Optional on the command line: $INFERPIPE_APP stands in for it (load_app says when neither).
    p.add_argument(
        "app",
        metavar="APP",
        nargs="?",
        help="the application: module:attribute, path/to/app.py[:attribute] (or $INFERPIPE_APP)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferpipe",
        description="Run durable AI workloads: functions of steps that survive crashes, "
        "retry, wait for events and resume.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser(
        "dev", help="run an app locally: worker, API and dashboard on the embedded SQLite store"
    )
    _add_app(dev)
    _add_database(dev)
    dev.add_argument("--concurrency", type=int, default=100, help="runs executed at once")
    dev.add_argument("--port", type=int, default=server.DEFAULT_PORT, help="API and dashboard port")
    dev.add_argument("--no-server", action="store_true", help="a worker only, no API")
    dev.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name to answer besides loopback ones (repeatable)",
    )
    dev.set_defaults(handler=_dev)

    worker = sub.add_parser("worker", help="run a worker for an app's functions")
    _add_app(worker)
    _add_database(worker)
    worker.add_argument("--concurrency", type=int, default=100, help="runs executed at once")
    worker.add_argument(
        "--lease-ms",
        type=int,
        default=DEFAULT_LEASE_MS,
        help="how long a claim lasts without a heartbeat",
    )
    worker.set_defaults(handler=_worker)

    send = sub.add_parser("send", help="send an event (starts the runs it triggers)")
    send.add_argument("name", help="event name, e.g. support/ticket.created")
    send.add_argument("--data", default="{}", help="event data as a JSON object")
    send.add_argument("--id", dest="event_id", help="producer id: a repeat within 24 h is ignored")
    send.add_argument(
        "--app",
        help="the application whose triggers decide which runs start (default: $INFERPIPE_APP)",
    )
    _add_database(send)
    add_workspace_option(send)
    send.set_defaults(handler=_send)

    runs_p = sub.add_parser("runs", help="list, show, cancel and re-run runs")
    runs_sub = runs_p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    lst = runs_sub.add_parser("list", help="recent runs, newest first")
    lst.add_argument("--function", help="only this function id")
    lst.add_argument("--status", choices=[s.value for s in RunStatus], help="only this status")
    lst.add_argument("--limit", type=int, default=20, help="at most this many runs (default: 20)")
    show = runs_sub.add_parser("show", help="a run with its steps and logs")
    cancel = runs_sub.add_parser("cancel", help="cancel a run (its step in flight finishes)")
    rerun = runs_sub.add_parser("rerun", help="run a finished run again")
    rerun.add_argument(
        "--from-failed-step",
        action="store_true",
        help="keep the completed steps; resume at the one that failed (a failed run only)",
    )
    rerun.add_argument(
        "--app",
        help="the application that defines the run's function (default: $INFERPIPE_APP)",
    )
    for p in (show, cancel, rerun):
        p.add_argument("run_id", metavar="ID", help="the run's id (see `inferpipe runs list`)")
    for p in (lst, show, cancel, rerun):
        _add_database(p)
        add_workspace_option(p)
    runs_p.set_defaults(handler=_runs)
    add_workflow_commands(sub)
    server.add_commands(sub)
    server.add_database_commands(sub)
    secrets.add_commands(sub)
    srv, keys, purge = (sub.choices[name] for name in ("serve", "keys", "purge"))
    srv.set_defaults(handler=_serve)
    keys.set_defaults(handler=server.keys)
    purge.set_defaults(handler=server.purge)
    return parser


async def _dev(args: argparse.Namespace) -> None:
    app = load_app(args.app)
    if args.database:
        app.database = args.database
    if args.no_server:
        await process.run_worker(
            app, concurrency=args.concurrency, lease_ms=DEFAULT_LEASE_MS, banner="inferpipe dev"
        )
    else:
        await server.dev(app, args.port, args.concurrency, tuple(args.allow_host))


async def _serve(args: argparse.Namespace) -> None:
    app = load_app(args.app)
    if args.database:
        app.database = args.database
    await server.serve(app, args)


async def _worker(args: argparse.Namespace) -> None:
    app = load_app(args.app)
    if args.database:
        app.database = args.database
    await process.run_worker(
        app, concurrency=args.concurrency, lease_ms=args.lease_ms, banner="inferpipe"
    )


async def _send(args: argparse.Namespace) -> None:
    app = _app_in_workspace(args)
    async with app:
        await runs.send(app, args.name, args.data, args.event_id)


def _app_in_workspace(args: argparse.Namespace) -> App:
    """The app named by the arguments, on `--database` and `--workspace` when given."""
    app = load_app(args.app)
    if args.database:
        app.database = args.database
    if args.workspace or os.environ.get("INFERPIPE_WORKSPACE"):
        app.workspace = workspace_of(args.workspace)
    return app


async def _runs(args: argparse.Namespace) -> None:
    if args.runs_command == "rerun":
        # Through the app's engine: a run of a function the app does not define is refused.
        async with _app_in_workspace(args) as app:
            await runs.rerun(app, args.run_id, args.from_failed_step)
        return
    store = store_from_url(args.database, workspace_of(args.workspace))
    await store.open()
    try:
        action: dict[str, Callable[[], Awaitable[Any]]] = {
            "list": lambda: runs.list_runs(store, args.function, args.status, args.limit),
            "show": lambda: runs.show_run(store, args.run_id),
            "cancel": lambda: runs.cancel_run(store, args.run_id, _now_ms()),
        }
        await action[args.runs_command]()
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `inferpipe` command."""
    args = build_parser().parse_args(argv)
    handler: _Command = args.handler
    try:
        asyncio.run(handler(args))
    except InferpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
