"""Property: whatever fails and however often the run is resumed, each step attempt executed
has exactly one span, replayed steps none, and every span is in the run's one trace."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import inferpipe as ip
from inferpipe.core.trace_context import run_span
from inferpipe.telemetry.ids import ForcedIds
from inferpipe.telemetry.spans import RunTraces
from inferpipe.testing import Harness

plans = st.lists(
    st.tuples(st.integers(0, 2), st.booleans()),  # (failures before success, sleep after)
    min_size=1,
    max_size=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans)
async def test_one_span_per_attempt_executed(plan: list[tuple[int, bool]]) -> None:
    app = ip.App("property")
    tries: Counter[int] = Counter()

    def step(i: int) -> int:
        tries[i] += 1
        if tries[i] <= plan[i][0]:
            raise RuntimeError(f"failure {tries[i]} of step {i}")
        return i

    @app.function(id="f", retries=3, backoff=ip.Backoff(base_s=1, jitter=0))
    async def f(ctx: ip.Context) -> None:
        for i, (_, sleeps) in enumerate(plan):
            await ctx.step.run(f"s{i}", step, i)
            if sleeps:
                await ctx.step.sleep(f"nap{i}", "1s")

    exporter = InMemorySpanExporter()
    ids = ForcedIds()
    provider = TracerProvider(id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with Harness(app) as h:
        h.engine.add_listener(RunTraces(provider, ids, h.clock, capture=False))
        run = await h.settle(await h.invoke("f"))
    assert run is not None and run.status is ip.RunStatus.COMPLETED
    spans = exporter.get_finished_spans()
    attempts = Counter(
        (s.attributes["inferpipe.step.key"], s.attributes["inferpipe.step.attempt"])
        for s in spans
        if s.name.startswith("step ")
    )
    expected = Counter(
        {(f"s{i}", a): 1 for i, (fails, _) in enumerate(plan) for a in range(fails + 1)}
    )
    assert attempts == expected
    assert sum(s.name.startswith("sleep ") for s in spans) == sum(sleeps for _, sleeps in plan)
    assert sum(s.name == "run f" for s in spans) == 1
    root = run_span(run.id, run.events)
    assert {format(s.context.trace_id, "032x") for s in spans} == {root.trace_id}
