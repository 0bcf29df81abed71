"""inferpipe: durable execution for AI workloads.

Write `async def` functions made of steps; inferpipe records each step once, retries what
fails, parks runs that sleep or wait (for days, holding no memory) and resumes them.
"""

import importlib as _importlib
import sys as _sys
import types as _types
import typing as _typing

if _typing.TYPE_CHECKING:
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
        RunStateError,
        StepError,
        StepNestingError,
        StoreError,
        UnknownFunctionError,
    )
    from inferpipe.core.events import Event
    from inferpipe.core.experiments import bucket, fixed, weighted
    from inferpipe.core.records import LogRecord, Run, RunStatus, StepKind, StepRecord, StepStatus
    from inferpipe.core.scores import Score, ScoreRecord, ScoreSource
    from inferpipe.core.topics import StreamEvent
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

    NonRetryableError = NonRetriableError

_SOURCES: dict[str, tuple[str, ...]] = {
    "inferpipe.agents": ("Agent", "ApprovalRequired", "tool"),
    "inferpipe.app": ("App", "create_scorer", "sample"),
    "inferpipe.core.durations": ("Duration",),
    "inferpipe.core.errors": (
        "ConfigurationError",
        "DuplicateFunctionError",
        "InferpipeError",
        "InvalidDeferError",
        "InvalidEventError",
        "InvalidExpressionError",
        "InvalidScoreError",
        "NondeterminismError",
        "NonRetriableError",
        "OutputNotSerializableError",
        "PayloadTooLargeError",
        "RetryAfterError",
        "RunNotFoundError",
        "RunStateError",
        "StepError",
        "StepNestingError",
        "StoreError",
        "UnknownFunctionError",
    ),
    "inferpipe.core.events": ("Event",),
    "inferpipe.core.experiments": ("bucket", "fixed", "weighted"),
    "inferpipe.core.records": (
        "LogRecord",
        "Run",
        "RunStatus",
        "StepKind",
        "StepRecord",
        "StepStatus",
    ),
    "inferpipe.core.scores": ("Score", "ScoreRecord", "ScoreSource"),
    "inferpipe.engine.context": ("Context",),
    "inferpipe.engine.flow": (
        "Batch",
        "Concurrency",
        "Debounce",
        "FlowControl",
        "Priority",
        "RateLimit",
        "Singleton",
        "Throttle",
    ),
    "inferpipe.engine.functions": (
        "AttachedScorer",
        "Backoff",
        "CancelOn",
        "CronTrigger",
        "EventTrigger",
        "FunctionDef",
        "Timeouts",
        "on_cron",
        "on_event",
    ),
    "inferpipe.engine.journal": ("Limits",),
    "inferpipe.engine.worker": ("Worker",),
    "inferpipe.scoring.experiments": ("VariantStats",),
    "inferpipe.core.topics": ("StreamEvent",),
}
"""Where each public name is defined: the root loads a module the first time one of its names
is used, so `import inferpipe` (and `import inferpipe.client`, which imports this package
first) does not load the engine, the store, CEL or the LLM providers."""

_ALIASES = {"NonRetryableError": "NonRetriableError"}
"""Alternative spellings of public names."""

_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}


class _Root(_types.ModuleType):
    """The package root, whose public names load on first use.

    Reading the whole namespace (`vars(inferpipe)`, `dir(inferpipe)`, `inferpipe.__dict__`)
    loads every public name first, so introspection sees the complete SDK.
    """

    def __getattr__(self, name: str) -> _typing.Any:
        target = _ALIASES.get(name, name)
        module = _MODULE_OF.get(target)
        if module is None:
            raise AttributeError(f"module 'inferpipe' has no attribute {name!r}")
        value = getattr(_importlib.import_module(module), target)
        setattr(self, name, value)
        return value

    @property
    def __dict__(self) -> dict[str, _typing.Any]:  # type: ignore[override]
        namespace: dict[str, _typing.Any] = super().__dict__
        for name in __all__:
            if name not in namespace:
                getattr(self, name)
        return namespace


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
    "RunStateError",
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


_sys.modules[__name__].__class__ = _Root
