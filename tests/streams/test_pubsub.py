"""The vocabulary of the streams layer: cursors, retention settings, error codes."""

from __future__ import annotations

import dataclasses

import pytest

import inferpipe.streams.errors as stream_errors
from inferpipe.streams.errors import InvalidCursorError, StreamError
from inferpipe.streams.pubsub import Retention, StreamEvent, parse_cursor


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("", None), ("  ", None), ("0", 0), ("42", 42), (" 7 ", 7), (12, 12)],
)
def test_parse_cursor_accepts_indices(raw: str | int | None, expected: int | None) -> None:
    assert parse_cursor(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "1.5", "abc", "1-0", "١٢", "9" * 20, -1, True])
def test_parse_cursor_rejects_anything_else(raw: str | int) -> None:
    with pytest.raises(InvalidCursorError) as caught:
        parse_cursor(raw)
    assert caught.value.code == "invalid_cursor"
    assert isinstance(caught.value, ValueError)


def test_retention_defaults_bound_everything() -> None:
    retention = Retention()
    assert retention.max_events == 10_000
    assert retention.max_age_ms == 24 * 3_600_000
    assert retention.finished_ttl_ms == 3_600_000
    assert retention.idle_ttl_ms == 24 * 3_600_000


@pytest.mark.parametrize("field", ["max_age_ms", "max_events", "finished_ttl_ms", "idle_ttl_ms"])
def test_retention_rejects_non_positive_limits(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Retention(**{field: 0})
    with pytest.raises(TypeError, match=field):
        Retention(**{field: 1.5})  # type: ignore[arg-type]
    assert getattr(Retention(**{field: None}), field) is None


def test_stream_event_is_frozen() -> None:
    event = StreamEvent("t", 1, {"a": 1}, 5)
    assert event.final is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.index = 2  # type: ignore[misc]


def test_every_error_has_a_distinct_stable_code() -> None:
    classes = [
        value
        for value in vars(stream_errors).values()
        if isinstance(value, type) and issubclass(value, StreamError)
    ]
    codes = [cls.code for cls in classes]
    assert len(classes) == 12
    assert len(set(codes)) == len(codes)
    assert all(code.islower() and " " not in code for code in codes)
    assert [cls.__name__ for cls in classes if cls.retryable] == ["StreamUnavailableError"]
