"""W3C trace context: parsing, the derived span ids, and events that carry it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import inferpipe as ip
from inferpipe.core.events import validate_event
from inferpipe.core.trace_context import TraceContext, run_span, step_span
from inferpipe.testing import Harness


@given(
    trace_id=st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda s: s.strip("0")),
    span_id=st.text("0123456789abcdef", min_size=16, max_size=16).filter(lambda s: s.strip("0")),
    sampled=st.booleans(),
)
def test_a_context_reads_back_what_it_writes(trace_id: str, span_id: str, sampled: bool) -> None:
    ctx = TraceContext(trace_id, span_id, sampled, "k=v")
    headers = ctx.as_dict()
    assert TraceContext.parse(headers["traceparent"], headers["tracestate"]) == ctx


@pytest.mark.parametrize(
    "header",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # uppercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 has 4 fields
    ],
)
def test_an_invalid_traceparent_is_refused(header: str) -> None:
    with pytest.raises(ValueError, match="traceparent"):
        TraceContext.parse(header)


def test_a_later_version_with_more_fields_is_read() -> None:
    ctx = TraceContext.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more")
    assert (ctx.trace_id, ctx.span_id, ctx.sampled) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        False,
    )


def test_span_ids_are_derived_from_the_run_and_the_step() -> None:
    parent = {"trace": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
    traced, own = run_span("run1", [parent]), run_span("run1", [])
    assert traced.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert own.trace_id != traced.trace_id and traced.span_id == own.span_id
    assert run_span("run1", []) == own and run_span("run2", []) != own
    assert step_span(own, "run1", "a").span_id != step_span(own, "run1", "b").span_id


def test_an_event_with_a_malformed_trace_is_refused_naming_it() -> None:
    for trace in ({"traceparent": "nope"}, {"tracestate": "a=b"}, {"traceparent": 1}, "00-x"):
        with pytest.raises(ip.InvalidEventError, match="event 'e/x'"):
            validate_event(ip.Event("e/x", trace=trace), limit_bytes=10_000)  # type: ignore[arg-type]


async def test_an_events_trace_is_kept_with_the_run_and_its_sent_events() -> None:
    app = ip.App("kept", telemetry=False)
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @app.function(id="f", trigger=ip.on_event("e/start"))
    async def f(ctx: ip.Context) -> None:
        assert ctx.event.trace == {"traceparent": header}
        await ctx.step.send_event("out", ip.Event("e/out", {}))
        await ctx.step.send_event("own", ip.Event("e/own", {}, trace={"traceparent": header}))

    async with Harness(app) as h:
        await h.send(ip.Event("e/start", {}, trace={"traceparent": header}))
        await h.settle()
        (run,) = await h.runs_of("f")
        steps = {s.key: s for s in await h.steps(run.id)}
    assert run.status is ip.RunStatus.COMPLETED
    assert run.events[0]["trace"] == {"traceparent": header}
    sent = steps["out"].input[0]["trace"]["traceparent"]
    expected = step_span(run_span(run.id, run.events), run.id, "out")
    assert sent == expected.traceparent and expected.trace_id in header
    assert steps["own"].input[0]["trace"] == {"traceparent": header}  # its own is kept
