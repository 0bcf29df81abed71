"""The price of a model call, from the offline price data bundled in `genai-prices`.

A model or provider that genai-prices does not know gives `Cost(amount_usd=None, known=False)`
with a note saying why: the cost is unknown, never a silent zero.

Example:
    cost = price_call("openai", "gpt-4o-mini", Usage(input_tokens=1000, output_tokens=100))
    # Cost(amount_usd=0.00021, known=True)
"""

from __future__ import annotations

from datetime import datetime

import genai_prices
import genai_prices.data_snapshot

from inferpipe.llm.types import Cost, Usage


def price_call(
    provider_id: str | None,
    model: str,
    usage: Usage | None,
    *,
    reported_model: str | None = None,
    at: datetime | None = None,
) -> Cost:
    """The cost in USD of one call.

    Args:
        provider_id: genai-prices' provider id ("openai", "anthropic", "openrouter", ...). None
            means the call cannot be priced (a local or fake provider).
        model: The model that was requested.
        usage: The tokens used; None when the provider reported none.
        reported_model: The model the provider says answered (often a dated variant), tried first.
        at: When the call was made (prices change over time); None means now.

    Returns:
        A known cost, or an unknown one with a note.
    """
    if usage is None:
        return Cost.unknown("the provider reported no token usage")
    if provider_id is None:
        return Cost.unknown("this provider has no price data")
    priced_usage = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=min(usage.cached_tokens, usage.input_tokens),
    )
    candidates = [m for m in (reported_model, model) if m]
    for candidate in dict.fromkeys(candidates):
        amount = _lookup(priced_usage, candidate, provider_id, at)
        if amount is not None:
            return Cost(amount_usd=amount, known=True)
    return Cost.unknown(f"no price for model {model!r} of provider {provider_id!r} in genai-prices")


def known_model(provider_id: str, model: str) -> bool | None:
    """Whether genai-prices lists `model` for `provider_id` (dated variants included); None
    when it does not know the provider at all."""
    snapshot = genai_prices.data_snapshot.get_snapshot()
    provider = genai_prices.data_snapshot.find_provider_by_id(snapshot.providers, provider_id)
    if provider is None:
        return None
    return provider.find_model(model) is not None


def _lookup(
    usage: genai_prices.Usage, model: str, provider_id: str, at: datetime | None
) -> float | None:
    try:
        calculation = genai_prices.calc_price(
            usage, model, provider_id=provider_id, genai_request_timestamp=at
        )
    # LookupError: unknown provider or model; ValueError: usage the price data cannot interpret.
    except (LookupError, ValueError):
        return None
    return float(calculation.total_price)
