"""Scores: how well a run did, as a number, attached to the run."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from inferpipe.core.errors import InvalidScoreError
from inferpipe.core.events import SCORE_RECORDED, Event

MAX_SCORE_NAME_BYTES = 128


class ScoreSource(enum.StrEnum):
    INLINE = "inline"  #: `ctx.step.score` inside the run
    SCORER = "scorer"  #: returned by a scorer run (deferred or attached)
    FEEDBACK = "feedback"  #: posted later by the application (`app.score`)


@dataclass(frozen=True, slots=True)
class Score:
    """A judgement returned by a scorer: `name`, a finite number or bool `value`, a reason."""

    name: str
    value: float | bool
    reason: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(slots=True)
class ScoreRecord:
    """A stored score, attached to run `run_id`."""

    id: str
    run_id: str
    name: str
    value: float
    source: ScoreSource
    created_at_ms: int
    function_id: str = ""
    reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    scorer_id: str | None = None
    scorer_run_id: str | None = None
    experiment: str | None = None
    variant: str | None = None
    updated_at_ms: int | None = None


def validate_score(name: object, value: object) -> float:
    """The value as a float; raise InvalidScoreError naming what is wrong."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidScoreError("score name must be a non-empty string")
    if len(name.encode()) > MAX_SCORE_NAME_BYTES:
        raise InvalidScoreError(f"score name {name[:40]!r}… is over {MAX_SCORE_NAME_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidScoreError(f"score name {name!r} contains control characters")
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float):
        raise InvalidScoreError(
            f"score {name!r}: value must be a finite number or a bool, got {type(value).__name__}"
        )
    if not math.isfinite(value):
        raise InvalidScoreError(f"score {name!r}: value must be finite, got {value!r}")
    return float(value)


def score_from_output(output: Any) -> Score | None:
    """The Score a scorer run returned (stored as a dict), if any."""
    if isinstance(output, dict) and "name" in output and "value" in output:
        return Score(output["name"], output["value"], output.get("reason"), output.get("metadata"))
    return None


def score_event(score: ScoreRecord, now_ms: int, function_id: str = "") -> Event:
    """The `inferpipe/score.recorded` event of a score written at `now_ms` (each write of a
    score id, an update too, is an event of its own); `function_id`: the judged run's function
    when the record does not name it."""
    return Event(
        SCORE_RECORDED,
        {
            "score_id": score.id,
            "run_id": score.run_id,
            "function_id": score.function_id or function_id,
            "name": score.name,
            "value": score.value,
            "source": score.source.value,
            "reason": score.reason,
            "scorer_id": score.scorer_id,
        },
        ts_ms=now_ms,
        id=f"score:{score.id}:{now_ms}",
    )
