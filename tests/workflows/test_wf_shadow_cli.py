"""`inferpipe shadow create|list|report|enable|disable|promote|rollback` on a real SQLite
file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from inferpipe.cli import main
from tests.workflows import wf_build as b


def test_create_report_promote_and_rollback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = ["--database", f"sqlite:///{tmp_path / 'cli.db'}"]
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(b.document([b.llm("ask")])), encoding="utf-8")
    assert main(["workflows", "save", str(graph), *database]) == 0
    create = ["shadow", "create", "g", "--set", "ask.model=fake/summarize", "--rate", "0.25"]
    assert main([*create, *database]) == 0
    out = capsys.readouterr().out
    found = re.search(r"shadow policy (\S+) for g: candidate the run's version \+ 1 override", out)
    assert found is not None, out
    policy_id = found[1]
    assert "rate 0.25, on" in out
    assert main(["shadow", "list", *database]) == 0
    assert policy_id in capsys.readouterr().out
    assert main(["shadow", "disable", policy_id, *database]) == 0
    assert "rate 0.25, off" in capsys.readouterr().out
    assert main(["shadow", "report", policy_id, "--json", *database]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["shadow_runs"] == 0 and report["match_rate"] is None
    assert main(["shadow", "promote", policy_id, *database]) == 0
    assert "g: version 2 is current (was 1)" in capsys.readouterr().out
    assert main(["shadow", "rollback", policy_id, *database]) == 0
    assert "g: version 1 is current again" in capsys.readouterr().out
    assert main(["shadow", "rollback", policy_id, *database]) == 2
    assert "rolled back already" in capsys.readouterr().err


def test_bad_input_is_refused_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = ["--database", f"sqlite:///{tmp_path / 'cli.db'}"]
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(b.document([b.llm("ask")])), encoding="utf-8")
    assert main(["workflows", "save", str(graph), *database]) == 0
    cases = [
        (["--set", "ask.model"], "write <node id>.<field>=<value>"),
        (["--set", "nobody.model=fake/echo"], "no node 'nobody'"),
        (["--version", "1", "--rate", "3"], "within [0, 1]"),
        ([], "name a candidate"),
    ]
    for extra, message in cases:
        assert main(["shadow", "create", "g", *extra, *database]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert main(["shadow", "create", "ghost", "--version", "1", *database]) == 2
    assert "graph 'ghost'" in capsys.readouterr().err
    assert main(["shadow", "report", "nope", *database]) == 2
    assert "no shadow policy with id 'nope'" in capsys.readouterr().err
