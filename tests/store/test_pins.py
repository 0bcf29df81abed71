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
