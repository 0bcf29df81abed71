"""The `inferpipe` command as a new user meets it: $INFERPIPE_APP, `--workspace`, keys that
can be copied from a pipe, re-runs that say what they cannot do, and help on every option."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.cli import build_parser, main
from inferpipe.core.records import RunStatus
from inferpipe.store import store_from_url
from tests.workflows import wf_build as b

APP_SOURCE = """
import inferpipe as ip

app = ip.App("cli-test")


@app.function(id="greet", retries=0)
async def greet(ctx: ip.Context) -> dict:
    if ctx.event.data.get("fail"):
        raise ip.NonRetriableError("asked to fail")
    return {"hello": ctx.event.data.get("name")}


@app.function(id="parked")
async def parked(ctx: ip.Context) -> None:
    await ctx.step.sleep("nap", "1d")
"""


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "cli_app.py"
    path.write_text(APP_SOURCE, encoding="utf-8")
    return path


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture(autouse=True)
def _no_inherited_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INFERPIPE_APP", "INFERPIPE_WORKSPACE", "INFERPIPE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_app_path_is_optional_when_inferpipe_app_is_set(
    app_file: Path, database: str, tmp_path: Path
) -> None:
    run_id = asyncio.run(_invoke(database, "default", "greet", {"name": "Ada"}))
    env = {**os.environ, "INFERPIPE_APP": str(app_file), "INFERPIPE_DATABASE_URL": database}
    worker = subprocess.Popen(
        [sys.executable, "-m", "inferpipe", "worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        run = asyncio.run(_finished(database, run_id))
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    assert run.status is RunStatus.COMPLETED, err
    assert run.output == {"hello": "Ada"}


def test_no_app_and_no_inferpipe_app_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "no app given" in err and "INFERPIPE_APP" in err and "Traceback" not in err


def test_keys_create_defaults_to_the_documented_rate_limit(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api_md = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text("utf-8")
    assert "default 1200/min" in api_md
    assert main(["keys", "create", "--name", "backend", "--database", database]) == 0
    assert main(["keys", "create", "--name", "bulk", "--unlimited", "--database", database]) == 0
    assert (
        main(["keys", "create", "--name", "slow", "--rate-limit", "60", "--database", database])
        == 0
    )
    capsys.readouterr()
    assert main(["keys", "list", "--json", "--database", database]) == 0
    listed = {k["name"]: k for k in map(json.loads, capsys.readouterr().out.splitlines())}
    assert listed["backend"]["rate_limit_per_min"] == 1200
    assert listed["bulk"]["rate_limit_per_min"] is None
    assert listed["slow"]["rate_limit_per_min"] == 60
    assert all("hash" not in key for key in listed.values())


def test_keys_list_piped_shows_whole_ids_that_revoke_accepts(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(3):
        name = f"a key with a long descriptive name number {n} for the nightly batch jobs"
        assert (
            main(
                [
                    "keys",
                    "create",
                    "--name",
                    name,
                    "--workspace",
                    f"team-{n}-with-a-long-name",
                    "--database",
                    database,
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["keys", "list", "--json", "--database", database]) == 0
    ids = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert main(["keys", "list", "--database", database]) == 0  # stdout is a pipe here
    table = capsys.readouterr().out
    assert all(key_id in table for key_id in ids)
    assert main(["keys", "revoke", ids[0], "--database", database]) == 0
    assert ids[0] in capsys.readouterr().out


def test_runs_commands_read_the_given_workspace(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = asyncio.run(_invoke(database, "acme", "parked", {}))
    assert main(["runs", "list", "--database", database]) == 0
    assert run_id not in capsys.readouterr().out
    assert main(["runs", "list", "--workspace", "acme", "--database", database]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["runs", "show", run_id, "--workspace", "acme", "--database", database]) == 0
    assert "parked" in capsys.readouterr().out
    monkeypatch.setenv("INFERPIPE_WORKSPACE", "acme")
    assert main(["runs", "list", "--database", database]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["runs", "cancel", run_id, "--database", database]) == 0
    assert "cancel requested" in capsys.readouterr().out


def test_rerun_from_failed_step_of_a_run_that_did_not_fail_is_refused(
    app_file: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cancelled = asyncio.run(_cancelled(database, "parked"))
    rerun = ["runs", "rerun", cancelled, "--app", str(app_file), "--database", database]
    assert main([*rerun, "--from-failed-step"]) == 2
    err = capsys.readouterr().err
    assert f"run {cancelled} is cancelled, not failed" in err and "from the start" in err
    assert asyncio.run(_run_count(database)) == 1  # nothing was queued
    assert main(rerun) == 0
    assert "queued from the start" in capsys.readouterr().out

    failed = asyncio.run(_failed(database))
    rerun = ["runs", "rerun", failed, "--app", str(app_file), "--database", database]
    assert main([*rerun, "--from-failed-step"]) == 0
    assert "queued from the failed step" in capsys.readouterr().out


def test_rerun_goes_through_the_apps_registry(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cancelled = asyncio.run(_cancelled(database, "parked"))
    assert main(["runs", "rerun", cancelled, "--database", database]) == 2
    assert "no app given" in capsys.readouterr().err
    other = tmp_path / "other_app.py"
    other.write_text("import inferpipe as ip\n\napp = ip.App('other')\n", encoding="utf-8")
    assert main(["runs", "rerun", cancelled, "--app", str(other), "--database", database]) == 2
    assert "no function with id 'parked' is registered" in capsys.readouterr().err
    assert asyncio.run(_run_count(database)) == 1


def test_runs_cancel_goes_through_the_apps_runs(
    app_file: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = asyncio.run(_invoke(database, "default", "parked", {}))
    cancel = ["runs", "cancel", run_id, "--database", database]
    # With the app, a run of its functions that no worker executes is finalized at once.
    assert main([*cancel, "--app", str(app_file)]) == 0
    assert f"run {run_id} cancelled" in capsys.readouterr().out
    run = asyncio.run(_run_of(database, run_id))
    assert run.status is RunStatus.CANCELLED and run.status_reason == "cancelled from the CLI"
    assert main(cancel) == 2
    assert f"run {run_id} has already finished (cancelled)" in capsys.readouterr().err


def test_workflows_diff_shows_where_long_values_differ(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = "You are a support assistant. Answer politely and briefly. " * 3
    for version, signature in ((1, "Sign as Ada."), (2, "Sign as Bob.")):
        graph = tmp_path / f"v{version}.json"
        graph.write_text(json.dumps(b.document([b.llm("ask", common + signature)])), "utf-8")
        saved = ["workflows", "save", str(graph), "--workspace", "acme", "--database", database]
        assert main(saved) == 0
    assert main(["workflows", "versions", "g", "--database", database]) == 2  # not in default
    capsys.readouterr()
    assert main(["workflows", "diff", "g", "--workspace", "acme", "--database", database]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("~ node ask"))
    before, after = line.removeprefix("~ node ask: prompt ").split(" -> ")
    assert "Sign as Ada." in before and "Sign as Bob." in after
    assert before.startswith("...") and after.startswith("...")


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{prog}: {action.option_strings or action.dest}"
        for prog, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not action.help
    ]
    assert missing == []


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _parsers(child)
    return found


def _app(database: str, workspace: str) -> ip.App:
    app = ip.App("cli-test", database=database, workspace=workspace)

    @app.function(id="greet", retries=0)
    async def greet(ctx: ip.Context) -> dict[str, object]:
        if ctx.event.data.get("fail"):
            raise ip.NonRetriableError("asked to fail")
        return {"hello": ctx.event.data.get("name")}

    @app.function(id="parked")
    async def parked(ctx: ip.Context) -> None:
        await ctx.step.sleep("nap", "1d")

    return app


async def _invoke(database: str, workspace: str, function_id: str, data: dict[str, object]) -> str:
    async with _app(database, workspace) as app:
        return await app.invoke(function_id, data)


async def _cancelled(database: str, function_id: str) -> str:
    async with _app(database, "default") as app:
        run_id = await app.invoke(function_id, {})
        run = await app.cancel(run_id)
        assert run.status is RunStatus.CANCELLED
        return run_id


async def _failed(database: str) -> str:
    async with _app(database, "default") as app:
        run_id = await app.invoke("greet", {"fail": True})
        worker = app.worker()
        working = asyncio.create_task(worker.run())
        try:
            run = await app.result(run_id, timeout=30)
        finally:
            worker.notify_shutdown()
            await working
        assert run.status is RunStatus.FAILED
        return run_id


async def _finished(database: str, run_id: str) -> ip.Run:
    async with _app(database, "default") as app:
        return await app.result(run_id, timeout=30)


async def _run_of(database: str, run_id: str) -> ip.Run:
    async with _app(database, "default") as app:
        return await app.get_run(run_id)


async def _run_count(database: str) -> int:
    store = store_from_url(database)
    await store.open()
    try:
        return len((await store.list_runs(limit=100)).items)
    finally:
        await store.close()
