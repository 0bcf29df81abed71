"""The full flow over HTTP against a real server: trigger, status, steps, cancel, re-run."""

from __future__ import annotations

import httpx

from tests.server.conftest import FRAGILE, PREVIEW_BYTES, LiveServer, assert_error


def test_trigger_status_steps_logs(live: LiveServer, http_a: httpx.Client) -> None:
    sent = http_a.post("/v1/events", json={"name": "test/greet", "data": {"name": "ada"}})
    assert sent.status_code == 202, sent.text
    body = sent.json()
    assert len(body["ids"]) == 1 and body["duplicates"] == []
    (run_id,) = body["runs_created"]

    run = live.wait_status(http_a, run_id, {"completed"})
    assert run["function_id"] == "greet"
    assert run["output"] == {"text": "hello ada"}
    assert run["executions"] == 1 and run["error"] is None and run["parent_run_id"] is None
    assert run["created_at_ms"] <= run["started_at_ms"] <= run["finished_at_ms"]
    assert run["event_ids"] == body["ids"]

    steps = http_a.get(f"/v1/runs/{run_id}/steps").json()
    (step,) = steps["items"]
    assert step["name"] == "compose" and step["kind"] == "run" and step["status"] == "completed"
    assert step["input"] == {"args": ["ada"], "kwargs": {}} and step["output"] == "hello ada"
    assert step["duration_ms"] == step["finished_at_ms"] - step["started_at_ms"]
    assert step["attempt"] == 0 and step["error"] is None

    logs = http_a.get(f"/v1/runs/{run_id}/logs").json()["items"]
    assert [(g["level"], g["message"], g["meta"]) for g in logs] == [
        ("info", "composed", {"length": 9})
    ]
    assert http_a.get(f"/v1/runs/{run_id}/scores").json() == {"items": [], "next_cursor": None}

    event = http_a.get(f"/v1/events/{body['ids'][0]}").json()
    assert event["name"] == "test/greet" and event["data"] == {"name": "ada"}
    started = http_a.get(f"/v1/events/{body['ids'][0]}/runs").json()
    assert [r["id"] for r in started["items"]] == [run_id]


def test_cancel_then_rerun_from_start(live: LiveServer, http_a: httpx.Client) -> None:
    (run_id,) = http_a.post("/v1/events", json={"name": "test/ask"}).json()["runs_created"]
    live.wait_status(http_a, run_id, {"waiting"})

    cancelled = http_a.post(f"/v1/runs/{run_id}/cancel", json={"reason": "user gave up"})
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["cancel_requested"] == "user gave up"
    run = live.wait_status(http_a, run_id, {"cancelled"})
    assert run["status_reason"] == "user gave up"
    assert_error(http_a.post(f"/v1/runs/{run_id}/cancel"), 409, "conflict")

    rerun = http_a.post(f"/v1/runs/{run_id}/rerun", json={"from": "start"})
    assert rerun.status_code == 201, rerun.text
    new = rerun.json()
    assert new["rerun_of"] == run_id and new["id"] != run_id
    live.wait_status(http_a, new["id"], {"waiting"})
    assert_error(http_a.post(f"/v1/runs/{new['id']}/rerun"), 409, "conflict")

    # the re-run is live: the reply it waits for completes it
    http_a.post("/v1/events", json={"name": "test/reply", "data": {"answer": 42}})
    done = live.wait_status(http_a, new["id"], {"completed"})
    assert done["output"] == {"answer": 42}


def test_invoke_fail_and_rerun_from_failed_step(live: LiveServer, http_a: httpx.Client) -> None:
    FRAGILE["fail"] = True
    invoked = http_a.post("/v1/functions/fragile/invoke", json={"data": {"n": 1}})
    assert invoked.status_code == 202, invoked.text
    run_id = invoked.json()["run_id"]
    failed = live.wait_status(http_a, run_id, {"failed"})
    assert failed["error"]["code"] == "non_retriable" and "boom" in failed["error"]["message"]
    steps = http_a.get(f"/v1/runs/{run_id}/steps").json()["items"]
    explode = next(s for s in steps if s["name"] == "explode")
    assert explode["status"] == "failed"
    assert explode["error"]["code"] == "non_retriable"
    assert explode["meta"]["attempts"][0]["message"] == "boom"  # retry history
    # where the user's code raised: the step's frame, then the function's call of the step
    step_trace = explode["error"]["traceback"]
    assert 'conftest.py", line' in step_trace and "in explode" in step_trace
    assert "inferpipe/engine" not in step_trace
    run_trace = failed["error"]["traceback"]
    assert run_trace.startswith(step_trace) and "in fragile" in run_trace.removeprefix(step_trace)

    FRAGILE["fail"] = False
    try:
        rerun = http_a.post(f"/v1/runs/{run_id}/rerun", json={"from": "failed_step"}).json()
        done = live.wait_status(http_a, rerun["id"], {"completed"})
    finally:
        FRAGILE["fail"] = True
    assert done["output"] == "fine"
    kept = http_a.get(f"/v1/runs/{rerun['id']}/steps").json()["items"]
    prepare = next(s for s in kept if s["name"] == "prepare")
    original = next(s for s in steps if s["name"] == "prepare")
    assert prepare["started_at_ms"] == original["started_at_ms"]  # kept, not executed again


def test_batch_send_with_duplicates(live: LiveServer, http_a: httpx.Client) -> None:
    batch = [
        {"name": "test/greet", "data": {"name": "one"}, "id": "dup-batch-1"},
        {"name": "test/greet", "data": {"name": "two"}},
    ]
    first = http_a.post("/v1/events", json=batch).json()
    assert first["ids"][0] == "dup-batch-1" and len(first["runs_created"]) == 2
    again = http_a.post("/v1/events", json=batch[0]).json()
    assert again["duplicates"] == ["dup-batch-1"] and again["runs_created"] == []


def test_list_runs_filters_and_cursor(live: LiveServer, http_a: httpx.Client) -> None:
    for n in range(3):
        run_id = http_a.post("/v1/functions/greet/invoke", json={"data": {"n": n}}).json()
        live.wait_status(http_a, run_id["run_id"], {"completed"})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"function": "greet", "status": "completed", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = http_a.get("/v1/runs", params=params).json()
        seen += [r["id"] for r in page["items"]]
        assert all(r["function_id"] == "greet" for r in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) >= 3 and len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True)  # newest first
    future = http_a.get("/v1/runs", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future["items"] == []


def test_list_events_by_name_and_time(http_a: httpx.Client) -> None:
    http_a.post("/v1/events", json={"name": "test/listed", "data": {"i": 1}})
    page = http_a.get("/v1/events", params={"name": "test/listed", "since": 0}).json()
    assert page["items"] and all(e["name"] == "test/listed" for e in page["items"])
    assert http_a.get("/v1/events", params={"name": "test/listed", "until": 1}).json() == {
        "items": [],
        "next_cursor": None,
    }


def test_large_values_are_previewed_unless_full(live: LiveServer, http_a: httpx.Client) -> None:
    run_id = http_a.post("/v1/functions/big/invoke", json={}).json()["run_id"]
    run = live.wait_status(http_a, run_id, {"completed"})
    assert run["output_truncated"] is True and len(run["output"]) <= PREVIEW_BYTES + 1
    assert run["output"].startswith("xxx") and run["output"].endswith("…")
    (step,) = http_a.get(f"/v1/runs/{run_id}/steps").json()["items"]
    assert step["output_truncated"] is True
    (whole,) = http_a.get(f"/v1/runs/{run_id}/steps", params={"full": "true"}).json()["items"]
    assert whole["output_truncated"] is False and whole["output"] == "x" * 8192
    assert http_a.get(f"/v1/runs/{run_id}", params={"full": True}).json()["output"] == "x" * 8192


def test_functions_list_configuration(http_a: httpx.Client) -> None:
    functions = {f["id"]: f for f in http_a.get("/v1/functions").json()["items"]}
    assert {"greet", "await-reply", "fragile", "secrets", "big"} <= functions.keys()
    greet = functions["greet"]
    assert greet["triggers"] == [
        {"type": "event", "event": "test/greet", "if_exp": None, "cron": None}
    ]
    assert greet["retries"] == 0 and greet["backoff"]["base_s"] == 1.0
    assert greet["timeouts"] == {"start_ms": None, "finish_ms": None}
