"""inferpipe: durable execution for AI workloads.

Write `async def` functions made of steps; inferpipe records each step once, retries what
fails, parks runs that sleep or wait (for days, holding no memory) and resumes them.
"""

from inferpipe.agents import Agent, ApprovalRequired, tool
from inferpipe.app import App, create_scorer, sample
from inferpipe.core.durations import Duration
from inferpipe.core.errors import (
    ConfigurationError,
    DuplicateFunctionError,
    InferpipeError,
    InvalidDeferError,
    InvalidEventError,
    InvalidExpressionError,
    InvalidScoreError,
    NondeterminismError,
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
from inferpipe.core.experiments import bucket, fixed, weighted
from inferpipe.core.records import LogRecord, Run, RunStatus, StepKind, StepRecord, StepStatus
from inferpipe.core.scores import Score, ScoreRecord, ScoreSource
from inferpipe.engine.context import Context
from inferpipe.engine.flow import (
    Batch,
    Concurrency,
    Debounce,
    FlowControl,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
)
from inferpipe.engine.functions import (
    AttachedScorer,
    Backoff,
    CancelOn,
    CronTrigger,
    EventTrigger,
    FunctionDef,
    Timeouts,
    on_cron,
    on_event,
)
from inferpipe.engine.journal import Limits
from inferpipe.engine.worker import Worker
from inferpipe.scoring.experiments import VariantStats
from inferpipe.streams.pubsub import StreamEvent

NonRetryableError = NonRetriableError

__all__ = [
    "Agent",
    "App",
    "ApprovalRequired",
    "AttachedScorer",
    "Backoff",
    "Batch",
    "CancelOn",
    "Concurrency",
    "ConfigurationError",
    "Context",
    "CronTrigger",
    "Debounce",
    "DuplicateFunctionError",
    "Duration",
    "Event",
    "EventTrigger",
    "FlowControl",
    "FunctionDef",
    "InferpipeError",
    "InvalidDeferError",
    "InvalidEventError",
    "InvalidExpressionError",
    "InvalidScoreError",
    "Limits",
    "LogRecord",
    "NonRetriableError",
    "NonRetryableError",
    "NondeterminismError",
    "OutputNotSerializableError",
    "PayloadTooLargeError",
    "Priority",
    "RateLimit",
    "RetryAfterError",
    "Run",
    "RunNotFoundError",
    "RunStatus",
    "Score",
    "ScoreRecord",
    "ScoreSource",
    "Singleton",
    "StepError",
    "StepKind",
    "StepNestingError",
    "StepRecord",
    "StepStatus",
    "StoreError",
    "StreamEvent",
    "Throttle",
    "Timeouts",
    "UnknownFunctionError",
    "VariantStats",
    "Worker",
    "bucket",
    "create_scorer",
    "fixed",
    "on_cron",
    "on_event",
    "sample",
    "tool",
    "weighted",
]
