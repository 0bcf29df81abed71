"""An agent app for the crash test: every model call and tool execution is appended to a log
file, and the second tool blocks while a hold file exists (the test kills the worker then)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import inferpipe as ip
from inferpipe.agents import Agent
from inferpipe.llm import ChatRequest, FakeProvider, ProviderRegistry, ScriptedReply, ToolCall

LOG = Path(os.environ.get("AGENT_LOG", "/tmp/inferpipe-agent-crash.log"))
HOLD = Path(os.environ.get("AGENT_HOLD", "/tmp/inferpipe-agent-crash.hold"))


def executed(name: str) -> None:
    with LOG.open("a") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())


def reply(request: ChatRequest) -> ScriptedReply:
    """Turn n's reply depends only on the request, so any process replies the same."""
    turn = sum(1 for m in request.messages if m.role == "assistant") + 1
    executed(f"model-{turn}")
    if turn == 1:
        return ScriptedReply(tool_calls=(ToolCall.of("fetch", {"item": "a"}, id="c1"),))
    if turn == 2:
        return ScriptedReply(tool_calls=(ToolCall.of("hold", {"item": "b"}, id="c2"),))
    results = [m.content for m in request.messages if m.role == "tool"]
    return ScriptedReply(content=" + ".join(str(r) for r in results))


def fetch(item: str) -> str:
    """Fetch an item."""
    executed("tool-fetch")
    return f"fetched {item}"


def hold(item: str) -> str:
    """Work on an item for a while."""
    executed("tool-hold")
    while HOLD.exists():
        time.sleep(0.05)
    return f"held {item}"


app = ip.App("crash-agent", database=os.environ.get("INFERPIPE_DATABASE_URL"))
agent = Agent(
    "crash-agent",
    model="fake/scripted",
    instructions="Use the tools.",
    tools=[fetch, hold],
    registry=ProviderRegistry([FakeProvider(reply)]),
).register(app)
