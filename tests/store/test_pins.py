"""The values at which a pinned wait may select an event (`expr.pinnable_values`) are the ones
the pin's lookup by path gives (`expr.pinned_value_of`)."""

from __future__ import annotations

from inferpipe.core import expr

EVENT = {
    "name": "order/paid",
    "id": "ev-1",
    "ts": 17,
    "data": {
        "n": 1.0,
        "big": 2.5,
        "ok": False,
        "s": 'é"x',
        "none": None,
        "list": [1, 2],
        "deep": {"k": "v", "z": {"q": 3}},
        "not-a-path": 1,
        "long": "x" * (expr.MAX_EXPRESSION_CHARS + 1),
    },
}


def test_pinnable_values_are_the_pinned_values_at_their_paths() -> None:
    values = expr.pinnable_values(EVENT, 100)
    assert values is not None
    assert all(expr.pinned_value_of(EVENT, path) == value for path, value in values)
    paths = {path for path, _ in values}
    assert paths == {
        "name",
        "id",
        "ts",
        "data.n",
        "data.big",
        "data.ok",
        "data.s",
        "data.deep.k",
        "data.deep.z.q",
    }
    for literal in ("async.data.n == 1", "async.data.deep.z.q == 3.0", "async.data.ok == false"):
        pin = expr.find_pin(literal)
        assert pin is not None and (pin.path, pin.value) in values


def test_pinnable_values_give_up_past_the_limit() -> None:
    assert expr.pinnable_values(EVENT, 8) is None
    assert expr.pinnable_values(EVENT, 9) is not None


def test_a_pin_alone_matches_where_its_value_is_the_events() -> None:
    """A wait its pin selected is not evaluated when the pin is its whole expression: the pin's
    equality of canonical values must then be the expression's own verdict."""
    assert expr.is_pin_only("async.data.k == 5") and expr.is_pin_only("'a' == async.id")
    for partial in ("async.data.k == 5 && async.data.n > 1", "async.data.k > 5", "true"):
        assert not expr.is_pin_only(partial)
    cases = [
        ("1", 1),
        ("1", 1.0),
        ("2.5", 2.5),
        ("-3", -3),
        ("true", True),
        ("false", False),
        ("'tk_1'", "tk_1"),
        ('"é\\"x"', 'é"x'),
        ("'it\\'s'", "it's"),
    ]
    for literal, value in cases:
        expression = f"async.data.k == {literal}"
        pin = expr.find_pin(expression)
        event = {"name": "e", "data": {"k": value}}
        assert pin is not None and expr.pinned_value_of(event, pin.path) == pin.value
        assert expr.matches(expression, {"async": event}), expression
