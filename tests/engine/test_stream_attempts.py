"""Stream events name the step attempt and execution they come from; an attempt abandoned by a
retry is announced, and `app.stream` presents each step's output once, the final attempt's.

(The crash case, where a later execution announces what a killed one published, is in
tests/server/test_stream_crash.py with real worker processes.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import inferpipe as ip
from inferpipe.core import run_stream
from inferpipe.core.records import StepKind, StepRecord, StepStatus
from inferpipe.engine import streaming
from inferpipe.streams.errors import InvalidPayloadError
from inferpipe.testing import Harness

TOKENS = ("one", "two", "three")


def flaky_app() -> ip.App:
    """`write` streams its tokens, then fails on its first attempt after two of them."""
    app = ip.App("attempts")

    @app.function(id="writer", retries=2)
    async def writer(ctx: ip.Context) -> str:
        await ctx.stream.publish("before", kind="note")

        async def write() -> str:
            for n, token in enumerate(TOKENS):
                if n == 2 and ctx.attempt == 0:
                    raise RuntimeError("the model connection dropped")
                await ctx.stream.publish(token, kind="token")
            return " ".join(TOKENS)

        return str(await ctx.step.run("write", write))

    return app


async def raw(app: ip.App, run_id: str) -> list[ip.StreamEvent]:
    return [e async for e in app.stream(run_id, raw=True)]


async def presented(app: ip.App, run_id: str, after: int | None = None) -> list[ip.StreamEvent]:
    return [e async for e in app.stream(run_id, after=after)]


def tokens(events: list[ip.StreamEvent]) -> list[Any]:
    return [e.data["data"] for e in events if e.data["type"] == "token"]


async def test_events_name_their_execution_and_step_attempt() -> None:
    app = flaky_app()
    async with Harness(app) as h:
        run_id = await h.invoke("writer")
        await h.settle()
        events = await raw(app, run_id)
    assert all(isinstance(e.data["execution"], int) for e in events)
    note = next(e.data for e in events if e.data["type"] == "note")
    assert "step" not in note and "attempt" not in note  # published outside any step
    by_attempt = [(e.data["attempt"], e.data["data"]) for e in events if e.data["type"] == "token"]
    assert by_attempt == [(0, "one"), (0, "two"), (1, "one"), (1, "two"), (1, "three")]
    assert {e.data["step"] for e in events if e.data["type"] == "token"} == {"write"}
    retrying = next(e.data for e in events if e.data["type"] == "step.retrying")
    completed = next(e.data for e in events if e.data["type"] == "step.completed")
    assert (retrying["attempt"], completed["attempt"]) == (0, 1)
    # The retry ran in a later execution (the run slept through its backoff).
    assert completed["execution"] > retrying["execution"]


async def test_a_retried_attempt_is_announced_with_what_it_published() -> None:
    app = flaky_app()
    async with Harness(app) as h:
        run_id = await h.invoke("writer")
        await h.settle()
        events = await raw(app, run_id)
    notices = [e for e in events if e.data["type"] == run_stream.ABANDONED]
    assert len(notices) == 1
    notice = notices[0].data
    first_two = [e for e in events if e.data["type"] == "token"][:2]
    assert notice["reason"] == run_stream.RETRIED
    assert notice["abandoned"] == {
        "step": "write",
        "attempt": 0,
        "execution": first_two[0].data["execution"],
    }
    assert notice["published"] == {
        "first_index": first_two[0].index,
        "last_index": first_two[1].index,
        "events": 2,
    }
    retrying = next(e for e in events if e.data["type"] == "step.retrying")
    assert retrying.index < notices[0].index  # announced as the failure is recorded


async def test_app_stream_presents_the_final_attempt_once() -> None:
    app = flaky_app()
    async with Harness(app) as h:
        run_id = await h.invoke("writer")
        await h.settle()
        everything = await raw(app, run_id)
        shown = await presented(app, run_id)
        assert tokens(shown) == list(TOKENS)
        # Nothing of the abandoned attempt was shown, so there is nothing to take back.
        assert run_stream.ABANDONED not in [e.data["type"] for e in shown]
        assert len(everything) - len(shown) == 3  # two tokens and the notice
        assert shown[-1].final
        # Resuming after a cursor the client saw keeps the promise.
        cut = next(e.index for e in everything if e.data["type"] == "token")
        rest = await presented(app, run_id, after=cut)
        notice = [e for e in rest if e.data["type"] == run_stream.ABANDONED]
        assert len(notice) == 1  # it may have shown the first token: it must take it back
        assert tokens(rest) == list(TOKENS)


async def test_a_live_follower_is_told_to_take_back_what_it_was_shown() -> None:
    app = flaky_app()
    async with Harness(app) as h:
        run_id = await h.invoke("writer")
        seen: list[ip.StreamEvent] = []

        async def follow() -> None:
            async for event in app.stream(run_id):
                seen.append(event)

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0)
        await h.settle()
        await asyncio.wait_for(follower, timeout=10)
    assert tokens(seen) == ["one", "two", "one", "two", "three"]
    assert final_output(seen) == list(TOKENS)


def final_output(events: list[ip.StreamEvent]) -> list[Any]:
    """What a UI shows once it honours `step.abandoned`: each attempt's tokens, minus those of
    the attempts taken back."""
    shown: list[tuple[run_stream.AttemptId | None, Any]] = []
    for event in events:
        notice = run_stream.abandoned_attempt(event.data)
        if notice is not None:
            shown = [(a, d) for a, d in shown if a != notice[0]]
        elif event.data["type"] == "token":
            shown.append((run_stream.output_attempt(event.data), event.data["data"]))
    return [d for _, d in shown]


async def test_reserved_kinds_and_oversized_events_are_refused_in_user_code() -> None:
    app = ip.App("refusals", limits=ip.Limits(stream_bytes=1_000_000))
    outcomes: list[str] = []

    @app.function(id="bad-publisher", retries=0)
    async def bad_publisher(ctx: ip.Context) -> None:
        with pytest.raises(ValueError, match="reserved"):
            await ctx.stream.publish("x", kind="step.completed")
        with pytest.raises(InvalidPayloadError, match="limit"):
            await ctx.stream.publish("x" * 2_000_000)
        outcomes.append("checked")

    async with Harness(app) as h:
        run_id = await h.invoke("bad-publisher")
        run = await h.settle(run_id)
    assert run is not None and run.status is ip.RunStatus.COMPLETED and outcomes == ["checked"]


def test_large_outputs_travel_as_a_reference() -> None:
    big = {"text": "é" * 3_000_000}
    step = StepRecord(
        "r1", "summarize", "summarize", StepKind.RUN, StepStatus.COMPLETED, output=big
    )
    event = streaming.step_event(step, 7)
    assert event["output"] is None
    ref = event["output_ref"]
    assert ref["run_id"] == "r1" and ref["step"] == "summarize"
    assert ref["size_bytes"] > 6_000_000 and ref["preview"].startswith('{"text":"éé')
    assert len(ref["preview"]) == streaming.PREVIEW_CHARS
    small = StepRecord("r1", "s", "s", StepKind.RUN, StepStatus.COMPLETED, output={"a": 1})
    assert streaming.step_event(small, 7)["output"] == {"a": 1}
    assert "output_ref" not in streaming.step_event(small, 7)


def _token(step: str, attempt: int, execution: int, text: str) -> dict[str, Any]:
    return {"type": "token", "data": text, "step": step, "attempt": attempt, "execution": execution}


def _record(key: str, attempt: int, status: StepStatus) -> StepRecord:
    return StepRecord("r1", key, key, StepKind.RUN, status, attempt)


def test_a_resumed_execution_finds_what_a_crashed_one_left_unfinished() -> None:
    history = [
        (1, {"type": "run.started", "execution": 1}),
        (2, _token("a", 0, 1, "a0")),
        (3, {"type": "step.completed", "step": "a", "attempt": 0, "execution": 1}),
        (4, _token("b", 0, 1, "b0")),
        (5, _token("b", 0, 1, "b1")),  # execution 1 dies here, b unrecorded
        (6, {"type": "run.resumed", "execution": 2}),
    ]
    journal = {"a": _record("a", 0, StepStatus.COMPLETED)}
    found = run_stream.abandoned_before(history, journal, 3)
    assert found == [
        (run_stream.AttemptId("b", 0, 1), run_stream.Published(4, 5, 2), run_stream.INTERRUPTED)
    ]
    # Announced once: the next execution finds nothing more to say.
    notice = run_stream.abandoned_event(*found[0][:2], found[0][2], 3)
    assert run_stream.abandoned_before([*history, (7, notice)], journal, 4) == []


def test_the_execution_that_recorded_an_attempt_keeps_it() -> None:
    history = [
        (1, _token("b", 0, 1, "x")),  # execution 1 crashed mid-step
        (2, _token("b", 0, 2, "y")),  # execution 2 ran it again and recorded it...
        (3, {"type": "step.completed", "step": "b", "attempt": 0, "execution": 2}),
        (4, _token("b", 0, 1, "z")),  # ...while execution 1, cut off, still published
    ]
    journal = {"b": _record("b", 0, StepStatus.COMPLETED)}
    found = run_stream.abandoned_before(history, journal, 3)
    assert [(a, p.events) for a, p, _ in found] == [(run_stream.AttemptId("b", 0, 1), 2)]
    # Without the completion event (it was lost in a crash), the latest execution is kept.
    without = [item for item in history if item[0] != 3]
    found = run_stream.abandoned_before(without, journal, 3)
    assert [a for a, _, _ in found] == [run_stream.AttemptId("b", 0, 1)]


def test_a_failed_attempt_not_yet_announced_is_retried() -> None:
    history = [(1, _token("b", 0, 1, "x"))]
    journal = {"b": _record("b", 0, StepStatus.RETRYING)}
    assert [r for _, _, r in run_stream.abandoned_before(history, journal, 2)] == [
        run_stream.RETRIED
    ]


def test_final_attempts_view_leaves_out_and_takes_back() -> None:
    crashed, rerun = _token("b", 0, 1, "x"), _token("b", 0, 2, "y")
    notice = run_stream.abandoned_event(
        run_stream.AttemptId("b", 0, 1), run_stream.Published(1, 1), run_stream.INTERRUPTED, 2
    )
    # Read ahead: the abandoned output is never shown, nor its notice.
    view = run_stream.FinalAttempts()
    view.learn([crashed, notice, rerun])
    assert [view.admit(d) for d in (crashed, notice, rerun)] == [False, False, True]
    # Live: shown before it was known, then taken back; late output of it is left out.
    live = run_stream.FinalAttempts()
    assert [live.admit(d) for d in (crashed, notice, crashed, rerun)] == [True, True, False, True]
    # Resumed after index 1: the client may have shown it, so it hears of the notice.
    resumed = run_stream.FinalAttempts(after=1)
    resumed.learn([notice, rerun])
    assert [resumed.admit(d) for d in (notice, rerun)] == [True, True]
