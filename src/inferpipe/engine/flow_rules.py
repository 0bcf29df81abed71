"""Validation of a function's flow control options at registration: every error names the
function and the option at fault, and options that contradict each other are refused."""

from __future__ import annotations

from inferpipe.core import expr
from inferpipe.core.durations import Duration, to_ms
from inferpipe.core.errors import ConfigurationError
from inferpipe.engine.flow import (
    MAX_BATCH_SIZE,
    MAX_CONCURRENCY_CONSTRAINTS,
    MAX_THROTTLE_LIMIT,
    Batch,
    Concurrency,
    Debounce,
    FlowControl,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
)

_CONTRADICTIONS = (
    ("batch", "debounce", "both gather events into one run, by different rules"),
    ("batch", "idempotency", "idempotency keeps one event per key, a batch runs many at once"),
    ("batch", "rate_limit", "a rate limit counts runs of single events"),
    ("batch", "singleton", "the open batch is itself an unfinished run of the key"),
    ("batch", "priority", "a batch's events may have different priorities"),
    ("debounce", "idempotency", "idempotency keeps the first event of a key, debounce the last"),
    ("debounce", "singleton", "the pending debounced run is itself an unfinished run of the key"),
)


def validate_flow(fn_id: str, flow: FlowControl) -> None:
    """Raise ConfigurationError naming the function and the option at fault."""
    where = f"function {fn_id!r}"
    if not isinstance(flow.concurrency, tuple) or len(flow.concurrency) > (
        MAX_CONCURRENCY_CONSTRAINTS
    ):
        raise ConfigurationError(
            f"{where}: concurrency: at most {MAX_CONCURRENCY_CONSTRAINTS} constraints"
        )
    _validate_concurrency(where, flow.concurrency)
    _validate_paces(where, flow)
    _validate_buffers(where, flow)
    if flow.priority is not None:
        _expect(where, "priority", flow.priority, Priority)
        _check_key(where, "priority run", flow.priority.run)
    if flow.idempotency is not None:
        _check_key(where, "idempotency", flow.idempotency)
    if flow.singleton is not None:
        _expect(where, "singleton", flow.singleton, Singleton)
        if flow.singleton.mode not in ("skip", "cancel"):
            raise ConfigurationError(
                f"{where}: singleton: mode must be 'skip' or 'cancel', got {flow.singleton.mode!r}"
            )
        _check_key(where, "singleton key", flow.singleton.key)
    for first, second, why in _CONTRADICTIONS:
        if getattr(flow, first) is not None and getattr(flow, second) is not None:
            raise ConfigurationError(f"{where}: {first} and {second} cannot be combined: {why}")


def _validate_concurrency(where: str, limits: tuple[Concurrency, ...]) -> None:
    seen: set[tuple[str, str | None]] = set()
    for item in limits:
        _expect(where, "concurrency", item, Concurrency)
        _positive_int(where, "concurrency limit", item.limit)
        if item.scope not in ("fn", "env"):
            raise ConfigurationError(
                f"{where}: concurrency: scope must be 'fn' or 'env', got {item.scope!r}"
            )
        if item.scope == "env" and item.key is None:
            raise ConfigurationError(
                f"{where}: concurrency: scope 'env' needs a key (the value shared across functions)"
            )
        _check_key(where, "concurrency key", item.key)
        if (item.scope, item.key) in seen:
            raise ConfigurationError(f"{where}: concurrency: two constraints on the same key")
        seen.add((item.scope, item.key))


def _validate_paces(where: str, flow: FlowControl) -> None:
    if flow.throttle is not None:
        _expect(where, "throttle", flow.throttle, Throttle)
        _positive_int(where, "throttle limit", flow.throttle.limit)
        if flow.throttle.limit > MAX_THROTTLE_LIMIT:
            raise ConfigurationError(
                f"{where}: throttle limit must be at most {MAX_THROTTLE_LIMIT} per period"
            )
        _positive_ms(where, "throttle period", flow.throttle.period)
        burst = flow.throttle.burst
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            raise ConfigurationError(
                f"{where}: throttle burst must be an integer >= 0, got {burst!r}"
            )
        _check_key(where, "throttle key", flow.throttle.key)
    if flow.rate_limit is not None:
        _expect(where, "rate_limit", flow.rate_limit, RateLimit)
        _positive_int(where, "rate_limit limit", flow.rate_limit.limit)
        _positive_ms(where, "rate_limit period", flow.rate_limit.period)
        _check_key(where, "rate_limit key", flow.rate_limit.key)


def _validate_buffers(where: str, flow: FlowControl) -> None:
    if flow.debounce is not None:
        _expect(where, "debounce", flow.debounce, Debounce)
        period_ms = _positive_ms(where, "debounce period", flow.debounce.period)
        if flow.debounce.timeout is not None:
            timeout_ms = _positive_ms(where, "debounce timeout", flow.debounce.timeout)
            if timeout_ms < period_ms:
                raise ConfigurationError(
                    f"{where}: debounce timeout ({flow.debounce.timeout!r}) must not be shorter"
                    f" than its period ({flow.debounce.period!r})"
                )
        _check_key(where, "debounce key", flow.debounce.key)
    if flow.batch is not None:
        _expect(where, "batch", flow.batch, Batch)
        _positive_int(where, "batch max_size", flow.batch.max_size)
        if flow.batch.max_size > MAX_BATCH_SIZE:
            raise ConfigurationError(
                f"{where}: batch max_size must be at most {MAX_BATCH_SIZE},"
                f" got {flow.batch.max_size}"
            )
        _positive_ms(where, "batch timeout", flow.batch.timeout)
        _check_key(where, "batch key", flow.batch.key)


def _expect(where: str, option: str, value: object, kind: type) -> None:
    if not isinstance(value, kind):
        raise ConfigurationError(
            f"{where}: {option} must be a {kind.__name__}, got {type(value).__name__}"
        )


def _positive_int(where: str, what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{where}: {what} must be a positive integer, got {value!r}")
    return value


def _positive_ms(where: str, what: str, value: Duration) -> int:
    try:
        ms = to_ms(value)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{where}: {what}: {exc}") from exc
    if ms < 1:
        raise ConfigurationError(f"{where}: {what} must be positive, got {value!r}")
    return ms


def _check_key(where: str, what: str, key: str | None) -> None:
    if key is None:
        return
    if not isinstance(key, str):
        raise ConfigurationError(f"{where}: {what} must be a CEL expression string, got {key!r}")
    expr.check_variables(key, {"event"}, where=f"{where} {what}")
