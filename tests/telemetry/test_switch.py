"""Off by default and free when off: an app that runs functions loads nothing of
OpenTelemetry; the switch and the `OTEL_*` settings that inferpipe cannot honour are refused
with a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe import telemetry
from inferpipe.testing import Harness
from tests.telemetry.otlp_receiver import Receiver

_RUN_A_FUNCTION = """
import asyncio, json, sys
import inferpipe as ip
from inferpipe.testing import Harness

app = ip.App("quiet")

@app.function(id="f")
async def f(ctx):
    return await ctx.step.run("s", lambda: 1)

async def main():
    async with Harness(app) as h:
        run = await h.settle(await h.invoke("f"))
        assert run.status is ip.RunStatus.COMPLETED
    {extra}

asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after_a_run(env: dict[str, str], extra: str = "") -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _RUN_A_FUNCTION.format(extra=extra)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    modules: list[str] = json.loads(out.stdout.splitlines()[-1])
    return modules


def quiet_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "INFERPIPE_OTEL"}


def test_off_by_default_an_app_loads_no_opentelemetry() -> None:
    modules = loaded_after_a_run(quiet_env())
    assert [m for m in modules if m.startswith("opentelemetry")] == []
    assert [m for m in modules if m.startswith("inferpipe.telemetry.")] == []


def test_off_the_api_server_loads_no_sdk_nor_exporter() -> None:
    # FastAPI itself imports the OpenTelemetry API; the SDK and exporters stay unloaded.
    modules = loaded_after_a_run(quiet_env(), extra="import inferpipe.server.api")
    assert [
        m for m in modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))
    ] == []
    assert [m for m in modules if m.startswith("inferpipe.telemetry.")] == []


def test_on_it_loads_the_sdk(receiver: Receiver) -> None:
    modules = loaded_after_a_run(dict(os.environ))
    assert "opentelemetry.sdk.trace" in modules
    assert "inferpipe.telemetry.spans" in modules


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"INFERPIPE_OTEL": "1"}, True),
        ({"INFERPIPE_OTEL": "On"}, True),
        ({"INFERPIPE_OTEL": "false"}, False),
        ({"INFERPIPE_OTEL": "1", "OTEL_SDK_DISABLED": "true"}, False),
        ({"INFERPIPE_OTEL": "1", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_the_switch(env: dict[str, str], expected: bool) -> None:
    assert telemetry.enabled(None, env) is expected


def test_the_explicit_switch_wins_except_over_sdk_disabled() -> None:
    assert telemetry.enabled(True, {}) is True
    assert telemetry.enabled(False, {"INFERPIPE_OTEL": "1"}) is False
    assert telemetry.enabled(True, {"OTEL_SDK_DISABLED": "TRUE"}) is False


def test_a_switch_value_that_means_nothing_is_refused() -> None:
    with pytest.raises(ip.ConfigurationError, match="INFERPIPE_OTEL='maybe'"):
        telemetry.enabled(None, {"INFERPIPE_OTEL": "maybe"})


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTLP/HTTP exporter"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "one of"),
        ("OTEL_METRICS_EXPORTER", "prometheus", "one of"),
    ],
)
async def test_settings_inferpipe_cannot_honour_fail_at_start(
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    value: str,
    match: str,
) -> None:
    monkeypatch.setenv(name, value)
    app = ip.App("misconfigured", database=f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ip.ConfigurationError, match=match):
        await app.start()
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened


async def test_sdk_disabled_exports_nothing(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    app = ip.App("disabled")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> None:
        await ctx.step.run("s", lambda: None)

    async with Harness(app) as h:
        await h.settle(await h.invoke("f"))
        assert not h.engine.listeners
    assert receiver.spans == []


async def test_traces_off_metrics_on(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    app = ip.App("metrics-only")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> None:
        await ctx.step.run("s", lambda: None)

    async with Harness(app) as h:
        await h.settle(await h.invoke("f"))
    assert receiver.spans == []
    assert "inferpipe.runs.finished" in receiver.metrics


def test_switched_on_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = telemetry.importlib.util.find_spec

    def without_sdk(name: str, *args: object) -> object:
        return None if name == "opentelemetry.sdk" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(telemetry.importlib.util, "find_spec", without_sdk)
    with pytest.raises(ip.ConfigurationError, match=r"pip install 'inferpipe\[otel\]'"):
        telemetry.settings(None, {"INFERPIPE_OTEL": "1"})
