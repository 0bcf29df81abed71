"""`inferpipe workflows validate|save|versions|diff|rollback|run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferpipe.cli import main
from tests.workflows import wf_build as b

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


def write(path: Path, document: dict[str, object]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def database(tmp_path: Path) -> list[str]:
    return ["--database", f"sqlite:///{tmp_path / 'cli.db'}"]


def test_validate_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflows", "validate", str(EXAMPLES / "ticket_triage.json")]) == 0
    assert "graph 'ticket-triage' is valid: 4 nodes" in capsys.readouterr().out
    bad = b.document([b.llm("a", "{{ nodes.b.output }}"), b.llm("b", "{{ nodes.a.output }}")])
    bad["nodes"].append(b.transform("c", "nodes.zz.output +"))
    assert main(["workflows", "validate", str(write(tmp_path / "bad.json", bad))]) == 2
    err = capsys.readouterr().err
    assert "[cycle]" in err and "[invalid_expression]" in err and "Traceback" not in err


def test_save_versions_diff_rollback(
    tmp_path: Path, database: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = write(tmp_path / "v1.json", b.document([b.llm("ask")]))
    v2 = write(tmp_path / "v2.json", b.document([b.llm("ask", "Bonjour {{ input.q }}")]))
    assert main(["workflows", "save", str(v1), *database]) == 0
    assert main(["workflows", "save", str(v1), *database]) == 0
    assert main(["workflows", "save", str(v2), *database]) == 0
    out = capsys.readouterr().out
    assert "g: saved as version 1" in out and "unchanged: current version is 1" in out
    assert "g: saved as version 2" in out
    assert main(["workflows", "diff", "g", *database]) == 0
    assert "~ node ask: prompt 'Hello {{ input.q }}' -> 'Bonjour {{ input.q }}'" in (
        capsys.readouterr().out
    )
    assert main(["workflows", "diff", str(v1), *database]) == 0
    assert "version 2 -> ?" in capsys.readouterr().out
    assert main(["workflows", "rollback", "g", "1", *database]) == 0
    assert main(["workflows", "versions", "g", *database]) == 0
    out = capsys.readouterr().out
    assert "g: version 1 is current" in out
    assert main(["workflows", "versions", "nope", *database]) == 2
    assert "graph 'nope' is not saved" in capsys.readouterr().err


def test_run_a_file_prints_output_tokens_and_cost(
    database: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    ticket = {"ticket_id": "t1", "subject": "Export?", "body": "Just a question."}
    argv = ["workflows", "run", str(EXAMPLES / "ticket_triage.json"), "--input", json.dumps(ticket)]
    assert main([*argv, *database]) == 0
    out = capsys.readouterr().out
    assert ": completed" in out and "node-classify-llm" in out
    assert '"category": "question"' in out and "tokens: " in out
    assert main(["workflows", "run", "ticket-triage", "--input", "[1]", *database]) == 2
    assert "--input must be a JSON object" in capsys.readouterr().err
