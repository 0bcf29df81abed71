"""The Python client (sync and async) against the real server: typed results, clear errors."""

from __future__ import annotations

import pytest

import inferpipe as ip
from inferpipe.client import (
    ApiConnectionError,
    AsyncClient,
    AuthenticationError,
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTooLargeError,
)
from inferpipe.server.schemas import RunInfo, StepInfo
from tests.server.conftest import KEYS as SERVER_KEYS
from tests.server.conftest import MAX_BODY_BYTES, LiveServer


def test_sync_client_flow(live: LiveServer) -> None:
    with Client(live.base_url, live.keys["a"]) as client:
        assert client.ready()
        sent = client.send([ip.Event("test/greet", {"name": "client"}), {"name": "test/greet"}])
        assert len(sent.ids) == 2
        client.wait_for_run(sent.runs_created[1], timeout_s=10)
        run = client.wait_for_run(sent.runs_created[0], timeout_s=10)
        assert isinstance(run, RunInfo) and run.status is ip.RunStatus.COMPLETED
        assert run.output == {"text": "hello client"}
        steps = client.steps(run.id)
        assert [type(s) for s in steps.items] == [StepInfo] and steps.next_cursor is None
        assert client.logs(run.id).items[0].message == "composed"
        assert client.scores(run.id) == []
        assert client.get_event(sent.ids[0]).data == {"name": "client"}
        assert [r.id for r in client.event_runs(sent.ids[0]).items] == [run.id]
        assert "greet" in {f.id for f in client.functions()}
        page = client.list_runs(function="greet", status="completed", limit=1)
        assert len(page.items) == 1 and page.next_cursor is not None
        assert client.list_events(name="test/greet", limit=1).items

        waiting_id = client.send({"name": "test/ask"}).runs_created[0]
        client.wait_for_run(waiting_id, statuses=["waiting"], timeout_s=10)
        assert client.cancel(waiting_id, "stop").cancel_requested == "stop"
        cancelled = client.wait_for_run(waiting_id, timeout_s=10)
        with pytest.raises(ConflictError) as conflict:
            client.cancel(waiting_id)
        assert conflict.value.status == 409 and conflict.value.code == "conflict"
        assert client.rerun(cancelled.id).rerun_of == waiting_id


def test_sync_client_errors(live: LiveServer) -> None:
    with Client(live.base_url, live.keys["a"]) as client:
        with pytest.raises(NotFoundError) as missing:
            client.get_run("nope")
        assert missing.value.code == "run_not_found" and "nope" in missing.value.message
        with pytest.raises(InvalidRequestError) as invalid:
            client.send({"data": {}})
        assert invalid.value.details[0].field == "body.name"
        with pytest.raises(RequestTooLargeError):
            client.send({"name": "x", "data": {"blob": "x" * MAX_BODY_BYTES}})
    with Client(live.base_url, "ip_zz_" + "0" * 40) as wrong, pytest.raises(AuthenticationError):
        wrong.functions()
    with Client(live.base_url, live.keys["a_read"]) as read, pytest.raises(PermissionDeniedError):
        read.invoke("greet")
    with Client("http://127.0.0.1:1", "k", timeout_s=2) as nowhere:
        with pytest.raises(ApiConnectionError):
            nowhere.functions()
        assert nowhere.ready() is False


async def test_async_client(live: LiveServer) -> None:
    async with AsyncClient(live.base_url, live.keys["b"]) as client:
        run_id = await client.invoke("greet", {"name": "async"})
        run = await client.wait_for_run(run_id, timeout_s=10)
        assert run.output == {"text": "hello async"}  # invocation data is ctx.event.data
        assert (await client.get_run(run_id, full=True)).id == run_id
        assert (await client.steps(run_id)).items[0].name == "compose"
        with pytest.raises(NotFoundError):
            await client.get_event("nope")


def test_rate_limited_error_carries_retry_after(live: LiveServer) -> None:
    assert SERVER_KEYS["limited"]["rate_limit_per_min"] == 3
    with Client(live.base_url, live.keys["limited"]) as client:
        with pytest.raises(RateLimitedError) as limited:
            for _ in range(10):
                client.functions()
        assert limited.value.status == 429
        assert limited.value.retry_after_s is not None and limited.value.retry_after_s >= 1
