"""Private addresses are the operator's to open: a tenant's `allow_private` beyond the policy is
refused when the graph is saved (422 naming the node), and again when a node runs."""

from __future__ import annotations

import httpx
import pytest

import inferpipe as ip
from inferpipe.net.egress import PRIVATE_EGRESS_ENV, EgressPolicy
from inferpipe.net.http import HttpSettings
from inferpipe.testing import Harness
from inferpipe.workflows.errors import GraphInvalidError
from inferpipe.workflows.runtime import WorkflowRuntime
from tests.security.conftest import SecureServer, graph, resolve
from tests.server.conftest import assert_error

METADATA = {
    "id": "steal",
    "type": "http",
    "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "allow_private": True,
}


def test_a_tenants_allow_private_is_refused_at_save_naming_the_node(
    secure: SecureServer,
) -> None:
    with secure.client("a") as a:
        answer = a.post("/v1/workflows", json=graph([METADATA]))
    error = assert_error(answer, 422, "graph_invalid")
    (detail,) = error["details"]
    assert detail["field"] == "body.nodes[0].allow_private"
    assert "'steal'" in detail["message"] and "egress policy" in detail["message"]


def test_without_allow_private_private_targets_are_refused(secure: SecureServer) -> None:
    node = {"id": "peek", "type": "http", "url": "http://127.0.0.1:6379/"}
    with secure.client("a") as a:
        answer = a.post("/v1/workflows", json=graph([node]))
    error = assert_error(answer, 422, "graph_invalid")
    assert "loopback" in error["details"][0]["message"]


def test_the_policy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRIVATE_EGRESS_ENV, raising=False)
    assert not EgressPolicy.from_env().allows_private("any")
    monkeypatch.setenv(PRIVATE_EGRESS_ENV, "ops, tools")
    policy = EgressPolicy.from_env()
    assert policy.allows_private("ops") and not policy.allows_private("tenant-a")
    monkeypatch.setenv(PRIVATE_EGRESS_ENV, "*")
    assert EgressPolicy.from_env().allows_private("tenant-a")


async def test_a_workspace_the_operator_allows_may_and_others_may_not() -> None:
    sent: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200, json={"ok": True})

    app = ip.App("egress")
    node = {
        "id": "inside",
        "type": "http",
        "url": "http://billing.internal/x",
        "allow_private": True,
    }
    document = graph([node])
    policy = EgressPolicy(private_workspaces=frozenset({app.workspace}))
    http = HttpSettings(transport=httpx.MockTransport(handle), resolver=resolve)
    rt = WorkflowRuntime(app, retries=0, http=http, egress=policy)
    async with Harness(app) as h:
        with pytest.raises(GraphInvalidError, match="egress policy"):
            await rt.save(document, workspace="tenant-x")
        await rt.save(document)
        run = await h.settle(await rt.run("attack", {}))
        assert run is not None and run.status is ip.RunStatus.COMPLETED, run
        # The operator closes it again: graphs saved before are refused when they run.
        rt.egress = EgressPolicy()
        rt._services.egress = rt.egress
        again = await h.settle(await rt.run("attack", {}))
    assert again is not None and again.status is ip.RunStatus.FAILED
    assert "10.0.0.7" in str(again.error)
    assert sent == ["http://10.0.0.7/x"]
