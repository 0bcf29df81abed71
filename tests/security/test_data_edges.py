"""Validation and data edges: models are checked against a catalogue when a graph is saved;
templates read mapping keys before attributes (and never print a method); integers beyond 64
bits are refused on every path, never silently turned into floats."""

from __future__ import annotations

import pytest

from inferpipe.core import json as jsonc
from inferpipe.llm.providers import ProviderRegistry
from inferpipe.workflows.errors import TemplateError
from inferpipe.workflows.templates import render_template
from inferpipe.workflows.validate import RegistryModelCatalog
from tests.security.conftest import SecureServer, graph
from tests.server.conftest import assert_error, wait_status

BIG = "123456789012345678901234567890"


def llm(model: str, prompt: str = "Hi {{ input.q }}") -> dict[str, object]:
    return {"id": "ask", "type": "llm", "model": model, "prompt": prompt}


@pytest.mark.parametrize("model", ["fake/no-such-model", "openai/anything", "nowhere/gpt-4o"])
def test_an_unknown_model_is_refused_at_save(secure: SecureServer, model: str) -> None:
    with secure.client() as http:
        answer = http.post("/v1/workflows", json=graph([llm(model)]))
    error = assert_error(answer, 422, "graph_invalid")
    (detail,) = error["details"]
    assert detail["field"] == "body.nodes[0].model"
    assert "'ask'" in detail["message"] and "unknown" in detail["message"]


@pytest.mark.parametrize("model", ["fake/echo", "openai/gpt-4o-mini", "openai/gpt-4o-2024-08-06"])
def test_listed_models_are_accepted(secure: SecureServer, model: str) -> None:
    with secure.client() as http:
        answer = http.post("/v1/workflows", json=graph([llm(model)]))
    assert answer.status_code in (200, 201), answer.text


def test_the_operators_allowlist() -> None:
    registry = ProviderRegistry.with_defaults()
    extended = RegistryModelCatalog(registry, allow=("openai/ft:*",))
    assert extended.check("openai/ft:gpt-4o-mini:acme::abc") is None
    assert extended.check("openai/anything") is not None
    only = RegistryModelCatalog(registry, allow=("openai/gpt-4o-mini",), only_allowed=True)
    assert only.check("openai/gpt-4o-mini") is None
    assert "allowlist" in str(only.check("openai/gpt-4o"))


def test_a_template_reads_the_mapping_key_not_the_dict_method(secure: SecureServer) -> None:
    document = graph(
        [llm("fake/echo", "{{ input.items }} {{ input.keys }} {{ input.get }}")],
        input_schema={
            "type": "object",
            "properties": {name: {"type": "string"} for name in ("items", "keys", "get")},
        },
    )
    with secure.client() as http:
        assert http.post("/v1/workflows", json=document).status_code in (200, 201)
        started = http.post(
            "/v1/workflows/attack/runs",
            json={"input": {"items": "I", "keys": "K", "get": "G"}},
        )
        run = wait_status(http, started.json()["run_id"], {"completed", "failed"}, 30)
    assert run["status"] == "completed", run
    assert run["output"] == {"result": "I K G"}


def test_a_missing_key_named_like_a_method_is_an_error_not_an_address() -> None:
    with pytest.raises(TemplateError, match="a method, not a value") as caught:
        render_template("{{ input.items }}", {"input": {"other": 1}})
    assert "0x" not in str(caught.value)


def test_a_big_integer_is_refused_on_every_path(secure: SecureServer) -> None:
    body = f'{{"name": "sec/echo", "data": {{"n": {BIG}}}}}'
    headers = {"Content-Type": "application/json"}
    with secure.client() as http:
        event = http.post("/v1/events", content=body, headers=headers)
        invoke = http.post(
            "/v1/functions/echo/invoke", content=f'{{"data": {{"n": {BIG}}}}}', headers=headers
        )
        floats = http.post("/v1/events", json={"name": "sec/echo", "data": {"x": 1e30}})
        assert floats.status_code == 202, floats.text  # a float is a float
        exact = http.post("/v1/functions/echo/invoke", json={"data": {"n": 2**63 - 1}})
        run = wait_status(http, exact.json()["run_id"], {"completed"})
    assert run["output"] == {"n": 2**63 - 1}  # kept exact up to the range's end
    assert "64-bit" in assert_error(event, 422, "invalid_request")["message"]
    assert "64-bit" in assert_error(invoke, 422, "output_not_serializable")["message"]
    assert jsonc.loads_exact(b'{"n": 9223372036854775807}') == {"n": 2**63 - 1}
    with pytest.raises(jsonc.IntegerOutOfRangeError):
        jsonc.loads_exact(f"[{BIG}]".encode())
