"""Fixtures of the telemetry tests: a real OTLP/HTTP receiver on loopback, and the `OTEL_*`
environment pointing at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.conftest import harness  # noqa: F401  (the SQLite / PostgreSQL fixture)
from tests.telemetry.otlp_receiver import Receiver, otlp_receiver

_CLEARED = (
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
)


def otel_environment(receiver: Receiver) -> dict[str, str]:
    """Telemetry on, exporting to `receiver` without waiting long between batches."""
    return {
        "INFERPIPE_OTEL": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver, with this test's environment exporting to it."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    with otlp_receiver() as found:
        for name, value in otel_environment(found).items():
            monkeypatch.setenv(name, value)
        yield found
