"""Cost of normalised usage at a price version: Decimal throughout, prices per 1M tokens.

The token classes do not overlap (providers.adapters.base.Usage): uncached input, cache reads, cache
writes kept 5 minutes, cache writes kept 1 hour, and output (reasoning included, billed once). A price
version may hold long-context tiers: the prompt's size (every input token, cached or not) picks the
highest tier whose threshold it is above, and that tier prices every token of the call, as Google and
Anthropic bill them and as genai-prices computes them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

MILLION = Decimal(1_000_000)
CLASSES = ("input", "cache_read", "cache_write", "cache_write_1h", "output")


class PriceLike(Protocol):
    input: Decimal
    output: Decimal
    cache_read: Decimal | None
    cache_write: Decimal | None
    cache_write_1h: Decimal | None


class UsageLike(Protocol):
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    output_tokens: int

    @property
    def prompt_tokens(self) -> int:
        """Every input token, cached or not (Usage and UsageRecord both say it)."""


@dataclass(frozen=True)
class Rates:
    """The price per 1M tokens of each class, with the empty cache prices resolved."""

    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    output: Decimal
    tier_above: int | None = None  # the tier's threshold; None: the base prices

    @property
    def dearest_input(self) -> Decimal:
        """The most any input token can cost: what a worst case charges every prompt token."""
        return max(self.input, self.cache_read, self.cache_write, self.cache_write_1h)


def _or(value: Decimal | None, fallback: Decimal) -> Decimal:
    return value if value is not None else fallback


def _resolve(prices: PriceLike, tier_above: int | None) -> Rates:
    cache_write = _or(prices.cache_write, prices.input)
    return Rates(
        input=prices.input,
        cache_read=_or(prices.cache_read, prices.input),
        cache_write=cache_write,
        cache_write_1h=_or(prices.cache_write_1h, cache_write),
        output=prices.output,
        tier_above=tier_above,
    )


def tiers_of(price: Any) -> Sequence[Any]:
    """A price version's tiers, lowest threshold first (none for anything without `tier_list`)."""
    return getattr(price, "tier_list", ())


def rates(price: PriceLike, prompt_tokens: int) -> Rates:
    """The rates a call with `prompt_tokens` in its prompt pays: the highest tier it is above, or the base."""
    for tier in reversed(tiers_of(price)):
        if prompt_tokens > tier.above:
            return _resolve(tier, tier.above)
    return _resolve(price, None)


def cost_breakdown(usage: UsageLike, price: PriceLike) -> dict[str, Decimal]:
    """Cost per token class, at the tier the usage's prompt selects."""
    applied = rates(price, usage.prompt_tokens)
    return {
        "input": Decimal(usage.input_tokens) * applied.input / MILLION,
        "cache_read": Decimal(usage.cache_read_tokens) * applied.cache_read / MILLION,
        "cache_write": Decimal(usage.cache_write_tokens) * applied.cache_write / MILLION,
        "cache_write_1h": Decimal(usage.cache_write_1h_tokens) * applied.cache_write_1h / MILLION,
        "output": Decimal(usage.output_tokens) * applied.output / MILLION,
    }


def cost(usage: UsageLike, price: PriceLike) -> Decimal:
    return sum(cost_breakdown(usage, price).values(), Decimal(0))


def worst_case_cost(price: PriceLike, *, input_tokens: int, output_tokens: int) -> Decimal:
    """The most a call of at most `input_tokens` prompt tokens and `output_tokens` output tokens can cost:
    every prompt token at the dearest input-side price, every output token at the output price, at the
    dearest of the tiers a prompt of that size or less can select (the base, and every tier the bound is
    above: the one it selects included)."""
    reachable = [_resolve(price, None)] + [_resolve(tier, tier.above) for tier in tiers_of(price)
                                           if input_tokens > tier.above]
    return max((Decimal(input_tokens) * applied.dearest_input + Decimal(output_tokens) * applied.output) / MILLION
               for applied in reachable)
