from decimal import Decimal

from providers.adapters.base import Usage
from providers.models import Price
from usage.pricing import cost, cost_breakdown


def _price(**kwargs: str) -> Price:
    values = {"input": "3", "output": "15", "cache_read": "0.30", "cache_write": "3.75", **kwargs}
    return Price(**{k: Decimal(v) if v is not None else None for k, v in values.items()})


def test_cost_per_token_class_per_million() -> None:
    usage = Usage(input_tokens=1000, cache_read_tokens=2000, cache_write_tokens=4000, output_tokens=500,
                  reasoning_tokens=200)
    breakdown = cost_breakdown(usage, _price())
    assert breakdown == {"input": Decimal("0.003"), "cache_read": Decimal("0.0006"),
                         "cache_write": Decimal("0.015"), "output": Decimal("0.0075")}
    # Reasoning tokens are part of output and are not billed a second time.
    assert cost(usage, _price()) == Decimal("0.0261")


def test_missing_cache_prices_fall_back_to_the_input_price() -> None:
    usage = Usage(cache_read_tokens=1_000_000, cache_write_tokens=1_000_000)
    assert cost(usage, _price(cache_read=None, cache_write=None)) == Decimal("6")


def test_cost_is_exact_decimal() -> None:
    assert cost(Usage(input_tokens=1, output_tokens=1), _price(input="0.15", output="0.6")) == Decimal("0.00000075")
