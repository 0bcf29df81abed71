"""Errors raised by inferpipe.

Hierarchy::

    InferpipeError (Exception)            code, retryable
    ├── ConfigurationError                bad registration or settings
    │   ├── DuplicateFunctionError
    │   └── InvalidExpressionError
    ├── ExpressionBudgetError             an expression ran over its time or memory budget
    ├── InvalidEventError                 malformed event
    ├── PayloadTooLargeError
    ├── OutputNotSerializableError
    ├── UnknownFunctionError
    ├── RunNotFoundError
    ├── RunStateError                     the run's status does not allow the operation
    ├── InvalidScoreError                 a bad score name or value
    ├── InvalidDeferError                 bad data, duplicate id or too many deferrals
    ├── NonRetriableError                 raised by user code: do not retry
    ├── RetryAfterError                   raised by user code: retry after a delay
    ├── StepError                         a step failed for good; raised into user code
    ├── NondeterminismError               a replay diverged from the run's journal
    └── StoreError                        persistence failed
        └── MigrationError

    StepNestingError (BaseException)      a step called inside a step; fails the run

    EngineInterrupt (BaseException)       engine control flow, never caught by user code
    ├── Suspend                           park the run (sleep, wait, retry)
    ├── RunCancelled                      the run was cancelled
    └── LeaseLost                         this execution no longer holds the run
        └── StoreUnavailable              the store failed under a run: it is taken up again
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from inferpipe.core.durations import Duration, datetime_to_ms, to_ms
from inferpipe.core.tracebacks import format_traceback


class InferpipeError(Exception):
    """Base of every inferpipe error; `code` is stable across HTTP and SSE."""

    code: str = "internal_error"
    retryable: bool = False


class ConfigurationError(InferpipeError):
    code = "configuration_error"


class DuplicateFunctionError(ConfigurationError):
    code = "duplicate_function"

    def __init__(self, function_id: str) -> None:
        super().__init__(f"function id {function_id!r} is already registered on this app")
        self.function_id = function_id


class InvalidExpressionError(ConfigurationError):
    code = "invalid_expression"

    def __init__(self, expression: str, reason: str, *, where: str = "") -> None:
        place = f" in {where}" if where else ""
        super().__init__(f"invalid CEL expression{place}: {expression!r}: {reason}")
        self.expression = expression
        self.reason = reason
        self.where = where


class ExpressionBudgetError(InferpipeError):
    """A tenant's expression ran over its time or memory budget and was stopped."""

    code = "expression_over_budget"

    def __init__(self, expression: str, what: str) -> None:
        shown = expression if len(expression) <= 200 else expression[:200] + "..."
        super().__init__(f"CEL expression {shown!r} {what}; simplify it or filter less data")
        self.expression = expression


class InvalidEventError(InferpipeError):
    code = "invalid_event"


class PayloadTooLargeError(InferpipeError):
    code = "payload_too_large"

    def __init__(self, what: str, size_bytes: int, limit_bytes: int) -> None:
        super().__init__(f"{what} is {size_bytes} bytes, over the limit of {limit_bytes} bytes")
        self.what = what
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


class OutputNotSerializableError(InferpipeError):
    code = "output_not_serializable"

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} is not JSON-serializable: {reason}")
        self.what = what


class UnknownFunctionError(InferpipeError):
    code = "unknown_function"

    def __init__(self, function_id: str) -> None:
        super().__init__(f"no function with id {function_id!r} is registered")
        self.function_id = function_id


class RunNotFoundError(InferpipeError):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class RunStateError(InferpipeError):
    """A run is not in a status that allows the operation (cancelling a finished run,
    re-running an unfinished one)."""

    code = "conflict"


class StepNestingError(BaseException):
    """A step was called inside another step's callable. A BaseException, like the engine's
    own interrupts, so `except Exception` in user code cannot swallow it; the run fails even
    if user code catches it anyway."""

    code = "step_nesting"
    retryable = False

    def __init__(self, inner: str, outer: str) -> None:
        super().__init__(
            f"step {inner!r} was called inside step {outer!r}; steps cannot be nested: "
            "call them one after another from the function body"
        )


class InvalidScoreError(InferpipeError):
    code = "invalid_score"


class InvalidDeferError(InferpipeError):
    code = "invalid_defer"


class NonRetriableError(InferpipeError):
    """Raise from a step to fail it at once, without further attempts."""

    code = "non_retriable"


class RetryAfterError(InferpipeError):
    """Raise from a step to retry it after a delay (counts as an attempt).

    `retry_after` is a delay (seconds as a number, a timedelta, or a string such as "30s",
    "5m", "1h30m") or a timezone-aware datetime to retry at (a time in the past retries at
    once). Anything else is a ValueError here, where the mistake is.
    """

    code = "retry_after"
    retryable = True

    def __init__(self, message: str, retry_after: Duration | datetime) -> None:
        super().__init__(message)
        self.retry_at_ms: int | None = None
        self.delay_ms: int = 0
        if isinstance(retry_after, datetime):
            self.retry_at_ms = datetime_to_ms(retry_after)
        else:
            self.delay_ms = to_ms(retry_after)

    def retry_delay_ms(self, now_ms: int) -> int:
        """Milliseconds from `now_ms` until the retry is due."""
        if self.retry_at_ms is not None:
            return max(0, self.retry_at_ms - now_ms)
        return self.delay_ms


class StepError(InferpipeError):
    """A step failed after its last attempt; raised into the function at the step's call."""

    code = "step_failed"

    def __init__(
        self,
        step_id: str,
        error_code: str,
        message: str,
        error_type: str = "",
        step_traceback: str | None = None,
    ) -> None:
        super().__init__(
            f"step {step_id!r} failed: {error_type + ': ' if error_type else ''}{message}"
        )
        self.step_id = step_id
        self.error_code = error_code
        self.error_message = message
        self.error_type = error_type
        self.step_traceback = step_traceback
        """Where the step's own code failed, as recorded with the step."""


class NondeterminismError(InferpipeError):
    """A replay reached a step the journal does not have while recorded steps were still
    ahead: the function's code changed under the run (without `ctx.patched`), or it decides
    which steps to call from something outside steps (random numbers, the time, I/O). The run
    fails and is not retried; fix the code and re-run it."""

    code = "nondeterminism"

    def __init__(self, new_steps: list[str], recorded_step: str) -> None:
        new = ", ".join(repr(k) for k in new_steps)
        super().__init__(
            f"replay reached step {new}, which this run's journal does not have, while recorded "
            f"step {recorded_step!r} was never reached: the code changed under the run, or "
            "chooses its steps from something outside steps (random, time, I/O); guard the "
            "change with ctx.patched(...) so runs recorded before it keep their path"
        )
        self.new_steps = new_steps
        self.recorded_step = recorded_step


class StoreError(InferpipeError):
    code = "store_error"
    retryable = True


class MigrationError(StoreError):
    code = "migration_error"
    retryable = False


class EngineInterrupt(BaseException):
    """Engine control flow; a BaseException so `except Exception` in user code lets it pass."""


class Suspend(EngineInterrupt):
    """Park the run until `wake_at_ms` (or an event)."""


class RunCancelled(EngineInterrupt):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LeaseLost(EngineInterrupt):
    """This execution no longer holds the run: it stops without writing; the lease's next
    holder continues the run."""

    def __init__(self, run_id: str, why: str = "was lost to another worker") -> None:
        super().__init__(f"lease on run {run_id} {why}")
        self.run_id = run_id


class StoreUnavailable(LeaseLost):
    """The store failed during an execution (connection lost, commit failed, disk full): an
    infrastructure fault, never a run failure. The execution stops; the run is taken up again
    once its lease ends."""

    def __init__(self, run_id: str, cause: BaseException) -> None:
        super().__init__(run_id, f"cannot be kept: the store failed ({cause})")


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The stored shape of an error: code, type, message, and `traceback` when it was raised
    from user code (see `inferpipe.core.tracebacks`)."""
    code = exc.code if isinstance(exc, InferpipeError) else "user_error"
    own_code = getattr(exc, "code", None)
    if not isinstance(exc, InferpipeError) and isinstance(own_code, str):
        code = own_code  # e.g. provider errors that carry their own stable code
    cause = None
    if isinstance(exc, StepError):
        code, cause = exc.error_code, exc.step_traceback
    payload: dict[str, Any] = {"code": code, "type": type(exc).__name__, "message": str(exc)}
    trace = format_traceback(exc, cause=cause)
    if trace is not None:
        payload["traceback"] = trace
    return payload
