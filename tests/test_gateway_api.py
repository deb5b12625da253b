"""The /v1 endpoints in process against the fake upstream: wire formats, headers, errors and their statuses."""

import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from gateway.models import ApiKey
from providers import calls
from providers.adapters.base import Chunk
from providers.models import Model, Provider
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import (
    ANTHROPIC_MODEL,
    OPENAI_MODEL,
    call,
    chat_body,
    make_key,
    make_providers,
    messages_body,
)
from usage.models import UsageRecord

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


@pytest.fixture
def models(db: None, upstream: FakeUpstream) -> dict[str, Model]:
    return make_providers(upstream)


@pytest.fixture
def key(models: dict[str, Model], member_user: object) -> str:
    return make_key(member_user)[1]


def _data_chunks(events: list) -> list[dict]:
    return [data for _, data in events if isinstance(data, dict)]


# -- OpenAI format ----------------------------------------------------------------------------------


def test_chat_completion_answers_in_openai_shape_with_the_call_headers(key: str, upstream: FakeUpstream,
                                                                       member_user: object) -> None:
    upstream.usage = {"input_tokens": 1000, "cached_tokens": 400, "output_tokens": 50}
    answer = call(CHAT, chat_body(), key=key)
    assert answer.status == 200
    body = answer.json
    assert body["object"] == "chat.completion" and body["model"] == OPENAI_MODEL
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": upstream.reply,
                                                        "refusal": None},
                                "logprobs": None, "finish_reason": "stop"}]
    # OpenAI's counting: cached tokens are inside prompt_tokens.
    assert body["usage"]["prompt_tokens"] == 1000 and body["usage"]["prompt_tokens_details"]["cached_tokens"] == 400
    assert body["usage"]["completion_tokens"] == 50 and body["usage"]["total_tokens"] == 1050
    assert answer.headers["x-aspweb-provider"] == "local" and answer.headers["x-aspweb-model"] == "fake-model-a"
    record = UsageRecord.objects.get()
    assert str(record.request_id) == answer.headers["x-request-id"]
    assert body["id"] == f"chatcmpl-{record.request_id.hex}"
    # 600 uncached x $1 + 400 cached at the input price + 50 x $2, per million
    assert answer.headers["x-aspweb-cost"] == "0.0011" and record.cost == Decimal("0.0011")
    assert record.api_key.prefix == key[:12] and record.user == member_user and record.source == "gateway"
    assert upstream.last_request.body["model"] == "fake-model-a"
    assert upstream.last_request.api_key == "sk-upstream-0001"


def test_parameters_reach_the_provider(key: str, upstream: FakeUpstream) -> None:
    body = chat_body(temperature=0.3, top_p=0.9, max_completion_tokens=77, stop=["END"], seed=7,
                     response_format={"type": "json_object"},
                     messages=[{"role": "system", "content": "Be brief."},
                               {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
                               {"role": "user", "content": [
                                   {"type": "text", "text": "What is this?"},
                                   {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    assert call(CHAT, body, key=key).status == 200
    sent = upstream.last_request.body
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["stop"]) == (0.3, 0.9, 77, ["END"])
    assert sent["seed"] == 7 and sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][0] == {"role": "system", "content": "Be brief.\n\nBe kind."}
    assert sent["messages"][1]["content"][1] == {"type": "image_url",
                                                 "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def test_max_tokens_goes_through_to_an_anthropic_provider_too(key: str, upstream: FakeUpstream) -> None:
    assert call(CHAT, chat_body(ANTHROPIC_MODEL, max_tokens=33, stop="STOP"), key=key).status == 200
    sent = upstream.last_request.body
    assert upstream.last_request.path == "/v1/messages"
    assert sent["max_tokens"] == 33 and sent["stop_sequences"] == ["STOP"]


def test_stream_in_openai_shape_ends_with_usage_when_asked(key: str, upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 12, "output_tokens": 5}
    answer = call(CHAT, chat_body(stream=True, stream_options={"include_usage": True}), key=key)
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert "x-aspweb-cost" not in answer.headers  # known only once the stream has ended
    assert answer.headers["x-aspweb-provider"] == "local"
    assert answer.events[-1] == (None, "[DONE]")
    chunks = _data_chunks(answer.events)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == upstream.reply
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 12
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert all(c["usage"] is None for c in chunks[:-1])
    assert len({c["id"] for c in chunks}) == 1
    record = UsageRecord.objects.get()
    assert str(record.request_id) == answer.headers["x-request-id"] and record.output_tokens == 5


def test_stream_usage_comes_even_when_the_provider_streams_none(key: str, models: dict[str, Model]) -> None:
    # Cohere's endpoint refuses stream_options, so its adapter never asks for usage: it is estimated.
    Provider.objects.filter(name="local").update(kind="cohere")
    answer = call(CHAT, chat_body(stream=True, stream_options={"include_usage": True}), key=key)
    usage = _data_chunks(answer.events)[-1]["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert UsageRecord.objects.get().usage_estimated


def test_stream_without_include_usage_has_no_usage_chunk(key: str) -> None:
    chunks = _data_chunks(call(CHAT, chat_body(stream=True), key=key).events)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_tool_calls_in_openai_shape(key: str, upstream: FakeUpstream) -> None:
    upstream.tool_call = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = call(CHAT, chat_body(tools=tools, tool_choice="required"), key=key).json
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    assert upstream.last_request.body["tools"] == tools and upstream.last_request.body["tool_choice"] == "required"

    chunks = _data_chunks(call(CHAT, chat_body(tools=tools, stream=True), key=key).events)
    pieces = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert pieces[0]["id"] == "call_1" and pieces[0]["function"]["name"] == "get_weather"
    assert "id" not in pieces[1]
    assert "".join(p["function"]["arguments"] for p in pieces) == '{"city": "Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_conversation_reaches_an_anthropic_provider_in_its_turns(key: str, upstream: FakeUpstream) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
    ]
    assert call(CHAT, chat_body(ANTHROPIC_MODEL, messages=messages), key=key).status == 200
    sent = upstream.last_request.body["messages"]
    assert sent[1]["content"] == [{"type": "tool_use", "id": "call_1", "name": "get_weather",
                                   "input": {"city": "Paris"}}]
    assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"}]


# -- Anthropic format --------------------------------------------------------------------------------


def test_messages_answer_in_anthropic_shape(key: str, upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 20, "output_tokens": 6, "cached_tokens": 10}
    answer = call(MESSAGES, messages_body(system=[{"type": "text", "text": "Be brief."}]), key=key, auth="x-api-key")
    assert answer.status == 200
    body = answer.json
    assert body["type"] == "message" and body["model"] == ANTHROPIC_MODEL
    assert body["content"] == [{"type": "text", "text": upstream.reply}] and body["stop_reason"] == "end_turn"
    assert body["usage"] == {"input_tokens": 20, "output_tokens": 6, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 10,
                             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}}
    assert upstream.last_request.body["system"] == "Be brief."


def test_messages_keep_their_cache_breakpoints_and_lifetimes_to_an_anthropic_provider(
        key: str, upstream: FakeUpstream) -> None:
    """Claude Code and other Anthropic clients mark what to cache, for five minutes or an hour: the marks reach
    Anthropic as sent, so the call is billed (and recorded) at the cache's prices rather than in full."""
    hour = {"type": "ephemeral", "ttl": "1h"}
    upstream.usage = {"input_tokens": 20, "output_tokens": 6, "cache_write_1h_tokens": 900}
    body = messages_body(system=[{"type": "text", "text": "A long manual.", "cache_control": hour}], messages=[
        {"role": "user", "content": [{"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "Sunny",
                                      "cache_control": {"type": "ephemeral", "ttl": "5m"}},
                                     {"type": "text", "text": "And tomorrow?"}]},
    ])
    answer = call(MESSAGES, body, key=key, auth="x-api-key")
    assert answer.status == 200
    sent = upstream.last_request.body
    assert sent["system"] == [{"type": "text", "text": "A long manual.", "cache_control": hour}]
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "Weather?",
                                               "cache_control": {"type": "ephemeral"}}]
    assert sent["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "Sunny", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "And tomorrow?"}]
    assert answer.json["usage"]["cache_creation"]["ephemeral_1h_input_tokens"] == 900


def test_cache_breakpoints_stay_with_anthropic(key: str, upstream: FakeUpstream) -> None:
    body = messages_body(OPENAI_MODEL, system=[{"type": "text", "text": "Manual.", "cache_control": {
        "type": "ephemeral"}}], messages=[{"role": "user", "content": [
            {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}])
    assert call(MESSAGES, body, key=key).status == 200
    assert "cache_control" not in json.dumps(upstream.last_request.body)


def test_messages_reach_an_openai_provider(key: str, upstream: FakeUpstream) -> None:
    body = messages_body(OPENAI_MODEL, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is it?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}],
        stop_sequences=["END"], temperature=0.5)
    answer = call(MESSAGES, body, key=key)
    assert answer.status == 200 and answer.json["content"][0]["text"] == upstream.reply
    sent = upstream.last_request.body
    assert upstream.last_request.path == "/v1/chat/completions"
    assert sent["messages"][0]["content"][1] == {"type": "image_url",
                                                 "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert sent["stop"] == ["END"] and sent["temperature"] == 0.5 and sent["max_tokens"] == 100


def test_messages_stream_follows_anthropics_event_sequence(key: str, upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 20, "output_tokens": 6}
    answer = call(MESSAGES, messages_body(OPENAI_MODEL, stream=True), key=key)
    names = [name for name, _ in answer.events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    text = "".join(data["delta"]["text"] for name, data in answer.events if name == "content_block_delta")
    assert text == upstream.reply
    delta = dict(answer.events)["message_delta"]
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["input_tokens"] == 20
    assert delta["usage"]["output_tokens"] == 6


def test_messages_tool_use_in_anthropic_shape(key: str, upstream: FakeUpstream) -> None:
    upstream.tool_call = {"id": "call_9", "name": "lookup", "arguments": {"q": "x"}}
    tools = [{"name": "lookup", "description": "Look up", "input_schema": {"type": "object"}}]
    body = call(MESSAGES, messages_body(OPENAI_MODEL, tools=tools, tool_choice={"type": "any"}), key=key).json
    assert body["stop_reason"] == "tool_use"
    assert body["content"] == [{"type": "tool_use", "id": "call_9", "name": "lookup", "input": {"q": "x"}}]
    sent = upstream.last_request.body
    assert sent["tools"] == [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"},
                                                               "description": "Look up"}}]
    assert sent["tool_choice"] == "required"

    events = call(MESSAGES, messages_body(OPENAI_MODEL, tools=tools, stream=True), key=key).events
    start = next(data for name, data in events if name == "content_block_start")
    assert start["content_block"] == {"type": "tool_use", "id": "call_9", "name": "lookup", "input": {}}
    json_text = "".join(data["delta"]["partial_json"] for name, data in events
                        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta")
    assert json.loads(json_text) == {"q": "x"}
    assert dict(events)["message_delta"]["delta"]["stop_reason"] == "tool_use"


# -- keys and models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_a_call_without_a_valid_key_is_401_in_the_endpoints_shape(models: dict, path: str) -> None:
    body = chat_body() if path == CHAT else messages_body()
    revoked, revoked_raw = make_key()
    revoked.revoked_at = timezone.now()
    revoked.save()
    expired, expired_raw = make_key(expires_at=timezone.now() + timedelta(hours=1))
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    cases = {None: "No API key", "sk-not-ours": "not an aspweb API key: aspweb keys start with ask-",
             "ask-nope": "Malformed API key: an aspweb key is 52 characters long", "ask-" + "x" * 47 + "!": "Malformed",
             "ask-" + "x" * 48: "Unknown API key", revoked_raw: "was revoked", expired_raw: "expired"}
    for raw, words in cases.items():
        answer = call(path, body, key=raw)
        assert answer.status == 401, raw
        error = answer.json["error"]
        assert words in error["message"]
        if path == CHAT:
            assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
        else:
            assert answer.json["type"] == "error" and error["type"] == "authentication_error"
    assert not UsageRecord.objects.exists()


def test_a_key_problem_outranks_a_body_problem(models: dict) -> None:
    assert call(CHAT, raw=b"{not json", key="ask-nope").status == 401
    _, raw = make_key()
    assert call(CHAT, raw=b"{not json", key=raw).status == 400


def test_a_key_of_a_deactivated_person_is_refused(models: dict, member_user: object) -> None:
    _, raw = make_key(member_user)
    member_user.is_active = False
    member_user.save()
    assert "deactivated" in call(CHAT, chat_body(), key=raw).json["error"]["message"]


def test_a_model_the_key_may_not_use_is_403(models: dict, upstream: FakeUpstream) -> None:
    _, raw = make_key(allowed_models=["local/fake-model-b", "claude/*"])
    answer = call(CHAT, chat_body(OPENAI_MODEL), key=raw)
    assert answer.status == 403
    assert answer.json["error"]["code"] == "model_not_allowed" and answer.json["error"]["param"] == "model"
    assert call(MESSAGES, messages_body(OPENAI_MODEL), key=raw).json["error"]["type"] == "permission_error"
    assert upstream.requests == []
    assert call(CHAT, chat_body("local/fake-model-b"), key=raw).status == 200
    assert call(CHAT, chat_body(ANTHROPIC_MODEL), key=raw).status == 200  # through claude/*


def test_unknown_and_disabled_models(key: str, models: dict[str, Model]) -> None:
    for address in ("local/no-such-model", "nowhere/fake-model-a", "no-such-route"):
        answer = call(CHAT, chat_body(address), key=key)
        assert answer.status == 404 and answer.json["error"]["code"] == "model_not_found", address
    assert call(MESSAGES, messages_body("local/nope"), key=key).json["error"]["type"] == "not_found_error"
    Model.objects.filter(pk=models["local/fake-model-b"].pk).update(enabled=False)
    answer = call(CHAT, chat_body("local/fake-model-b"), key=key)
    assert answer.status == 403 and answer.json["error"]["code"] == "model_disabled"


def test_an_archived_providers_model_is_said_to_be_archived(key: str, models: dict[str, Model]) -> None:
    """Archiving keeps a provider for its history: a caller still using its name learns why it stopped, rather
    than that it never existed."""
    Provider.objects.filter(name="local").update(archived_at=timezone.now(), enabled=False)
    answer = call(CHAT, chat_body("local/fake-model-b"), key=key)
    assert answer.status == 404 and answer.json["error"]["code"] == "model_not_found"
    assert answer.json["error"]["message"] == "Provider 'local' is archived: its models take no more calls."
    assert call(CHAT, chat_body("nowhere/x"), key=key).json["error"]["message"] == (
        "There is no provider named 'nowhere'.")


def test_models_lists_what_the_key_may_use(models: dict[str, Model]) -> None:
    Model.objects.filter(pk=models["local/fake-model-b"].pk).update(enabled=False)
    _, everything = make_key()
    _, some = make_key(allowed_models=["claude/*"])
    listed = call("/v1/models", method="GET", key=everything).json
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == [ANTHROPIC_MODEL, OPENAI_MODEL]
    assert listed["data"][0]["object"] == "model" and listed["data"][0]["owned_by"] == "claude"
    anthropic = call("/v1/models", method="GET", key=some, headers={"anthropic-version": "2023-06-01"}).json
    assert [m["id"] for m in anthropic["data"]] == [ANTHROPIC_MODEL] and anthropic["data"][0]["type"] == "model"
    assert anthropic["first_id"] == ANTHROPIC_MODEL and anthropic["has_more"] is False
    assert call(f"/v1/models/{OPENAI_MODEL}", method="GET", key=everything).json["id"] == OPENAI_MODEL
    assert call(f"/v1/models/{OPENAI_MODEL}", method="GET", key=some).status == 404
    assert call("/v1/models", method="GET").status == 401


# -- provider failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "status", "code"), [
    ("429", 429, "upstream_rate_limited"),
    ("401", 502, "upstream_auth_error"),
    ("403", 502, "upstream_auth_error"),
    ("500", 502, "upstream_error"),
    ("503", 503, "upstream_overloaded"),
    ("400", 400, "upstream_invalid_request"),
    ("404", 404, "model_not_found"),
    ("cut", 502, "upstream_unreachable"),
])
def test_provider_failures_map_to_statuses(key: str, upstream: FakeUpstream, fault: str, status: int,
                                           code: str) -> None:
    upstream.fail_next(fault, retry_after=7, cut_after=0)
    answer = call(CHAT, chat_body(), key=key)
    assert answer.status == status
    error = answer.json["error"]
    assert error["code"] == code and error["type"] in ("upstream_error", "rate_limit_error", "invalid_request_error",
                                                       "not_found_error")
    assert "sk-upstream-0001" not in answer.content.decode()
    assert answer.headers["x-aspweb-provider"] == "local"
    if status == 429:
        assert answer.headers["retry-after"] == "7"
    record = UsageRecord.objects.get()
    assert record.status == "error" and str(record.request_id) == answer.headers["x-request-id"]


def test_an_anthropic_overload_is_503_in_anthropics_shape(key: str, upstream: FakeUpstream) -> None:
    upstream.fail_next("529")
    answer = call(MESSAGES, messages_body(), key=key)
    assert answer.status == 503
    assert answer.json == {"type": "error", "error": {"type": "overloaded_error", "message": answer.json["error"][
        "message"]}}


def test_a_provider_that_sends_nothing_is_504(key: str, upstream: FakeUpstream, settings: object) -> None:
    settings.PROVIDER_FIRST_TOKEN_TIMEOUT_SECONDS = 0.2
    upstream.fail_next("slow", delay=1)
    answer = call(CHAT, chat_body(stream=True), key=key)
    assert answer.status == 504 and answer.json["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_a_failure_after_the_first_chunk_ends_the_stream_with_an_error_event(key: str, upstream: FakeUpstream,
                                                                              path: str) -> None:
    upstream.fail_next("cut", cut_after=2)
    body = chat_body(stream=True) if path == CHAT else messages_body(stream=True)
    answer = call(path, body, key=key)
    assert answer.status == 200
    if path == CHAT:
        assert answer.events[-1] == (None, "[DONE]")
        assert answer.events[-2][1]["error"]["code"] == "upstream_unreachable"
    else:
        name, data = answer.events[-1]
        assert name == "error" and data["type"] == "error" and data["error"]["type"] == "api_error"
    assert UsageRecord.objects.get().status == "error"


def test_a_budget_refusal_is_429_budget_exceeded(key: str, monkeypatch: pytest.MonkeyPatch,
                                                  upstream: FakeUpstream) -> None:
    async def over_budget(*args: object, **kwargs: object) -> AsyncIterator[Chunk]:
        raise calls.CallError("budget_exceeded", "The team's monthly budget is spent.")
        yield Chunk()

    monkeypatch.setattr(calls, "stream_chat", over_budget)
    for path, body in ((CHAT, chat_body()), (CHAT, chat_body(stream=True)), (MESSAGES, messages_body())):
        answer = call(path, body, key=key)
        assert answer.status == 429, path
        assert "budget is spent" in answer.json["error"]["message"]
        if path == CHAT:
            assert answer.json["error"]["code"] == "budget_exceeded"
        else:
            assert answer.json["error"]["type"] == "rate_limit_error"


# -- requests that are wrong -----------------------------------------------------------------------


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": OPENAI_MODEL}, "messages"),
    (chat_body(messages=[]), "messages"),
    (chat_body(messages="hi"), "messages"),
    (chat_body(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role"),
    (chat_body(messages=[{"content": "hi"}]), "messages[0].role"),
    (chat_body(messages=[{"role": "system", "content": "only a system prompt"}]), "messages"),
    (chat_body(messages=[{"role": "user", "content": 42}]), "messages[0].content"),
    (chat_body(messages=[{"role": "user", "content": [{"type": "video", "url": "x"}]}]), "messages[0].content[0].type"),
    (chat_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]),
     "messages[0].content[0].image_url.url"),
    (chat_body(messages=[{"role": "assistant"}]), "messages[0].content"),
    (chat_body(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id"),
    (chat_body(model=""), "model"),
    (chat_body(model=7), "model"),
    (chat_body(temperature="hot"), "temperature"),
    (chat_body(temperature=True), "temperature"),
    (chat_body(temperature=3), "temperature"),
    (chat_body(top_p=1.5), "top_p"),
    (chat_body(max_tokens=0), "max_tokens"),
    (chat_body(max_tokens=2.5), "max_tokens"),
    (chat_body(max_completion_tokens="many"), "max_completion_tokens"),
    (chat_body(n=2), "n"),
    (chat_body(stop=["a", "b", "c", "d", "e"]), "stop"),
    (chat_body(stop=5), "stop"),
    (chat_body(stream="yes"), "stream"),
    (chat_body(stream_options={"include_usage": True}), "stream_options"),
    (chat_body(tools=[{"type": "function", "function": {"name": "has space"}}]), "tools[0].function.name"),
    (chat_body(tools={"name": "x"}), "tools"),
    (chat_body(tool_choice="required"), "tool_choice"),
    (chat_body(logprobs=True), "logprobs"),
    (chat_body(functions=[{"name": "f"}]), "functions"),
    (chat_body(frobnicate=1), "frobnicate"),
    (chat_body(response_format={"type": "xml"}), "response_format.type"),
])
def test_wrong_chat_requests_are_400_naming_the_parameter(key: str, upstream: FakeUpstream, body: dict,
                                                          param: str) -> None:
    answer = call(CHAT, body, key=key)
    assert answer.status == 400, answer.content
    error = answer.json["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(("path", "body", "message"), [
    (CHAT, chat_body(messages=[{"role": "user", "content": 42}]),
     "messages[0].content must be a string or an array, not an integer."),
    (CHAT, chat_body(messages=[{"role": "system", "content": {"text": "x"}}]),
     "messages[0].content must be a string or an array, not an object."),
    (MESSAGES, messages_body(messages=[{"role": "user", "content": 42}]),
     "messages.0.content must be a string or an array, not an integer."),
    (MESSAGES, messages_body(system=5), "system must be a string or an array, not an integer."),
    (CHAT, chat_body(max_tokens=1e300), "max_tokens must be between 1 and 2147483647; it is 1e+300."),
    (MESSAGES, messages_body(max_tokens=1e300), "max_tokens must be between 1 and 2147483647; it is 1e+300."),
    (MESSAGES, messages_body(max_tokens=-3.0), "max_tokens must be between 1 and 2147483647; it is -3."),
])
def test_a_refusal_says_what_the_parameter_may_be_and_shows_the_value_as_sent(key: str, path: str, body: dict,
                                                                              message: str) -> None:
    """Content may be a string as well as an array, and a whole number sent as a float (1e300) is shown as
    sent, not as the hundreds of digits of its conversion."""
    answer = call(path, body, key=key)
    assert answer.status == 400, answer.content
    assert answer.json["error"]["message"] == message


@pytest.mark.parametrize(("body", "words"), [
    ({"model": ANTHROPIC_MODEL, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    (messages_body(messages=[{"role": "system", "content": "hi"}]), "messages.0.role"),
    (messages_body(messages=[{"role": "user", "content": []}]), "messages.0.content"),
    (messages_body(messages=[{"role": "user", "content": [{"type": "document"}]}]), "messages.0.content.0.type"),
    (messages_body(temperature=1.5), "temperature"),
    (messages_body(max_tokens="lots"), "max_tokens"),
    (messages_body(thinking={"type": "enabled", "budget_tokens": 10}), "thinking.budget_tokens"),
    (messages_body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools.0.type"),
    (messages_body(tools=[{"name": "x"}]), "tools.0.input_schema"),
    (messages_body(top_q=1), "top_q"),
    (messages_body(system=[{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]),
     "system.0.cache_control.ttl"),
    (messages_body(messages=[{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": "yes"}]}]),
     "messages.0.content.0.cache_control"),
])
def test_wrong_messages_requests_are_400_in_anthropics_shape(key: str, body: dict, words: str) -> None:
    answer = call(MESSAGES, body, key=key)
    assert answer.status == 400, answer.content
    assert answer.json["type"] == "error" and answer.json["error"]["type"] == "invalid_request_error"
    assert words in answer.json["error"]["message"]


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b"null", b'"text"', b"NaN", b'{"model": Infinity}',
                                 b"\xff\xfe\x00", b"[" * 100_000])
def test_bodies_that_are_not_a_json_object_are_400(key: str, raw: bytes) -> None:
    answer = call(CHAT, raw=raw, key=key)
    assert answer.status == 400
    assert answer.json["error"]["code"] in ("invalid_json", None)


def test_a_huge_body_is_413(key: str, settings: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.api.MAX_BODY_BYTES", 1000)
    answer = call(CHAT, chat_body(messages=[{"role": "user", "content": "x" * 2000}]), key=key)
    assert answer.status == 413 and answer.json["error"]["code"] == "request_too_large"


def test_other_methods_and_paths_answer_json(key: str) -> None:
    answer = call(CHAT, method="GET", key=key)
    assert answer.status == 405 and answer.headers["allow"] == "POST"
    assert answer.json["error"]["code"] == "method_not_allowed"
    for path in ("/v1/completions", "/v1/chat/completions/", "/v1/embeddings/"):
        answer = call(path, chat_body(), key=key)
        assert answer.status == 404 and answer.json["error"]["code"] == "not_found"
    anthropic = call("/v1/messages/count_tokens", {}, key=key, headers={"anthropic-version": "2023-06-01"})
    assert anthropic.status == 404 and anthropic.json["error"]["type"] == "not_found_error"


def test_an_unexpected_bug_is_a_json_500(key: str, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("gateway.openai_format.completion_body", broken)
    answer = call(CHAT, chat_body(), key=key)
    assert answer.status == 500 and answer.headers["content-type"] == "application/json"
    assert answer.json["error"]["code"] == "internal_error" and "a bug" not in answer.json["error"]["message"]
    assert "a bug" in caplog.text


def test_openapi_description_is_served_and_names_every_endpoint(db: None) -> None:
    answer = call("/v1/openapi.json", method="GET")
    assert answer.status == 200
    spec = answer.json
    assert spec["openapi"].startswith("3.1")
    assert {"/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/models"} <= set(spec["paths"])
    refs = {ref for ref in _refs(spec)}
    assert refs and all(ref.removeprefix("#/components/schemas/") in spec["components"]["schemas"] for ref in refs)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_each_call_is_one_usage_record_with_its_key(models: dict, make_user: Callable) -> None:
    alice, bob = make_user("member", "alice@example.com"), make_user("member", "bob@example.com")
    alice_key, alice_raw = make_key(alice)
    app_key, app_raw = make_key(None, name="an application")
    for raw in (alice_raw, alice_raw, app_raw):
        call(CHAT, chat_body(), key=raw)
    call(MESSAGES, messages_body(stream=True), key=app_raw)
    assert UsageRecord.objects.filter(api_key=alice_key, user=alice).count() == 2
    assert UsageRecord.objects.filter(api_key=app_key, user__isnull=True).count() == 2
    assert not UsageRecord.objects.filter(user=bob).exists()
    assert set(UsageRecord.objects.values_list("source", flat=True)) == {"gateway"}
