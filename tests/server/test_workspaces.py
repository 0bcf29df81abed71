"""Two workspaces on one server cannot see each other's events, runs, steps, logs or scores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

import inferpipe as ip
from inferpipe.core.records import Run, RunStatus
from inferpipe.engine.lifecycle import RunListener
from inferpipe.engine.worker import Worker
from inferpipe.server.workspaces import Workspaces
from inferpipe.store import payloads
from inferpipe.store.blobs import FileBlobStore
from tests.server.conftest import LiveServer, assert_error


def test_workspaces_are_isolated(
    live: LiveServer, http_a: httpx.Client, http_b: httpx.Client
) -> None:
    sent = http_a.post("/v1/events", json={"name": "test/greet", "data": {"name": "only-a"}})
    event_id = sent.json()["ids"][0]
    (run_id,) = sent.json()["runs_created"]
    live.wait_status(http_a, run_id, {"completed"})

    # by id: another workspace's resources do not exist
    for path in (
        f"/v1/events/{event_id}",
        f"/v1/events/{event_id}/runs",
    ):
        assert_error(http_b.get(path), 404, "event_not_found")
    for path in (
        f"/v1/runs/{run_id}",
        f"/v1/runs/{run_id}/steps",
        f"/v1/runs/{run_id}/logs",
        f"/v1/runs/{run_id}/scores",
    ):
        assert_error(http_b.get(path), 404, "run_not_found")
    assert_error(http_b.post(f"/v1/runs/{run_id}/cancel"), 404, "run_not_found")
    assert_error(http_b.post(f"/v1/runs/{run_id}/rerun"), 404, "run_not_found")

    # in lists: nothing of A shows up in B
    b_events = http_b.get("/v1/events", params={"limit": 200}).json()["items"]
    assert event_id not in {e["id"] for e in b_events}
    b_runs = http_b.get("/v1/runs", params={"limit": 200}).json()["items"]
    assert run_id not in {r["id"] for r in b_runs}
    assert all("only-a" not in str(r["input"]) for r in b_runs)

    # while A sees its own
    assert http_a.get(f"/v1/runs/{run_id}").status_code == 200


def test_scores_are_served_to_their_workspace_only(
    live: LiveServer, http_a: httpx.Client, http_b: httpx.Client
) -> None:
    (run_id,) = http_a.post("/v1/events", json={"name": "test/scored"}).json()["runs_created"]
    live.wait_status(http_a, run_id, {"completed"})
    (score,) = http_a.get(f"/v1/runs/{run_id}/scores").json()["items"]
    assert (score["name"], score["value"], score["source"]) == ("politeness", 0.75, "inline")
    assert score["reason"] == "said please" and score["function_id"] == "scored"
    assert_error(http_b.get(f"/v1/runs/{run_id}/scores"), 404, "run_not_found")


def test_an_event_in_one_workspace_triggers_nothing_in_another(
    live: LiveServer, http_a: httpx.Client, http_b: httpx.Client
) -> None:
    (waiting,) = http_a.post("/v1/events", json={"name": "test/ask"}).json()["runs_created"]
    live.wait_status(http_a, waiting, {"waiting"})

    # B's reply does not resume A's run; B's own run works in B (its worker runs it)
    http_b.post("/v1/events", json={"name": "test/reply", "data": {"from": "b"}})
    (b_run,) = http_b.post("/v1/events", json={"name": "test/greet"}).json()["runs_created"]
    live.wait_status(http_b, b_run, {"completed"})
    assert http_a.get(f"/v1/runs/{waiting}").json()["status"] == "waiting"

    http_a.post("/v1/events", json={"name": "test/reply", "data": {"from": "a"}})
    assert live.wait_status(http_a, waiting, {"completed"})["output"] == {"from": "a"}


class Finishes(RunListener):
    def __init__(self) -> None:
        self.workspaces: list[str] = []

    def execution_ended(self, run: Run) -> None:
        self.workspaces.append(run.workspace)


async def test_every_workspace_engine_reports_to_the_apps_listeners(tmp_path: Path) -> None:
    app = ip.App("listeners", database=f"sqlite:///{tmp_path / 'ws.db'}")

    @app.function(id="f")
    async def f(ctx: ip.Context) -> int:
        return await ctx.step.run("one", lambda: 1)

    finishes = Finishes()
    await app.start()
    try:
        app.engine.add_listener(finishes)  # as telemetry does
        other = Workspaces(app).engine("acme")
        run_id = await other.runs.invoke("f")
        await Worker(other).run_until_idle()
        run = await other.runs.get(run_id)
    finally:
        await app.close()
    assert run.status is RunStatus.COMPLETED
    assert finishes.workspaces == ["acme"]


def test_a_blob_reference_reads_nothing_of_another_workspace(
    live: LiveServer, http_a: httpx.Client, http_b: httpx.Client
) -> None:
    # A blob of workspace A, in the server's blob store (the request body limit here is under
    # the offload threshold, so it is written as a large event's data would be).
    doc = "secret of a " * 30_000
    blobs = FileBlobStore(live.db_path.parent / "blobs")
    ref = asyncio.run(payloads.Payloads(blobs, "ws-a", threshold_bytes=0).offload(doc))
    sent = http_a.post("/v1/events", json={"name": "test/untriggered", "data": {"doc": ref}})
    (event_id,) = sent.json()["ids"]
    assert http_a.get(f"/v1/events/{event_id}").json()["data"]["doc"] == doc
    assert http_a.get(f"/v1/events/{event_id}/data").json() == {"doc": doc}

    # B sends A's reference as it is, and relabelled with its own workspace
    relabelled = {payloads.MARKER: {**ref[payloads.MARKER], "workspace": "ws-b"}}
    for forged, status, code in ((ref, 403, "blob_forbidden"), (relabelled, 404, "blob_not_found")):
        sent_b = http_b.post(
            "/v1/events", json={"name": "test/untriggered", "data": {"doc": forged}}
        )
        (id_b,) = sent_b.json()["ids"]
        for route in (f"/v1/events/{id_b}", f"/v1/events/{id_b}/data"):
            body = assert_error(http_b.get(route), status, code)
            assert "secret of a" not in str(body)
