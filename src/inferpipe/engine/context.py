"""`Context`: what a function sees of its run."""

from __future__ import annotations

import logging
from typing import Any

from inferpipe.core.events import Event
from inferpipe.core.records import LogRecord, StepStatus
from inferpipe.core.redaction import redact
from inferpipe.engine.journal import RunJournal, active_step
from inferpipe.engine.steps import Steps

_log = logging.getLogger("inferpipe.run")


class RunLogger:
    """`ctx.logger`: lines are stored with the run once; a replay does not store or print
    them again."""

    def __init__(self, journal: RunJournal) -> None:
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

    def __init__(self, journal: RunJournal) -> None:
        run = journal.run
        self._journal = journal
        self.run_id: str = run.id
        self.function_id: str = run.function_id
        self.events: list[Event] = [Event.from_dict(e) for e in run.events]
        self.event: Event = self.events[0] if self.events else Event("inferpipe/none")
        self.step = Steps(journal, run.events[0] if run.events else {})
        self.logger = RunLogger(journal)
        retrying = [r.attempt for r in journal.records.values() if r.status is StepStatus.RETRYING]
        self.attempt: int = max(retrying, default=-1) + 1

    @property
    def parent_run_id(self) -> str | None:
        return self._journal.run.parent_run_id
