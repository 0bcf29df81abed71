"""The JSON codec: which values need no round trip."""

from __future__ import annotations

import enum
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferpipe.core import json as jsonc


class Level(enum.IntEnum):
    LOW = 1


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()


@given(scalars)
def test_a_plain_value_comes_back_from_a_round_trip_as_it_is(value: Any) -> None:
    if jsonc.is_plain(value):
        back = jsonc.roundtrip(value)
        assert type(back) is type(value) and back == value


@given(st.integers(jsonc.INT64_MIN, jsonc.INT64_MAX) | st.text(st.characters(max_codepoint=127)))
def test_ints_in_64_bits_and_ascii_strings_are_plain(value: Any) -> None:
    assert jsonc.is_plain(value)


@pytest.mark.parametrize(
    "value",
    [2**63, math.nan, math.inf, "caf\u00e9", "\ud800", Level.LOW, [1], (1,), {"a": 1}, b"x"],
)
def test_what_encoding_changes_or_refuses_is_not_plain(value: Any) -> None:
    assert not jsonc.is_plain(value)
