"""Cost truth: from each wire format's raw usage object, through the adapter's normaliser, to dollars; and
aspweb's cost of every preset model that genai-prices knows equals genai-prices' own total."""

from decimal import Decimal
from typing import Any

import genai_prices
import pytest

from providers.adapters.anthropic import usage_from_anthropic
from providers.adapters.base import Usage
from providers.adapters.openai_compat import usage_from_openai
from providers.kinds import KINDS
from providers.models import Price
from providers.services import default_price
from usage.pricing import cost, cost_breakdown
from usage.services import record_cost

# $ per 1M tokens: input 3, output 15, cache read 0.30, cache write 3.75 (Claude Sonnet's prices).
PRICE = Price(input=Decimal("3"), output=Decimal("15"), cache_read=Decimal("0.3"), cache_write=Decimal("3.75"))


def _openai(raw: dict[str, Any]) -> Usage:
    return usage_from_openai(raw)


def _anthropic(raw: dict[str, Any]) -> Usage:
    return usage_from_anthropic(raw)


def _anthropic_stream(raw: dict[str, Any]) -> Usage:
    return usage_from_anthropic(raw["message_start"], raw["message_delta"])


# (case, normaliser, raw usage as the provider sends it,
#  (uncached input, cache read, cache write, output, reasoning), cost in $)
CASES = [
    ("openai plain", _openai, {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
     (1000, 0, 0, 500, 0), "0.0105"),
    # OpenAI's prompt caching guide: prompt_tokens INCLUDE the cached ones, so only 86 are uncached.
    ("openai cached prompt", _openai,
     {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
      "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0}},
     (86, 1920, 0, 300, 0), "0.005334"),
    # The reasoning guide: completion_tokens (1186) already include the 1024 reasoning tokens.
    ("openai reasoning counted once", _openai,
     {"prompt_tokens": 75, "completion_tokens": 1186, "total_tokens": 1261,
      "completion_tokens_details": {"reasoning_tokens": 1024}},
     (75, 0, 0, 1186, 1024), "0.018015"),
    # Servers that report cache writes put them inside prompt_tokens too.
    ("openai-compatible cache write", _openai,
     {"prompt_tokens": 3000, "completion_tokens": 10,
      "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 1500}},
     (500, 1000, 1500, 10, 0), "0.007575"),
    ("anthropic plain", _anthropic, {"input_tokens": 2095, "output_tokens": 503}, (2095, 0, 0, 503, 0), "0.01383"),
    # Anthropic's prompt caching guide: input_tokens EXCLUDE cache writes and reads.
    ("anthropic cache write", _anthropic,
     {"input_tokens": 21, "cache_creation_input_tokens": 188086, "cache_read_input_tokens": 0, "output_tokens": 393},
     (21, 0, 188086, 393, 0), "0.7112805"),
    ("anthropic cache read", _anthropic,
     {"input_tokens": 21, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 188086, "output_tokens": 393},
     (21, 188086, 0, 393, 0), "0.0623838"),
    # A stream: message_start carries the input side and a provisional output count; message_delta the final.
    ("anthropic stream", _anthropic_stream,
     {"message_start": {"input_tokens": 25, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 50,
                        "output_tokens": 1},
      "message_delta": {"output_tokens": 120}},
     (25, 1000, 50, 120, 0), "0.0023625"),
    ("anthropic thinking counted once", _anthropic,
     {"input_tokens": 100, "output_tokens": 2000, "output_tokens_details": {"thinking_tokens": 1500}},
     (100, 0, 0, 2000, 1500), "0.0303"),
]


@pytest.mark.parametrize(("normalise", "raw", "tokens", "dollars"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_cost_from_raw_provider_usage(normalise: Any, raw: dict[str, Any], tokens: tuple[int, ...],
                                      dollars: str) -> None:
    usage = normalise(raw)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.output_tokens,
            usage.reasoning_tokens) == tokens
    assert cost(usage, PRICE) == Decimal(dollars)
    assert sum(cost_breakdown(usage, PRICE).values()) == Decimal(dollars)
    assert record_cost(usage, PRICE) == Decimal(dollars)  # ten decimal places hold these exactly


def test_the_stored_cost_keeps_ten_decimal_places_and_no_price_costs_nothing() -> None:
    cheap = Price(input=Decimal("0.000001"), output=Decimal("0"))
    assert cost(Usage(input_tokens=1), cheap) == Decimal("1E-12")
    assert record_cost(Usage(input_tokens=1), cheap) == 0
    assert record_cost(Usage(input_tokens=1, output_tokens=1), None) == 0


# aspweb counts input tokens without the cached ones, genai-prices counts them with:
# genai-prices input_tokens = aspweb input + cache read + cache write.
USAGE = Usage(input_tokens=1000, cache_read_tokens=200, cache_write_tokens=100, output_tokens=500)
GENAI_USAGE = genai_prices.Usage(
    input_tokens=USAGE.input_tokens + USAGE.cache_read_tokens + USAGE.cache_write_tokens,
    cache_read_tokens=USAGE.cache_read_tokens, cache_write_tokens=USAGE.cache_write_tokens,
    output_tokens=USAGE.output_tokens,
)
PRICED_PRESETS = [
    (kind, model) for kind in KINDS.values() if kind.prices_provider and not kind.free for model in kind.models
]


@pytest.mark.parametrize(("kind", "model"), PRICED_PRESETS, ids=[f"{k.name}:{m}" for k, m in PRICED_PRESETS])
def test_aspweb_cost_equals_genai_prices_for_every_preset_model(kind: Any, model: str) -> None:
    prices = default_price(kind, model)
    if prices is None:
        pytest.skip(f"genai-prices has no price for {kind.prices_provider} {model}")
    ours = cost(USAGE, Price(**prices))
    theirs = genai_prices.calc_price(GENAI_USAGE, model.removeprefix(kind.prices_strip_prefix),
                                     provider_id=kind.prices_provider).total_price
    assert ours == theirs > 0


def test_the_cross_check_covers_most_preset_models() -> None:
    known = [(kind, model) for kind, model in PRICED_PRESETS if default_price(kind, model) is not None]
    assert len(known) >= 25
    assert {kind.name for kind, _ in known} >= {"anthropic", "openai", "openrouter", "gemini", "groq", "cohere",
                                                 "cloudflare", "claude_cli"}
