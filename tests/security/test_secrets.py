"""Secrets belong to a workspace: set, listed by name and deleted over the API and the CLI,
encrypted at rest, resolved only for the workspace's own runs, placed only whole, and never
seen again in what a run records. The server's environment is out of reach."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferpipe.cli import main
from inferpipe.core.errors import ConfigurationError
from inferpipe.workflows.secrets import EnvSecrets
from tests.security.conftest import SecureServer, graph
from tests.server.conftest import assert_error, wait_status

VALUE = "hd-tenant-a-0123456789"


def http_node(header: str, node_id: str = "call") -> dict[str, object]:
    return {
        "id": node_id,
        "type": "http",
        "method": "POST",
        "url": "https://api.example.com/hook",
        "headers": {"X-Token": header},
        "body": {"q": "{{ input.q }}"},
    }


def run_graph(
    http: httpx.Client, document: dict[str, object]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    saved = http.post("/v1/workflows", json=document)
    assert saved.status_code in (200, 201), saved.text
    started = http.post("/v1/workflows/attack/runs", json={"input": {"q": "hi"}})
    run_id = started.json()["run_id"]
    run = wait_status(http, run_id, {"completed", "failed"}, timeout_s=30)
    steps = http.get(f"/v1/runs/{run_id}/steps", params={"full": "true"}).json()["items"]
    return run, steps


def test_a_workspace_sets_lists_and_deletes_its_secrets_by_name(secure: SecureServer) -> None:
    with secure.client("a") as a, secure.client("b") as b:
        put = a.put("/v1/secrets/LIST_ME", json={"value": VALUE})
        assert put.status_code == 200, put.text
        assert VALUE not in put.text
        names = [item["name"] for item in a.get("/v1/secrets").json()["items"]]
        assert "LIST_ME" in names
        assert VALUE not in a.get("/v1/secrets").text
        assert "LIST_ME" not in [item["name"] for item in b.get("/v1/secrets").json()["items"]]
        assert_error(b.delete("/v1/secrets/LIST_ME"), 404, "secret_not_found")
        assert a.delete("/v1/secrets/LIST_ME").status_code == 204
        assert_error(a.delete("/v1/secrets/LIST_ME"), 404, "secret_not_found")
        assert_error(a.put("/v1/secrets/bad-name", json={"value": "x"}), 422, "invalid_request")
        assert_error(a.put("/v1/secrets/EMPTY", json={"value": ""}), 422, "invalid_request")


def test_values_are_encrypted_at_rest(secure: SecureServer) -> None:
    with secure.client("a") as a:
        assert a.put("/v1/secrets/AT_REST", json={"value": VALUE}).status_code == 200
    with sqlite3.connect(secure.db_path) as conn:
        (stored,) = conn.execute(
            "SELECT ciphertext FROM workspace_secrets WHERE name = 'AT_REST'"
        ).fetchone()
    assert VALUE not in stored and stored.startswith("gAAAA")  # a Fernet token
    assert VALUE.encode() not in secure.db_path.read_bytes()


def test_a_graph_resolves_its_own_workspaces_secret_and_records_none_of_it(
    secure: SecureServer,
) -> None:
    with secure.client("a") as a:
        assert a.put("/v1/secrets/HELPDESK", json={"value": VALUE}).status_code == 200
        run, steps = run_graph(a, graph([http_node("Bearer {{ secrets.HELPDESK }}")]))
        everything = a.get(f"/v1/runs/{run['id']}", params={"full": "true"}).text
    assert run["status"] == "completed", str(steps)
    assert f"Bearer {VALUE}" in secure.listener.sent()  # the outgoing request carries it
    recorded = json.dumps(steps) + everything
    assert VALUE not in recorded
    assert '"echo"' in recorded  # the listener's echo of the request was recorded, cleaned


def test_another_workspaces_secret_is_not_resolved(secure: SecureServer) -> None:
    with secure.client("a") as a, secure.client("b") as b:
        assert a.put("/v1/secrets/ONLY_A", json={"value": VALUE}).status_code == 200
        run, steps = run_graph(b, graph([http_node("{{ secrets.ONLY_A }}")]))
    assert run["status"] == "failed"
    node = next(s for s in steps if s["name"] == "node-call-http")
    assert node["error"]["code"] == "secret_missing"


def test_the_servers_environment_is_not_a_secret(
    secure: SecureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_DB_PASSWORD", "pg-password-of-the-server")
    with secure.client("b") as b:
        run, _ = run_graph(b, graph([http_node("{{ secrets.SERVER_DB_PASSWORD }}")]))
    assert run["status"] == "failed"
    assert "pg-password-of-the-server" not in secure.listener.sent()
    with pytest.raises(ConfigurationError, match="prefix"):
        EnvSecrets(prefix="")


@pytest.mark.parametrize(
    "template",
    [
        "{{ secrets.TOKEN | reverse }}",
        "{{ secrets.TOKEN[::-1] }}",
        "{{ secrets.TOKEN ~ 'x' }}",
        "{{ secrets.TOKEN.upper() }}",
        "{% if secrets.TOKEN.startswith('a') %}yes{% endif %}",
        "{% for c in secrets.TOKEN %}{{ c }}{% endfor %}",
        "{{ secrets['TO' ~ 'KEN'] }}",
        "{{ secrets }}",
    ],
)
def test_a_secret_is_placed_only_whole(secure: SecureServer, template: str) -> None:
    with secure.client("a") as a:
        answer = a.post("/v1/workflows", json=graph([http_node(template, "leak")]))
    error = assert_error(answer, 422, "graph_invalid")
    assert any("'leak'" in d["message"] for d in error["details"]), error


def test_a_secret_in_the_url_is_refused(secure: SecureServer) -> None:
    node = {"id": "leak", "type": "http", "url": "https://x.example.com/?k={{ secrets.T }}"}
    with secure.client("a") as a:
        answer = a.post("/v1/workflows", json=graph([node]))
    error = assert_error(answer, 422, "graph_invalid")
    assert any("not in the URL" in d["message"] for d in error["details"]), error


def test_the_cli_sets_lists_and_deletes_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("cli-value-42\n"))
    assert main(["secrets", "set", "CLI_TOKEN", "--workspace", "w1", "--database", database]) == 0
    assert main(["secrets", "list", "--workspace", "w1", "--database", database]) == 0
    assert main(["secrets", "list", "--workspace", "w2", "--database", database]) == 0
    out = capsys.readouterr().out
    assert out.count("CLI_TOKEN") == 2  # set, then listed in w1 only
    assert "cli-value-42" not in out
    assert (tmp_path / "secrets.key").stat().st_mode & 0o077 == 0
    assert (
        main(["secrets", "delete", "CLI_TOKEN", "--workspace", "w1", "--database", database]) == 0
    )
    assert (
        main(["secrets", "delete", "CLI_TOKEN", "--workspace", "w1", "--database", database]) == 2
    )
