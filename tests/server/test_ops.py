"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import re

import httpx

from tests.server.conftest import LiveServer


def _sample(text: str, name: str, labels: str = "") -> float:
    pattern = "^" + re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name}{{{labels}}} not in metrics"
    return float(match.group(1))


def test_metrics_count_events_runs_and_latency(live: LiveServer, http_a: httpx.Client) -> None:
    with httpx.Client(base_url=live.base_url) as anonymous:
        before = _sample(anonymous.get("/metrics").text, "inferpipe_events_accepted_total")
        (run_id,) = http_a.post("/v1/events", json={"name": "test/greet"}).json()["runs_created"]
        live.wait_status(http_a, run_id, {"completed"})
        text = anonymous.get("/metrics").text
    assert _sample(text, "inferpipe_events_accepted_total") == before + 1
    assert _sample(text, "inferpipe_runs", 'status="completed"') >= 1
    assert (
        _sample(
            text,
            "inferpipe_http_request_duration_seconds_count",
            'method="POST",route="/v1/events",status="202"',
        )
        >= 1
    )
    # route templates, not raw ids, so series stay bounded
    assert run_id not in text
    assert "ws-a" not in text  # no workspace names on an unauthenticated endpoint


def test_health_and_readiness(live: LiveServer) -> None:
    with httpx.Client(base_url=live.base_url) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/readyz").json() == {"status": "ready"}
