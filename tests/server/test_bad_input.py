"""Bad input answers the right status in our error shape, naming the problem; never a 500."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.conftest import MAX_BODY_BYTES, LiveServer, assert_error


def test_malformed_json(http_a: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    for path in ("/v1/events", "/v1/functions/greet/invoke", "/v1/runs/x/rerun"):
        response = http_a.post(path, content=b'{"name": ', headers=headers)
        assert_error(response, 400, "invalid_json")


def test_missing_fields_and_wrong_types_name_the_field(http_a: httpx.Client) -> None:
    missing = assert_error(http_a.post("/v1/events", json={"data": {}}), 422, "invalid_request")
    assert missing["details"] == [{"field": "body.name", "message": "Field required"}]

    wrong = http_a.post("/v1/events", json=[{"name": "ok"}, {"name": "x", "data": [1], "ts": "1"}])
    fields = {d["field"] for d in assert_error(wrong, 422, "invalid_request")["details"]}
    assert fields == {"body[1].data", "body[1].ts"}

    extra = http_a.post("/v1/events", json={"name": "x", "colour": "red"})
    assert assert_error(extra, 422, "invalid_request")["details"][0]["field"] == "body.colour"

    bodies: list[Any] = ["a string", 3, None, []]
    for body in bodies:
        assert_error(http_a.post("/v1/events", json=body), 422, "invalid_request")

    invoke = http_a.post("/v1/functions/greet/invoke", json={"data": "not an object"})
    assert assert_error(invoke, 422, "invalid_request")["details"][0]["field"] == "body.data"
    rerun = http_a.post("/v1/runs/x/rerun", json={"from": "middle"})
    assert assert_error(rerun, 422, "invalid_request")["details"][0]["field"] == "body.from"
    no_type = http_a.post("/v1/events", content=b'{"name": "x"}')
    assert_error(no_type, 422, "invalid_request")


def test_bad_query_parameters(http_a: httpx.Client) -> None:
    limit = assert_error(http_a.get("/v1/runs", params={"limit": "abc"}), 422, "invalid_request")
    assert limit["details"][0]["field"] == "query.limit"
    assert_error(http_a.get("/v1/runs", params={"limit": 0}), 422, "invalid_request")
    assert_error(http_a.get("/v1/runs", params={"status": "exploded"}), 422, "invalid_request")
    since = assert_error(
        http_a.get("/v1/events", params={"since": "yesterday"}), 422, "invalid_request"
    )
    assert since["details"][0]["field"] == "query.since"
    for cursor in ("garbage", "ZXZlbnRzOjEw"):  # the second is an events cursor, used on runs
        bad = http_a.get("/v1/runs", params={"cursor": cursor})
        assert assert_error(bad, 422, "invalid_request")["details"][0]["field"] == "query.cursor"


def test_unknown_ids_and_routes(http_a: httpx.Client) -> None:
    assert_error(http_a.get("/v1/runs/01NOPE"), 404, "run_not_found")
    assert_error(http_a.get("/v1/runs/01NOPE/steps"), 404, "run_not_found")
    assert_error(http_a.get("/v1/events/nope"), 404, "event_not_found")
    missing_fn = http_a.post("/v1/functions/nope/invoke", json={})
    assert "nope" in str(assert_error(missing_fn, 404, "unknown_function")["message"])
    assert_error(http_a.get("/v1/nothing-here"), 404, "not_found")
    assert_error(http_a.delete("/v1/runs"), 405, "method_not_allowed")


def test_oversized_bodies_answer_413(http_a: httpx.Client) -> None:
    big = {"name": "test/greet", "data": {"blob": "x" * MAX_BODY_BYTES}}
    assert_error(http_a.post("/v1/events", json=big), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 8192 + 2):
            yield b"x" * 8192

    chunked = http_a.post(
        "/v1/events", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(chunked, 413, "payload_too_large")


def test_huge_integers_are_refused_not_crashing(http_a: httpx.Client) -> None:
    content = b'{"data": {"n": 123456789012345678901234567890}}'
    response = http_a.post(
        "/v1/functions/greet/invoke",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 422, "output_not_serializable")


def test_invalid_content_length(live: LiveServer) -> None:
    host, port = live.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n"
            + f"Authorization: Bearer {live.keys['a']}\r\n\r\n".encode()
        )
        head = conn.recv(4096).split(b"\r\n", 1)[0]
    assert head.split()[1] in (b"400", b"422")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_nothing_answers_500(http_a: httpx.Client, method: str) -> None:
    for path in ("/v1/runs/%00", "/v1/events/%ff%fe", "/v1/runs/" + "r" * 5000):
        response = http_a.request(method, path)
        assert response.status_code < 500, (path, response.text)


def test_a_query_parameter_given_twice_is_refused(http_a: httpx.Client) -> None:
    for path, query in (
        ("/v1/events", [("name", "a"), ("name", "b")]),
        ("/v1/runs", [("status", "completed"), ("limit", "5"), ("status", "failed")]),
    ):
        problem = assert_error(http_a.get(path, params=query), 422, "invalid_request")
        assert problem["details"][0]["field"] == f"query.{query[0][0]}"
    assert http_a.get("/v1/runs", params=[("status", "completed"), ("limit", "5")]).is_success
