"""A support agent with two tools, one of which waits for a manager's approval.

    python examples/agents/support_agent.py

Offline (the default) the model is a scripted fake provider: its reply is a function of the
conversation, so the run is the same in any process and on any replay. With OPENAI_API_KEY
(and/or OPENAI_BASE_URL for Ollama, vLLM, ...) set, the same agent runs on a real model
(OPENAI_MODEL, gpt-4o-mini by default).

The run goes: turn-1 (the model looks the order up) -> tool-lookup_order -> turn-2 (the model
asks for a refund) -> the refund waits for approval; a manager approves two days later (on the
test harness's virtual clock, so at once) -> tool-issue_refund -> turn-3 (the answer).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

import inferpipe as ip
from inferpipe.agents import Agent, approval_event, pending_approvals, tool
from inferpipe.llm import ChatRequest, FakeProvider, ScriptedReply, ToolCall
from inferpipe.llm.step import registry_from_env
from inferpipe.testing import Harness

ORDERS: dict[str, dict[str, Any]] = {
    "A-1001": {
        "customer": "ada",
        "item": "espresso machine",
        "total_usd": 240.0,
        "status": "delivered",
    },
    "A-1002": {"customer": "alan", "item": "milk frother", "total_usd": 35.0, "status": "shipped"},
}

QUESTION = "Hi, my order A-1001 arrived with a cracked water tank. Can I get my money back?"


def lookup_order(order_id: str) -> dict[str, Any]:
    """Find an order by its number.

    Args:
        order_id: The order number, like "A-1001".
    """
    if order_id not in ORDERS:
        raise LookupError(f"there is no order {order_id}")
    return {"order_id": order_id, **ORDERS[order_id]}


@tool(needs_approval=lambda args: float(args.get("amount_usd", 0)) > 50)
def issue_refund(order_id: str, amount_usd: float, reason: str) -> dict[str, Any]:
    """Refund (part of) an order to the customer. Refunds over $50 need a manager's approval.

    Args:
        order_id: The order to refund.
        amount_usd: How much to refund, in US dollars.
        reason: Why, in a few words (kept on the refund).
    """
    order = ORDERS[order_id]
    if amount_usd > order["total_usd"]:
        raise ValueError(f"cannot refund more than the order total ({order['total_usd']})")
    return {"refund_id": f"rf_{order_id}", "order_id": order_id, "amount_usd": amount_usd}


def scripted_model(request: ChatRequest) -> ScriptedReply:
    """The offline stand-in for a model: what it says depends only on the conversation."""
    asked = next(m.content or "" for m in request.messages if m.role == "user")
    results = [m.content or "" for m in request.messages if m.role == "tool"]
    if not results:
        match = re.search(r"[A-Z]-\d+", asked)
        if match is None:
            return ScriptedReply(content="Which order is it about? Please give its number.")
        return ScriptedReply(
            tool_calls=(ToolCall.of("lookup_order", {"order_id": match[0]}, id="call_lookup"),)
        )
    if len(results) == 1:
        if results[0].startswith("Error"):
            return ScriptedReply(content="I could not find that order; could you check the number?")
        order = json.loads(results[0])
        refund = {
            "order_id": order["order_id"],
            "amount_usd": order["total_usd"],
            "reason": "arrived damaged",
        }
        return ScriptedReply(tool_calls=(ToolCall.of("issue_refund", refund, id="call_refund"),))
    if results[1].startswith(("Error", "The call was not run")):
        return ScriptedReply(content=f"I am sorry, I could not refund you: {results[1]}")
    refund = json.loads(results[1])
    return ScriptedReply(
        content=f"I am sorry about the {ORDERS[refund['order_id']]['item']}. I have refunded "
        f"${refund['amount_usd']:.2f} (refund {refund['refund_id']}); it reaches your card in 3-5 days."
    )


online = bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
MODEL = f"openai/{os.environ.get('OPENAI_MODEL', 'gpt-4o-mini')}" if online else "fake/support"
# The fake is priced like gpt-4o-mini so the demo shows costs; real providers price themselves.
registry = registry_from_env(fake=FakeProvider(scripted_model, priced_as="openai/gpt-4o-mini"))

app = ip.App("support-agent")
agent = Agent(
    "support-agent",
    model=MODEL,
    instructions=(
        "You are the support agent of a coffee-gear shop. Look orders up before answering. "
        "Refund damaged items in full with issue_refund. Be brief and kind."
    ),
    tools=[lookup_order, issue_refund],
    registry=registry,
    max_turns=6,
).register(app, trigger=ip.on_event("support/question"))


async def main() -> None:
    print(f"model: {MODEL}\ncustomer: {QUESTION}\n")
    async with Harness(app) as h:
        run_id = await h.invoke("support-agent", {"input": QUESTION})
        await h.run_ready()
        while (await h.run(run_id)).status is ip.RunStatus.WAITING:
            requests = pending_approvals(await h.steps(run_id))
            if not requests:
                break
            for request in requests:
                print(f"waiting for approval: {request.tool}({request.arguments})")
                await h.advance("2d")
                print("... two days later, a manager approves it")
                await h.send(approval_event(request.approval_id, approved=True, by="manager"))
            await h.run_ready()
        run = await h.settle(run_id)
        assert run is not None
        print(f"\nrun {run.status.value}; steps:")
        for step in await h.steps(run_id):
            print("  " + describe(step))
        await print_stream(run_id)
        if run.status is ip.RunStatus.COMPLETED:
            print(f"\nagent: {run.output['output']}")
            print(
                f"turns: {run.output['turns']}, tokens: {run.output['usage']}, cost: {run.output['cost']}"
            )
        else:
            print(f"\nerror: {run.error}")
    await registry.aclose()


async def print_stream(run_id: str) -> None:
    """What a client following the run's stream saw (it may join late: history is kept)."""
    print("\nthe run's stream:")
    text: dict[str, str] = {}
    async for event in app.stream(run_id):
        data: Any = event.data
        if data["type"] == "llm.token":
            text[data["data"]["step"]] = text.get(data["data"]["step"], "") + data["data"]["text"]
        elif data["type"] == "agent.tool_result":
            print(f"  #{event.index} tool result of {data['data']['tool']}")
        elif data["type"].startswith("run."):
            print(f"  #{event.index} {data['type']}")
    for step, streamed in text.items():
        print(f"  tokens of {step}: {streamed!r}")


def describe(step: ip.StepRecord) -> str:
    line = f"{step.key:<28} {step.kind.value:<15} {step.status.value}"
    if step.kind is ip.StepKind.LLM:
        usage, cost = step.meta.get("usage") or {}, step.meta.get("cost_usd")
        shown = f"${cost:.6f}" if cost is not None else "unknown"
        line += f"  tokens in/out {usage.get('input_tokens')}/{usage.get('output_tokens')}, cost {shown}"
    elif step.kind is ip.StepKind.RUN:
        line += f"  -> {json.dumps(step.output)[:70]}"
    return line


if __name__ == "__main__":
    asyncio.run(main())
