"""Secrets are redacted before they are stored: step input and output, run input and output,
logs; checked over the API, in the raw database file, and on the engine directly."""

from __future__ import annotations

import sqlite3

import httpx

import inferpipe as ip
from inferpipe.core.redaction import REDACTED, redact, redact_event
from inferpipe.engine.journal import Limits
from inferpipe.testing import Harness
from tests.server.conftest import LiveServer

SECRETS = (
    "sk-live-input",
    "Bearer in",
    "out-pw",
    "log-token",
    "run-output-token",
    "event-secret",
    "cs",
)


def test_secrets_never_reach_the_api_or_the_database(
    live: LiveServer, http_a: httpx.Client
) -> None:
    sent = http_a.post(
        "/v1/events",
        json={"name": "test/secrets", "data": {"password": "event-secret", "user": "ada"}},
    ).json()
    (run_id,) = sent["runs_created"]
    run = live.wait_status(http_a, run_id, {"completed"})
    assert run["output"] == {"result": {"password": REDACTED, "ok": 1}, "access_token": REDACTED}
    assert run["input"][0]["data"] == {"password": REDACTED, "user": "ada"}

    (step,) = http_a.get(f"/v1/runs/{run_id}/steps").json()["items"]
    assert step["input"] == {
        "args": [{"api_key": REDACTED, "headers": {"Authorization": REDACTED}, "n": 1}],
        "kwargs": {},
    }
    assert step["output"] == {"password": REDACTED, "ok": 1}
    (log,) = http_a.get(f"/v1/runs/{run_id}/logs").json()["items"]
    assert log["meta"] == {"token": REDACTED, "nested": {"Client_Secret": REDACTED}, "ok": True}
    event = http_a.get(f"/v1/events/{sent['ids'][0]}").json()
    assert event["data"]["password"] == REDACTED

    # nothing of the secrets is in the database file's rows either
    with sqlite3.connect(live.db_path) as conn:
        rows = [
            *conn.execute("SELECT input, output FROM steps WHERE run_id = ?", (run_id,)),
            *conn.execute("SELECT input, output FROM runs WHERE id = ?", (run_id,)),
            *conn.execute("SELECT meta, message FROM logs WHERE run_id = ?", (run_id,)),
            *conn.execute("SELECT body, name FROM events WHERE id = ?", (sent["ids"][0],)),
        ]
    dump = b" ".join(v if isinstance(v, bytes) else str(v).encode() for row in rows for v in row)
    for secret in SECRETS[:-1]:  # "cs" is too short to search for meaningfully
        assert secret.encode() not in dump, secret


async def test_configured_keys_apply_in_the_engine() -> None:
    app = ip.App("redact", limits=Limits(redact_keys=("ssn",)))

    @app.function(id="f")
    async def f(ctx: ip.Context) -> object:
        out = await ctx.step.run("s", lambda d: {"ssn": d["ssn"], "token": "kept"}, {"ssn": "1"})
        ctx.logger.info("m", SSN="2")
        return {"echo": out, "input_ssn": ctx.event.data["ssn"]}

    async with Harness(app) as h:
        run_id = await h.invoke("f", {"ssn": "123"})
        run = await h.settle(run_id)
        assert run is not None
        # the function sees the redacted value too: replays must see what the first run saw
        assert run.output == {"echo": {"ssn": REDACTED, "token": "kept"}, "input_ssn": REDACTED}
        (step,) = await h.steps(run_id)
        assert step.input == {"args": [{"ssn": REDACTED}], "kwargs": {}}
        (log,) = await h.logs(run_id)
        assert log.meta == {"SSN": REDACTED}


async def test_plain_arguments_named_as_secrets_are_redacted() -> None:
    async def call(n: int, api_key: str, note: str) -> int:
        return n

    async def f(ctx: ip.Context) -> object:
        await ctx.step.run("keyed", call, 1, api_key="sk-plain", note="n")
        return await ctx.step.run("plain", call, 2, "sk-positional", note="n")

    app = ip.App("redact")
    app.function(id="f")(f)
    async with Harness(app) as h:
        run_id = await h.invoke("f")
        assert (await h.settle(run_id)) is not None
        keyed, plain = sorted(await h.steps(run_id), key=lambda s: s.seq)
        assert keyed.input == {"args": [1], "kwargs": {"api_key": REDACTED, "note": "n"}}
        assert plain.input == {"args": [2, "sk-positional"], "kwargs": {"note": "n"}}

    app = ip.App("redact", limits=Limits(redact_keys=("kwargs",)))
    app.function(id="f")(f)
    async with Harness(app) as h:
        run_id = await h.invoke("f")
        assert (await h.settle(run_id)) is not None
        keyed, plain = sorted(await h.steps(run_id), key=lambda s: s.seq)
        assert keyed.input == {"args": [1], "kwargs": REDACTED}
        assert plain.input == {"args": [2, "sk-positional"], "kwargs": REDACTED}


def test_redact_is_case_insensitive_nested_and_pure() -> None:
    data = {"Outer": [{"API_KEY": "a", "apiKey": "b", "max_tokens": 3}], "Password": ("p",)}
    assert redact(data) == {
        "Outer": [{"API_KEY": REDACTED, "apiKey": REDACTED, "max_tokens": 3}],
        "Password": REDACTED,
    }
    assert data["Password"] == ("p",)
    assert redact({"token": "t"}, ()) == {"token": "t"}
    event = redact_event(ip.Event("e", {"secret": "s"}, user={"authorization": "x"}, id="1"))
    assert event.data == {"secret": REDACTED} and event.user == {"authorization": REDACTED}
    assert event.id == "1"
