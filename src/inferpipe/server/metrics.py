"""Prometheus metrics: events accepted, runs by status, request latency.

Each API gets its own `CollectorRegistry`, so several servers (or tests) in one process do not
share counters. Metrics carry no workspace label: `/metrics` is served without a key and must not
list tenants.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferpipe.core.records import RunStatus
from inferpipe.store.base import Store

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The API's metrics and their registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_accepted = Counter(
            "inferpipe_events_accepted",
            "Events durably accepted through the API (duplicates excluded).",
            registry=self.registry,
        )
        self.runs = Gauge(
            "inferpipe_runs",
            "Runs currently stored, by status.",
            ["status"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "inferpipe_http_request_duration_seconds",
            "Time to answer an API request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

    async def render(self, store: Store) -> bytes:
        """The exposition text, with the run gauge refreshed first (runs of every workspace)."""
        counts = await store.count_runs_by_status()
        for status in RunStatus:
            self.runs.labels(status=status.value).set(counts.get(status.value, 0))
        return generate_latest(self.registry)


class LatencyMiddleware:
    """Observes each HTTP request's duration under its route template (not its raw path,
    which would make one series per run id)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_latency.labels(
                method=scope["method"], route=template, status=str(status)
            ).observe(time.perf_counter() - started)
