"""Run the example graphs offline, on a test harness, and print outputs, tokens and cost.

    .venv/bin/python examples/workflows/run_examples.py

The model calls go to the fake provider (`fake/classify` picks the labels a ticket mentions,
`fake/summarize` keeps a first sentence), priced as openai/gpt-4o-mini so the costs are not
all zero. The helpdesk the triage graph escalates to is a stub (an httpx MockTransport behind
a resolver that answers a public address), so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

import inferpipe as ip
from inferpipe.llm import FakeProvider, ProviderRegistry
from inferpipe.testing import Harness
from inferpipe.workflows import (
    HttpSettings,
    MappingSecrets,
    WorkflowRuntime,
    load_graph_file,
    run_cost,
)

HERE = Path(__file__).resolve().parent

TICKETS = [
    {
        "ticket_id": "tk_1",
        "subject": "How do I export my data?",
        "body": "Just a question: is there a CSV export for invoices?",
    },
    {
        "ticket_id": "tk_2",
        "subject": "Charged twice",
        "body": "This is a billing problem and it is high priority: I was charged twice.",
    },
]

DOCUMENT = {
    "title": "Durable execution",
    "chunks": [
        "A durable function records each step once. On a retry it replays the journal.",
        "Workers claim runs under a lease. A crashed worker's runs are taken over.",
        "",
        "Graphs are compiled once. Each node becomes a step named after the node.",
    ],
}


def helpdesk(request: httpx.Request) -> httpx.Response:
    """The stub helpdesk: accepts an escalation and gives it an id."""
    ticket = json.loads(request.content)["ticket_id"]
    return httpx.Response(201, json={"escalation_id": f"esc-{ticket}", "queue": "tier-2"})


async def public_address(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]  # what helpdesk.example.com would resolve to: a public address


def build() -> tuple[ip.App, WorkflowRuntime]:
    app = ip.App("workflow-examples")
    runtime = WorkflowRuntime(
        app,
        providers=ProviderRegistry([FakeProvider(priced_as="openai/gpt-4o-mini")]),
        secrets=MappingSecrets({"HELPDESK_TOKEN": "demo-token"}),
        http=HttpSettings(transport=httpx.MockTransport(helpdesk), resolver=public_address),
    )
    return app, runtime


async def run_one(h: Harness, runtime: WorkflowRuntime, graph_id: str, data: Any) -> None:
    run = await h.settle(await runtime.run(graph_id, data))
    assert run is not None
    steps = await h.steps(run.id)
    cost = run_cost(steps)
    usd = "unknown" if cost.cost_usd is None else f"${cost.cost_usd:.6f}"
    print(f"\n== {graph_id} · run {run.id} · {run.status.value}")
    for step in steps:
        note = " (skipped)" if isinstance(step.output, dict) and step.output.get("skipped") else ""
        print(f"   {step.key:<26} {step.status.value:<9}{note}")
    print(f"   tokens: {cost.total_tokens} ({cost.input_tokens} in, {cost.output_tokens} out)")
    print(f"   cost:   {usd} over {cost.llm_steps} model calls")
    print("   output: " + json.dumps(run.output if run.output is not None else run.error, indent=2))


async def main() -> None:
    app, runtime = build()
    async with Harness(app) as h:
        for name in ("ticket_triage.json", "document_pipeline.json"):
            saved = await runtime.save(load_graph_file(HERE / name))
            info = saved.version.info
            print(f"saved {info.graph_id} v{info.version} ({info.content_hash[:12]})")
        for ticket in TICKETS:
            await run_one(h, runtime, "ticket-triage", ticket)
        await run_one(h, runtime, "document-summary", DOCUMENT)


if __name__ == "__main__":
    asyncio.run(main())
