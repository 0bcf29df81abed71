"""Incoming webhooks over real HTTP: valid, tampered, stale and replayed deliveries, the three
signing schemes, dedupe by message id, transforms, and bad bodies."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from inferpipe.server import retention
from inferpipe.store.sqlite import SQLiteStore
from inferpipe.webhooks.signing import new_secret
from tests.server.conftest import assert_error
from tests.webhooks.conftest import Live


def _name() -> str:
    return f"src-{uuid.uuid4().hex[:10]}"


def make_source(http: httpx.Client, **spec: Any) -> tuple[str, str]:
    name = _name()
    response = http.put(f"/v1/webhook-sources/{name}", json={"scheme": "standard", **spec})
    assert response.status_code == 200, response.text
    info = response.json()
    return name, info["secret"] or spec["secret"]


def standard_headers(secret: str, body: bytes, msg_id: str, ts_s: int) -> dict[str, str]:
    signature = standardwebhooks.Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(ts_s, tz=UTC), body
    )
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts_s),
        "webhook-signature": signature,
    }


def events_named(http: httpx.Client, name: str) -> list[dict[str, Any]]:
    return list(http.get("/v1/events", params={"name": name, "limit": 100}).json()["items"])


def test_a_valid_standard_webhook_becomes_an_event_before_the_answer(live: Live) -> None:
    with live.client() as http:
        name, secret = make_source(http, event_name="helpdesk/ticket.created")
        body = json.dumps({"ticket": 42}).encode()
        msg_id = f"msg_{uuid.uuid4().hex}"
        sent = http.post(
            f"/v1/webhooks/{name}?workspace=ws-a",
            content=body,
            headers={
                "authorization": "",
                **standard_headers(secret, body, msg_id, int(time.time())),
            },
        )
        assert sent.status_code == 202, sent.text
        answer = sent.json()
        assert answer["duplicate"] is False
        assert answer["event_ids"] == [f"webhook:{name}:{msg_id}"]
        assert len(answer["runs_created"]) == 1
        event = http.get(f"/v1/events/{answer['event_ids'][0]}").json()
        assert event["name"] == "helpdesk/ticket.created"
        assert event["data"] == {"ticket": 42}


def _post(
    live: Live, name: str, body: bytes, headers: dict[str, str], ws: str = "ws-a"
) -> httpx.Response:
    with httpx.Client(base_url=live.base_url, timeout=10.0) as anonymous:
        return anonymous.post(f"/v1/webhooks/{name}?workspace={ws}", content=body, headers=headers)


def test_tampered_stale_and_replayed_requests_are_refused_and_record_nothing(live: Live) -> None:
    with live.client() as http:
        event_name = f"test/{uuid.uuid4().hex}"
        name, secret = make_source(http, event_name=event_name)
        body = json.dumps({"amount": 10}).encode()
        now = int(time.time())
        headers = standard_headers(secret, body, "msg_tamper", now)
        tampered = _post(live, name, json.dumps({"amount": 10_000}).encode(), headers)
        assert_error(tampered, 401, "webhook_signature_invalid")
        wrong_key = standard_headers(new_secret(), body, "msg_wrong", now)
        assert_error(_post(live, name, body, wrong_key), 401, "webhook_signature_invalid")
        stale = standard_headers(secret, body, "msg_stale", now - 600)
        error = assert_error(_post(live, name, body, stale), 401, "webhook_signature_invalid")
        assert "tolerance" in error["message"]
        future = standard_headers(secret, body, "msg_future", now + 600)
        assert_error(_post(live, name, body, future), 401, "webhook_signature_invalid")
        missing = {"content-type": "application/json", "webhook-id": "msg_missing"}
        assert_error(_post(live, name, body, missing), 401, "webhook_signature_invalid")
        assert events_named(http, event_name) == []

        valid = standard_headers(secret, body, "msg_once", now)
        assert _post(live, name, body, valid).status_code == 202
        replayed = _post(live, name, body, valid)
        assert_error(replayed, 401, "webhook_replayed")
        assert len(events_named(http, event_name)) == 1


def test_a_senders_retry_of_the_same_message_is_a_duplicate_without_a_second_event(
    live: Live,
) -> None:
    with live.client() as http:
        event_name = f"test/{uuid.uuid4().hex}"
        name, secret = make_source(http, event_name=event_name)
        body = b'{"n": 1}'
        now = int(time.time())
        first = _post(live, name, body, standard_headers(secret, body, "msg_retry", now - 5))
        assert first.status_code == 202
        retry = _post(live, name, body, standard_headers(secret, body, "msg_retry", now))
        assert retry.status_code == 200, retry.text
        assert retry.json()["duplicate"] is True and retry.json()["event_ids"] == []
        assert len(events_named(http, event_name)) == 1


def test_a_tolerance_window_of_the_source_applies(live: Live) -> None:
    with live.client() as http:
        name, secret = make_source(http, tolerance_s=3600)
        body = b"{}"
        old = standard_headers(secret, body, "msg_old", int(time.time()) - 1800)
        assert _post(live, name, body, old).status_code == 202


def test_github_signatures(live: Live) -> None:
    with live.client() as http:
        event_name = f"test/{uuid.uuid4().hex}"
        name = _name()
        made = http.put(
            f"/v1/webhook-sources/{name}",
            json={"scheme": "github", "secret": "gh-secret", "event_name": event_name},
        )
        assert made.status_code == 200 and made.json()["secret"] is None
        body = b'{"action": "opened"}'
        sig = "sha256=" + hmac.new(b"gh-secret", body, hashlib.sha256).hexdigest()
        headers = {
            "content-type": "application/json",
            "x-hub-signature-256": sig,
            "x-github-delivery": "d-1",
        }
        assert _post(live, name, body, headers).status_code == 202
        assert _post(live, name, body, headers).json()["duplicate"] is True
        bad = {**headers, "x-github-delivery": "d-2", "x-hub-signature-256": "sha256=" + "0" * 64}
        assert_error(_post(live, name, body, bad), 401, "webhook_signature_invalid")
        assert [e["data"] for e in events_named(http, event_name)] == [{"action": "opened"}]


def test_a_github_replay_after_the_retention_purge_is_still_a_duplicate(live: Live) -> None:
    """GitHub signs no timestamp: the receipt alone tells a replay from a new request, so
    retention keeps it however old it is."""
    with live.client() as http:
        event_name = f"test/{uuid.uuid4().hex}"
        name = _name()
        made = http.put(
            f"/v1/webhook-sources/{name}",
            json={"scheme": "github", "secret": "gh-secret", "event_name": event_name},
        )
        assert made.status_code == 200
        body = b'{"action": "closed"}'
        headers = {
            "content-type": "application/json",
            "x-hub-signature-256": "sha256="
            + hmac.new(b"gh-secret", body, hashlib.sha256).hexdigest(),
            "x-github-delivery": "d-purged",
        }
        assert _post(live, name, body, headers).status_code == 202
        later = int(time.time() * 1000) + 400 * retention.DAY_MS
        asyncio.run(_purge(live.db_path, "ws-a", later))
        assert events_named(http, event_name) == []  # the event itself is gone with retention
        replayed = _post(live, name, body, headers)
        assert replayed.status_code == 200 and replayed.json()["duplicate"] is True
        assert events_named(http, event_name) == []


async def _purge(db_path: Path, workspace: str, now_ms: int) -> None:
    store = SQLiteStore(db_path, workspace)
    await store.open()
    try:
        await retention.purge_older_than(store, 30, now_ms=now_ms)
    finally:
        await store.close()


def stripe_header(secret: str, body: bytes, ts_s: int) -> str:
    signed = f"{ts_s}.".encode() + body
    return f"t={ts_s},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def test_stripe_signatures_with_tolerance_and_replay(live: Live) -> None:
    with live.client() as http:
        event_name = f"test/{uuid.uuid4().hex}"
        name = _name()
        secret = "whsec_stripe_test"
        made = http.put(
            f"/v1/webhook-sources/{name}",
            json={"scheme": "stripe", "secret": secret, "event_name": event_name},
        )
        assert made.status_code == 200
        body = b'{"id": "evt_1", "type": "invoice.paid"}'
        now = int(time.time())
        headers = {
            "content-type": "application/json",
            "stripe-signature": stripe_header(secret, body, now),
        }
        ok = _post(live, name, body, headers)
        assert ok.status_code == 202 and ok.json()["message_id"] == "evt_1"
        assert_error(_post(live, name, body, headers), 401, "webhook_replayed")
        stale = {"stripe-signature": stripe_header(secret, b'{"id": "evt_2"}', now - 3600)}
        assert_error(_post(live, name, b'{"id": "evt_2"}', stale), 401, "webhook_signature_invalid")
        assert len(events_named(http, event_name)) == 1


def test_a_cel_transform_makes_several_events(live: Live) -> None:
    with live.client() as http:
        prefix = f"t{uuid.uuid4().hex[:8]}"
        source = (
            f'body.items.map(i, {{"name": "{prefix}/item", "data": {{"sku": i.sku, '
            '"kind": headers["x-kind"]}})'
        )
        name, secret = make_source(http, transform={"kind": "cel", "source": source})
        body = json.dumps({"items": [{"sku": "a"}, {"sku": "b"}]}).encode()
        headers = {**standard_headers(secret, body, "msg_many", int(time.time())), "x-kind": "k"}
        answer = _post(live, name, body, headers).json()
        assert answer["event_ids"] == [f"webhook:{name}:msg_many:0", f"webhook:{name}:msg_many:1"]
        found = sorted(e["data"]["sku"] for e in events_named(http, f"{prefix}/item"))
        assert found == ["a", "b"]


def test_a_jinja_transform_renders_the_event(live: Live) -> None:
    with live.client() as http:
        event_name = f"test/{uuid.uuid4().hex}"
        template = (
            '{"name": "' + event_name + '", "data": {"who": {{ body.user | tojson }}}, '
            '"id": "custom-{{ message_id }}"}'
        )
        name, secret = make_source(http, transform={"kind": "jinja", "source": template})
        body = b'{"user": "ada"}'
        answer = _post(live, name, body, standard_headers(secret, body, "m1", int(time.time())))
        assert answer.status_code == 202, answer.text
        assert answer.json()["event_ids"] == ["custom-m1"]
        assert [e["data"] for e in events_named(http, event_name)] == [{"who": "ada"}]


def test_a_transform_that_fails_answers_422_and_records_nothing(live: Live) -> None:
    with live.client() as http:
        name, secret = make_source(http, transform={"kind": "cel", "source": "body.missing.x"})
        body = b'{"a": 1}'
        failed = _post(live, name, body, standard_headers(secret, body, "m-fail", int(time.time())))
        assert_error(failed, 422, "webhook_transform_failed")
        retried = _post(
            live, name, body, standard_headers(secret, body, "m-fail", int(time.time()))
        )
        assert retried.status_code == 422  # not taken as a duplicate: nothing was recorded


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "webhook_malformed"),
        (b"", 400, "webhook_malformed"),
        (b'{"big": "' + b"x" * (2 * 1024 * 1024) + b'"}', 413, "payload_too_large"),
    ],
)
def test_malformed_and_oversized_bodies_get_a_clear_4xx(
    live: Live, body: bytes, status: int, code: str
) -> None:
    with live.client() as http:
        name, secret = make_source(http)
    headers = standard_headers(secret, body, f"m-{uuid.uuid4().hex}", int(time.time()))
    assert_error(_post(live, name, body, headers), status, code)


def test_sources_are_workspace_scoped_and_need_admin_keys(live: Live) -> None:
    with live.client("a") as http_a, live.client("b") as http_b, live.client("a_read") as ro:
        name, secret = make_source(http_a)
        assert_error(http_b.get(f"/v1/webhook-sources/{name}"), 404, "webhook_not_found")
        assert name not in [s["name"] for s in http_b.get("/v1/webhook-sources").json()]
        body = b"{}"
        headers = standard_headers(secret, body, "m-ws", int(time.time()))
        assert_error(_post(live, name, body, headers, ws="ws-b"), 404, "webhook_not_found")
        assert_error(
            ro.put(f"/v1/webhook-sources/{_name()}", json={"scheme": "standard"}), 403, "forbidden"
        )
        listed = ro.get(f"/v1/webhook-sources/{name}").json()
        assert listed["secret"] is None and listed["path"] == f"/v1/webhooks/{name}"
        assert ro.delete(f"/v1/webhook-sources/{name}").status_code == 403
        assert http_a.delete(f"/v1/webhook-sources/{name}").status_code == 204
        assert_error(_post(live, name, body, headers), 404, "webhook_not_found")


def test_bad_source_definitions_are_refused(live: Live) -> None:
    with live.client() as http:
        cases = [
            {"scheme": "github"},  # GitHub's secret is the sender's
            {"scheme": "standard", "secret": "not base64 !!"},
            {"scheme": "standard", "transform": {"kind": "cel", "source": "nope("}},
            {"scheme": "standard", "transform": {"kind": "jinja", "source": "{% if %}"}},
        ]
        for spec in cases:
            answer = http.put(f"/v1/webhook-sources/{_name()}", json=spec)
            assert answer.status_code == 422, (spec, answer.text)
        assert (
            http.put("/v1/webhook-sources/Bad Name", json={"scheme": "standard"}).status_code == 422
        )


def test_outgoing_routes_answer_not_enabled_without_delivery(live: Live) -> None:
    with live.client() as http:
        assert_error(http.get("/v1/webhook-subscriptions"), 404, "webhooks_not_enabled")
        made = http.post(
            "/v1/webhook-subscriptions",
            json={"url": "https://x.example.com", "events": ["run.failed"]},
        )
        assert_error(made, 404, "webhooks_not_enabled")


def test_an_unknown_workspace_builds_no_engine(live: Live) -> None:
    body = b"{}"
    headers = standard_headers(new_secret(), body, "m-x", int(time.time()))
    for n in range(3):
        answer = _post(live, "nope", body, headers, ws=f"ghost-{n}")
        assert_error(answer, 404, "webhook_not_found")
    assert not {"ghost-0", "ghost-1", "ghost-2"} & live.workspaces_served()
