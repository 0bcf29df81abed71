"""Durable agents: a model, instructions and Python tools, run as a durable function.

Every model call is a step `turn-<n>` and every tool call a step `tool-<name>`, so a crash or a
days-long wait for a person's approval resumes where the run was, without paying for a recorded
model call or repeating a recorded tool call.
"""

from __future__ import annotations

from inferpipe.agents.agent import FINAL_ANSWER_PROMPT, Agent, FunctionHost, OnMaxTurns
from inferpipe.agents.approval import (
    APPROVAL_EVENT,
    APPROVAL_REQUESTED_EVENT,
    Approval,
    ApprovalRequest,
    ApprovalRequired,
    approval_event,
    current_approval,
    pending_approvals,
)
from inferpipe.agents.errors import (
    InvalidAgentInputError,
    MaxTurnsExceededError,
    ToolDefinitionError,
)
from inferpipe.agents.tools import Tool, tool

__all__ = [
    "APPROVAL_EVENT",
    "APPROVAL_REQUESTED_EVENT",
    "FINAL_ANSWER_PROMPT",
    "Agent",
    "Approval",
    "ApprovalRequest",
    "ApprovalRequired",
    "FunctionHost",
    "InvalidAgentInputError",
    "MaxTurnsExceededError",
    "OnMaxTurns",
    "Tool",
    "ToolDefinitionError",
    "approval_event",
    "current_approval",
    "pending_approvals",
    "tool",
]
