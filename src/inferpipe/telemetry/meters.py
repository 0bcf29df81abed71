"""Run metrics through OTLP: runs started and finished (by status), step attempt duration,
queue delay, model tokens and cost. Beside, not instead of, the API's Prometheus `/metrics`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.sdk.metrics import MeterProvider

from inferpipe.core.records import Run, StepKind, StepRecord, StepStatus
from inferpipe.engine.clock import Clock
from inferpipe.engine.lifecycle import RunListener
from inferpipe.store.base import Outcome

DURATION_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
"""The GenAI semantic conventions' advice for `gen_ai.client.token.usage`."""

_ATTEMPT_ENDS = (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.RETRYING)


class RunMetrics(RunListener):
    """Counts and times what executions report."""

    def __init__(self, provider: MeterProvider, clock: Clock) -> None:
        meter = provider.get_meter("inferpipe")
        self._clock = clock
        self.started = meter.create_counter(
            "inferpipe.runs.started", unit="{run}", description="Runs that began executing."
        )
        self.finished = meter.create_counter(
            "inferpipe.runs.finished", unit="{run}", description="Runs finished, by status."
        )
        self.step_duration = meter.create_histogram(
            "inferpipe.step.duration",
            unit="s",
            description="Duration of step attempts executed, by kind and status.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.queue_delay = meter.create_histogram(
            "inferpipe.run.queue_delay",
            unit="s",
            description="From when an execution was due (run queued, woken) to its start.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens of model calls, by type (input, output).",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.cost = meter.create_counter(
            "inferpipe.llm.cost", unit="USD", description="Priced cost of model calls."
        )

    def run_started(self, run: Run) -> None:
        fn = {"inferpipe.function.id": run.function_id}
        if run.executions <= 1:
            self.started.add(1, fn)
        if run.ready_at_ms is not None:  # always, for a run being started
            delay_ms = self._clock.now_ms() - run.ready_at_ms
            self.queue_delay.record(max(0, delay_ms) / 1000, fn)

    def steps_recorded(self, run: Run, steps: Sequence[StepRecord]) -> None:
        for rec in steps:
            if rec.kind not in (StepKind.RUN, StepKind.LLM) or rec.status not in _ATTEMPT_ENDS:
                continue
            attrs = {
                "inferpipe.function.id": run.function_id,
                "inferpipe.step.kind": rec.kind.value,
                "inferpipe.step.status": rec.status.value,
            }
            if rec.duration_ms is not None:
                self.step_duration.record(rec.duration_ms / 1000, attrs)
            if rec.kind is StepKind.LLM:
                self._model_call(rec)

    def _model_call(self, rec: StepRecord) -> None:
        meta = rec.meta
        model = str(meta.get("model_ref") or "")
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": str(meta.get("provider") or model.partition("/")[0]),
            "gen_ai.request.model": model.partition("/")[2] or model,
        }
        usage = meta.get("usage")
        if isinstance(usage, dict):
            for kind in ("input", "output"):
                count = usage.get(f"{kind}_tokens")
                if isinstance(count, int):
                    self.tokens.record(count, {**attrs, "gen_ai.token.type": kind})
        if isinstance(meta.get("cost_usd"), int | float):
            self.cost.add(float(meta["cost_usd"]), attrs)

    def run_finished(self, run: Run, outcome: Outcome, journal: Mapping[str, StepRecord]) -> None:
        self.finished.add(
            1,
            {
                "inferpipe.function.id": run.function_id,
                "inferpipe.run.status": outcome.status.value,
            },
        )
