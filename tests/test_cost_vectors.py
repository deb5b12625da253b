"""Cost test vectors (issue #12): each provider's usage object, shaped as its documentation shows and placed
where that provider places it, goes through the real call path (resolution, the adapter over loopback HTTP
or the `claude` subprocess, the usage record), and the ledger must hold the token classes the provider bills
and the cost its published prices give, worked out by hand below.

Every vector runs streamed and not. A call not to stream asks an OpenAI-compatible server for the whole
answer at once; the Anthropic and Claude CLI adapters stream from their provider either way.

Prices, in USD per million tokens, from each provider's pricing page:
- Claude Sonnet 4.5 (Anthropic): input 3, output 15, cache read 0.30, cache write 3.75 (5 minutes) and 6
  (1 hour); a prompt of more than 200K tokens (cache reads and writes included) prices the whole call at
  6 / 22.50 / 0.60 / 7.50 / 12.
- Gemini 2.5 Flash (Google): input 0.30, output 2.50, thinking tokens included.
- Gemini 2.5 Pro (Google): input 1.25, output 10 up to a 200K-token prompt; above it 2.50 and 15.
- Claude 3 Haiku (Anthropic, as OpenRouter passes it on): input 0.25, output 1.25, cache read 0.03, cache
  write 0.30.
- Llama 3.3 70B Versatile (Groq): input 0.59, output 0.79.
- o1 (OpenAI): input 15, cached input 7.50, output 60.
"""

import json
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from providers import calls, services
from providers.adapters.base import ChatRequest, Message
from providers.models import Model, Provider
from tests.fakes import claude_cli as fake_cli
from tests.fakes.upstream import FakeUpstream
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

CALLER = calls.Caller(source="cli")

SONNET_45 = {
    "input": Decimal("3"), "output": Decimal("15"), "cache_read": Decimal("0.30"), "cache_write": Decimal("3.75"),
    "cache_write_1h": Decimal("6"),
    "tiers": [{"above": 200_000, "input": Decimal("6"), "output": Decimal("22.50"), "cache_read": Decimal("0.60"),
               "cache_write": Decimal("7.50"), "cache_write_1h": Decimal("12")}],
}
GEMINI_25_FLASH = {"input": Decimal("0.30"), "output": Decimal("2.50"), "cache_read": Decimal("0.03")}
GEMINI_25_PRO = {
    "input": Decimal("1.25"), "output": Decimal("10"), "cache_read": Decimal("0.125"),
    "tiers": [{"above": 200_000, "input": Decimal("2.50"), "output": Decimal("15"), "cache_read": Decimal("0.25")}],
}
# What the catalog holds for OpenRouter's Claude 3 Haiku by default: no cache prices, so aspweb's own
# computation prices cache reads and writes as input.
OPENROUTER_CLAUDE_3_HAIKU = {"input": Decimal("0.25"), "output": Decimal("1.25")}
GROQ_LLAMA_33_70B = {"input": Decimal("0.59"), "output": Decimal("0.79")}
OPENAI_O1 = {"input": Decimal("15"), "output": Decimal("60"), "cache_read": Decimal("7.50")}

CLASSES = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
           "reasoning_tokens")


def priced_model(kind: str, base_url: str, name: str, prices: dict[str, Any]) -> Model:
    provider = Provider.objects.create(name=kind.replace("_", "-"), kind=kind, base_url=base_url,
                                       api_key="sk-vectors-0001", max_retries=0)
    model = Model.objects.create(provider=provider, name=name)
    services.price_set(model=model, prices=prices, actor=None, effective_from=timezone.now() - timedelta(days=1))
    return model


def call(model: Model, stream: bool) -> UsageRecord:
    """One call of `model` through the call path; the usage record it wrote."""
    request = ChatRequest(model=f"{model.provider.name}/{model.name}", messages=(Message("user", "Say hello."),),
                          stream=stream)
    _, record = calls.complete_chat(request, caller=CALLER)
    assert record.status == "ok", record.error
    return UsageRecord.objects.get(request_id=record.request_id)


def classes(record: UsageRecord) -> dict[str, int]:
    return {name: getattr(record, name) for name in CLASSES}


def tokens(input_tokens: int = 0, cache_read_tokens: int = 0, cache_write_tokens: int = 0,
           cache_write_1h_tokens: int = 0, output_tokens: int = 0, reasoning_tokens: int = 0) -> dict[str, int]:
    return dict(zip(CLASSES, (input_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                              output_tokens, reasoning_tokens), strict=True))


@pytest.fixture(params=[True, False], ids=["streamed", "whole"])
def stream(request: pytest.FixtureRequest) -> bool:
    return request.param


# -- 1. Anthropic's cache writes of two durations --------------------------------------------------------------


def test_anthropic_writes_kept_one_hour_cost_twice_the_input(upstream: FakeUpstream, stream: bool) -> None:
    # Anthropic's prompt caching docs, "1-hour cache duration": cache_creation_input_tokens (248) is the sum of
    # cache_creation's 148 five-minute and 100 one-hour tokens. message_start carries it all; message_delta
    # repeats the cumulative counts without the split.
    upstream.raw_usage = {
        "input_tokens": 2048, "cache_read_input_tokens": 1800, "cache_creation_input_tokens": 248,
        "output_tokens": 503, "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100},
    }
    model = priced_model("anthropic", upstream.base_url, "claude-sonnet-4-5", SONNET_45)

    record = call(model, stream)

    assert classes(record) == tokens(input_tokens=2048, cache_read_tokens=1800, cache_write_tokens=148,
                                     cache_write_1h_tokens=100, output_tokens=503)
    # 2048 x 3 + 1800 x 0.30 + 148 x 3.75 + 100 x 6 + 503 x 15 = 6144 + 540 + 555 + 600 + 7545 = 15384 per 1M
    assert (record.cost, record.computed_cost, record.reported_cost) == (Decimal("0.015384"), Decimal("0.015384"),
                                                                         None)
    assert not record.usage_estimated and not record.unpriced
    assert re.fullmatch(r"msg_fake\d{8}", record.upstream_id)  # the message's id, for Anthropic's support


# -- 2. Long-context tiers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("uncached", "expected_cost"), [
    # 50,000 + 150,000 read + 8,000 + 2,000 written = 210,000 prompt tokens: more than 200K, though the
    # uncached input alone is far less. Every token at the long-context prices:
    # 50,000 x 6 + 150,000 x 0.60 + 8,000 x 7.50 + 2,000 x 12 + 1,000 x 22.50 = 496,500 per 1M
    pytest.param(50_000, Decimal("0.4965"), id="above-200k"),
    # 40,000 + 150,000 + 8,000 + 2,000 = 200,000: not more than 200K, so the base prices:
    # 40,000 x 3 + 150,000 x 0.30 + 8,000 x 3.75 + 2,000 x 6 + 1,000 x 15 = 222,000 per 1M
    pytest.param(40_000, Decimal("0.222"), id="exactly-200k"),
])
def test_anthropic_prompt_over_200k_is_priced_at_the_long_context_tier(upstream: FakeUpstream, stream: bool,
                                                                       uncached: int, expected_cost: Decimal) -> None:
    upstream.raw_usage = {
        "input_tokens": uncached, "cache_read_input_tokens": 150_000, "cache_creation_input_tokens": 10_000,
        "output_tokens": 1000, "cache_creation": {"ephemeral_5m_input_tokens": 8000, "ephemeral_1h_input_tokens": 2000},
    }
    model = priced_model("anthropic", upstream.base_url, "claude-sonnet-4-5", SONNET_45)

    record = call(model, stream)

    assert classes(record) == tokens(input_tokens=uncached, cache_read_tokens=150_000, cache_write_tokens=8000,
                                     cache_write_1h_tokens=2000, output_tokens=1000)
    assert record.cost == expected_cost


def test_gemini_prompt_over_200k_with_thoughts_is_priced_at_the_long_context_tier(upstream: FakeUpstream,
                                                                                  stream: bool) -> None:
    # 250,000 prompt tokens; an answer of 2,000 tokens after 2,000 thought tokens only the total counts.
    upstream.usage_style = "gemini"
    upstream.raw_usage = {"prompt_tokens": 250_000, "completion_tokens": 2000, "total_tokens": 254_000}
    model = priced_model("gemini", upstream.openai_base_url, "gemini-2.5-pro", GEMINI_25_PRO)

    record = call(model, stream)

    assert classes(record) == tokens(input_tokens=250_000, output_tokens=4000, reasoning_tokens=2000)
    # 250,000 x 2.50 + 4,000 x 15 = 685,000 per 1M
    assert record.cost == Decimal("0.685")


# -- 1 again: the Claude CLI's result -----------------------------------------------------------------------------


@pytest.fixture
def claude_cli_model(tmp_path: Path, settings: Any) -> Callable[[], Model]:
    """The fake `claude` on a wrapper script, and a Claude CLI provider's Claude Sonnet 4.5 running it."""
    wrapper = tmp_path / "claude"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake_cli.__file__}" "$@"\n')
    wrapper.chmod(0o755)
    settings.CLAUDE_CLI_PATH = str(wrapper)
    settings.CLAUDE_CLI_ENV = fake_cli.ENV_NAMES
    return lambda: priced_model("claude_cli", "", "claude-sonnet-4-5", SONNET_45)


def test_claude_cli_result_writes_kept_one_hour_and_its_reported_cost(claude_cli_model: Callable[[], Model],
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      stream: bool) -> None:
    # The result event as Claude Code 2.1 prints it. Its total_cost_usd covers every model the run called
    # (modelUsage), its usage the main model's tokens only: the CLI's charge is the call's cost.
    monkeypatch.setenv("FAKE_CLAUDE_COST", "0.0745213")
    monkeypatch.setenv("FAKE_CLAUDE_USAGE", json.dumps({
        "input_tokens": 6, "cache_creation_input_tokens": 8982, "cache_read_input_tokens": 42853, "output_tokens": 583,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0}, "service_tier": "standard",
        "cache_creation": {"ephemeral_1h_input_tokens": 6000, "ephemeral_5m_input_tokens": 2982},
    }))

    record = call(claude_cli_model(), stream)

    assert classes(record) == tokens(input_tokens=6, cache_read_tokens=42853, cache_write_tokens=2982,
                                     cache_write_1h_tokens=6000, output_tokens=583)
    # aspweb's own: 6 x 3 + 42,853 x 0.30 + 2,982 x 3.75 + 6,000 x 6 + 583 x 15
    #             = 18 + 12,855.9 + 11,182.5 + 36,000 + 8,745 = 68,801.4 per 1M
    assert (record.cost, record.reported_cost, record.computed_cost) == (
        Decimal("0.0745213"), Decimal("0.0745213"), Decimal("0.0688014"))
    assert record.cost_difference == Decimal("0.0057199")


# -- 3. Thoughts counted only in the total ------------------------------------------------------------------------


def test_gemini_thoughts_counted_only_in_the_total_are_billed_as_output(upstream: FakeUpstream,
                                                                        stream: bool) -> None:
    # Google's OpenAI-compatible endpoint, gemini-2.5-flash: a 151-token answer after 382 thought tokens that
    # completion_tokens leaves out and total_tokens counts (20 + 151 + 382 = 553). Streamed, every event
    # carries the counts so far; the last one holds the call's.
    upstream.usage_style = "gemini"
    upstream.raw_usage = {"prompt_tokens": 20, "completion_tokens": 151, "total_tokens": 553}
    model = priced_model("gemini", upstream.openai_base_url, "gemini-2.5-flash", GEMINI_25_FLASH)

    record = call(model, stream)

    assert classes(record) == tokens(input_tokens=20, output_tokens=533, reasoning_tokens=382)
    # 20 x 0.30 + 533 x 2.50 = 6 + 1,332.5 = 1,338.5 per 1M (the 151 answer tokens alone: 383.5)
    assert record.cost == Decimal("0.0013385")


# -- 4. OpenRouter's charge -------------------------------------------------------------------------------------


def test_openrouter_usage_cost_is_the_cost_and_aspweb_s_own_stands_beside_it(upstream: FakeUpstream,
                                                                             stream: bool) -> None:
    # OpenRouter's usage accounting fields: `cost` is "the total amount charged to your account";
    # prompt_tokens (10,000) includes 8,000 read from the cache and 1,000 written to it. OpenRouter charged
    # Anthropic's prices: 1,000 x 0.25 + 8,000 x 0.03 + 1,000 x 0.30 + 200 x 1.25 = 1,040 per 1M.
    upstream.usage_style = "openrouter"
    upstream.raw_usage = {
        "prompt_tokens": 10_000, "completion_tokens": 200, "total_tokens": 10_200, "cost": 0.00104, "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 8000, "cache_write_tokens": 1000, "audio_tokens": 0},
        "cost_details": {"upstream_inference_cost": 0.00104}, "completion_tokens_details": {"reasoning_tokens": 0},
    }
    model = priced_model("openrouter", upstream.openai_base_url, "anthropic/claude-3-haiku",
                         OPENROUTER_CLAUDE_3_HAIKU)

    record = call(model, stream)

    assert classes(record) == tokens(input_tokens=1000, cache_read_tokens=8000, cache_write_tokens=1000,
                                     output_tokens=200)
    # aspweb's own, without cache prices: 10,000 x 0.25 + 200 x 1.25 = 2,750 per 1M
    assert (record.cost, record.reported_cost, record.computed_cost) == (
        Decimal("0.00104"), Decimal("0.00104"), Decimal("0.00275"))
    assert record.cost_difference == Decimal("-0.00171")
    assert re.fullmatch(r"gen-fake\d{8}", record.upstream_id)  # the generation its stats are looked up by


def test_openrouter_with_the_customer_s_own_key_costs_its_fee_and_the_upstream_charge(upstream: FakeUpstream,
                                                                                      stream: bool) -> None:
    # With BYOK (`is_byok`), `cost` is OpenRouter's fee for the call and `cost_details.upstream_inference_cost`
    # "the actual cost charged by the upstream AI provider", billed on the customer's own key: the call costs both.
    upstream.usage_style = "openrouter"
    upstream.raw_usage = {
        "prompt_tokens": 10_000, "completion_tokens": 200, "total_tokens": 10_200, "cost": 0.000052, "is_byok": True,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "cost_details": {"upstream_inference_cost": 0.00275}, "completion_tokens_details": {"reasoning_tokens": 0},
    }
    model = priced_model("openrouter", upstream.openai_base_url, "anthropic/claude-3-haiku",
                         OPENROUTER_CLAUDE_3_HAIKU)

    record = call(model, stream)

    assert (record.cost, record.reported_cost, record.computed_cost) == (
        Decimal("0.002802"), Decimal("0.002802"), Decimal("0.00275"))


def test_a_reported_cost_is_kept_where_the_provider_does_not_bill(upstream: FakeUpstream, stream: bool) -> None:
    # A proxy that adds OpenRouter's `cost` to its usage: recorded beside aspweb's pricing, which stays the cost.
    upstream.raw_usage = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100, "cost": 0.5}
    model = priced_model("openai_compatible", upstream.openai_base_url, "gpt-4o", {"input": Decimal("2.50"),
                                                                                  "output": Decimal("10")})

    record = call(model, stream)

    # 1,000 x 2.50 + 100 x 10 = 3,500 per 1M
    assert (record.cost, record.reported_cost, record.computed_cost) == (
        Decimal("0.0035"), Decimal("0.5"), Decimal("0.0035"))


# -- 5. Groq's usage inside x_groq ------------------------------------------------------------------------------


def test_groq_usage_inside_x_groq_is_read_not_estimated(upstream: FakeUpstream, stream: bool) -> None:
    # Groq's streamed answer carries its usage, with its timings, only in x_groq of the last event.
    upstream.usage_style = "groq"
    upstream.raw_usage = {"queue_time": 0.061348671, "prompt_tokens": 18, "prompt_time": 0.000211569,
                          "completion_tokens": 439, "completion_time": 0.798181818, "total_tokens": 457,
                          "total_time": 0.798393387}
    model = priced_model("groq", upstream.openai_base_url, "llama-3.3-70b-versatile", GROQ_LLAMA_33_70B)

    record = call(model, stream)

    assert classes(record) == tokens(input_tokens=18, output_tokens=439)
    assert record.usage_estimated is False
    # 18 x 0.59 + 439 x 0.79 = 10.62 + 346.81 = 357.43 per 1M
    assert record.cost == Decimal("0.00035743")


# -- OpenAI's cached and reasoning tokens ------------------------------------------------------------------------


def test_openai_cached_and_reasoning_tokens(upstream: FakeUpstream, stream: bool) -> None:
    # OpenAI's usage fields: prompt_tokens includes the 1,920 cached tokens, completion_tokens the 1,024
    # reasoning tokens; the total adds up, so nothing is added to the output.
    upstream.raw_usage = {
        "prompt_tokens": 2006, "completion_tokens": 1186, "total_tokens": 3192,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 1024, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }
    model = priced_model("openai", upstream.openai_base_url, "o1", OPENAI_O1)

    record = call(model, stream)

    assert classes(record) == tokens(input_tokens=86, cache_read_tokens=1920, output_tokens=1186,
                                     reasoning_tokens=1024)
    # 86 x 15 + 1,920 x 7.50 + 1,186 x 60 = 1,290 + 14,400 + 71,160 = 86,850 per 1M
    assert record.cost == Decimal("0.08685")
    assert re.fullmatch(r"chatcmpl-fake\d{8}", record.upstream_id)
