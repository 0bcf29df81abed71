"""OpenTelemetry export of runs (traces) and their metrics, off unless switched on.

`INFERPIPE_OTEL=1` (or `App(telemetry=True)`) switches it on; `OTEL_SDK_DISABLED=true` keeps
it off whatever else says. Everything else is the standard `OTEL_*` configuration read by the
OpenTelemetry SDK and its OTLP/HTTP exporter (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, ...). This module imports nothing of
OpenTelemetry: `start` loads it only when telemetry is on, so an app without it pays nothing.
See docs/telemetry.md.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from inferpipe.core.errors import ConfigurationError
from inferpipe.core.trace_context import TraceContext
from inferpipe.engine.engine import Engine

SWITCH = "INFERPIPE_OTEL"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class Telemetry(Protocol):
    """The exporters of a started app."""

    def current_trace(self) -> TraceContext | None:
        """The trace context of the caller's current span, when its own OpenTelemetry
        instrumentation has one: what the events and invocations it makes continue."""

    def flush(self) -> None:
        """Export what is buffered now (spans, then metrics)."""

    def shutdown(self) -> None:
        """Flush, then stop exporting: the app is closing."""


def enabled(explicit: bool | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether telemetry is on: `explicit` when not None, else `INFERPIPE_OTEL`; off in
    either case when `OTEL_SDK_DISABLED` is true.

    Raises:
        ConfigurationError: `INFERPIPE_OTEL` is neither a true nor a false value.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if explicit is not None:
        return explicit
    raw = env.get(SWITCH, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(f"{SWITCH}={raw!r}: expected 1/true/on or 0/false/off")


@dataclass(frozen=True, slots=True)
class Settings:
    """What to export, from the environment: each signal's exporter ("otlp", "console" or
    "none")."""

    traces: str = "otlp"
    metrics: str = "otlp"


EXPORTERS = ("otlp", "console", "none")


def settings(
    explicit: bool | None = None, environ: Mapping[str, str] | None = None
) -> Settings | None:
    """The export settings when telemetry is on (see `enabled`), None when off; checked before
    anything starts.

    Raises:
        ConfigurationError: the switch means nothing, the `otel` extra is not installed, or
            the environment asks for an exporter or a protocol inferpipe does not ship.
    """
    env = os.environ if environ is None else environ
    if not enabled(explicit, env):
        return None
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        raise ConfigurationError(
            f"{SWITCH} is on but OpenTelemetry is not installed: pip install 'inferpipe[otel]'"
        )
    return Settings(_exporter(env, "traces"), _exporter(env, "metrics"))


def _exporter(env: Mapping[str, str], signal: str) -> str:
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    name = env.get(variable, "otlp").strip().lower() or "otlp"
    if name not in EXPORTERS:
        raise ConfigurationError(f"{variable}={name!r}: inferpipe exports with one of {EXPORTERS}")
    if name == "otlp":
        for protocol_variable in (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
        ):
            protocol = env.get(protocol_variable, "http/protobuf").strip()
            if protocol != "http/protobuf":
                raise ConfigurationError(
                    f"{protocol_variable}={protocol!r}: inferpipe[otel] ships the OTLP/HTTP"
                    " exporter (http/protobuf); point it at the collector's HTTP port (4318)"
                )
    return name


def start(engine: Engine, service_name: str, chosen: Settings) -> Telemetry:
    """Build the exporters `chosen` names (configured by the `OTEL_*` environment) and
    register the listeners that export `engine`'s runs; `service_name` names the service
    unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` does."""
    from inferpipe.telemetry import otel  # noqa: PLC0415  (loaded only when switched on)

    return otel.OTelExport.start(engine, service_name, chosen)
