"""Cost of a call from genai-prices: known models priced, unknown ones never a silent zero."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inferpipe.llm import Cost, Usage, price_call


def test_known_model_has_a_known_nonzero_cost() -> None:
    cost = price_call("openai", "gpt-4o-mini", Usage(input_tokens=1000, output_tokens=100))
    assert cost.known
    # $0.15 per million input tokens, $0.60 per million output tokens.
    assert cost.amount_usd == pytest.approx(1000 * 0.15e-6 + 100 * 0.6e-6)


def test_cached_tokens_are_cheaper() -> None:
    plain = price_call("openai", "gpt-4o-mini", Usage(input_tokens=1000, output_tokens=100))
    cached = price_call(
        "openai", "gpt-4o-mini", Usage(input_tokens=1000, output_tokens=100, cached_tokens=800)
    )
    assert cached.amount_usd is not None and plain.amount_usd is not None
    assert 0 < cached.amount_usd < plain.amount_usd


def test_reported_dated_model_is_priced() -> None:
    cost = price_call(
        "openai",
        "gpt-4o-mini",
        Usage(input_tokens=10, output_tokens=10),
        reported_model="gpt-4o-mini-2024-07-18",
    )
    assert cost.known


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openai", "gpt-does-not-exist"), ("my-local-ollama", "llama3"), (None, "gpt-4o-mini")],
)
def test_unknown_model_or_provider_is_unknown_not_zero(provider: str | None, model: str) -> None:
    cost = price_call(provider, model, Usage(input_tokens=1000, output_tokens=100))
    assert cost == Cost(amount_usd=None, known=False, note=cost.note)
    assert cost.note


def test_no_usage_means_unknown_cost() -> None:
    assert not price_call("openai", "gpt-4o-mini", None).known


def test_cost_sum_is_unknown_when_a_part_is() -> None:
    known = Cost(amount_usd=0.5, known=True)
    assert known.plus(known).amount_usd == 1.0
    assert not known.plus(Cost.unknown("no price")).known


def test_cost_cannot_claim_known_without_an_amount() -> None:
    with pytest.raises(ValidationError):
        Cost(amount_usd=None, known=True)
    with pytest.raises(ValidationError):
        Cost(amount_usd=0.0, known=False)
