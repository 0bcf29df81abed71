"""The engine's `inferpipe/` events cannot be forged: every public way of sending an event
refuses the reserved names (422 `invalid_event` over HTTP), so a made-up
`inferpipe/function.finished` goes out as no signed webhook; and the dispatch checks the store,
so even an event that got in delivers nothing unless the run finished or the score exists."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import inferpipe as ip
from inferpipe.cli import main
from inferpipe.core.errors import InvalidEventError
from inferpipe.core.events import FUNCTION_FINISHED, SCORE_RECORDED, Event
from inferpipe.store.base import RunFilter
from inferpipe.testing import Harness
from inferpipe.webhooks.delivery import DELIVERY_EVENT, DISPATCH_FUNCTION_ID, list_deliveries
from inferpipe.webhooks.subscriptions import EventType, Subscription, webhook_subscriptions
from tests.server.conftest import assert_error
from tests.webhooks.conftest import Live, serving
from tests.webhooks.delivery_app import build
from tests.webhooks.receiver import receiver
from tests.webhooks.test_delivery import deliveries, eventually, send, subscribe
from tests.webhooks.test_incoming import standard_headers

FORGED = Event(
    FUNCTION_FINISHED,
    {"run_id": "run-made-up", "function_id": "work", "status": "completed", "output": "paid"},
)
EVERY_TYPE = list(EventType)


@asynccontextmanager
async def harness() -> AsyncIterator[Harness]:
    app = build(None, private=True, backoff_s=1.0)

    @app.function(id="forger", trigger=ip.on_event("test/forge"), retries=0)
    async def forger(ctx: ip.Context) -> list[str]:
        return await ctx.step.send_event("forge", FORGED)

    async with Harness(app) as h:
        yield h


async def subscribe_all(h: Harness, url: str) -> Subscription:
    sub, _ = await webhook_subscriptions(h.engine.store).create(
        "default", url, events=EVERY_TYPE, allow_private=True
    )
    return sub


async def test_app_send_refuses_a_reserved_name_and_nothing_is_delivered() -> None:
    async with harness() as h:
        with receiver() as hook:
            sub = await subscribe_all(h, hook.url)
            for name in (FUNCTION_FINISHED, SCORE_RECORDED, DELIVERY_EVENT):
                with pytest.raises(InvalidEventError, match="'inferpipe/'"):
                    await h.send(Event(name, dict(FORGED.data)))
            with pytest.raises(InvalidEventError, match="reserved"):  # nothing of the batch
                await h.send([Event("test/work", {"n": 1}), FORGED])
            await h.advance("1h")
            assert hook.all() == []
            assert await list_deliveries(h.engine.store, sub.id) == []
            await h.send(Event("test/work", {"n": 2}))  # a real finish still goes out
            await h.advance("1h")
            (got,) = hook.accepted()
        assert got.payload["data"]["output"] == {"n": 2}


async def test_a_step_cannot_send_a_reserved_event() -> None:
    async with harness() as h:
        with receiver() as hook:
            await subscribe_all(h, hook.url)
            await h.send(Event("test/forge", {}))
            await h.advance("1h")
            (run,) = (await h.engine.store.list_runs(RunFilter(function_id="forger"))).items
            assert run.status is ip.RunStatus.FAILED
            assert run.error is not None and "'inferpipe/'" in run.error["message"]
            # The forger's own failure is the one delivery: the forged finish is not.
            (got,) = hook.accepted()
        assert got.payload["type"] == "run.failed"
        assert got.payload["data"]["function_id"] == "forger"


async def test_the_dispatch_delivers_only_what_the_store_holds() -> None:
    """An event under the reserved names that reached the engine anyway (the internal path)
    is checked against the store: no such run, another status, no such score."""
    async with harness() as h:
        with receiver() as hook:
            sub = await subscribe_all(h, hook.url)
            await h.send(Event("test/work", {"n": 3}))
            await h.advance("1h")
            (run,) = (await h.engine.store.list_runs(RunFilter(function_id="work"))).items
            assert len(hook.accepted()) == 1
            forged = [
                FORGED,
                Event(
                    FUNCTION_FINISHED,
                    {"run_id": run.id, "function_id": "work", "status": "failed"},
                ),
                Event(
                    FUNCTION_FINISHED,
                    {"run_id": run.id, "function_id": "other", "status": "completed"},
                ),
                Event(
                    SCORE_RECORDED,
                    {"run_id": run.id, "function_id": "work", "score_id": "made-up", "value": 1},
                ),
            ]
            await h.engine.runs.send_engine_events(forged)
            await h.advance("1h")
            dispatched = await h.engine.store.list_runs(RunFilter(function_id=DISPATCH_FUNCTION_ID))
            assert len(dispatched.items) == 1 + len(forged)
            assert all(r.status is ip.RunStatus.COMPLETED for r in dispatched.items)
            assert len(hook.all()) == 1  # only the real finish
            assert len(await list_deliveries(h.engine.store, sub.id)) == 1


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serving(tmp_path_factory, lambda db: build(db, private=True, backoff_s=0.2)) as served:
        yield served


def test_the_http_api_and_an_incoming_transform_refuse_reserved_names(live: Live) -> None:
    with live.client() as http, receiver() as hook:
        sub = subscribe(http, hook.url, events=[t.value for t in EVERY_TYPE])
        sent = http.post("/v1/events", json=FORGED.as_dict() | {"id": None, "ts": None})
        assert_error(sent, 422, "invalid_event")
        assert "'inferpipe/'" in sent.json()["error"]["message"]
        source = "relay"
        made = http.put(
            f"/v1/webhook-sources/{source}",
            json={
                "scheme": "standard",
                "transform": {"kind": "cel", "source": '{"name": body.name, "data": body.data}'},
            },
        )
        assert made.status_code == 200, made.text
        secret = made.json()["secret"]
        body = FORGED.as_dict() | {"id": None, "ts": None}
        raw = json.dumps(body).encode()
        for _ in range(2):  # refused, and nothing recorded: not taken as a duplicate after
            headers = standard_headers(secret, raw, "msg-forged", int(time.time()))
            intake = http.post(
                f"/v1/webhooks/{source}?workspace=ws-a", content=raw, headers=headers
            )
            assert_error(intake, 422, "invalid_event")
        run_id = send(http, n=7)  # the real finish is delivered, and only it
        (got,) = eventually(hook.accepted)
        assert got.payload["data"]["run_id"] == run_id
        (logged,) = deliveries(http, sub["id"])
        assert logged["payload"]["data"]["run_id"] == run_id


def test_the_cli_refuses_a_reserved_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app_file = str(Path(__file__).with_name("delivery_app.py"))
    where = ["--database", f"sqlite:///{tmp_path / 'cli.db'}", "--app", app_file]
    forged = ["send", FUNCTION_FINISHED, "--data", '{"run_id": "r", "status": "completed"}']
    assert main([*forged, *where]) == 2
    assert "'inferpipe/'" in capsys.readouterr().err
    assert main(["send", "test/work", "--data", '{"n": 1}', *where]) == 0
