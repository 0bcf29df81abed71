"""The `inferpipe` command's arguments: every subcommand, and the handler each one runs.

Only argparse and the core vocabulary are imported here, so `inferpipe --help` (and a typo)
answer at once. A handler is named, not imported: `"server:serve"` is `serve` in
`inferpipe.cli.server`, loaded by `inferpipe.cli.main` when that subcommand runs.
"""

from __future__ import annotations

import argparse
from typing import TypeAlias

from inferpipe.core.records import RunStatus

DEFAULT_PORT = 8288
"""The port of `dev` and `serve`."""

DEFAULT_DATABASE = "sqlite:///.inferpipe/inferpipe.db"
"""`inferpipe.store.DEFAULT_DATABASE`, named here without loading the store (a test checks)."""

DEFAULT_RATE_LIMIT_PER_MIN = 1200
"""`inferpipe.store.keys.DEFAULT_RATE_LIMIT_PER_MIN`, the same way."""

DEFAULT_WORKSPACE = "default"
"""The workspace of a command given neither `--workspace` nor $INFERPIPE_WORKSPACE."""

DEFAULT_RUN_TIMEOUT = "10m"
"""How long `workflows run` waits for the run to finish before leaving it to the workers."""

_Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_database(p: argparse.ArgumentParser, text: str | None = None) -> None:
    p.add_argument(
        "--database",
        metavar="URL",
        help=text
        or "sqlite:///path or postgresql://... "
        f"(default: $INFERPIPE_DATABASE_URL or {DEFAULT_DATABASE})",
    )


def _add_app(p: argparse.ArgumentParser) -> None:
    # Optional on the command line: $INFERPIPE_APP stands in for it (load_app says when neither).
    p.add_argument(
        "app",
        metavar="APP",
        nargs="?",
        help="the application: module:attribute, path/to/app.py[:attribute] (or $INFERPIPE_APP)",
    )


def add_workspace_option(parser: argparse.ArgumentParser) -> None:
    """`--workspace NAME` on a command that reads or writes a workspace's runs and events."""
    parser.add_argument(
        "--workspace",
        metavar="NAME",
        default=None,
        help=f"the workspace (default: $INFERPIPE_WORKSPACE or {DEFAULT_WORKSPACE!r})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command; each subcommand sets `handler` ("module:function")."""
    parser = argparse.ArgumentParser(
        prog="inferpipe",
        description="Run durable AI workloads: functions of steps that survive crashes, "
        "retry, wait for events and resume.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_processes(sub)
    _add_runs(sub)
    _add_workflows(sub)
    _add_shadow(sub)
    _add_server(sub)
    _add_db(sub)
    _add_secrets(sub)
    _add_webhooks(sub)
    return parser


def _add_processes(sub: _Subparsers) -> None:
    dev = sub.add_parser(
        "dev", help="run an app locally: worker, API and dashboard on the embedded SQLite store"
    )
    _add_app(dev)
    _add_database(dev)
    dev.add_argument("--concurrency", type=int, default=100, help="runs executed at once")
    dev.add_argument("--port", type=int, default=DEFAULT_PORT, help="API and dashboard port")
    dev.add_argument("--no-server", action="store_true", help="a worker only, no API")
    dev.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name to answer besides loopback ones (repeatable)",
    )
    dev.set_defaults(handler="server:dev")

    worker = sub.add_parser("worker", help="run a worker for an app's functions")
    _add_app(worker)
    _add_database(worker)
    worker.add_argument("--concurrency", type=int, default=100, help="runs executed at once")
    worker.add_argument(
        "--lease-ms",
        type=int,
        default=None,
        help="how long a claim lasts without a heartbeat",
    )
    worker.set_defaults(handler="process:worker")


def _add_runs(sub: _Subparsers) -> None:
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
    send.set_defaults(handler="runs:send_command")

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
    cancel.add_argument(
        "--app",
        help="the application of the run's function, to finalize a parked run at once "
        "(default: $INFERPIPE_APP; without one a worker finalizes it)",
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
    runs_p.set_defaults(handler="runs:runs_command")


def _add_graph_options(p: argparse.ArgumentParser) -> None:
    """`--database`, `--app` and `--workspace` of the commands on saved graphs."""
    _add_database(p, "sqlite:///path or postgresql://... (default: the app's)")
    p.add_argument("--app", help="module:attribute or path/to/app.py with a WorkflowRuntime")
    p.add_argument(
        "--workspace",
        metavar="NAME",
        help="the workspace of the graphs and runs (default: $INFERPIPE_WORKSPACE or the app's)",
    )


def _add_workflows(sub: _Subparsers) -> None:
    wf = sub.add_parser("workflows", help="validate, save, version and run workflow graphs")
    actions = wf.add_subparsers(dest="workflows_command", required=True, metavar="ACTION")
    validate = actions.add_parser("validate", help="check a graph file; list every problem")
    validate.add_argument("file", metavar="FILE", help="a graph as .json, .yaml or .yml")
    save = actions.add_parser("save", help="validate a graph file and save it as a new version")
    save.add_argument("file", metavar="FILE", help="a graph as .json, .yaml or .yml")
    versions = actions.add_parser("versions", help="list a graph's versions")
    versions.add_argument("graph_id", metavar="ID", help="the graph's id")
    diff = actions.add_parser("diff", help="what changed between two versions (or a file)")
    diff.add_argument("target", metavar="FILE|ID", help="a graph file (vs. its current version)")
    diff.add_argument("old", nargs="?", type=int, help="old version (default: current - 1)")
    diff.add_argument("new", nargs="?", type=int, help="new version (default: current)")
    rollback = actions.add_parser("rollback", help="make an older version current again")
    rollback.add_argument("graph_id", metavar="ID", help="the graph's id")
    rollback.add_argument("version", type=int, help="the version to make current")
    run = actions.add_parser("run", help="run a graph (a file is saved first) and show the result")
    run.add_argument("target", metavar="FILE|ID", help="a graph file (saved first) or a graph id")
    run.add_argument("--input", default="{}", help="the graph input as a JSON object")
    run.add_argument("--version", type=int, help="a saved version (default: the current one)")
    run.add_argument(
        "--timeout",
        default=DEFAULT_RUN_TIMEOUT,
        help="how long to wait for the result, e.g. 30s (default: %(default)s)",
    )
    for p in (save, versions, diff, rollback, run):
        _add_graph_options(p)
    wf.set_defaults(handler="workflows:workflows_command")


def _add_shadow(sub: _Subparsers) -> None:
    shadow = sub.add_parser(
        "shadow",
        help="run a candidate beside a graph's live runs; compare, report, cut over",
        description="Shadow runs: a policy runs a candidate (another saved version, or the "
        "run's version with overrides) beside a sampled share of a graph's runs, with the same "
        "input; http and side-effect nodes reuse the primary's outputs. `report` compares them; "
        "`promote` makes the candidate current, `rollback` undoes it. See docs/shadow.md.",
    )
    actions = shadow.add_subparsers(dest="shadow_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create (and enable) a policy",
        epilog="example: inferpipe shadow create ticket-triage --set classify.model=fake/echo "
        "--rate 0.1",
    )
    create.add_argument("graph_id", metavar="ID", help="the graph to shadow")
    create.add_argument("--version", type=int, help="candidate: another saved version")
    create.add_argument(
        "--set",
        action="append",
        metavar="NODE.FIELD=VALUE",
        help="candidate override (repeatable); VALUE is JSON or text, e.g. answer.model=fake/echo",
    )
    create.add_argument(
        "--rate", type=float, default=1.0, help="share of runs shadowed, 0 to 1 (default: 1)"
    )
    create.add_argument(
        "--call",
        action="append",
        metavar="NODE",
        help="a side-effect node that calls for real in the shadow (repeatable; default: none)",
    )
    create.add_argument("--disabled", action="store_true", help="create it switched off")
    lst = actions.add_parser("list", help="policies, newest first")
    lst.add_argument("graph_id", metavar="ID", nargs="?", help="only this graph's")
    report = actions.add_parser("report", help="the parity report of a policy")
    report.add_argument("--json", action="store_true", help="the whole report as JSON")
    enable = actions.add_parser("enable", help="switch a policy on (the graph's others go off)")
    disable = actions.add_parser("disable", help="switch a policy off")
    for p in (enable, disable):
        p.add_argument("--rate", type=float, help="also set the share of runs shadowed")
    promote = actions.add_parser("promote", help="make the candidate the current version")
    rollback = actions.add_parser("rollback", help="undo a promotion")
    for p in (report, enable, disable, promote, rollback):
        p.add_argument("policy_id", metavar="POLICY", help="the policy's id")
    for p in (create, lst, report, enable, disable, promote, rollback):
        _add_graph_options(p)
    shadow.set_defaults(handler="shadow:shadow_command")


_SERVER_DATABASE_HELP = (
    "sqlite:///path or postgresql://... (default: $INFERPIPE_DATABASE_URL or the app's)"
)


def _add_server(sub: _Subparsers) -> None:
    srv = sub.add_parser("serve", help="serve the HTTP API and dashboard (API keys required)")
    _add_app(srv)
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
    srv.add_argument("--database", metavar="URL", help=_SERVER_DATABASE_HELP)
    srv.set_defaults(handler="server:serve")

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
        p.add_argument("--database", metavar="URL", help=_SERVER_DATABASE_HELP)
    keys_p.set_defaults(handler="server:keys")

    prg = sub.add_parser("purge", help="delete finished runs and events older than N days")
    prg.add_argument(
        "--days", type=float, required=True, help="age in days (fractions allowed, e.g. 0.5)"
    )
    prg.add_argument("--database", metavar="URL", help=_SERVER_DATABASE_HELP)
    prg.set_defaults(handler="server:purge")


def _add_db(sub: _Subparsers) -> None:
    db = sub.add_parser("db", help="database schema: migrate, status")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, text in (("migrate", "apply pending migrations"), ("status", "applied and pending")):
        p = db_sub.add_parser(name, help=text)
        p.add_argument("--database", metavar="URL", help=_SERVER_DATABASE_HELP)
    db.set_defaults(handler="server:database")


def _add_secrets(sub: _Subparsers) -> None:
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
    secrets_p.set_defaults(handler="secrets:run")


def _add_webhooks(sub: _Subparsers) -> None:
    hooks = sub.add_parser(
        "webhooks", help="incoming webhook sources and outgoing subscriptions of a workspace"
    )
    kinds = hooks.add_subparsers(dest="webhooks_kind", required=True, metavar="KIND")
    sources = kinds.add_parser("sources", help="sources that senders post signed webhooks to")
    actions = sources.add_subparsers(dest="webhooks_action", required=True, metavar="ACTION")
    put = actions.add_parser("put", help="create or replace a source (prints a new secret once)")
    put.add_argument("name", metavar="NAME", help="the source's name (its URL's last part)")
    put.add_argument(
        "--scheme",
        choices=["standard", "github", "stripe"],
        default="standard",
        help="how the sender signs (default: standard)",
    )
    put.add_argument(
        "--secret-stdin",
        action="store_true",
        help="read the sender's secret from stdin (required for github and stripe; "
        "otherwise one is generated)",
    )
    put.add_argument("--event", metavar="NAME", help="the event name (no transform)")
    put.add_argument("--tolerance", type=int, default=300, help="seconds a signature stays valid")
    transform = put.add_mutually_exclusive_group()
    transform.add_argument("--cel", metavar="EXPR", help="a CEL transform to event(s)")
    transform.add_argument("--jinja", metavar="FILE", help="a Jinja template rendering event(s)")
    lst = actions.add_parser("list", help="the sources (never their secrets)")
    delete = actions.add_parser("delete", help="delete a source")
    delete.add_argument("name", metavar="NAME", help="the source's name")
    for p in (put, lst, delete):
        add_workspace_option(p)
        _add_database(p)
    _add_subscriptions(kinds)
    hooks.set_defaults(handler="webhooks:run")


def _add_subscriptions(kinds: _Subparsers) -> None:
    subs = kinds.add_parser("subscriptions", help="URLs told of run lifecycle events")
    actions = subs.add_subparsers(dest="webhooks_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="subscribe a URL (prints its secret once)")
    create.add_argument("url", metavar="URL", help="where deliveries are POSTed")
    create.add_argument(
        "--event",
        action="append",
        required=True,
        choices=["run.finished", "run.failed", "run.cancelled", "score.recorded"],
        help="an event type to deliver (repeatable)",
    )
    create.add_argument("--function", action="append", default=[], help="only this function")
    create.add_argument("--filter", metavar="CEL", help="a CEL filter over `event`")
    create.add_argument(
        "--window", type=int, default=86400, help="seconds a delivery is retried (default 1 d)"
    )
    lst = actions.add_parser("list", help="the subscriptions (never their secrets)")
    delete = actions.add_parser("delete", help="delete a subscription")
    rotate = actions.add_parser("rotate", help="a new secret (prints it once)")
    rotate.add_argument(
        "--grace", type=int, default=86400, help="seconds the old secret still signs"
    )
    log = actions.add_parser("deliveries", help="a subscription's deliveries and attempts")
    for p in (delete, rotate, log):
        p.add_argument("sub_id", metavar="ID", help="the subscription's id")
    again = actions.add_parser("redeliver", help="deliver a delivery again")
    again.add_argument("delivery_id", metavar="ID", help="the delivery's id (its webhook-id)")
    again.add_argument("--app", help="the application that delivers (default: $INFERPIPE_APP)")
    for p in (create, lst, delete, rotate, log, again):
        add_workspace_option(p)
        _add_database(p)
