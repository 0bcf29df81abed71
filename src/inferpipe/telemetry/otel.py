"""The OpenTelemetry SDK set up from the `OTEL_*` environment: a tracer and a meter provider
of inferpipe's own (the application's global providers are left alone), OTLP/HTTP exporters,
and the listeners that feed them."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

from inferpipe.core.trace_context import TraceContext
from inferpipe.engine.engine import Engine
from inferpipe.telemetry import Settings
from inferpipe.telemetry.genai import capture_content
from inferpipe.telemetry.ids import ForcedIds
from inferpipe.telemetry.meters import RunMetrics
from inferpipe.telemetry.spans import RunTraces


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()


def _metric_reader(name: str) -> MetricReader:
    exporter: MetricExporter
    if name == "console":
        exporter = ConsoleMetricExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
            OTLPMetricExporter,
        )

        exporter = OTLPMetricExporter()
    return PeriodicExportingMetricReader(exporter)


def resource(service_name: str) -> Resource:
    """The SDK's resource from the environment, named `service_name` when it names no
    service."""
    found = Resource.create()
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: service_name}))
    return found


class OTelExport:
    """The providers of one started app, and the listeners registered on its engine."""

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider

    @classmethod
    def start(cls, engine: Engine, service_name: str, chosen: Settings) -> OTelExport:
        res = resource(service_name)
        traces, metrics = chosen.traces, chosen.metrics
        tracer_provider = meter_provider = None
        if traces != "none":
            ids = ForcedIds()
            tracer_provider = TracerProvider(resource=res, id_generator=ids, shutdown_on_exit=False)
            tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter(traces)))
            engine.add_listener(
                RunTraces(tracer_provider, ids, engine.clock, capture=capture_content())
            )
        if metrics != "none":
            meter_provider = MeterProvider(
                resource=res, metric_readers=[_metric_reader(metrics)], shutdown_on_exit=False
            )
            engine.add_listener(RunMetrics(meter_provider, engine.clock))
        return cls(tracer_provider, meter_provider)

    def current_trace(self) -> TraceContext | None:
        """The caller's current span (the application's own instrumentation), if any."""
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return TraceContext(
            format(ctx.trace_id, "032x"),
            format(ctx.span_id, "016x"),
            ctx.trace_flags.sampled,
            ctx.trace_state.to_header() or None,
        )

    def flush(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
