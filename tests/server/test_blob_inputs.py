"""Over HTTP: large event data, step inputs and stream data are offloaded; one event's route,
`full` step views and the run stream (from the start or resumed with Last-Event-ID) answer the
value; listings keep the reference and its preview."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest

import inferpipe as ip
from inferpipe.client import Client
from inferpipe.store import payloads
from tests.server.conftest import start_server

DOC = "d" * (400 * 1024)


def inputs_app(database: str) -> ip.App:
    app = ip.App("blob-inputs", database=database, streams="store")

    def measure(text: str) -> int:
        return len(text)

    @app.function(id="on-doc", trigger=ip.on_event("doc/uploaded", if_exp="event.data.kind == 'a'"))
    async def on_doc(ctx: ip.Context) -> int:
        await ctx.stream.publish({"echo": ctx.event.data["doc"]}, kind="echo")
        return int(await ctx.step.run("measure", measure, ctx.event.data["doc"]))

    return app


@dataclass
class Sent:
    url: str
    event_id: str
    run_id: str


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sent]:
    folder = tmp_path_factory.mktemp("blob-inputs")
    api, stop = start_server(inputs_app(f"sqlite:///{folder / 'api.db'}"), require_keys=False)
    url = f"http://127.0.0.1:{api.port}"
    try:
        with Client(url) as client:
            result = client.send(ip.Event("doc/uploaded", {"kind": "a", "doc": DOC}))
            (event_id,), (run_id,) = result.ids, result.runs_created
            done = client.wait_for_run(run_id, timeout_s=30)
            assert done.status is ip.RunStatus.COMPLETED, done
            assert done.output == len(DOC)
        yield Sent(url, event_id, run_id)
    finally:
        stop()


def test_one_event_answers_its_data_whole_and_listings_a_reference(sent: Sent) -> None:
    with httpx.Client(base_url=sent.url) as http:
        event = http.get(f"/v1/events/{sent.event_id}").json()
        assert event["data"] == {"kind": "a", "doc": DOC}
        (listed,) = http.get("/v1/events", params={"name": "doc/uploaded"}).json()["items"]
        ref = payloads.ref_of(listed["data"]["doc"])
        assert listed["data"]["kind"] == "a"
        assert ref is not None and ref.preview.startswith('"ddd') and ref.size_bytes > len(DOC)


def test_full_step_and_run_views_answer_inputs_whole(sent: Sent) -> None:
    with httpx.Client(base_url=sent.url) as http:
        step = http.get(f"/v1/runs/{sent.run_id}/steps/measure").json()
        assert step["input"] == {"args": [DOC], "kwargs": {}}
        short = http.get(f"/v1/runs/{sent.run_id}/steps").json()["items"][0]
        assert short["input_truncated"] and len(short["input"]) < 4096
        run = http.get(f"/v1/runs/{sent.run_id}", params={"full": "true"}).json()
        assert run["input"][0]["data"] == {"kind": "a", "doc": DOC}


def _echoes(http: httpx.Client, run_id: str, last_event_id: str | None) -> list[dict[str, object]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    body = http.get(f"/v1/runs/{run_id}/stream", headers=headers).text
    messages = [orjson.loads(line[5:]) for line in body.splitlines() if line[:5] == "data:"]
    return [m for m in messages if "index" in m and m["data"]["type"] == "echo"]


def test_stream_subscribers_get_the_value_also_when_resuming(sent: Sent) -> None:
    with httpx.Client(base_url=sent.url, timeout=30) as http:
        (echo,) = _echoes(http, sent.run_id, None)
        assert echo["data"]["data"] == {"echo": DOC}
        (resumed,) = _echoes(http, sent.run_id, str(int(echo["index"]) - 1))
        assert resumed["data"]["data"] == {"echo": DOC}
    with Client(sent.url) as client:
        got = [e.data for e in client.stream(sent.run_id) if e.data["type"] == "echo"]
    assert got[0]["data"] == {"echo": DOC}
