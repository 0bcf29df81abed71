"""The run operations over HTTP, as `App` has them: feedback scores, and the re-run rules."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from inferpipe.client import AsyncClient, Client, ConflictError, InvalidRequestError
from tests.server.conftest import FRAGILE, LiveServer, assert_error


def test_feedback_score_is_attached_and_updated_by_its_id(
    live: LiveServer, http_a: httpx.Client
) -> None:
    (run_id,) = http_a.post("/v1/events", json={"name": "test/ask"}).json()["runs_created"]
    live.wait_status(http_a, run_id, {"waiting"})  # before the run finishes

    body = {"name": "helpful", "value": False, "reason": "slow", "id": "fb-1"}
    created = http_a.post(f"/v1/runs/{run_id}/scores", json=body)
    assert created.status_code == 201, created.text
    score = created.json()
    assert (score["id"], score["name"], score["value"], score["source"]) == (
        "fb-1",
        "helpful",
        0.0,
        "feedback",
    )
    again = http_a.post(f"/v1/runs/{run_id}/scores", json={**body, "value": 0.9, "reason": "ok"})
    assert again.status_code == 201, again.text
    other = http_a.post(f"/v1/runs/{run_id}/scores", json={"name": "tone", "value": 3})
    assert other.status_code == 201, other.text
    stored = http_a.get(f"/v1/runs/{run_id}/scores").json()["items"]
    assert sorted((s["id"] == "fb-1", s["name"], s["value"], s["reason"]) for s in stored) == [
        (False, "tone", 3.0, None),
        (True, "helpful", 0.9, "ok"),
    ]


def test_feedback_score_bad_input_is_refused_clearly_and_writes_nothing(
    live: LiveServer, http_a: httpx.Client, http_b: httpx.Client
) -> None:
    (run_id,) = http_a.post("/v1/events", json={"name": "test/greet"}).json()["runs_created"]
    live.wait_status(http_a, run_id, {"completed"})
    url = f"/v1/runs/{run_id}/scores"

    error = assert_error(
        http_a.post(url, json={"name": "x", "value": "high"}), 422, "invalid_request"
    )
    assert any(d["field"].startswith("body.value") for d in error["details"])
    assert_error(http_a.post(url, json={"name": "", "value": 1}), 422, "invalid_request")
    assert_error(
        http_a.post(url, json={"name": "x", "value": 1, "extra": 1}), 422, "invalid_request"
    )
    error = assert_error(
        http_a.post(url, json={"name": "a\x01b", "value": 1}), 422, "invalid_score"
    )
    assert "control characters" in error["message"]
    assert_error(
        http_a.post("/v1/runs/nope/scores", json={"name": "x", "value": 1}), 404, "run_not_found"
    )
    # another workspace's run is not found from this one
    assert_error(http_b.post(url, json={"name": "x", "value": 1}), 404, "run_not_found")
    with live.client("a_read") as reader:
        assert_error(reader.post(url, json={"name": "x", "value": 1}), 403, "forbidden")
    assert http_a.get(f"/v1/runs/{run_id}/scores").json()["items"] == []


def test_rerun_from_failed_step_of_a_run_that_did_not_fail_is_refused(
    live: LiveServer, http_a: httpx.Client
) -> None:
    (waiting,) = http_a.post("/v1/events", json={"name": "test/ask"}).json()["runs_created"]
    live.wait_status(http_a, waiting, {"waiting"})
    http_a.post(f"/v1/runs/{waiting}/cancel")
    live.wait_status(http_a, waiting, {"cancelled"})
    (completed,) = http_a.post("/v1/events", json={"name": "test/greet"}).json()["runs_created"]
    live.wait_status(http_a, completed, {"completed"})

    for run_id, status in ((waiting, "cancelled"), (completed, "completed")):
        refused = http_a.post(f"/v1/runs/{run_id}/rerun", json={"from": "failed_step"})
        error = assert_error(refused, 409, "conflict")
        assert f"run {run_id} is {status}, not failed" in error["message"]
        reruns = http_a.get("/v1/runs", params={"limit": 200}).json()["items"]
        assert not [r for r in reruns if r["rerun_of"] == run_id]  # nothing was queued


def test_clients_attach_feedback_scores(live: LiveServer) -> None:
    FRAGILE["fail"] = True
    with Client(live.base_url, live.keys["a"]) as client:
        run = client.wait_for_run(client.invoke("fragile"), timeout_s=10)
        score = client.score(run.id, "thumbs", True, reason="fine", metadata={"user": "u1"})
        assert (score.value, score.source, score.metadata) == (1.0, "feedback", {"user": "u1"})
        with pytest.raises(InvalidRequestError):
            client.score(run.id, "thumbs", "up")  # type: ignore[arg-type]
        with pytest.raises(ConflictError):
            client.rerun(client.invoke("greet"), from_failed_step=True)  # not failed
        assert [s.name for s in client.scores(run.id)] == ["thumbs"]


async def test_async_client_attaches_feedback_scores(live: LiveServer) -> None:
    async with AsyncClient(live.base_url, live.keys["a"]) as client:
        (run_id,) = (await client.send({"name": "test/greet"})).runs_created
        first = await client.score(run_id, "stars", 4, score_id="async-fb")
        updated = await client.score(run_id, "stars", 5, score_id="async-fb")
        assert (first.id, updated.id, updated.value) == ("async-fb", "async-fb", 5.0)
        assert [s.value for s in await client.scores(run_id)] == [5.0]


class CountingTransport(httpx.AsyncHTTPTransport):
    """Counts the requests for each path; `sent` is set once one is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: Counter[str] = Counter()
        self.sent = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        self.sent.set()
        return await super().handle_async_request(request)


async def test_wait_for_run_is_answered_when_the_run_finishes(live: LiveServer) -> None:
    transport = CountingTransport()
    async with (
        AsyncClient(live.base_url, live.keys["a"]) as other,
        AsyncClient(live.base_url, live.keys["a"], transport=transport) as client,
    ):
        (run_id,) = (await other.send({"name": "test/ask"})).runs_created
        await other.wait_for_run(run_id, statuses=["waiting"], timeout_s=10)
        waiting = asyncio.create_task(client.wait_for_run(run_id, timeout_s=20))
        await transport.sent.wait()
        await other.send({"name": "test/reply", "data": {"answer": "long poll"}})
        done = await waiting
        assert done.status.value == "completed" and done.output == {"answer": "long poll"}
        assert (
            transport.paths[f"/v1/runs/{run_id}"] == 1
        )  # one read, held by the server until the finish


def test_get_run_with_wait_s_answers_the_unfinished_run_after_it(
    live: LiveServer, http_a: httpx.Client
) -> None:
    (run_id,) = http_a.post("/v1/events", json={"name": "test/ask"}).json()["runs_created"]
    live.wait_status(http_a, run_id, {"waiting"})
    held = http_a.get(f"/v1/runs/{run_id}", params={"wait_s": 0.2})
    assert held.status_code == 200 and held.json()["status"] == "waiting"
    too_long = http_a.get(f"/v1/runs/{run_id}", params={"wait_s": 61})
    assert_error(too_long, 422, "invalid_request")
    missing = http_a.get("/v1/runs/nope", params={"wait_s": 5})
    assert_error(missing, 404, "run_not_found")
