"""Over HTTP: outputs offloaded to the blob store show as previews with `output_url`, come back
whole with `full`, from the step route and from the download routes, and the client reads
them with `output`; inputs and event data with offloaded members download whole too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import inferpipe as ip
from inferpipe.client import Client
from tests.server.conftest import start_server

DOC = {"text": "y" * (400 * 1024), "pages": 3}
BODY = "z" * (300 * 1024)


def blobs_app(database: str) -> ip.App:
    app = ip.App("blob-outputs", database=database)

    @app.function(id="doc")
    async def doc(ctx: ip.Context) -> dict[str, object]:
        got = await ctx.step.run("extract", lambda: DOC)
        return {"copy": got["text"], "pages": got["pages"]}

    @app.function(id="measure", trigger=ip.on_event("doc/sent"))
    async def measure(ctx: ip.Context) -> int:
        return int(await ctx.step.run("count", len, ctx.event.data["body"]))

    return app


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("blobs-api")
    api, stop = start_server(blobs_app(f"sqlite:///{folder / 'api.db'}"), require_keys=False)
    try:
        yield f"http://127.0.0.1:{api.port}"
    finally:
        stop()


@pytest.fixture(scope="module")
def run_id(base_url: str) -> str:
    with Client(base_url) as client:
        run_id = client.invoke("doc")
        run = client.wait_for_run(run_id, timeout_s=30)
        assert run.status is ip.RunStatus.COMPLETED, run
        return run_id


def test_listings_show_a_preview_and_where_to_download(base_url: str, run_id: str) -> None:
    with httpx.Client(base_url=base_url) as http:
        run = http.get(f"/v1/runs/{run_id}").json()
        assert run["output_truncated"] and run["output"].startswith('{"copy":"yyy')
        assert run["output_url"] == f"/v1/runs/{run_id}/output"
        (step,) = http.get(f"/v1/runs/{run_id}/steps").json()["items"]
        assert step["output_truncated"] and step["output"].endswith("…")
        assert step["output_url"] == f"/v1/runs/{run_id}/steps/extract/output"
        assert len(step["output"]) < 4096


def test_full_and_the_step_route_answer_the_whole_value(base_url: str, run_id: str) -> None:
    with httpx.Client(base_url=base_url) as http:
        run = http.get(f"/v1/runs/{run_id}", params={"full": "true"}).json()
        assert run["output"] == {"copy": DOC["text"], "pages": 3}
        assert run["output_url"] is not None
        assert http.get(f"/v1/runs/{run_id}/steps/extract").json()["output"] == DOC
        steps = http.get(f"/v1/runs/{run_id}/steps", params={"full": "true"}).json()
        assert steps["items"][0]["output"] == DOC


def test_the_download_routes_answer_the_json(base_url: str, run_id: str) -> None:
    with httpx.Client(base_url=base_url) as http:
        step = http.get(f"/v1/runs/{run_id}/steps/extract/output")
        assert step.status_code == 200 and step.headers["content-type"] == "application/json"
        assert step.json() == DOC
        assert http.get(f"/v1/runs/{run_id}/output").json()["copy"] == DOC["text"]
        missing = http.get(f"/v1/runs/{run_id}/steps/nope/output")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "step_not_found"


def test_the_client_reads_whole_outputs(base_url: str, run_id: str) -> None:
    with Client(base_url) as client:
        assert client.output(run_id, "extract") == DOC
        assert client.output(run_id)["pages"] == 3
        assert client.step(run_id, "extract").output == DOC


def test_offloaded_inputs_and_event_data_download_whole(base_url: str) -> None:
    data = {"kind": "a", "body": BODY}
    with httpx.Client(base_url=base_url) as http, Client(base_url) as client:
        sent = http.post("/v1/events", json={"name": "doc/sent", "data": data}).json()
        ((event_id,), (run_id,)) = sent["ids"], sent["runs_created"]
        assert client.wait_for_run(run_id, timeout_s=30).output == len(BODY)

        event = http.get(f"/v1/events/{event_id}").json()
        assert event["data_url"] == f"/v1/events/{event_id}/data"
        whole = http.get(event["data_url"])
        assert whole.headers["content-type"] == "application/json" and whole.json() == data

        run = http.get(f"/v1/runs/{run_id}").json()
        assert run["input_truncated"] and run["input_url"] == f"/v1/runs/{run_id}/input"
        assert run["output_url"] is None  # a number: kept in the row
        (started_by,) = http.get(run["input_url"]).json()
        assert started_by["id"] == event_id and started_by["data"] == data

        (step,) = http.get(f"/v1/runs/{run_id}/steps").json()["items"]
        assert step["input_truncated"] and len(str(step["input"])) < 4096
        assert step["input_url"] == f"/v1/runs/{run_id}/steps/count/input"
        assert BODY in http.get(step["input_url"]).text
        assert (
            http.get(step["input_url"]).json()
            == http.get(f"/v1/runs/{run_id}/steps/count").json()["input"]
        )

        missing = http.get(f"/v1/runs/{run_id}/steps/nope/input")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "step_not_found"
        assert http.get("/v1/events/nope/data").status_code == 404


def test_an_input_kept_in_its_row_downloads_as_it_is(base_url: str, run_id: str) -> None:
    with httpx.Client(base_url=base_url) as http:
        run = http.get(f"/v1/runs/{run_id}").json()
        assert run["input_url"] is None
        assert http.get(f"/v1/runs/{run_id}/input").json() == run["input"]
