"""Scores and experiments as steps: recorded once, attached to the run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from inferpipe.core import json as jsonc
from inferpipe.core.errors import ConfigurationError
from inferpipe.core.experiments import Selector, Weighted
from inferpipe.core.records import StepKind, StepRecord, StepStatus, experiment_step_key
from inferpipe.core.redaction import redact
from inferpipe.core.scores import ScoreRecord, ScoreSource, score_event, validate_score
from inferpipe.engine.journal import RunJournal
from inferpipe.store.base import PlannedEvent, Progress


class ScoringSteps(ABC):
    """Scores and experiments, mixed into `Steps`."""

    _j: RunJournal

    @abstractmethod
    async def _run_variant(self, step_id: str, fn: Any) -> Any:
        """Run a callable variant as a step (`Steps.run`)."""

    async def score(
        self,
        name: str,
        value: float | bool,
        *,
        reason: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Attach a score to this run, once (a replay does not write it again).

        `value` is a finite number or a bool; `name` is non-empty, at most 128 bytes, with no
        control characters.
        """
        j = self._j
        number = validate_score(name, value)
        key = j.key_for(f"score:{name}")
        if key in j.records:
            return
        await j.reach_new(key)
        j.check_continue()
        now = j.now_ms()
        meta = redact(jsonc.roundtrip(metadata or {}), j.limits.redact_keys)
        step = StepRecord(
            j.run.id,
            key,
            name,
            StepKind.SCORE,
            StepStatus.COMPLETED,
            seq=j.next_seq(),
            started_at_ms=now,
            finished_at_ms=now,
            input={"reason": reason, "metadata": meta},
            output=number,
        )
        score = ScoreRecord(
            f"{j.run.id}/{key}",
            j.run.id,
            name,
            number,
            ScoreSource.INLINE,
            now,
            function_id=j.run.function_id,
            reason=reason,
            metadata=meta,
        )
        event = score_event(score, now)
        planned = PlannedEvent(event, j.planner.plan(event, now, workspace=j.run.workspace))
        await j.commit(Progress(steps=[step], scores=[score], events=[planned]))

    async def experiment(
        self,
        experiment_id: str,
        *,
        variants: dict[str, Any],
        select: Selector | None = None,
    ) -> Any:
        """Pick a variant deterministically (weighted by run id unless `select` says otherwise),
        record the choice once, and return the variant's value, or its result when callable
        (run as step `<experiment_id>-<variant>`). Every score of this run counts for this
        variant of this experiment, in each experiment the run takes part in."""
        j = self._j
        if not variants:
            raise ConfigurationError(f"experiment {experiment_id!r} has no variants")
        key = j.key_for(experiment_step_key(experiment_id))
        rec = j.records.get(key)
        if rec is None:
            await j.reach_new(key)
            j.check_continue()
            names = list(variants)
            chosen = (select or Weighted(dict.fromkeys(names, 1.0))).choose(
                experiment_id, j.run.id, names
            )
            now = j.now_ms()
            rec = StepRecord(
                j.run.id,
                key,
                experiment_id,
                StepKind.EXPERIMENT,
                StepStatus.COMPLETED,
                seq=j.next_seq(),
                started_at_ms=now,
                finished_at_ms=now,
                input={"variants": names},
                output={"experiment": experiment_id, "variant": chosen},
            )
            await j.commit(Progress(steps=[rec]))
            rec = j.records[key]
        variant = rec.output["variant"]
        value = variants[variant]
        if callable(value):
            return await self._run_variant(f"{experiment_id}-{variant}", value)
        return value
