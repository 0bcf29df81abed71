"""inferpipe: durable execution for AI workloads.

Write `async def` functions made of steps; inferpipe records each step once, retries what
fails, parks runs that sleep or wait (for days, holding no memory) and resumes them.
"""

from inferpipe.app import App
from inferpipe.core.durations import Duration
from inferpipe.core.errors import (
    ConfigurationError,
    DuplicateFunctionError,
    InferpipeError,
    InvalidEventError,
    InvalidExpressionError,
    NonRetriableError,
    OutputNotSerializableError,
    PayloadTooLargeError,
    RetryAfterError,
    RunNotFoundError,
    StepError,
    StepNestingError,
    StoreError,
    UnknownFunctionError,
)
from inferpipe.core.events import Event
from inferpipe.core.records import LogRecord, Run, RunStatus, StepKind, StepRecord, StepStatus
from inferpipe.engine.context import Context
from inferpipe.engine.functions import (
    Backoff,
    CancelOn,
    CronTrigger,
    EventTrigger,
    Timeouts,
    on_cron,
    on_event,
)
from inferpipe.engine.journal import Limits
from inferpipe.engine.worker import Worker

NonRetryableError = NonRetriableError

__all__ = [
    "App",
    "Backoff",
    "CancelOn",
    "ConfigurationError",
    "Context",
    "CronTrigger",
    "DuplicateFunctionError",
    "Duration",
    "Event",
    "EventTrigger",
    "InferpipeError",
    "InvalidEventError",
    "InvalidExpressionError",
    "Limits",
    "LogRecord",
    "NonRetriableError",
    "NonRetryableError",
    "OutputNotSerializableError",
    "PayloadTooLargeError",
    "RetryAfterError",
    "Run",
    "RunNotFoundError",
    "RunStatus",
    "StepError",
    "StepKind",
    "StepNestingError",
    "StepRecord",
    "StepStatus",
    "StoreError",
    "Timeouts",
    "UnknownFunctionError",
    "Worker",
    "on_cron",
    "on_event",
]
