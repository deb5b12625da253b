"""Cost of normalised usage at a price version: Decimal throughout, prices per 1M tokens."""

from decimal import Decimal
from typing import Protocol

MILLION = Decimal(1_000_000)


class PriceLike(Protocol):
    input: Decimal
    output: Decimal
    cache_read: Decimal | None
    cache_write: Decimal | None


class UsageLike(Protocol):
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int


def cost_breakdown(usage: UsageLike, price: PriceLike) -> dict[str, Decimal]:
    """Cost per token class. Output tokens include reasoning tokens, which are billed once, as output.
    Cache prices left empty mean cached tokens cost the input price."""
    cache_read = price.cache_read if price.cache_read is not None else price.input
    cache_write = price.cache_write if price.cache_write is not None else price.input
    return {
        "input": Decimal(usage.input_tokens) * price.input / MILLION,
        "cache_read": Decimal(usage.cache_read_tokens) * cache_read / MILLION,
        "cache_write": Decimal(usage.cache_write_tokens) * cache_write / MILLION,
        "output": Decimal(usage.output_tokens) * price.output / MILLION,
    }


def cost(usage: UsageLike, price: PriceLike) -> Decimal:
    return sum(cost_breakdown(usage, price).values(), Decimal(0))
