"""POST /v1/responses: the official openai SDK's `responses.create` and `responses.stream` against the live
gateway, over each wire format behind it (OpenAI's own Responses API, an OpenAI-compatible server's chat
completions, Anthropic's messages), with function tools and a tool output round trip; the ledger rows."""

import json
from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest
from django.core.cache import cache

from gateway.models import ApiKey
from providers.models import Model, Price, Provider
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import ANTHROPIC_MODEL, OPENAI_MODEL, live_server, make_key, make_providers
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

NATIVE_MODEL = "oa/fake-model-a"
AZURE_MODEL = "az/fake-model-a"
# Each wire format behind the endpoint: (model address, the upstream path the call takes).
FORMATS = [(NATIVE_MODEL, "/v1/responses"), (AZURE_MODEL, "/openai/responses"),
           (OPENAI_MODEL, "/v1/chat/completions"), (ANTHROPIC_MODEL, "/v1/messages")]
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
           "additionalProperties": False}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER,
          "strict": True}]


@pytest.fixture
def gateway(upstream: FakeUpstream) -> Iterator[str]:
    cache.clear()
    make_providers(upstream)
    native = Provider.objects.create(name="oa", kind="openai", base_url=upstream.openai_base_url,
                                     api_key="sk-upstream-0002", max_retries=0)
    azure = Provider.objects.create(name="az", kind="azure_openai", base_url=upstream.base_url,
                                    api_key="azure-upstream-0003", max_retries=0,
                                    extra={"api_version": "2025-04-01-preview"})
    for provider in (native, azure):
        model = Model.objects.create(provider=provider, name="fake-model-a")
        Price.objects.create(model=model, input=Decimal("1"), output=Decimal("2"), cache_read=Decimal("0.5"))
    with live_server() as url:
        yield url


@pytest.fixture
def key() -> tuple[ApiKey, str]:
    return make_key(name="responses tests")


@pytest.fixture
def oai(gateway: str, key: tuple[ApiKey, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key=key[1], max_retries=0)


def _records(key: ApiKey) -> list[UsageRecord]:
    return list(UsageRecord.objects.filter(api_key=key).order_by("created_at"))


@pytest.mark.parametrize(("model", "path"), FORMATS)
def test_a_text_answer_not_streamed(oai: openai.OpenAI, key: tuple[ApiKey, str], upstream: FakeUpstream,
                                    model: str, path: str) -> None:
    raw = oai.responses.with_raw_response.create(model=model, input="Say hello", instructions="Be brief.",
                                                 max_output_tokens=50, temperature=0.5)
    response = raw.parse()
    assert upstream.last_request.path == path
    assert response.output_text == upstream.reply and response.status == "completed"
    assert response.model == model and response.id == f"resp_{raw.headers['x-request-id'].replace('-', '')}"
    assert response.instructions == "Be brief." and response.max_output_tokens == 50 and response.store is False
    [record] = _records(key[0])
    assert record.status == "ok" and str(record.request_id) == raw.headers["x-request-id"]
    assert raw.headers["x-aspweb-cost"] == format(record.cost.normalize(), "f")
    assert response.usage.output_tokens == record.output_tokens > 0
    assert response.usage.input_tokens == record.input_tokens + record.cache_read_tokens + record.cache_write_tokens


@pytest.mark.parametrize(("model", "path"), FORMATS)
def test_streamed_events_in_order(oai: openai.OpenAI, upstream: FakeUpstream, model: str, path: str) -> None:
    events = list(oai.responses.create(model=model, input=[{"role": "user", "content": "Say hello"}], stream=True))
    assert upstream.last_request.path == path
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds[2:5] == ["response.output_item.added", "response.content_part.added", "response.output_text.delta"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == upstream.reply
    assert events[-1].response.output_text == upstream.reply
    assert events[-1].response.usage.output_tokens > 0


@pytest.mark.parametrize(("model", "path"), FORMATS)
def test_function_tools_and_a_tool_output_round_trip(oai: openai.OpenAI, key: tuple[ApiKey, str],
                                                     upstream: FakeUpstream, model: str, path: str) -> None:
    upstream.tool_call = {"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}
    with oai.responses.stream(model=model, input="Weather in Paris?", tools=TOOLS, tool_choice="auto") as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id == "call_w1"

    upstream.tool_call = None
    second = oai.responses.create(model=model, tools=TOOLS, input=[
        {"role": "user", "content": "Weather in Paris?"}, *[item.model_dump() for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 C and sunny"},
    ])
    assert second.output_text == upstream.reply
    sent = upstream.last_request.body
    assert upstream.last_request.path == path
    if path == "/v1/messages":
        assert sent["messages"][1]["content"][0] == {"type": "tool_use", "id": "call_w1", "name": "get_weather",
                                                     "input": {"city": "Paris"}}
        assert sent["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "call_w1",
                                                     "content": "18 C and sunny"}
        assert sent["tools"][0]["name"] == "get_weather"
    elif path == "/v1/chat/completions":
        assert sent["messages"][1]["tool_calls"][0]["id"] == "call_w1"
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_w1", "content": "18 C and sunny"}
        assert sent["tools"][0]["function"]["strict"] is True
    else:
        assert sent["input"][1] == {"type": "function_call", "call_id": "call_w1", "name": "get_weather",
                                    "arguments": '{"city": "Paris"}'}
        assert sent["input"][2] == {"type": "function_call_output", "call_id": "call_w1", "output": "18 C and sunny"}
        assert sent["tools"] == TOOLS and sent["store"] is False
    assert [record.status for record in _records(key[0])] == ["ok", "ok"]


@pytest.mark.parametrize("model", [NATIVE_MODEL, AZURE_MODEL])
def test_native_usage_with_cached_and_reasoning_tokens_lands_in_the_ledger(
        oai: openai.OpenAI, key: tuple[ApiKey, str], upstream: FakeUpstream, model: str) -> None:
    upstream.usage = {"input_tokens": 1200, "cached_tokens": 1000, "output_tokens": 90, "reasoning_tokens": 64}
    upstream.reasoning = "Thinking it over. "
    response = oai.responses.create(model=model, input="Hi", reasoning={"effort": "high", "summary": "auto"})
    assert upstream.last_request.body["reasoning"] == {"summary": "auto", "effort": "high"}
    assert response.usage.input_tokens == 1200 and response.usage.input_tokens_details.cached_tokens == 1000
    assert response.usage.output_tokens_details.reasoning_tokens == 64
    assert response.output[0].type == "reasoning" and response.output[0].summary[0].text == upstream.reasoning
    with oai.responses.stream(model=model, input="Hi", reasoning={"effort": "low", "summary": "auto"}) as stream:
        summary = "".join(e.delta for e in stream if e.type == "response.reasoning_summary_text.delta")
    assert summary == upstream.reasoning
    records = _records(key[0])
    assert [(r.input_tokens, r.cache_read_tokens, r.output_tokens, r.reasoning_tokens) for r in records] == \
        [(200, 1000, 90, 64)] * 2
    # 200 uncached at $1/M, 1000 cached at $0.5/M, 90 out at $2/M.
    assert records[0].cost == Decimal("0.00088")


def test_translated_usage_with_cached_tokens_and_reasoning(oai: openai.OpenAI, key: tuple[ApiKey, str],
                                                           upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 300, "cached_tokens": 100, "output_tokens": 40, "reasoning_tokens": 12}
    upstream.reasoning = "Let me see. "
    response = oai.responses.create(model=OPENAI_MODEL, input="Hi", reasoning={"effort": "medium"})
    assert upstream.last_request.body["reasoning_effort"] == "medium"
    assert response.output[0].type == "reasoning" and response.output_text == upstream.reply
    assert response.usage.input_tokens_details.cached_tokens == 100
    assert response.usage.output_tokens_details.reasoning_tokens == 12
    [record] = _records(key[0])
    assert (record.input_tokens, record.cache_read_tokens, record.reasoning_tokens) == (200, 100, 12)


def test_reasoning_effort_becomes_an_anthropic_thinking_budget(oai: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.reasoning = "Hmm. "
    response = oai.responses.create(model=ANTHROPIC_MODEL, input="Hi", reasoning={"effort": "medium"})
    assert upstream.last_request.body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert response.output[0].summary[0].text == "Hmm. "
    oai.responses.create(model=ANTHROPIC_MODEL, input="Hi", reasoning={"effort": "high"}, max_output_tokens=1500)
    assert upstream.last_request.body["thinking"]["budget_tokens"] == 1499
    oai.responses.create(model=ANTHROPIC_MODEL, input="Hi", reasoning={"effort": "high"}, max_output_tokens=500)
    assert "thinking" not in upstream.last_request.body


def test_images_and_messages_of_every_role_are_translated(oai: openai.OpenAI, upstream: FakeUpstream) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    oai.responses.create(model=OPENAI_MODEL, instructions="Be brief.", input=[
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use French."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                                       {"type": "input_image", "image_url": image, "detail": "low"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A dot."}]},
        {"role": "user", "content": "Sure?"},
    ])
    assert upstream.last_request.body["messages"] == [
        {"role": "system", "content": "Be brief.\n\nUse French."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": image}}]},
        {"role": "assistant", "content": "A dot."},
        {"role": "user", "content": "Sure?"},
    ]


def test_upstream_failures_keep_their_status_and_a_failed_stream_ends_with_an_error_event(
        oai: openai.OpenAI, key: tuple[ApiKey, str], upstream: FakeUpstream) -> None:
    upstream.fail_next(429)
    with pytest.raises(openai.RateLimitError):
        oai.responses.create(model=NATIVE_MODEL, input="Hi")
    upstream.fail_next("error_event")
    events = list(oai.responses.create(model=NATIVE_MODEL, input="Hi", stream=True))
    assert [event.type for event in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.status == "failed"
    assert [record.status for record in _records(key[0])] == ["error", "error"]


def test_stored_state_is_refused_and_an_omitted_store_is_not(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        oai.responses.create(model=NATIVE_MODEL, input="Hi", previous_response_id="resp_123")
    assert refused.value.body["param"] == "previous_response_id"
    assert "does not store responses" in refused.value.body["message"]
    with pytest.raises(openai.BadRequestError) as refused:
        oai.responses.create(model=NATIVE_MODEL, input="Hi", store=True)
    assert refused.value.body["param"] == "store"
    assert oai.responses.create(model=NATIVE_MODEL, input="Hi", store=False).store is False
    assert oai.responses.create(model=NATIVE_MODEL, input="Hi").status == "completed"
