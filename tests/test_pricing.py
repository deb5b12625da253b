from decimal import Decimal
from types import SimpleNamespace

from providers.adapters.base import Usage
from providers.models import Price
from usage.pricing import cost, cost_breakdown, rates, worst_case_cost


def _price(**kwargs: str | None) -> Price:
    values = {"input": "3", "output": "15", "cache_read": "0.30", "cache_write": "3.75", "cache_write_1h": "6",
              **kwargs}
    return Price(**{k: Decimal(v) if v is not None else None for k, v in values.items()})


def _tiered(*tiers: dict[str, str]) -> SimpleNamespace:
    """A price version with long-context tiers, shaped as pricing reads one (a saved Price's tier_list)."""
    base = _price()
    return SimpleNamespace(**{name: getattr(base, name) for name in Price.PRICE_FIELDS}, tier_list=[
        SimpleNamespace(above=tier["above"], **{name: Decimal(tier[name]) if tier.get(name) else None
                                                for name in Price.PRICE_FIELDS})
        for tier in tiers
    ])


def test_cost_per_token_class_per_million() -> None:
    usage = Usage(input_tokens=1000, cache_read_tokens=2000, cache_write_tokens=4000, cache_write_1h_tokens=1000,
                  output_tokens=500, reasoning_tokens=200)
    breakdown = cost_breakdown(usage, _price())
    assert breakdown == {"input": Decimal("0.003"), "cache_read": Decimal("0.0006"), "cache_write": Decimal("0.015"),
                         "cache_write_1h": Decimal("0.006"), "output": Decimal("0.0075")}
    # Reasoning tokens are part of output and are not billed a second time.
    assert cost(usage, _price()) == Decimal("0.0321")


def test_missing_cache_prices_fall_back_to_the_input_price_and_1h_writes_to_the_5m_price() -> None:
    usage = Usage(cache_read_tokens=1_000_000, cache_write_tokens=1_000_000, cache_write_1h_tokens=1_000_000)
    assert cost(usage, _price(cache_read=None, cache_write=None, cache_write_1h=None)) == Decimal("9")
    assert cost(usage, _price(cache_read=None, cache_write_1h=None)) == Decimal("3") + Decimal("3.75") * 2


def test_cost_is_exact_decimal() -> None:
    assert cost(Usage(input_tokens=1, output_tokens=1), _price(input="0.15", output="0.6")) == Decimal("0.00000075")


def test_the_prompt_including_cached_tokens_picks_the_tier_that_prices_the_whole_call() -> None:
    price = _tiered({"above": 200_000, "input": "6", "output": "22.5", "cache_read": "0.6", "cache_write": "7.5",
                     "cache_write_1h": "12"})
    # 200,000 prompt tokens exactly: not above the threshold.
    at = Usage(input_tokens=100_000, cache_read_tokens=50_000, cache_write_tokens=30_000,
               cache_write_1h_tokens=20_000, output_tokens=1000)
    assert rates(price, at.prompt_tokens).tier_above is None
    assert cost(at, price) == Decimal("0.3") + Decimal("0.015") + Decimal("0.1125") + Decimal("0.12") \
        + Decimal("0.015")
    # One cache read more: every token of the call at the tier's prices, output included.
    above = Usage(input_tokens=100_000, cache_read_tokens=50_001, cache_write_tokens=30_000,
                  cache_write_1h_tokens=20_000, output_tokens=1000)
    assert rates(price, above.prompt_tokens).tier_above == 200_000
    assert cost(above, price) == (Decimal(100_000) * 6 + Decimal(50_001) * Decimal("0.6") + Decimal(30_000)
                                  * Decimal("7.5") + Decimal(20_000) * 12 + Decimal(1000) * Decimal("22.5")) / 10**6


def test_a_tier_without_cache_prices_falls_back_to_its_own_input_price() -> None:
    price = _tiered({"above": 128_000, "input": "2.5", "output": "10"})
    usage = Usage(input_tokens=100_000, cache_read_tokens=100_000)
    assert cost(usage, price) == Decimal("0.5")


def test_the_worst_case_uses_the_dearest_input_price_of_the_dearest_reachable_tier() -> None:
    price = _tiered({"above": 200_000, "input": "6", "output": "22.5", "cache_write_1h": "12"})
    # Below the threshold only the base can apply: its dearest input-side price is the 1-hour write.
    assert worst_case_cost(price, input_tokens=100_000, output_tokens=1000) == Decimal("0.6") + Decimal("0.015")
    # Above it, the tier can apply.
    assert worst_case_cost(price, input_tokens=300_000, output_tokens=1000) == Decimal("3.6") + Decimal("0.0225")
    # A tier cheaper than the base (never seen, but not assumed away) leaves the base as the worst case.
    cheaper = _tiered({"above": 10, "input": "1", "output": "1"})
    assert worst_case_cost(cheaper, input_tokens=1000, output_tokens=0) == Decimal("0.006")
