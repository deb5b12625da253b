"""The response cache: opt-in per request or per route, replayed streamed or not, without the provider."""

import time

import pytest
from django.core.cache import cache

from gateway import api
from gateway.models import Deployment, Route
from providers.adapters.base import ChatRequest, Message
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import OPENAI_MODEL, call, chat_body, make_key, make_providers, messages_body
from usage.models import UsageRecord

CHAT = "/v1/chat/completions"
CACHE = {"x-aspweb-cache": "true"}


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


@pytest.fixture
def key(db: None, upstream: FakeUpstream) -> str:
    make_providers(upstream)
    return make_key()[1]


def test_an_identical_request_is_answered_from_the_cache(key: str, upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 40, "output_tokens": 9}
    first = call(CHAT, chat_body(), key=key, headers=CACHE)
    assert first.status == 200 and first.headers["x-aspweb-cache"] == "miss"
    upstream.reply = "A different answer now."  # the provider would answer otherwise
    second = call(CHAT, chat_body(), key=key, headers=CACHE)
    assert second.status == 200 and second.headers["x-aspweb-cache"] == "hit"
    assert len(upstream.requests) == 1
    assert second.json["choices"] == first.json["choices"] and second.json["usage"] == first.json["usage"]
    assert second.json["id"] != first.json["id"] and second.headers["x-request-id"] != first.headers["x-request-id"]
    assert second.headers["x-aspweb-cost"] == "0" and first.headers["x-aspweb-cost"] != "0"
    assert second.headers["x-aspweb-provider"] == "local" and second.headers["x-aspweb-model"] == "fake-model-a"
    # Both land in the ledger; the hit as cached, at cost 0, with the tokens it replayed.
    hit = UsageRecord.objects.get(request_id=second.headers["x-request-id"])
    assert (hit.cached, hit.cost, hit.price, hit.input_tokens, hit.output_tokens) == (True, 0, None, 40, 9)
    assert hit.api_key is not None and hit.source == "gateway"
    miss = UsageRecord.objects.get(request_id=first.headers["x-request-id"])
    assert not miss.cached and miss.cost > 0


def test_a_cached_answer_replays_as_a_stream(key: str, upstream: FakeUpstream) -> None:
    upstream.tool_call = None
    call(CHAT, chat_body(), key=key, headers=CACHE)
    streamed = call(CHAT, chat_body(stream=True, stream_options={"include_usage": True}), key=key, headers=CACHE)
    assert streamed.headers["x-aspweb-cache"] == "hit" and len(upstream.requests) == 1
    chunks = [data for _, data in streamed.events if isinstance(data, dict)]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == upstream.reply
    assert chunks[-1]["usage"]["completion_tokens"] > 0 and streamed.events[-1] == (None, "[DONE]")
    # The same question in Anthropic's format is the same normalised request.
    call(CHAT, chat_body(max_tokens=50), key=key, headers=CACHE)
    again = call("/v1/messages", messages_body(OPENAI_MODEL, max_tokens=50, stream=True), key=key, headers=CACHE)
    assert again.headers["x-aspweb-cache"] == "hit" and len(upstream.requests) == 2
    names = [name for name, _ in again.events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    text = "".join(d["delta"]["text"] for n, d in again.events if n == "content_block_delta")
    assert text == upstream.reply


def test_a_streamed_answer_is_cached_and_tool_calls_replay(key: str, upstream: FakeUpstream) -> None:
    upstream.tool_call = {"id": "call_1", "name": "f", "arguments": {"a": 1}}
    tools = [{"type": "function", "function": {"name": "f"}}]
    call(CHAT, chat_body(tools=tools, stream=True), key=key, headers=CACHE)
    hit = call(CHAT, chat_body(tools=tools), key=key, headers=CACHE)
    assert hit.headers["x-aspweb-cache"] == "hit" and len(upstream.requests) == 1
    assert hit.json["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]
    assert hit.json["choices"][0]["finish_reason"] == "tool_calls"


def test_the_cache_is_opt_in_and_keyed_by_the_whole_request(key: str, upstream: FakeUpstream) -> None:
    call(CHAT, chat_body(), key=key)
    call(CHAT, chat_body(), key=key)
    assert len(upstream.requests) == 2
    call(CHAT, chat_body(), key=key, headers=CACHE)
    for different in (chat_body(temperature=0.5), chat_body(messages=[{"role": "user", "content": "Other"}]),
                      chat_body("local/fake-model-b")):
        assert call(CHAT, different, key=key, headers=CACHE).headers["x-aspweb-cache"] == "miss"
    assert "x-aspweb-cache" not in call(CHAT, chat_body(), key=key, headers={"x-aspweb-cache": "false"}).headers
    assert len(upstream.requests) == 7


def test_failed_calls_are_not_cached(key: str, upstream: FakeUpstream) -> None:
    upstream.fail_next("500")
    assert call(CHAT, chat_body(), key=key, headers=CACHE).status == 502
    upstream.fail_next("cut", cut_after=2)
    call(CHAT, chat_body(stream=True), key=key, headers=CACHE)
    answer = call(CHAT, chat_body(), key=key, headers=CACHE)
    assert answer.status == 200 and answer.headers["x-aspweb-cache"] == "miss"
    assert len(upstream.requests) == 3


def test_the_ttl_header_bounds_the_entry(key: str, upstream: FakeUpstream) -> None:
    call(CHAT, chat_body(), key=key, headers={"x-aspweb-cache-ttl": "1"})
    assert call(CHAT, chat_body(), key=key, headers=CACHE).headers["x-aspweb-cache"] == "hit"
    time.sleep(1.1)
    assert call(CHAT, chat_body(), key=key, headers=CACHE).headers["x-aspweb-cache"] == "miss"


@pytest.mark.parametrize("headers", [{"x-aspweb-cache": "maybe"}, {"x-aspweb-cache-ttl": "soon"},
                                     {"x-aspweb-cache-ttl": "0"}, {"x-aspweb-cache-ttl": "99999999"}])
def test_wrong_cache_headers_are_400(key: str, headers: dict) -> None:
    answer = call(CHAT, chat_body(), key=key, headers=headers)
    assert answer.status == 400 and answer.json["error"]["param"] == next(iter(headers))


def test_a_cached_answer_still_needs_a_key_that_may_use_the_model(key: str, upstream: FakeUpstream) -> None:
    call(CHAT, chat_body(), key=key, headers=CACHE)
    _, restricted = make_key(allowed_models=["claude/*"])
    assert call(CHAT, chat_body(), key=restricted, headers=CACHE).status == 403
    assert call(CHAT, chat_body(), key="ask-unknown", headers=CACHE).status == 401


def test_a_route_with_a_cache_ttl_caches_unless_the_request_says_no(db: None, upstream: FakeUpstream) -> None:
    model = make_providers(upstream)[OPENAI_MODEL]
    for route in (Route.objects.create(name="cached-route", cache_ttl_seconds=120),
                  Route.objects.create(name="plain-route")):
        Deployment.objects.create(route=route, model=model)
    ask = api.CacheAsk(enabled=None, ttl=None)

    def request(model: str) -> ChatRequest:
        return ChatRequest(model=model, messages=(Message("user", "hi"),))

    assert api._cache_ttl(request("cached-route"), ask) == 120
    assert api._cache_ttl(request("plain-route"), ask) is None
    assert api._cache_ttl(request("local/fake-model-a"), ask) is None
    assert api._cache_ttl(request("cached-route"), api.CacheAsk(enabled=False, ttl=None)) is None
    assert api._cache_ttl(request("cached-route"), api.CacheAsk(enabled=None, ttl=5)) == 5
    assert api._cache_ttl(request("plain-route"), api.CacheAsk(enabled=True, ttl=None)) == 300
