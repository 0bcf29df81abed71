from __future__ import annotations

import json
from pathlib import Path

from inferpipe.workflows import spec
from inferpipe.workflows.versions import diff_graphs

TRIAGE = Path(__file__).resolve().parents[2] / "examples" / "workflows" / "ticket_triage.json"


def versions() -> tuple[spec.Graph, spec.Graph]:
    document = json.loads(TRIAGE.read_text(encoding="utf-8"))
    old = spec.parse_graph({**document, "version": 3})
    changed = json.loads(json.dumps(document))
    changed["version"] = 4
    changed["nodes"][0]["model"] = "openai/gpt-4o-mini"
    changed["nodes"][3]["headers"]["X-Source"] = "inferpipe"
    changed["nodes"] = [n for n in changed["nodes"] if n["id"] != "reply"]
    changed["nodes"].append({"id": "notify", "type": "transform", "expression": "'sent'"})
    changed["nodes"][1]["else"] = []
    changed["edges"].append({"source": "escalate", "target": "notify"})
    changed["output"] = {"category": "nodes.classify.output.category"}
    return old, spec.parse_graph(changed)


def test_diff_lists_added_removed_and_changed() -> None:
    old, new = versions()
    diff = diff_graphs(old, new)
    assert diff.added_nodes == ("notify",)
    assert diff.removed_nodes == ("reply",)
    changed = {c.node_id: [f.path for f in c.fields] for c in diff.changed_nodes}
    assert changed == {"classify": ["model"], "route": ["else"], "escalate": ["headers.X-Source"]}
    assert diff.added_edges == (("escalate", "notify"),)
    assert diff.removed_edges == ()
    assert [f.path for f in diff.graph_fields] == [
        "output.urgency",
        "output.reply",
        "output.escalated",
    ]
    assert not diff.is_empty


def test_diff_renders_one_line_per_change() -> None:
    old, new = versions()
    text = diff_graphs(old, new).render()
    lines = text.splitlines()
    assert lines[0] == "graph ticket-triage: version 3 -> 4"
    assert "+ node notify (transform)" in lines
    assert "- node reply (llm)" in lines
    assert "~ node classify: model 'fake/classify' -> 'openai/gpt-4o-mini'" in lines
    assert "~ node escalate: headers.X-Source None -> 'inferpipe'" in lines
    assert "+ edge escalate -> notify" in lines


def test_identical_versions_have_an_empty_diff() -> None:
    old, _ = versions()
    diff = diff_graphs(old, old)
    assert diff.is_empty
    assert diff.render().endswith("no changes")
