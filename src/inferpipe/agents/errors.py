"""Errors of durable agents.

    InferpipeError
    ├── ConfigurationError
    │   └── ToolDefinitionError        agents.tool_definition   a tool cannot be described
    └── NonRetriableError
        ├── InvalidAgentInputError     agents.invalid_input     the run's input is not usable
        └── MaxTurnsExceededError      agents.max_turns         the model never gave an answer

A tool that raises, or that the model calls with bad arguments, is not an error of the run: the
message goes back to the model as the tool's result.
"""

from __future__ import annotations

from inferpipe.core.errors import ConfigurationError, NonRetriableError


class ToolDefinitionError(ConfigurationError):
    """A Python callable cannot be offered to a model as a tool."""

    code = "agents.tool_definition"

    def __init__(self, tool: str, reason: str) -> None:
        super().__init__(f"tool {tool!r}: {reason}")
        self.tool = tool


class InvalidAgentInputError(NonRetriableError):
    """The run's input is not `{"input": "<the user's message>"}`."""

    code = "agents.invalid_input"

    def __init__(self, agent_id: str, reason: str) -> None:
        super().__init__(
            f'agent {agent_id!r}: {reason}; start it with data {{"input": "<message>"}}'
        )
        self.agent_id = agent_id


class MaxTurnsExceededError(NonRetriableError):
    """The model was still calling tools after the agent's last allowed turn."""

    code = "agents.max_turns"

    def __init__(self, agent_id: str, max_turns: int) -> None:
        super().__init__(
            f"agent {agent_id!r} reached its limit of {max_turns} turns without a final answer"
        )
        self.agent_id = agent_id
        self.max_turns = max_turns
