"""Cost truth: from each wire format's raw usage object, through the adapter's normaliser, to dollars; and
aspweb's cost of every preset model that genai-prices knows equals genai-prices' own total."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest

from providers.adapters.anthropic import usage_from_anthropic
from providers.adapters.base import Usage
from providers.adapters.openai_compat import usage_from_openai
from providers.kinds import KINDS
from providers.models import Model, Price, Provider
from providers.services import default_price, price_set
from usage.pricing import cost, cost_breakdown
from usage.services import COST_PLACES, record_cost

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


# -- cross-check with genai-prices ----------------------------------------------------------------

NOW = datetime.now(tz=UTC)
# The token prices aspweb keeps (Price.PRICE_FIELDS), as genai-prices names them.
OUR_PRICE_KEYS = {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok"}


def mixed_usages(prices: dict[str, Any]) -> list[Usage]:
    """Usage with every token class aspweb bills (uncached input, cache reads, both write durations,
    output with reasoning inside), and for each long-context tier a prompt exactly at its threshold (still
    the tier below) and one token above it."""
    usages = [Usage(input_tokens=1000, cache_read_tokens=200, cache_write_tokens=100, cache_write_1h_tokens=50,
                    output_tokens=500, reasoning_tokens=120)]
    for tier in prices["tiers"]:
        for prompt in (tier["above"], tier["above"] + 1):
            usages.append(Usage(input_tokens=prompt - 7000, cache_read_tokens=4000, cache_write_tokens=2000,
                                cache_write_1h_tokens=1000, output_tokens=900, reasoning_tokens=300))
    return usages


def genai_usage(usage: Usage) -> genai_prices.Usage:
    """The same usage as genai-prices counts it: its input_tokens are every input token, cached or not, and
    its cache_write_tokens every write, of which cache_write_1h_tokens are the 1-hour ones."""
    return genai_prices.Usage(
        input_tokens=usage.prompt_tokens, cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens + usage.cache_write_1h_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        output_tokens=usage.output_tokens, output_reasoning_tokens=usage.reasoning_tokens,
    )


def saved_price(model: Model, prices: dict[str, Any]) -> Price:
    """The default price as the catalog stores it (a version and its tier rows), read back as the ledger
    reads it."""
    price = price_set(model=model, prices=prices, actor=None, source=Price.Source.DEFAULT)
    assert price is not None
    return Price.objects.prefetch_related("tiers").get(pk=price.pk)


def assert_costs_equal(model: Model, prices: dict[str, Any], ref: str, provider_id: str) -> int:
    price = saved_price(model, prices)
    checked = 0
    for usage in mixed_usages(prices):
        theirs = genai_prices.calc_price(genai_usage(usage), ref, provider_id=provider_id,
                                         genai_request_timestamp=NOW).total_price
        # As the ledger stores it (ten places): a few published prices have endless places ($1/12 per
        # 1M tokens), which a price version keeps to twelve.
        assert record_cost(usage, price) == theirs.quantize(COST_PLACES) and theirs > 0, (ref, usage, theirs)
        checked += 1
    return checked


PRICED_PRESETS = [
    (kind, model) for kind in KINDS.values() if kind.prices_provider and not kind.free for model in kind.models
]


@pytest.mark.parametrize(("kind", "model_name"), PRICED_PRESETS, ids=[f"{k.name}:{m}" for k, m in PRICED_PRESETS])
def test_aspweb_cost_equals_genai_prices_for_every_preset_model(db: None, kind: Any, model_name: str) -> None:
    """Every preset model of a kind with price data gets a default price, and aspweb's cost of mixed usage
    at it equals genai-prices' own, tiers and both write durations included."""
    prices = default_price(kind, model_name, NOW)
    assert prices is not None, f"genai-prices has no price for {kind.name} {model_name}"
    provider = Provider.objects.create(name=kind.name.replace("_", "-"), kind=kind.name)
    model = Model.objects.create(provider=provider, name=model_name)
    provider_id, ref = kind.prices_aliases.get(
        model_name, (kind.prices_provider, model_name.removeprefix(kind.prices_model_prefix)))
    assert assert_costs_equal(model, prices, ref, provider_id) == 1 + 2 * len(prices["tiers"])


def test_every_model_genai_prices_knows_for_the_kinds_costs_the_same(db: None) -> None:
    """Beyond the presets: every model genai-prices lists for a kind's provider (an admin may add any of
    them to the catalog) whose prices are all token classes aspweb keeps costs the same in aspweb."""
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()
    checked, tiered, with_1h = 0, 0, 0
    for kind in KINDS.values():
        if not kind.prices_provider or kind.free:
            continue
        provider = Provider.objects.create(name=kind.name.replace("_", "-"), kind=kind.name)
        genai_provider = next(p for p in snapshot.providers if p.id == kind.prices_provider)
        for info in genai_provider.models:
            current = info.get_prices(NOW)
            keys = {key for key, value in current.__dict__.items() if value is not None and not key.startswith("_")}
            if not keys <= OUR_PRICE_KEYS or "input_mtok" not in keys or "output_mtok" not in keys:
                continue  # audio, images, searches or per-request fees: outside the token classes aspweb bills
            if not info.is_match(info.id):
                continue  # an entry for a family of ids (fine-tunes "ft:gpt-4o:..."), not a model id itself
            prices = default_price(kind, info.id, NOW)
            assert prices is not None, info.id
            model = Model.objects.create(provider=provider, name=info.id)
            checked += assert_costs_equal(model, prices, info.id, kind.prices_provider)
            tiered += bool(prices["tiers"])
            with_1h += prices["cache_write_1h"] is not None
    # The sweep reaches the data that matters: hundreds of models, tiered ones and 1-hour writes among them.
    assert checked > 1000 and tiered >= 50 and with_1h >= 15, (checked, tiered, with_1h)
