"""The Responses API format (gateway/responses_format.py) and its native adapter's normalisation
(providers/adapters/openai_responses.py): requests refused with a 400 naming the culprit, never a 5xx; the
usage object read as OpenAI documents it."""

from typing import Any

import pytest

from gateway import responses_format
from gateway.checks import BadRequest
from gateway.models import Deployment, Route
from providers.adapters import openai_responses
from providers.adapters.base import ChatRequest, Chunk, Message, ToolCallDelta, Usage
from providers.models import Model, Provider
from tests.conftest import Clock
from tests.fakes.upstream import FakeUpstream
from tests.gateway_support import ANTHROPIC_MODEL, OPENAI_MODEL, call, make_key, make_providers
from usage.models import UsageRecord

# From OpenAI's reasoning guide (a Responses API answer's usage): reasoning counted inside output_tokens.
DOCUMENTED_USAGE = {"input_tokens": 75, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 1186,
                    "output_tokens_details": {"reasoning_tokens": 1024}, "total_tokens": 1261}


def test_the_documented_usage_keeps_reasoning_inside_output() -> None:
    assert openai_responses.usage_from_responses(DOCUMENTED_USAGE) == Usage(
        input_tokens=75, output_tokens=1186, reasoning_tokens=1024)


def test_cached_input_is_taken_out_of_the_uncached_input() -> None:
    # Made from the documented one: cached tokens are part of input_tokens, as in chat completions.
    usage = openai_responses.usage_from_responses({**DOCUMENTED_USAGE, "input_tokens_details": {"cached_tokens": 64}})
    assert (usage.input_tokens, usage.cache_read_tokens, usage.prompt_tokens) == (11, 64, 75)
    assert responses_format.usage_body(usage) == {**DOCUMENTED_USAGE, "input_tokens_details": {"cached_tokens": 64}}


@pytest.mark.parametrize(("status", "reason", "output", "expected"), [
    ("completed", None, [], "stop"),
    ("completed", None, [{"type": "function_call"}], "tool_calls"),
    ("incomplete", "max_output_tokens", [], "length"),
    ("incomplete", "content_filter", [], "content_filter"),
])
def test_finish_reasons(status: str, reason: str | None, output: list[Any], expected: str) -> None:
    response = {"status": status, "incomplete_details": {"reason": reason}, "output": output}
    assert openai_responses.finish_reason(response) == expected


def test_the_native_body_stores_nothing_and_takes_the_call_paths_settings() -> None:
    parsed = responses_format.parse_responses({"model": "oa/gpt", "input": "Hi", "reasoning": {"effort": "low",
                                                                                                "summary": "auto"}})
    request = ChatRequest(**{**parsed.request.__dict__, "model": "gpt-deployment", "max_tokens": 300,
                             "extra": {"metadata": {"team": "a"}}})
    assert openai_responses.body(request) == {
        "input": "Hi", "reasoning": {"summary": "auto", "effort": "low"}, "model": "gpt-deployment", "store": False,
        "max_output_tokens": 300, "metadata": {"team": "a"}}


def test_items_become_turns_and_consecutive_calls_one_assistant_turn() -> None:
    parsed = responses_format.parse_responses({"model": "m", "input": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}', "id": "fc_1"},
        {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "18 C"}]},
        {"type": "function_call_output", "call_id": "c2", "output": "21 C"},
    ]})
    user, assistant, first, second = parsed.request.messages
    assert user == Message("user", "Weather in Paris and Rome?")
    assert [call.id for call in assistant.tool_calls] == ["c1", "c2"]
    assert (first.tool_call_id, first.content, second.content) == ("c1", "18 C", "21 C")
    assert len(parsed.request.responses["input"]) == 5  # the reasoning item is not sent on
    assert "id" not in parsed.request.responses["input"][1]


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "Hi", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "Hi", "store": True}, "store"),
    ({"input": "Hi", "conversation": "conv_1"}, "conversation"),
    ({"input": "Hi", "background": True}, "background"),
    ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": "Hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, "text.format.type"),
    ({"input": "Hi", "include": ["reasoning.encrypted_content"]}, "include"),
    ({"input": "Hi", "truncation": "auto"}, "truncation"),
    ({"input": "Hi", "frequency_penalty": 1}, "frequency_penalty"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
     "input[0].content[0].file_id"),
    ({"input": [{"role": "system", "content": "Be brief."}]}, "input"),
    ({"input": "Hi", "tool_choice": {"type": "function", "name": "f"}}, "tool_choice"),
    ({"input": "Hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "Hi", "metadata": {"tags": "a" * 65}}, "metadata.tags"),
    ({}, "input"),
])
def test_what_aspweb_cannot_honour_is_a_400_naming_it(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as refused:
        responses_format.parse_responses({"model": "m", **body})
    assert refused.value.param == param


def test_null_and_false_are_no_request_for_stored_state() -> None:
    parsed = responses_format.parse_responses({"model": "m", "input": "Hi", "store": False, "background": False,
                                               "previous_response_id": None, "stream": True,
                                               "stream_options": {"include_obfuscation": False}})
    assert parsed.stream and parsed.request.messages == (Message("user", "Hi"),)


def test_the_stream_writer_closes_one_item_before_the_next_and_numbers_every_event() -> None:
    answer = responses_format.Answer("resp_ab", 1, "m", {})
    writer = responses_format.StreamWriter(answer)
    out = writer.start() + writer.delta(Chunk(reasoning="Hm")) + writer.delta(Chunk(text="Hi"))
    out += writer.delta(Chunk(tool_call=ToolCallDelta(0, id="c1", name="f", arguments='{"a"')))
    out += writer.delta(Chunk(tool_call=ToolCallDelta(0, arguments=":1}")))
    out += writer.end(Usage(input_tokens=3, output_tokens=4), "tool_calls")
    events = [frame.split("\n")[0].removeprefix("event: ") for frame in out.decode().split("\n\n") if frame]
    assert events == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert [item["type"] for item in writer.output] == ["reasoning", "message", "function_call"]
    assert writer.output[2]["arguments"] == '{"a":1}' and writer.sequence == len(events)


def test_an_answer_cut_at_max_output_tokens_is_incomplete() -> None:
    answer = responses_format.Answer("resp_ab", 1, "m", {})
    writer = responses_format.StreamWriter(answer)
    last = (writer.start() + writer.delta(Chunk(text="Hi")) + writer.end(Usage(), "length")).decode()
    assert '"type":"response.incomplete"' in last and '"incomplete_details":{"reason":"max_output_tokens"}' in last


def test_bad_requests_through_the_endpoint_are_4xx_in_openais_shape(db: None, upstream: FakeUpstream) -> None:
    make_providers(upstream)
    key = make_key()[1]
    answers = [
        call("/v1/responses", {"model": OPENAI_MODEL, "input": "Hi", "previous_response_id": "resp_x"}, key=key),
        call("/v1/responses", {"model": OPENAI_MODEL}, key=key),
        call("/v1/responses", raw=b"{", key=key),
        call("/v1/responses", {"model": "local/nope", "input": "Hi"}, key=key),
        call("/v1/responses", {"model": OPENAI_MODEL, "input": "Hi"}),
        call("/v1/responses", method="GET", key=key),
    ]
    assert [answer.status for answer in answers] == [400, 400, 400, 404, 401, 405]
    for answer in answers:
        assert set(answer.json["error"]) == {"message", "type", "param", "code"}
    assert upstream.requests == []


def test_a_route_falls_back_from_the_native_api_to_a_translated_one_and_attribution_applies(
        db: None, upstream: FakeUpstream, minute: Clock) -> None:
    models = make_providers(upstream)
    native = Provider.objects.create(name="oa", kind="openai", base_url=upstream.openai_base_url, api_key="sk-x",
                                     max_retries=0)
    route = Route.objects.create(name="chat")
    Deployment.objects.create(route=route, model=Model.objects.create(provider=native, name="fake-model-a"),
                              priority=1)
    Deployment.objects.create(route=route, model=models[ANTHROPIC_MODEL], priority=2)
    key = make_key(rpm_limit=2)[1]
    upstream.fail_next(500)
    answer = call("/v1/responses", {"model": "chat", "input": "Hi", "user": "customer-42",
                                    "metadata": {"tags": "Search, beta"}}, key=key)
    assert answer.status == 200 and answer.json["output"][0]["content"][0]["text"] == upstream.reply
    assert [request.path for request in upstream.requests] == ["/v1/responses", "/v1/messages"]
    record = UsageRecord.objects.get()
    assert (record.provider_name, record.tag_list, record.end_user) == ("claude", ("beta", "search"), "customer-42")
    assert call("/v1/responses", {"model": "chat", "input": "Hi"}, key=key).status == 200
    limited = call("/v1/responses", {"model": "chat", "input": "Hi"}, key=key)
    assert limited.status == 429 and limited.json["error"]["code"] == "rate_limit_exceeded"
