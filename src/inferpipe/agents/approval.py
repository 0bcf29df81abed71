"""Human approval of tool calls: the events, and what a tool sees of the decision.

Before a call that needs approval runs, the agent sends `agent/approval.requested` (with an
`approval_id`, the tool, its arguments and the reason) and waits durably, for days if need be,
for `agent/approval` with the same `approval_id`:

    await app.send(approval_event(request.approval_id, approved=True, by="ada"))

A tool decides for itself by raising `ApprovalRequired("refunds over $100 need a manager")`;
the agent then asks, and calls the tool again once approved, when `current_approval()` returns
the decision. A denial or no answer in time goes back to the model: the call did not run.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from inferpipe.core import expr
from inferpipe.core.events import Event
from inferpipe.core.records import StepKind, StepRecord, StepStatus

#: The event that answers an approval request: data {"approval_id", "approved", "by", "comment"}.
APPROVAL_EVENT = "agent/approval"

#: The event an agent sends when a call waits for a person (data: see `ApprovalRequest`).
APPROVAL_REQUESTED_EVENT = "agent/approval.requested"

#: The step ids of an approval: the request sent, then the wait (suffixed by the tool call id).
REQUEST_STEP_PREFIX = "request-approval-"
WAIT_STEP_PREFIX = "approval-"

_current: contextvars.ContextVar[Approval | None] = contextvars.ContextVar(
    "inferpipe_agent_approval", default=None
)


class ApprovalRequired(Exception):  # noqa: N818 - a request, not a failure
    """Raised by a tool that needs a person's approval before it acts.

    Raise it before any side effect: the tool is called again from the start once approved.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Approval:
    """A person's decision on a tool call (`timed_out` when nobody answered in time)."""

    approval_id: str
    approved: bool
    by: str | None = None
    comment: str | None = None
    timed_out: bool = False

    @classmethod
    def from_event(cls, approval_id: str, event: Event | None) -> Approval:
        """The decision carried by an `agent/approval` event, or a timeout when None."""
        if event is None:
            return cls(approval_id, approved=False, timed_out=True)
        data = event.data
        by, comment = data.get("by"), data.get("comment")
        return cls(
            approval_id,
            approved=data.get("approved") is True,
            by=str(by) if by is not None else None,
            comment=str(comment) if comment is not None else None,
        )

    def refusal(self, timeout_text: str) -> str:
        """What the model is told when the call did not run."""
        if self.timed_out:
            return f"The call was not run: nobody approved it within {timeout_text}."
        note = f": {self.comment}" if self.comment else "."
        who = f" ({self.by})" if self.by else ""
        return f"The call was not run: a person{who} denied it{note}"


@dataclass(frozen=True)
class ApprovalRequest:
    """A tool call waiting for a person, as sent in `agent/approval.requested`."""

    approval_id: str
    run_id: str
    agent_id: str
    tool: str
    tool_call_id: str
    arguments: str
    reason: str

    def as_data(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "run_id": self.run_id,
            "agent_id": self.agent_id,
            "tool": self.tool,
            "tool_call_id": self.tool_call_id,
            "arguments": self.arguments,
            "reason": self.reason,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ApprovalRequest:
        return cls(**{name: str(data.get(name, "")) for name in cls.__dataclass_fields__})

    def match_expression(self) -> str:
        """The CEL condition an answer must meet (indexed: one literal comparison)."""
        return f"async.data.approval_id == {expr.cel_literal(self.approval_id)}"


def approval_event(
    approval_id: str, *, approved: bool = True, by: str | None = None, comment: str | None = None
) -> Event:
    """The event that approves (or denies) the call `approval_id`."""
    data: dict[str, Any] = {"approval_id": approval_id, "approved": approved}
    if by is not None:
        data["by"] = by
    if comment is not None:
        data["comment"] = comment
    return Event(APPROVAL_EVENT, data)


def pending_approvals(steps: Sequence[StepRecord]) -> list[ApprovalRequest]:
    """The approval requests of a run (its steps) that are still waiting for an answer.

    Example:
        for request in pending_approvals(await app.steps(run_id)):
            await app.send(approval_event(request.approval_id, approved=True))
    """
    waiting = [
        str((step.input or {}).get("if") or "")
        for step in steps
        if step.kind is StepKind.WAIT_FOR_EVENT and step.status is StepStatus.WAITING
    ]
    pending = []
    for step in steps:
        if step.kind is not StepKind.SEND_EVENT or not step.name.startswith(REQUEST_STEP_PREFIX):
            continue
        for sent in step.input or []:
            request = ApprovalRequest.from_data(sent.get("data") or {})
            if any(request.match_expression() in condition for condition in waiting):
                pending.append(request)
    return pending


def current_approval() -> Approval | None:
    """The approval of the tool call running now (None when it needed none)."""
    return _current.get()


@contextlib.contextmanager
def approval_scope(approval: Approval | None) -> Iterator[None]:
    """Make `approval` what `current_approval()` returns while a tool runs."""
    token = _current.set(approval)
    try:
        yield
    finally:
        _current.reset(token)
