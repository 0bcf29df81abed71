"""Property-based tests over the OpenAPI spec (schemathesis) against the real server.

For every operation and both generation modes (valid data, and data that breaks the schema),
schemathesis generates requests and checks that none answers 5xx, that every answer has a
documented status and content type and a body that matches the documented schema, and that
invalid data is rejected. A few examples per operation keep the whole run within seconds.

The spec is built offline at collection time (the same `create_api` the server runs) so that
each operation is its own test; the requests go to the live server. Schemathesis' own pytest
plugin (`from_fixture`) is not used: it reads a private attribute pytest 9 no longer has.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from inferpipe.server.api import create_api
from tests.server.conftest import LiveServer, build_app

MAX_EXAMPLES = int(os.environ.get("INFERPIPE_FUZZ_EXAMPLES", "10"))
"""Examples per operation and mode (hypothesis shrinks what fails, so few are enough; raise it
with $INFERPIPE_FUZZ_EXAMPLES for a deeper run)."""

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]

SPEC = schemathesis.openapi.from_dict(
    create_api(build_app("sqlite:///:memory:"), require_keys=True).openapi()
)
OPERATIONS: list[Any] = [result.ok() for result in SPEC.get_all_operations()]  # type: ignore[union-attr]


def _string_query_only(operation: Any) -> bool:
    """True when every input is a query parameter typed string: any generated "invalid" value
    reaches the server as text that the schema admits (1.0 arrives as "1.0", an empty list is
    dropped by the client), so the rejection check would report false failures there."""
    if len(operation.path_parameters) or len(operation.body):
        return False

    def textual(schema: dict[str, Any]) -> bool:
        options = schema.get("anyOf", [schema])
        return all(option.get("type") in ("string", "null") for option in options)

    return all(textual(param.definition.get("schema", {})) for param in operation.query)


def _cases() -> list[Any]:
    """Each operation in positive mode, and in negative mode when it takes any input (an
    operation without parameters or body has no invalid request to generate)."""
    cases = []
    for op in OPERATIONS:
        cases.append(pytest.param(op, GenerationMode.POSITIVE, id=f"{op.label}-positive"))
        if len(op.path_parameters) + len(op.query) + len(op.body):
            cases.append(pytest.param(op, GenerationMode.NEGATIVE, id=f"{op.label}-negative"))
    return cases


@pytest.mark.parametrize(("operation", "mode"), _cases())
def test_api_conforms_to_its_spec(live: LiveServer, operation: Any, mode: GenerationMode) -> None:
    headers = {"Authorization": f"Bearer {live.keys['fuzz']}"}  # own workspace, no rate limit

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: Any) -> None:
        case.call_and_validate(base_url=live.base_url, headers=headers, checks=used)

    used = CHECKS
    if mode is GenerationMode.NEGATIVE and _string_query_only(operation):
        used = [c for c in CHECKS if c is not checks.negative_data_rejection]

    check()


def test_every_route_is_covered() -> None:
    labels = {op.label for op in OPERATIONS}
    assert len(labels) == 68, sorted(labels)
