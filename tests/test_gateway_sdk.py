"""The official openai and anthropic SDKs as clients of the live gateway (uvicorn serving the ASGI app on
loopback), talking to the fake upstream: what applications will really see."""

import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from django.core.cache import cache

from gateway import apikeys
from gateway.models import ApiKey
from tests.conftest import Clock
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import ANTHROPIC_MODEL, OPENAI_MODEL, live_server, make_key, make_providers
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS = [{"type": "function",
          "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER}}]


@pytest.fixture
def gateway(upstream: FakeUpstream) -> Iterator[str]:
    cache.clear()
    make_providers(upstream)
    with live_server() as url:
        yield url


@pytest.fixture
def key() -> tuple[ApiKey, str]:
    return make_key(name="sdk tests")


@pytest.fixture
def oai(gateway: str, key: tuple[ApiKey, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key=key[1], max_retries=0)


@pytest.fixture
def claude(gateway: str, key: tuple[ApiKey, str]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway, api_key=key[1], max_retries=0)


def _records(key: ApiKey) -> list[UsageRecord]:
    return list(UsageRecord.objects.filter(api_key=key).order_by("created_at"))


def test_openai_sdk_non_streamed(oai: openai.OpenAI, key: tuple[ApiKey, str], upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 120, "cached_tokens": 20, "output_tokens": 7}
    raw = oai.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "Hi"}], max_completion_tokens=50, temperature=0)
    completion = raw.parse()
    assert completion.choices[0].message.content == upstream.reply
    assert completion.choices[0].finish_reason == "stop" and completion.model == OPENAI_MODEL
    assert completion.usage.prompt_tokens == 120 and completion.usage.completion_tokens == 7
    assert completion.usage.prompt_tokens_details.cached_tokens == 20
    [record] = _records(key[0])
    assert str(record.request_id) == raw.headers["x-request-id"]
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (100, 20, 7)
    assert raw.headers["x-aspweb-cost"] == format(record.cost.normalize(), "f")
    assert raw.headers["x-aspweb-provider"] == "local"


def test_openai_sdk_streamed_with_usage_in_the_last_chunk(oai: openai.OpenAI, key: tuple[ApiKey, str],
                                                          upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 30, "output_tokens": 5}
    chunks = list(oai.chat.completions.create(model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "Hi"}],
                                              stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == upstream.reply
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 30
    assert chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])
    [record] = _records(key[0])
    assert record.status == "ok" and record.output_tokens == 5 and record.provider_name == "claude"


def test_openai_sdk_tool_calls_streamed_and_not(oai: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.tool_call = {"id": "call_7", "name": "get_weather", "arguments": {"city": "Paris"}}
    for model in (OPENAI_MODEL, ANTHROPIC_MODEL):
        message = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "Weather?"}],
                                              tools=TOOLS).choices[0].message
        assert message.tool_calls[0].function.name == "get_weather"
        assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
        with oai.chat.completions.stream(model=model, messages=[{"role": "user", "content": "Weather?"}],
                                         tools=TOOLS) as stream:
            final = stream.get_final_completion()
        call = final.choices[0].message.tool_calls[0]
        assert (call.id, call.function.name) == ("call_7", "get_weather")
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        assert final.choices[0].finish_reason == "tool_calls"


def test_anthropic_sdk_non_streamed_and_streamed(claude: anthropic.Anthropic, key: tuple[ApiKey, str],
                                                 upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 44, "output_tokens": 6}
    for model in (ANTHROPIC_MODEL, OPENAI_MODEL):
        message = claude.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "Hi"}])
        assert message.content[0].text == upstream.reply and message.stop_reason == "end_turn"
        assert (message.usage.input_tokens, message.usage.output_tokens) == (44, 6)
        with claude.messages.stream(model=model, max_tokens=64, system="Be brief.",
                                    messages=[{"role": "user", "content": "Hi"}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == upstream.reply and final.content[0].text == upstream.reply
        assert (final.usage.input_tokens, final.usage.output_tokens) == (44, 6)
    assert len(_records(key[0])) == 4


def test_anthropic_sdk_tool_use(claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.tool_call = {"id": "toolu_1", "name": "get_weather", "arguments": {"city": "Oslo"}}
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    for model in (ANTHROPIC_MODEL, OPENAI_MODEL):
        with claude.messages.stream(model=model, max_tokens=64, tools=tools,
                                    messages=[{"role": "user", "content": "Weather?"}]) as stream:
            final = stream.get_final_message()
        block = final.content[-1]
        assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Oslo"}
        assert final.stop_reason == "tool_use"
        # The answer goes back as a tool result, and the conversation goes on.
        upstream.tool_call = None
        reply = claude.messages.create(model=model, max_tokens=64, tools=tools, messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": final.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "Sunny"}]},
        ])
        assert reply.content[0].text == upstream.reply
        upstream.tool_call = {"id": "toolu_1", "name": "get_weather", "arguments": {"city": "Oslo"}}


def test_sdk_errors(gateway: str, oai: openai.OpenAI, key: tuple[ApiKey, str], upstream: FakeUpstream,
                    minute: Clock) -> None:
    hello = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="local/unknown", messages=hello)
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=OPENAI_MODEL, messages=hello, n=3)
    assert caught.value.param == "n"

    _, restricted = make_key(allowed_models=["claude/*"])
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=gateway + "/v1", api_key=restricted, max_retries=0).chat.completions.create(
            model=OPENAI_MODEL, messages=hello)

    _, limited = make_key(rpm_limit=1)
    limited_client = anthropic.Anthropic(base_url=gateway, api_key=limited, max_retries=0)
    limited_client.messages.create(model=OPENAI_MODEL, max_tokens=10, messages=hello)
    with pytest.raises(anthropic.RateLimitError) as refused:
        limited_client.messages.create(model=OPENAI_MODEL, max_tokens=10, messages=hello)
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60

    upstream.fail_next("503")
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(model=OPENAI_MODEL, messages=hello)
    assert caught.value.status_code == 503

    apikeys.api_key_revoke(key=key[0], actor=None)
    with pytest.raises(openai.AuthenticationError):
        oai.chat.completions.create(model=OPENAI_MODEL, messages=hello)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway, api_key=key[1], max_retries=0).messages.create(
            model=OPENAI_MODEL, max_tokens=10, messages=hello)


def test_sdk_cache_hit_and_model_lists(oai: openai.OpenAI, claude: anthropic.Anthropic, key: tuple[ApiKey, str],
                                       upstream: FakeUpstream) -> None:
    hello = [{"role": "user", "content": "Hi"}]
    first = oai.chat.completions.create(model=OPENAI_MODEL, messages=hello, extra_headers={"x-aspweb-cache": "true"})
    chunks = list(oai.chat.completions.create(model=OPENAI_MODEL, messages=hello, stream=True,
                                              extra_headers={"x-aspweb-cache": "true"}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == first.choices[0].message.content
    assert len(upstream.requests) == 1
    assert [m.id for m in oai.models.list()] == [ANTHROPIC_MODEL, OPENAI_MODEL, "local/fake-model-b"]
    assert [m.id for m in claude.models.list()] == [ANTHROPIC_MODEL, OPENAI_MODEL, "local/fake-model-b"]


def test_a_client_that_leaves_mid_stream_leaves_one_cancelled_record(gateway: str, key: tuple[ApiKey, str],
                                                                      upstream: FakeUpstream) -> None:
    upstream.chunk_delay = 0.2
    body = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key[1]}"}) as response:
        lines = response.iter_lines()
        assert '"content":""' in next(line for line in lines if line.startswith("data: "))
        assert '"content":"Hello ' in next(line for line in lines if line.startswith("data: "))
    deadline = time.monotonic() + 10
    while not UsageRecord.objects.filter(api_key=key[0]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = _records(key[0])
    assert record.status == "cancelled" and record.usage_estimated and record.output_tokens > 0
