"""Redaction of a value fresh from JSON: the same verdicts as `redact`, no copy when clean."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from inferpipe.core import json as jsonc
from inferpipe.core.redaction import REDACTED, redact, redact_decoded

keys = st.sampled_from(["api_key", "max_tokens", "Authorization", "name", "db_password", "x"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)


@given(json_values)
def test_it_redacts_what_redact_does(value: Any) -> None:
    decoded = jsonc.roundtrip(value)
    assert redact_decoded(decoded) == redact(decoded)


@given(json_values)
def test_a_value_with_nothing_to_redact_is_given_back_itself(value: Any) -> None:
    decoded = jsonc.roundtrip(value)
    if redact(decoded) == decoded:
        assert redact_decoded(decoded) is decoded


def test_a_value_with_a_secret_is_copied_and_left_as_it_was() -> None:
    value = {"headers": [{"Authorization": "Bearer sk-1"}], "max_tokens": 5}
    redacted = redact_decoded(value)
    assert redacted == {"headers": [{"Authorization": REDACTED}], "max_tokens": 5}
    assert value["headers"] == [{"Authorization": "Bearer sk-1"}]


def test_configured_keys_apply() -> None:
    assert redact_decoded({"args": [1], "kwargs": {}}, ("args",)) == {
        "args": REDACTED,
        "kwargs": {},
    }
