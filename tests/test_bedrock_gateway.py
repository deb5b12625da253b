"""A Bedrock model behind the live gateway: the official openai SDK as the application, aiobotocore as
aspweb's client of the fake Bedrock, streamed and not, with tools, and errors in the gateway's shape."""

import json
from collections.abc import Iterator

import openai
import pytest
from django.core.cache import cache

from gateway.models import ApiKey
from providers import services
from providers.models import Provider
from tests.fakes.bedrock import KEY_ID, REGION, SECRET, FakeBedrock
from tests.gateway_support import live_server, make_key
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "amazon.nova-lite-v1:0"
ADDRESS = f"aws/{MODEL}"


@pytest.fixture
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock() as server:
        yield server


@pytest.fixture
def oai(fake: FakeBedrock) -> Iterator[tuple[openai.OpenAI, ApiKey]]:
    cache.clear()
    provider = Provider.objects.create(name="aws", kind="bedrock", base_url=fake.base_url, max_retries=0,
                                       api_key=json.dumps({"aws_secret_access_key": SECRET}),
                                       extra={"aws_region": REGION, "aws_access_key_id": KEY_ID})
    services.model_add(provider=provider, name=MODEL, actor="test")
    key, raw = make_key(name="bedrock")
    with live_server() as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key=raw, max_retries=0), key


def test_chat_completions_streamed_and_not(oai: tuple[openai.OpenAI, ApiKey], fake: FakeBedrock) -> None:
    client, key = oai
    fake.usage = {"inputTokens": 40, "outputTokens": 6, "cacheReadInputTokens": 100}
    whole = client.chat.completions.create(model=ADDRESS, messages=[{"role": "user", "content": "Hi"}], max_tokens=30)
    assert whole.choices[0].message.content == fake.reply
    assert whole.usage.prompt_tokens == 140 and whole.usage.prompt_tokens_details.cached_tokens == 100
    assert fake.last_request.path == f"/model/{MODEL}/converse"

    chunks = list(client.chat.completions.create(model=ADDRESS, messages=[{"role": "user", "content": "Hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fake.reply
    assert chunks[-1].usage.completion_tokens == 6
    assert fake.last_request.path == f"/model/{MODEL}/converse-stream"
    records = UsageRecord.objects.filter(api_key=key)
    assert records.count() == 2 and all(r.cache_read_tokens == 100 and r.cost > 0 for r in records)


def test_tool_calls_come_back_in_openai_shape(oai: tuple[openai.OpenAI, ApiKey], fake: FakeBedrock) -> None:
    client, _ = oai
    fake.tool_use = {"toolUseId": "tooluse_9", "name": "get_weather", "input": {"city": "Oslo"}}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    answer = client.chat.completions.create(model=ADDRESS, messages=[{"role": "user", "content": "Weather?"}],
                                            tools=tools)
    [call] = answer.choices[0].message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "tooluse_9", "get_weather", {"city": "Oslo"})
    assert answer.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(("fault", "status", "code", "words"), [
    ("ThrottlingException", 429, "upstream_rate_limited", "is rate limiting requests"),
    ("AccessDeniedException", 502, "upstream_auth_error", "refused the AWS credentials"),
])
def test_bedrock_errors_reach_the_application_in_the_gateways_shape(oai: tuple[openai.OpenAI, ApiKey],
                                                                    fake: FakeBedrock, fault: str, status: int,
                                                                    code: str, words: str) -> None:
    client, _ = oai
    fake.fail_next(fault)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=ADDRESS, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == status and caught.value.code == code
    assert words in caught.value.message and SECRET not in caught.value.message
