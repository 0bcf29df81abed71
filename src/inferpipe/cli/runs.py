"""`inferpipe runs ...` and `inferpipe send`: inspect and act on runs from a terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from inferpipe.app import App
from inferpipe.cli.loading import load_app, workspace_of
from inferpipe.core.errors import InvalidEventError
from inferpipe.core.events import Event
from inferpipe.core.records import Run, RunStatus, StepRecord
from inferpipe.store import Store, store_from_url
from inferpipe.store.base import RunFilter

# Piped output is not cut to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)

STATUS_STYLE = {
    RunStatus.QUEUED: ("○", "white"),
    RunStatus.RUNNING: ("▶", "cyan"),
    RunStatus.SLEEPING: ("◷", "blue"),
    RunStatus.WAITING: ("⧗", "yellow"),
    RunStatus.COMPLETED: ("✔", "green"),
    RunStatus.FAILED: ("✘", "red"),
    RunStatus.CANCELLED: ("⊘", "magenta"),
    RunStatus.SKIPPED: ("↷", "bright_black"),
}


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _took(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return "-"
    ms = end - start
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def status_text(status: RunStatus) -> str:
    icon, colour = STATUS_STYLE[status]
    return f"[{colour}]{icon} {status.value}[/]"


async def list_runs(store: Store, function_id: str | None, status: str | None, limit: int) -> None:
    flt = RunFilter(function_id=function_id, status=RunStatus(status) if status else None)
    page = await store.list_runs(flt, limit=limit)
    table = Table(title=f"runs ({len(page.items)}{'+' if page.next_cursor else ''})")
    for col in ("status", "run id", "function", "created", "took", "executions"):
        table.add_column(col, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for run in page.items:
        table.add_row(
            status_text(run.status),
            run.id,
            run.function_id,
            _when(run.created_at_ms),
            _took(run.started_at_ms, run.finished_at_ms),
            str(run.executions),
            run.status_reason or (run.error or {}).get("message", "")[:60],
        )
    console.print(table)


async def show_run(store: Store, run_id: str) -> None:
    run = await store.get_run(run_id)
    if run is None:
        raise SystemExit(f"error: no run with id {run_id!r}")
    _print_header(run)
    steps = await store.get_steps(run_id)
    table = Table(title=f"steps ({len(steps)})")
    for col in ("key", "kind", "status", "attempt", "took", "output / error"):
        table.add_column(col)
    for step in steps:
        table.add_row(
            step.key,
            step.kind.value,
            step.status.value,
            str(step.attempt + 1),
            _took(step.started_at_ms, step.finished_at_ms),
            _summary(step),
        )
    console.print(table)
    for line in await store.get_logs(run_id):
        console.print(
            f"[dim]{_when(line.ts_ms)}[/] {line.level:7} {line.message} {line.meta or ''}"
        )


def _print_header(run: Run) -> None:
    console.print(f"[bold]{run.function_id}[/] {run.id}  {status_text(run.status)}")
    console.print(
        f"created {_when(run.created_at_ms)} · started {_when(run.started_at_ms)} · "
        f"finished {_when(run.finished_at_ms)} · executions {run.executions}"
    )
    if run.parent_run_id:
        console.print(f"parent run {run.parent_run_id}")
    if run.rerun_of:
        console.print(f"re-run of {run.rerun_of}")
    if run.status_reason:
        console.print(f"reason: {run.status_reason}")
    if run.error:
        console.print(f"[red]error[/] {run.error.get('type', '')}: {run.error.get('message', '')}")
        if run.error.get("traceback"):
            console.print(str(run.error["traceback"]).rstrip(), markup=False, highlight=False)
    if run.output is not None:
        console.print(f"output: {json.dumps(run.output)[:500]}")


def _summary(step: StepRecord) -> str:
    if step.error:
        return f"[red]{step.error.get('message', '')[:80]}[/]"
    if step.output is None:
        return "-"
    return json.dumps(step.output)[:80]


async def cancel_run(app: App, run_id: str) -> None:
    """Cancel through the app's runs: one of the app's functions not executing now is
    finalized at once, any other by a worker (after its step in flight)."""
    run = await app.cancel(run_id, "cancelled from the CLI")
    if run.status.finished:
        console.print(f"run {run_id} cancelled")
    else:
        console.print(f"run {run_id}: cancel requested; a worker stops it after its step in flight")


async def rerun(app: App, run_id: str, from_failed_step: bool) -> None:
    """Queue a re-run of a finished run (from its failed step: of a failed run only) through
    the app's runs, which refuse a run of a function the app does not define."""
    run = await app.rerun(run_id, from_failed_step=from_failed_step)
    how = "from the failed step" if from_failed_step else "from the start"
    console.print(f"re-run {run.id} of {run_id} queued {how}")


async def send(app: App, name: str, data: str, event_id: str | None) -> None:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError(f"--data is not valid JSON: {exc}") from exc
    ids = await app.send(Event(name, payload, id=event_id))
    if ids:
        console.print(f"event {ids[0]} accepted")
    else:
        console.print(f"event {event_id} is a duplicate of one sent in the last 24 h: ignored")


async def send_command(args: argparse.Namespace) -> None:
    """`inferpipe send`."""
    app = _app_in_workspace(args)
    async with app:
        await send(app, args.name, args.data, args.event_id)


def _cancelling_app(args: argparse.Namespace) -> App:
    """The app given (which finalizes a parked run of its functions at once), or one without
    functions, whose cancel leaves the finalizing to a worker."""
    if args.app or os.environ.get("INFERPIPE_APP"):
        return _app_in_workspace(args)
    return App("inferpipe-cli", database=args.database, workspace=workspace_of(args.workspace))


def _app_in_workspace(args: argparse.Namespace) -> App:
    """The app named by the arguments, on `--database` and `--workspace` when given."""
    app = load_app(args.app)
    if args.database:
        app.database = args.database
    if args.workspace or os.environ.get("INFERPIPE_WORKSPACE"):
        app.workspace = workspace_of(args.workspace)
    return app


async def runs_command(args: argparse.Namespace) -> None:
    """`inferpipe runs list|show|cancel|rerun`."""
    if args.runs_command == "rerun":
        # Through the app's runs: a run of a function the app does not define is refused.
        async with _app_in_workspace(args) as app:
            await rerun(app, args.run_id, args.from_failed_step)
        return
    if args.runs_command == "cancel":
        async with _cancelling_app(args) as app:
            await cancel_run(app, args.run_id)
        return
    store = store_from_url(args.database, workspace_of(args.workspace))
    await store.open()
    try:
        action: dict[str, Callable[[], Awaitable[Any]]] = {
            "list": lambda: list_runs(store, args.function, args.status, args.limit),
            "show": lambda: show_run(store, args.run_id),
        }
        await action[args.runs_command]()
    finally:
        await store.close()
