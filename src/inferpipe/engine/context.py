"""`Context`: what a function sees of its run."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from inferpipe.core import json as jsonc
from inferpipe.core.errors import InvalidDeferError
from inferpipe.core.events import DEFERRED, Event
from inferpipe.core.records import LogRecord, StepKind, StepRecord, StepStatus
from inferpipe.core.redaction import redact
from inferpipe.engine.journal import RunJournal, active_step
from inferpipe.engine.steps import Steps
from inferpipe.engine.streaming import RunStream, step_attempt
from inferpipe.streams.pubsub import PubSub

_log = logging.getLogger("inferpipe.run")

MAX_DEFERRALS = 20
"""Deferred runs one run may start."""


class RunLogger:
    """`ctx.logger`: lines are stored with the run once; a replay does not store or print
    them again."""

    def __init__(self, journal: RunJournal, pubsub: PubSub | None = None) -> None:
        self._j = journal

    def debug(self, message: str, **meta: Any) -> None:
        self._log("debug", message, meta)

    def info(self, message: str, **meta: Any) -> None:
        self._log("info", message, meta)

    def warning(self, message: str, **meta: Any) -> None:
        self._log("warning", message, meta)

    def error(self, message: str, **meta: Any) -> None:
        self._log("error", message, meta)

    def _log(self, level: str, message: str, meta: dict[str, Any]) -> None:
        j = self._j
        seq = j.log_seq
        j.log_seq += 1
        if seq < j.replayed_logs:
            return
        meta = redact(meta, j.limits.redact_keys)
        record = LogRecord(j.run.id, seq, level, str(message), j.now_ms(), active_step.get(), meta)
        j.pending_logs.append(record)
        _log.log(logging.getLevelName(level.upper()), "[%s] %s", j.run.id, message)


class Context:
    """The run's view of itself: its trigger event(s), ids, logger and step API."""

    def __init__(
        self,
        journal: RunJournal,
        stream: RunStream | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        """`events`: the trigger events as the function sees them (offloaded values read
        back, see `RunJournal.resolve`); the run's own by default."""
        run = journal.run
        events = run.events if events is None else events
        self._journal = journal
        self.run_id: str = run.id
        self.function_id: str = run.function_id
        self.events: list[Event] = [Event.from_dict(e) for e in events]
        self.event: Event = self.events[0] if self.events else Event("inferpipe/none")
        self.step = Steps(journal, events[0] if events else {})
        self.logger = RunLogger(journal)
        self.stream = stream if stream is not None else RunStream(journal, None)
        retrying = [r.attempt for r in journal.records.values() if r.status is StepStatus.RETRYING]
        self.attempt: int = max(retrying, default=-1) + 1

    def idempotency_key(self) -> str:
        """Inside a step's callable: `<run id>:<step key>`, the same on every attempt, on every
        worker and after a crash. Pass it to an external API (a payment, an e-mail) so that a
        step which runs again (it was in flight when its worker died) does not act twice."""
        current = step_attempt.get()
        if current is None:
            raise RuntimeError("idempotency_key() is only known inside a step's callable")
        return f"{self.run_id}:{current[0]}"

    @property
    def workspace(self) -> str:
        """The workspace this run belongs to."""
        return self._journal.run.workspace

    @property
    def parent_run_id(self) -> str | None:
        return self._journal.run.parent_run_id

    @property
    def parent(self) -> dict[str, Any] | None:
        """For a deferred run or a scorer: the run it judges (run_id, function_id, status,
        output, error)."""
        parent = self.event.data.get("parent") if self.event.name == DEFERRED else None
        return parent if isinstance(parent, dict) else None

    @property
    def input(self) -> Any:
        """The run's input: validated by the function's input model when it has one."""
        data = self.event.data.get("input") if self.event.name == DEFERRED else self.event.data
        model = self._journal.planner.input_model_of(self.function_id)
        return model.model_validate(data) if model is not None else data

    async def committed(self) -> None:
        """Return once every step this run has recorded is committed: step records are
        written while the function goes on, so code that reads its own run's steps from the
        store (a shadow run comparing itself) waits for them first."""
        await self._journal.flush()

    def patched(self, patch_id: str) -> bool:
        """Version a change to this function's steps so runs started before it finish on the
        old path. True: take the new code; False: this run was already past this point under
        the old code, keep the old one. Decided once per run and recorded in its journal::

            if ctx.patched("validate-before-charge"):
                await ctx.step.run("validate", validate, order)   # added by the change
            await ctx.step.run("charge", charge, order)

        Once no run from before the change is open, delete the old branch and the call.
        """
        return self._journal.patched(patch_id)

    def defer(self, defer_id: str, target: Any, data: dict[str, Any] | BaseModel) -> None:
        """Run `target` (a scorer or function, or its id) with `data` once this run finalizes,
        whatever its outcome. `data` is validated now against the target's input model. The
        deferred run sees this run as `ctx.parent`, and a scorer's score attaches to it. At
        most 20 deferrals per run, with ids unique within it."""
        j = self._journal
        key = f"defer:{defer_id}"
        j.visit(key)
        if key in j.records:
            return  # recorded on an earlier execution
        if any(s.key == key for s in j.pending_steps):
            raise InvalidDeferError(f"defer id {defer_id!r} is already used in this run")
        count = sum(1 for r in [*j.records.values(), *j.pending_steps] if r.kind is StepKind.DEFER)
        if count >= MAX_DEFERRALS:
            raise InvalidDeferError(f"a run may defer at most {MAX_DEFERRALS} runs")
        function_id = target if isinstance(target, str) else getattr(target, "id", None)
        if not isinstance(function_id, str):
            raise InvalidDeferError("defer target must be a registered function or its id")
        model = j.planner.input_model_of(function_id)
        try:
            payload = model.model_validate(data).model_dump(mode="json") if model else data
        except ValidationError as exc:
            raise InvalidDeferError(
                f"data for {function_id!r} (defer {defer_id!r}): {exc}"
            ) from exc
        now = j.now_ms()
        j.pending_steps.append(
            StepRecord(
                j.run.id,
                key,
                defer_id,
                StepKind.DEFER,
                StepStatus.COMPLETED,
                seq=j.next_seq(),
                started_at_ms=now,
                finished_at_ms=now,
                input={"function_id": function_id, "data": jsonc.roundtrip(payload)},
            )
        )
