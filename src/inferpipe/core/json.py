"""JSON encoding of payloads: one codec (orjson), size limits, round-tripping."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from pydantic import BaseModel

from inferpipe.core.errors import OutputNotSerializableError, PayloadTooLargeError

JSON = Any
"""A JSON-compatible value: dict, list, str, int, float, bool or None."""

KB = 1024
MB = 1024 * KB


def _default(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"type {type(value).__name__} is not JSON-serializable")


def dumps(value: object, *, what: str = "value", limit_bytes: int | None = None) -> bytes:
    """Encode `value`; raise a clear error naming `what` when it cannot be stored."""
    try:
        raw = orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise OutputNotSerializableError(what, str(exc)) from exc
    if limit_bytes is not None and len(raw) > limit_bytes:
        raise PayloadTooLargeError(what, len(raw), limit_bytes)
    return raw


def loads(raw: bytes | str | None) -> JSON:
    if raw is None:
        return None
    return orjson.loads(raw)


def roundtrip(value: object, *, what: str = "value", limit_bytes: int | None = None) -> JSON:
    """The value as a later replay will see it (tuples become lists, models become dicts)."""
    return orjson.loads(dumps(value, what=what, limit_bytes=limit_bytes))
