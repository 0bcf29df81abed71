"""JSON encoding of payloads: one codec (orjson), size limits, round-tripping.

Integers are kept exact within the signed 64-bit range (what orjson writes, CEL computes with
and both databases index) and refused beyond it, on every path: encoding raises
`OutputNotSerializableError`, and `loads_exact` (request bodies) raises
`IntegerOutOfRangeError` where orjson alone would silently turn the integer into a float.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from typing import Any

import orjson

from inferpipe.core.errors import OutputNotSerializableError, PayloadTooLargeError

JSON = Any
"""A JSON-compatible value: dict, list, str, int, float, bool or None."""

KB = 1024
MB = 1024 * KB


def _default(value: object) -> object:
    # A pydantic model exists only once pydantic is loaded; looking it up here keeps pydantic
    # out of what importing the vocabulary loads (the package root, the CLI's parser).
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        model: Any = value
        return model.model_dump(mode="json")
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
        reason = str(exc)
        if "64-bit" in reason:
            reason = "an integer is beyond the signed 64-bit range: send it as a string"
        raise OutputNotSerializableError(what, reason) from exc
    if limit_bytes is not None and len(raw) > limit_bytes:
        raise PayloadTooLargeError(what, len(raw), limit_bytes)
    return raw


def loads(raw: bytes | str | None) -> JSON:
    if raw is None:
        return None
    return orjson.loads(raw)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class IntegerOutOfRangeError(ValueError):
    """A JSON document holds an integer beyond the signed 64-bit range."""

    def __init__(self, literal: str) -> None:
        shown = literal if len(literal) <= 40 else literal[:40] + "..."
        super().__init__(f"integer {shown} is beyond the signed 64-bit range: send it as a string")


def _int64(literal: str) -> int:
    value = int(literal)
    if not INT64_MIN <= value <= INT64_MAX:
        raise IntegerOutOfRangeError(literal)
    return value


def _has_huge_float(value: Any) -> bool:
    if isinstance(value, float):
        return not INT64_MIN <= value <= INT64_MAX
    if isinstance(value, dict):
        return any(_has_huge_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_huge_float(v) for v in value)
    return False


def loads_exact(raw: bytes | str) -> JSON:
    """`loads`, refusing integers beyond 64 bits (orjson reads them as floats).

    Raises:
        orjson.JSONDecodeError: not JSON.
        IntegerOutOfRangeError: an integer literal beyond the signed 64-bit range.
    """
    value = orjson.loads(raw)
    if _has_huge_float(value):  # a float that large may have been an integer literal
        json.loads(raw, parse_int=_int64)
    return value


def is_plain(value: object) -> bool:
    """Whether `value` is a JSON scalar that a round trip gives back as it is, so that it needs
    none: None, a bool, an int within 64 bits, a finite float, an ASCII string (a subclass, a
    string that may hold a lone surrogate, NaN or an infinity are not: encoding changes or
    refuses them)."""
    if type(value) is str:
        return value.isascii()
    if type(value) is int:
        return INT64_MIN <= value <= INT64_MAX
    if type(value) is float:
        return math.isfinite(value)
    return value is None or type(value) is bool


def roundtrip(value: object, *, what: str = "value", limit_bytes: int | None = None) -> JSON:
    """The value as a later replay will see it (tuples become lists, models become dicts)."""
    return orjson.loads(dumps(value, what=what, limit_bytes=limit_bytes))
