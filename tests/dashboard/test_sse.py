"""`GET /v1/runs/{id}/stream` over plain HTTP: ids are the topic's indices, a reconnection with
`Last-Event-ID` (or `?after=`) continues exactly, errors come in the API's JSON shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from inferpipe.server.routes import stream as stream_route
from tests.dashboard.conftest import Dashboard
from tests.dashboard.sse import Comment, Message, data_messages, messages
from tests.server.conftest import assert_error


def read_until(response: httpx.Response, index: int) -> list[Message]:
    """Data messages up to and including the one with id `index`."""
    got: list[Message] = []
    for message in data_messages(response):
        got.append(message)
        if message.event == "message" and int(message.id or 0) >= index:
            break
    return got


def read_to_end(response: httpx.Response) -> list[Message]:
    return list(data_messages(response))


def indices(found: list[Message]) -> list[int]:
    return [int(m.id or 0) for m in found if m.event == "message"]


def test_reconnecting_with_last_event_id_continues_exactly(dashboard: Dashboard) -> None:
    run_id, gate = dashboard.ticker(4)
    url = f"/v1/runs/{run_id}/stream"
    gate.release()  # tick-0 can complete: run.started (1), step.completed tick-0 (2)
    with dashboard.http.stream("GET", url) as first:
        assert first.headers["content-type"].startswith("text/event-stream")
        before = read_until(first, 2)
    assert indices(before) == [1, 2]
    assert [m.json()["data"]["type"] for m in before] == ["run.started", "step.completed"]

    gate.release(3)  # the rest happens while nobody listens
    dashboard.wait(run_id, "completed")
    with dashboard.http.stream("GET", url, headers={"Last-Event-ID": "2"}) as second:
        after = read_to_end(second)
    assert after[-1].event == "end"
    resumed = [m for m in after if m.event == "message"]
    assert indices(resumed) == list(range(3, 3 + len(resumed)))
    assert resumed[-1].json()["final"] is True
    assert resumed[-1].json()["data"]["type"] == "run.finished"

    with dashboard.http.stream("GET", url) as whole:  # a fresh reader sees the same events
        everything = [m for m in read_to_end(whole) if m.event == "message"]
    assert [m.data for m in everything] == [m.data for m in before + resumed]


def test_after_query_resumes_and_header_wins(dashboard: Dashboard) -> None:
    run_id, gate = dashboard.ticker(2)  # 5 events: started, 2 steps, finished
    gate.release(2)
    dashboard.wait(run_id, "completed")
    url = f"/v1/runs/{run_id}/stream"
    with dashboard.http.stream("GET", f"{url}?after=2") as by_query:
        assert indices(read_to_end(by_query))[0] == 3
    with dashboard.http.stream("GET", f"{url}?after=1", headers={"Last-Event-ID": "3"}) as both:
        assert indices(read_to_end(both))[0] == 4
    last = len(indices(read_to_end_of(dashboard, url)))
    with dashboard.http.stream("GET", url, headers={"Last-Event-ID": str(last)}) as done:
        assert [m.event for m in read_to_end(done)] == ["end"]  # nothing left: ends at once


def read_to_end_of(dashboard: Dashboard, url: str) -> list[Message]:
    with dashboard.http.stream("GET", url) as response:
        return read_to_end(response)


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [("abc", 400, "invalid_cursor"), ("-1", 400, "invalid_cursor"), ("999", 400, "cursor_ahead")],
)
def test_bad_cursors_are_refused_in_the_error_shape(
    dashboard: Dashboard, header: str, status: int, code: str
) -> None:
    run_id, gate = dashboard.ticker(1)
    gate.release()
    dashboard.wait(run_id, "completed")
    response = dashboard.http.get(f"/v1/runs/{run_id}/stream", headers={"Last-Event-ID": header})
    error = assert_error(response, status, code)
    assert header in error["message"] or "ahead" in error["message"]


def test_unknown_and_foreign_runs_answer_404(dashboard: Dashboard) -> None:
    assert_error(dashboard.http.get("/v1/runs/01NOPE/stream"), 404, "run_not_found")
    run_id, gate = dashboard.ticker(1)
    gate.release()
    with dashboard.client("other") as other:  # another workspace's key
        assert_error(other.get(f"/v1/runs/{run_id}/stream"), 404, "run_not_found")
    with httpx.Client(base_url=dashboard.base_url) as anonymous:
        assert_error(anonymous.get(f"/v1/runs/{run_id}/stream"), 401, "unauthorized")


def test_idle_stream_sends_heartbeat_comments(
    dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_route, "HEARTBEAT_S", 0.2)
    run_id, _gate = dashboard.ticker(1)  # blocked on its first step: the stream stays idle
    seen: list[Any] = []
    with dashboard.http.stream("GET", f"/v1/runs/{run_id}/stream") as response:
        for item in messages(response):
            seen.append(item)
            if isinstance(item, Comment) and item.text.startswith("ping"):
                break
    assert isinstance(seen[0], Comment)  # the opening comment, with `retry:`
    assert any(isinstance(m, Message) and m.retry == stream_route.RETRY_MS for m in seen)


def test_events_tail_streams_new_events(dashboard: Dashboard) -> None:
    with dashboard.http.stream("GET", "/v1/events/stream?name=tail/probe") as response:
        dashboard.send("tail/probe", {"n": 1})
        dashboard.send("tail/probe", {"n": 2})
        got = []
        for message in data_messages(response):
            got.append(message.json())
            if len(got) == 2:
                break
    assert [e["data"]["n"] for e in got] == [1, 2]
    assert all(e["name"] == "tail/probe" for e in got)
