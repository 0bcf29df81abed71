"""`inferpipe workflows validate|save|versions|diff|rollback|run`: graphs from a terminal.

The surface of the workflows feature (it uses the `App`); its arguments are in
`inferpipe.cli.parser`. Without `--app`, a plain app with the default providers
is used and task names are not checked; with `--app`, the application's `WorkflowRuntime`
(its tasks, providers and secrets) is.

Example::

    inferpipe workflows validate examples/workflows/ticket_triage.json
    inferpipe workflows save examples/workflows/ticket_triage.json
    inferpipe workflows run ticket-triage --input '{"ticket_id": "t1", "subject": "Hi", ...}'
    inferpipe workflows diff ticket-triage 1 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from inferpipe.app import App
from inferpipe.core.durations import to_ms
from inferpipe.core.errors import ConfigurationError
from inferpipe.core.records import Run
from inferpipe.workflows import spec
from inferpipe.workflows.compile import compile_graph
from inferpipe.workflows.runtime import WorkflowRuntime, run_cost, runtime_of
from inferpipe.workflows.versions import diff_graphs

console = Console(width=None if sys.stdout.isatty() else 160)


async def workflows_command(args: argparse.Namespace) -> None:
    """Run one `workflows` action."""
    if args.workflows_command == "validate":
        validate_file(Path(args.file))
        return
    async with open_runtime(args.database, args.app, args.workspace) as (runtime, checks_tasks):
        action = args.workflows_command
        if action == "save":
            await save_file(runtime, Path(args.file), checks_tasks=checks_tasks)
        elif action == "versions":
            await list_versions(runtime, args.graph_id)
        elif action == "diff":
            await show_diff(runtime, args.target, args.old, args.new)
        elif action == "rollback":
            info = await runtime.graphs.rollback(args.graph_id, args.version)
            console.print(f"{info.graph_id}: version {info.version} is current")
        else:
            await run_target(runtime, args.target, args.input, args.version, args.timeout)


def validate_file(path: Path) -> None:
    """Parse, validate and compile a graph file (GraphInvalidError lists every problem)."""
    plan = compile_graph(spec.load_graph_file(path))
    console.print(
        f"[green]✔[/] graph {plan.graph_id!r} is valid: {len(plan.nodes)} nodes, "
        f"{len(plan.levels)} levels, content hash {plan.content_hash[:12]}"
    )


async def save_file(runtime: WorkflowRuntime, path: Path, *, checks_tasks: bool = True) -> None:
    """Save a graph file as the graph's next version (nothing new when unchanged)."""
    options = runtime.validation_options()
    if not checks_tasks:
        options = dataclasses.replace(options, tasks=None)
    saved = await runtime.graphs.save(spec.load_graph_file(path), options=options)
    info = saved.version.info
    what = "saved as version" if saved.created else "unchanged: current version is"
    console.print(f"{info.graph_id}: {what} {info.version} ({info.content_hash[:12]})")


async def list_versions(runtime: WorkflowRuntime, graph_id: str) -> None:
    """Print a table of a graph's versions."""
    table = Table(title=f"versions of {graph_id}")
    for column in ("version", "current", "name", "content hash", "saved"):
        table.add_column(column, no_wrap=True)
    for info in await runtime.graphs.versions(graph_id):
        saved = _when(info.created_at_ms)
        mark = "✔" if info.current else ""
        table.add_row(str(info.version), mark, info.name, info.content_hash[:12], saved)
    console.print(table)


async def show_diff(
    runtime: WorkflowRuntime, target: str, old: int | None, new: int | None
) -> None:
    """Print the diff of two versions, or of the current version and a graph file."""
    graph = _graph_file(target)
    if graph is not None:
        current = await runtime.graphs.get(graph.id)
        console.print(diff_graphs(current.graph, graph).render(), markup=False)
        return
    if new is None:
        new = (await runtime.graphs.get(target)).info.version
    old = new - 1 if old is None else old
    console.print((await runtime.graphs.diff(target, old, new)).render(), markup=False)


async def run_target(
    runtime: WorkflowRuntime, target: str, input_json: str, version: int | None, timeout: str
) -> Run:
    """Run a graph (a file is saved first) with an in-process worker; print the outcome."""
    try:
        data = json.loads(input_json)
    except ValueError as exc:
        raise ConfigurationError(f"--input is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError("--input must be a JSON object")
    graph_id, graph = target, _graph_file(target)
    if graph is not None:
        saved = await runtime.save(graph)
        graph_id, version = saved.version.info.graph_id, saved.version.info.version
    run_id = await runtime.run(graph_id, data, version=version)
    app = runtime.app
    assert isinstance(app, App)
    worker = app.worker()
    working = asyncio.create_task(worker.run())
    try:
        run = await app.result(run_id, timeout=to_ms(timeout) / 1000)
    except TimeoutError:
        run = await app.get_run(run_id)
    finally:
        worker.notify_shutdown()
        await working
    await print_run(app, run)
    return run


async def print_run(app: App, run: Run) -> None:
    """Print a run's status, output, node steps and total tokens and cost."""
    console.print(f"run {run.id}: [bold]{run.status.value}[/]")
    steps = await app.steps(run.id)
    table = Table()
    for column in ("step", "status", "attempt", "took", "tokens", "cost (USD)"):
        table.add_column(column, no_wrap=True)
    for step in steps:
        usage, cost = step.meta.get("usage") or {}, step.meta.get("cost") or {}
        tokens = usage.get("input_tokens", 0) + usage.get("output_tokens", 0) if usage else ""
        amount = cost.get("amount_usd")
        shown_cost = "" if not cost else ("unknown" if amount is None else f"{amount:.6f}")
        took = "-" if step.duration_ms is None else f"{step.duration_ms} ms"
        row = (step.key, step.status.value, str(step.attempt), took, str(tokens), shown_cost)
        table.add_row(*row)
    console.print(table)
    total = run_cost(steps)
    shown = "unknown" if total.cost_usd is None else f"{total.cost_usd:.6f}"
    console.print(f"tokens: {total.total_tokens} · cost: {shown} USD")
    if run.error:
        console.print(f"error: {run.error.get('message')}", markup=False, style="red")
    elif run.status.finished:
        console.print_json(json.dumps(run.output))
    else:
        console.print(f"still {run.status.value}: a worker (`inferpipe worker`) continues it")


@contextlib.asynccontextmanager
async def open_runtime(
    database: str | None, app_target: str | None, workspace: str | None = None
) -> AsyncIterator[tuple[WorkflowRuntime, bool]]:
    """The runtime to use, with its app started; and whether task names can be checked."""
    if app_target:
        from inferpipe.cli.loading import load_app  # noqa: PLC0415 - the CLI imports this module

        app = load_app(app_target)
        runtime = runtime_of(app)
        if runtime is None:
            raise ConfigurationError(f"{app_target!r} registers no WorkflowRuntime")
    else:
        app = App("inferpipe-workflows")
        runtime = WorkflowRuntime(app)
    if database:
        app.database = database
    workspace = workspace or os.environ.get("INFERPIPE_WORKSPACE")
    if workspace:
        app.workspace = workspace
    async with app:
        yield runtime, app_target is not None


def _graph_file(target: str) -> spec.Graph | None:
    """The graph in file `target`, or None when `target` is not a file (a graph id)."""
    return spec.load_graph_file(target) if Path(target).is_file() else None


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
