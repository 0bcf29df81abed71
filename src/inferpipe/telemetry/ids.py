"""Span ids chosen by the caller: a run's span and its durable steps' spans are named by ids
derived from the run, so every process that makes one of them, and every child that continues
one, agrees on it."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator


class ForcedIds(RandomIdGenerator):
    """Random ids, except inside `forced`: a run's span and its durable steps' spans get the
    ids derived from the run (see `inferpipe.core.trace_context`), so that every process, and
    every child run, names the same span."""

    def __init__(self) -> None:
        self._forced: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
            "inferpipe_forced_ids", default=None
        )

    @contextlib.contextmanager
    def forced(self, trace_id: str, span_id: str) -> Iterator[None]:
        token = self._forced.set((int(trace_id, 16), int(span_id, 16)))
        try:
            yield
        finally:
            self._forced.reset(token)

    def generate_span_id(self) -> int:
        forced = self._forced.get()
        return forced[1] if forced is not None else super().generate_span_id()

    def generate_trace_id(self) -> int:
        forced = self._forced.get()
        return forced[0] if forced is not None else super().generate_trace_id()
