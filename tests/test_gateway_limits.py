"""Requests- and tokens-per-minute limits: the counters in Django's cache, and the 429s the gateway answers."""

import pytest
from django.core.cache import cache

from gateway import ratelimit
from tests.conftest import MINUTE_START, Clock
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import call, chat_body, make_key, make_providers, messages_body

assert MINUTE_START % 60 == 0


@pytest.fixture(autouse=True)
def clock(minute: Clock) -> Clock:
    return minute


def test_requests_are_counted_per_minute_and_refusals_say_when_to_retry(clock: Clock) -> None:
    for _ in range(3):
        ratelimit.admit("ask-aaaaaaaa", rpm=3, tpm=None, estimate=0)
    with pytest.raises(ratelimit.RateLimited) as refused:
        ratelimit.admit("ask-aaaaaaaa", rpm=3, tpm=None, estimate=0)
    assert refused.value.retry_after == 45 and "3 requests a minute" in refused.value.message
    ratelimit.admit("ask-bbbbbbbb", rpm=3, tpm=None, estimate=0)  # another key counts apart
    clock.now = MINUTE_START + 59.5
    with pytest.raises(ratelimit.RateLimited) as refused:
        ratelimit.admit("ask-aaaaaaaa", rpm=3, tpm=None, estimate=0)
    assert refused.value.retry_after == 1
    clock.now = MINUTE_START + 60  # the next minute starts afresh
    ratelimit.admit("ask-aaaaaaaa", rpm=3, tpm=None, estimate=0)
    # Refusals were not counted: the new minute still has two requests left.
    ratelimit.admit("ask-aaaaaaaa", rpm=3, tpm=None, estimate=0)
    ratelimit.admit("ask-aaaaaaaa", rpm=3, tpm=None, estimate=0)
    with pytest.raises(ratelimit.RateLimited):
        ratelimit.admit("ask-aaaaaaaa", rpm=3, tpm=None, estimate=0)


def test_tokens_are_reserved_then_settled_from_usage(clock: Clock) -> None:
    reservation = ratelimit.admit("ask-aaaaaaaa", rpm=None, tpm=100, estimate=30)
    assert cache.get(reservation.counter) == 30
    ratelimit.settle(reservation, 80)  # the provider said 80 tokens, input and output
    assert cache.get(reservation.counter) == 80
    ratelimit.admit("ask-aaaaaaaa", rpm=None, tpm=100, estimate=20)  # 80 + 20 fits exactly
    with pytest.raises(ratelimit.RateLimited) as refused:
        ratelimit.admit("ask-aaaaaaaa", rpm=None, tpm=100, estimate=1)
    assert "100 tokens a minute" in refused.value.message
    assert cache.get(reservation.counter) == 100  # the refused estimate was taken back


def test_a_request_larger_than_the_limit_goes_through_only_in_an_empty_minute(clock: Clock) -> None:
    ratelimit.admit("ask-aaaaaaaa", rpm=None, tpm=100, estimate=500)
    with pytest.raises(ratelimit.RateLimited):
        ratelimit.admit("ask-aaaaaaaa", rpm=None, tpm=100, estimate=500)


def test_a_refused_token_reservation_does_not_count_the_request(clock: Clock) -> None:
    ratelimit.admit("ask-aaaaaaaa", rpm=2, tpm=10, estimate=10)
    with pytest.raises(ratelimit.RateLimited):
        ratelimit.admit("ask-aaaaaaaa", rpm=2, tpm=10, estimate=5)
    assert cache.get(f"gw:rpm:ask-aaaaaaaa:{int(MINUTE_START // 60)}") == 1


def test_a_call_ending_in_the_next_minute_counts_there(clock: Clock) -> None:
    reservation = ratelimit.admit("ask-aaaaaaaa", rpm=None, tpm=1000, estimate=10)
    clock.now = MINUTE_START + 61
    ratelimit.settle(reservation, 300)
    assert cache.get(reservation.counter) == 10
    assert cache.get(f"gw:tpm:ask-aaaaaaaa:{int(MINUTE_START // 60) + 1}") == 300


# -- through the gateway ------------------------------------------------------------------------------


@pytest.fixture
def models(db: None, upstream: FakeUpstream) -> dict:
    return make_providers(upstream)


@pytest.mark.parametrize(("path", "body", "shape"), [
    ("/v1/chat/completions", chat_body(), "openai"),
    ("/v1/messages", messages_body(), "anthropic"),
])
def test_rpm_limit_answers_429_with_retry_after(models: dict, upstream: FakeUpstream, path: str, body: dict,
                                                shape: str) -> None:
    _, raw = make_key(rpm_limit=2)
    assert [call(path, body, key=raw).status for _ in range(2)] == [200, 200]
    refused = call(path, body, key=raw)
    assert refused.status == 429 and refused.headers["retry-after"] == "45"
    if shape == "openai":
        assert refused.json["error"]["code"] == "rate_limit_exceeded"
        assert refused.json["error"]["type"] == "rate_limit_error"
    else:
        assert refused.json["error"]["type"] == "rate_limit_error"
    assert len(upstream.requests) == 2
    _, other = make_key(rpm_limit=2)
    assert call(path, body, key=other).status == 200


def test_tpm_limit_counts_the_tokens_the_provider_reported(models: dict, upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 300, "output_tokens": 100}
    _, raw = make_key(tpm_limit=450)
    assert call("/v1/chat/completions", chat_body(), key=raw).status == 200  # 400 tokens counted
    refused = call("/v1/chat/completions", chat_body(messages=[{"role": "user", "content": "x" * 400}]), key=raw)
    assert refused.status == 429 and refused.headers["retry-after"] == "45"
    assert "450 tokens a minute" in refused.json["error"]["message"]
    assert len(upstream.requests) == 1
    # A short request still fits in what is left of the minute.
    assert call("/v1/chat/completions", chat_body(), key=raw).status == 200


def test_tpm_counts_streamed_calls_too(models: dict, upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 300, "output_tokens": 200}
    _, raw = make_key(tpm_limit=500)
    assert call("/v1/chat/completions", chat_body(stream=True), key=raw).status == 200
    assert call("/v1/messages", messages_body(stream=True), key=raw).status == 429
