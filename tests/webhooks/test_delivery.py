"""Outgoing webhooks over real HTTP: signed Standard Webhooks deliveries of run lifecycle
events to a receiver on loopback, retries with backoff, the delivery log, redelivery, secret
rotation, filters and the egress policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import standardwebhooks

from tests.server.conftest import assert_error, start_server
from tests.webhooks.conftest import Live, create_keys, serving
from tests.webhooks.delivery_app import build
from tests.webhooks.receiver import receiver


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serving(tmp_path_factory, lambda db: build(db, private=True, backoff_s=0.2)) as served:
        yield served


def eventually(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def subscribe(http: httpx.Client, url: str, **spec: Any) -> dict[str, Any]:
    answer = http.post("/v1/webhook-subscriptions", json={"url": url, **spec})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def deliveries(http: httpx.Client, sub_id: str) -> list[dict[str, Any]]:
    return list(http.get(f"/v1/webhook-subscriptions/{sub_id}/deliveries").json())


def send(http: httpx.Client, **data: Any) -> str:
    sent = http.post("/v1/events", json={"name": "test/work", "data": data})
    (run_id,) = sent.json()["runs_created"]
    return str(run_id)


def verified(secret: str, request: Any) -> Any:
    return standardwebhooks.Webhook(secret).verify(request.body, request.headers)


def test_a_finished_run_is_delivered_signed_and_logged(live: Live) -> None:
    with live.client() as http, receiver() as hook:
        sub = subscribe(http, hook.url, events=["run.finished"])
        run_id = send(http, n=1)
        (got,) = eventually(hook.accepted)
        payload = verified(sub["secret"], got)
        assert payload["type"] == "run.finished"
        assert payload["data"]["run_id"] == run_id
        assert payload["data"]["output"] == {"n": 1}
        (logged,) = eventually(
            lambda: [d for d in deliveries(http, sub["id"]) if d["status"] == "succeeded"]
        )
        assert logged["id"] == got.headers["webhook-id"]
        (attempt,) = logged["attempts"]
        assert attempt["status_code"] == 200 and attempt["ok"] and attempt["response"]
        assert http.get(f"/v1/webhook-deliveries/{logged['id']}").json() == logged
        tampered = {**got.headers, "webhook-signature": "v1,AAAA"}
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(sub["secret"]).verify(got.body, tampered)


def test_a_receiver_that_fails_twice_gets_it_on_the_third_attempt(live: Live) -> None:
    with live.client() as http, receiver([500, 503]) as hook:
        sub = subscribe(http, hook.url, events=["run.finished"])
        send(http, n=2)
        eventually(hook.accepted)
        calls = hook.all()
        assert [c.answered for c in calls] == [500, 503, 200]
        assert len({c.headers["webhook-id"] for c in calls}) == 1
        for call in calls:
            verified(sub["secret"], call)
        (logged,) = eventually(
            lambda: [d for d in deliveries(http, sub["id"]) if d["status"] == "succeeded"]
        )
        assert [(a["n"], a["status_code"]) for a in logged["attempts"]] == [
            (0, 500),
            (1, 503),
            (2, 200),
        ]
        assert "receiver says no" in logged["attempts"][0]["error"]


def test_retries_stop_when_the_window_has_passed(live: Live) -> None:
    with live.client() as http, receiver([500] * 50) as hook:
        sub = subscribe(http, hook.url, events=["run.finished"], retry_window_s=1)
        send(http, n=3)
        (logged,) = eventually(
            lambda: [d for d in deliveries(http, sub["id"]) if d["status"] == "failed"]
        )
        assert 2 <= len(logged["attempts"]) <= 6
        assert len(hook.all()) == len(logged["attempts"])


def test_a_client_error_is_not_retried(live: Live) -> None:
    with live.client() as http, receiver([400]) as hook:
        sub = subscribe(http, hook.url, events=["run.finished"])
        send(http, n=4)
        (logged,) = eventually(
            lambda: [d for d in deliveries(http, sub["id"]) if d["status"] == "failed"]
        )
        assert [a["status_code"] for a in logged["attempts"]] == [400]
        assert len(hook.all()) == 1


def test_failed_cancelled_and_scored_runs_with_filters(live: Live) -> None:
    with live.client() as http, receiver() as hook:
        sub = subscribe(
            http,
            hook.url,
            events=["run.failed", "run.cancelled", "score.recorded"],
            function_ids=["work"],
            filter="event.type != 'score.recorded' || event.data.score.value > 0.5",
        )
        failed = send(http, fail=True)
        send(http, score=0.2)  # filtered out by the CEL filter
        scored = send(http, score=0.9)
        waiting = send(http, wait=True)
        http.post("/v1/events", json={"name": "test/other"})  # another function: not delivered
        eventually(lambda: http.get(f"/v1/runs/{waiting}").json()["status"] == "waiting")
        assert http.post(f"/v1/runs/{waiting}/cancel", json={}).status_code in (200, 202)
        got = eventually(lambda: hook.accepted() if len(hook.accepted()) >= 3 else None)
        time.sleep(0.5)  # nothing else arrives (the filtered score, the other function)
        kinds = sorted(
            (verified(sub["secret"], r)["type"], verified(sub["secret"], r)["data"]["run_id"])
            for r in hook.accepted()
        )
        assert len(got) == 3
        assert kinds == sorted(
            [("run.failed", failed), ("score.recorded", scored), ("run.cancelled", waiting)]
        )


def test_manual_redelivery_sends_the_same_message_again(live: Live) -> None:
    with live.client() as http, receiver() as hook:
        sub = subscribe(http, hook.url, events=["run.finished"])
        send(http, n=5)
        (first,) = eventually(hook.accepted)
        delivery_id = first.headers["webhook-id"]
        eventually(lambda: deliveries(http, sub["id"])[0]["status"] == "succeeded")
        again = http.post(f"/v1/webhook-deliveries/{delivery_id}/redeliver")
        assert again.status_code == 202, again.text
        eventually(lambda: len(hook.accepted()) == 2)
        second = hook.accepted()[1]
        assert second.headers["webhook-id"] == delivery_id and second.body == first.body
        logged = eventually(
            lambda: [
                d
                for d in deliveries(http, sub["id"])
                if d["status"] == "succeeded" and len(d["attempts"]) == 2
            ]
        )
        assert [a["series"] for a in logged[0]["attempts"]] == [0, 1]
        assert_error(
            http.post("/v1/webhook-deliveries/msg_nope/redeliver"), 404, "webhook_not_found"
        )


def test_secret_rotation_signs_with_both_during_the_grace_period(live: Live) -> None:
    with live.client() as http, receiver() as hook:
        sub = subscribe(http, hook.url, events=["run.finished"])
        old = sub["secret"]
        rotated = http.post(f"/v1/webhook-subscriptions/{sub['id']}/rotate-secret", json={})
        new = rotated.json()["secret"]
        assert new and new != old
        send(http, n=6)
        (got,) = eventually(hook.accepted)
        assert verified(old, got) == verified(new, got)  # either secret verifies
        http.post(f"/v1/webhook-subscriptions/{sub['id']}/rotate-secret", json={"grace_s": 0})
        send(http, n=7)
        eventually(lambda: len(hook.accepted()) == 2)
        later = hook.accepted()[1]
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            verified(new, later)  # rotated out with no grace


def test_subscriptions_are_workspace_scoped_and_need_admin_keys(live: Live) -> None:
    with live.client("a") as a, live.client("b") as b, live.client("a_read") as ro:
        sub = subscribe(a, "https://hooks.example.com/x", events=["run.failed"])
        assert sub["secret"].startswith("whsec_")
        assert_error(b.get(f"/v1/webhook-subscriptions/{sub['id']}"), 404, "webhook_not_found")
        assert sub["id"] not in [s["id"] for s in b.get("/v1/webhook-subscriptions").json()]
        assert ro.get(f"/v1/webhook-subscriptions/{sub['id']}").json()["secret"] is None
        post = ro.post(
            "/v1/webhook-subscriptions",
            json={"url": "https://x.example.com", "events": ["run.failed"]},
        )
        assert_error(post, 403, "forbidden")
        patched = a.patch(f"/v1/webhook-subscriptions/{sub['id']}", json={"enabled": False})
        assert patched.json()["enabled"] is False
        bad = a.post("/v1/webhook-subscriptions", json={"url": "ftp://x", "events": ["run.failed"]})
        assert_error(bad, 422, "invalid_webhook")
        bad_filter = {"url": "https://x.example.com", "events": ["run.failed"], "filter": "nope("}
        assert_error(a.post("/v1/webhook-subscriptions", json=bad_filter), 422, "invalid_webhook")
        assert a.delete(f"/v1/webhook-subscriptions/{sub['id']}").status_code == 204
        assert_error(a.delete(f"/v1/webhook-subscriptions/{sub['id']}"), 404, "webhook_not_found")


async def _fake_dns(host: str, port: int) -> list[str]:
    """A name that resolves to loopback (a DNS rebinding attempt, in effect)."""
    return ["127.0.0.1"]


def test_private_addresses_need_the_operators_policy(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db_path = tmp_path_factory.mktemp("egress") / "api.db"
    keys = asyncio.run(create_keys(db_path))
    app = build(f"sqlite:///{db_path}", private=False, backoff_s=0.2, resolver=_fake_dns)
    server, stop = start_server(app, require_keys=True)
    try:
        strict = Live(f"http://127.0.0.1:{server.port}", keys, db_path)
        with strict.client() as http, receiver() as hook:
            refused = http.post(
                "/v1/webhook-subscriptions", json={"url": hook.url, "events": ["run.finished"]}
            )
            error = assert_error(refused, 422, "invalid_webhook")
            assert "loopback" in error["message"]
            # A public-looking name that resolves to loopback is refused when delivering.
            named = hook.url.replace("127.0.0.1", "hooks.example.com")
            sub = subscribe(http, named, events=["run.finished"])
            send(http, n=8)
            (logged,) = eventually(
                lambda: [d for d in deliveries(http, sub["id"]) if d["status"] == "failed"]
            )
            assert hook.all() == []
            assert logged["attempts"][0]["status_code"] is None
            assert "resolves to 127.0.0.1" in logged["attempts"][0]["error"]
    finally:
        stop()
