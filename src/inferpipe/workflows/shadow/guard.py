"""Side-effect safety in a shadow run: which nodes do not call out, and what they return.

In a shadow run, `http` nodes, `task` nodes whose task is registered with
``side_effect=True`` and `wait` nodes do not run: each reuses the output the primary run
recorded for the same step, or, when the primary recorded none (it failed before, or took
another branch), returns null; either way the shadow's step records what it did and why
(`meta.shadow` = ``reused`` or ``skipped``, `meta.shadow_reason`). A policy's `call_nodes`
opts nodes in to run for real.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GUARDED_TYPES = frozenset({"http", "task", "wait"})
"""Node types that may stand in for their side effects in a shadow run."""


@dataclass(frozen=True, slots=True)
class ShadowGuard:
    """What a shadow run's nodes need to stay off the outside world."""

    primary_run_id: str
    recorded: Mapping[str, Any]
    """The primary's completed outputs of guarded nodes, by step name."""
    call_nodes: frozenset[str] = frozenset()
    side_effect_tasks: frozenset[str] = field(default_factory=frozenset)

    def stands_in(self, node_id: str, node_type: str, task: str | None = None) -> bool:
        """Whether the node must not run for real here."""
        if node_id in self.call_nodes:
            return False
        if node_type == "task":
            return task in self.side_effect_tasks
        return node_type in GUARDED_TYPES

    def stand_in(self, step_name: str) -> tuple[Any, str, str]:
        """The output, the action (reused / skipped) and the reason for a guarded step."""
        if step_name in self.recorded:
            reason = f"side effect: reused the output of primary run {self.primary_run_id}"
            return self.recorded[step_name], "reused", reason
        reason = (
            f"side effect: not called in a shadow run, and primary run {self.primary_run_id} "
            f"recorded no output for {step_name}"
        )
        return None, "skipped", reason
