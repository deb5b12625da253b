"""The Anthropic adapter against the fake upstream: real HTTP on loopback, the anthropic SDK inside."""

import asyncio
import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest

from providers.adapters import anthropic as adapter
from providers.adapters.anthropic import DEFAULT_MAX_TOKENS, finish_reason_from_anthropic, usage_from_anthropic
from providers.adapters.base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    ImagePart,
    Message,
    ProviderError,
    TextPart,
    ToolCall,
    Usage,
    collect,
)
from tests.fakes.upstream import FakeUpstream

KEY = "sk-ant-adapter-test-0123456789"
HELLO = ChatRequest(model="claude-test", messages=(Message("user", "Say hello."),))
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def connection(fake: FakeUpstream, **overrides: Any) -> Connection:
    values: dict[str, Any] = {"kind": "anthropic", "label": "Fake Claude", "base_url": fake.base_url, "api_key": KEY}
    return Connection(**{**values, **overrides})


def chunks(conn: Connection, request: ChatRequest = HELLO) -> list[Chunk]:
    async def run() -> list[Chunk]:
        return [chunk async for chunk in adapter.stream(conn, request)]

    return asyncio.run(run())


def streamed(conn: Connection, request: ChatRequest = HELLO) -> Completion:
    return asyncio.run(collect(adapter.stream(conn, request)))


def completed(conn: Connection, request: ChatRequest = HELLO) -> Completion:
    return asyncio.run(adapter.complete(conn, request))


def failure(call: Callable[[], Any]) -> tuple[ProviderError, list[Chunk]]:
    """The ProviderError a stream or a `complete()` ends with, and the chunks that arrived before it."""
    received: list[Chunk] = []

    async def run() -> None:
        result = call()
        if hasattr(result, "__aiter__"):
            async for chunk in result:
                received.append(chunk)
        else:
            await result

    with pytest.raises(ProviderError) as error:
        asyncio.run(run())
    return error.value, received


# -- text ---------------------------------------------------------------------------------------


def test_stream_sends_text_in_several_chunks_then_usage_once(upstream: FakeUpstream) -> None:
    upstream.reply = "one two three four"
    upstream.usage = {"input_tokens": 25, "output_tokens": 15, "cached_tokens": 100, "cache_write_tokens": 248}

    received = chunks(connection(upstream))

    assert [chunk.text for chunk in received if chunk.text] == ["one ", "two ", "three ", "four"]
    # Input and cache counts come with message_start, the output count with message_delta.
    assert [chunk.usage for chunk in received if chunk.usage] == [
        Usage(input_tokens=25, cache_read_tokens=100, cache_write_tokens=248, output_tokens=15)]
    assert received[-1].usage is not None and received[-1].finish_reason == "stop"
    # message_start's id, on every chunk: a stream cut short still names its message.
    assert len({chunk.response_id for chunk in received}) == 1
    assert re.fullmatch(r"msg_fake\d{8}", received[0].response_id)
    assert upstream.last_request.body["stream"] is True


def test_complete_is_a_native_non_streamed_call(upstream: FakeUpstream) -> None:
    upstream.reply = "Bonjour"
    upstream.usage = {"input_tokens": 9, "output_tokens": 2, "cached_tokens": 4}

    result = completed(connection(upstream))

    assert re.fullmatch(r"msg_fake\d{8}", result.response_id)  # the message's `id`
    assert result == Completion(text="Bonjour", usage=Usage(input_tokens=9, cache_read_tokens=4, output_tokens=2),
                                finish_reason="stop", response_id=result.response_id)
    assert "stream" not in upstream.last_request.body


def test_request_is_translated_with_system_on_top_and_every_setting(upstream: FakeUpstream) -> None:
    request = ChatRequest(
        model="claude-test",
        system="You are terse.",
        messages=(
            Message("user", "What is 2+2?"),
            Message("assistant", "4"),
            Message("user", "And 3+3?"),
        ),
        temperature=0.2,
        top_p=0.9,
        stop=("END", "STOP"),
        extra={"metadata": {"user_id": "alice"}, "top_k": 5},
    )

    chunks(connection(upstream), request)

    body = upstream.last_request.body
    assert body["system"] == "You are terse."
    assert body["messages"] == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS  # required by the API, so never left out
    assert body["stop_sequences"] == ["END", "STOP"]
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 5)
    assert body["metadata"] == {"user_id": "alice"}
    assert "thinking" not in body and "tools" not in body
    assert upstream.last_request.api_key == KEY


def test_cached_system_prompt_carries_cache_control(upstream: FakeUpstream) -> None:
    chunks(connection(upstream), ChatRequest(model="claude-test", system="A long manual.", cache_system=True,
                                             messages=HELLO.messages, max_tokens=100))

    body = upstream.last_request.body
    assert body["system"] == [{"type": "text", "text": "A long manual.", "cache_control": {"type": "ephemeral"}}]
    assert body["max_tokens"] == 100


def test_images_become_base64_or_url_blocks(upstream: FakeUpstream) -> None:
    request = ChatRequest(model="claude-test", messages=(Message("user", (
        ImagePart("data:image/png;base64,iVBORw0KGgo="),
        ImagePart("https://example.com/a.jpg"),
        TextPart("What is in these?"),
    )),))

    chunks(connection(upstream), request)

    assert upstream.last_request.body["messages"] == [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        {"type": "text", "text": "What is in these?"},
    ]}]


# -- tools and thinking -------------------------------------------------------------------------


def test_tool_call_round_trip(upstream: FakeUpstream) -> None:
    conn = connection(upstream)
    upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
    ask = ChatRequest(model="claude-test", messages=(Message("user", "Weather in Paris?"),),
                      tools=(WEATHER_TOOL,), tool_choice="required")

    received = chunks(conn, ask)

    pieces = [chunk.tool_call for chunk in received if chunk.tool_call]
    assert len(pieces) > 2  # the id and name, then the input JSON in several pieces
    assert {piece.index for piece in pieces} == {0}
    assert received[-1].finish_reason == "tool_calls"
    call = ToolCall(pieces[0].id, pieces[0].name, "".join(piece.arguments for piece in pieces))
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "celsius"}
    body = upstream.last_request.body
    assert body["tools"] == [{
        "name": "get_weather",
        "input_schema": WEATHER_TOOL["function"]["parameters"],
        "description": "Current weather in a city.",
    }]
    assert body["tool_choice"] == {"type": "any"}

    upstream.tool_call = None
    upstream.reply = "It is 18 degrees in Paris."
    answer = streamed(conn, ChatRequest(model="claude-test", tools=(WEATHER_TOOL,), messages=(
        *ask.messages,
        Message("assistant", "Let me look.", tool_calls=(call, ToolCall("toolu_2", "get_time", ""))),
        Message("tool", '{"temperature": 18}', tool_call_id=call.id),
        Message("tool", "14:00", tool_call_id="toolu_2"),
    )))

    assert answer.text == "It is 18 degrees in Paris." and answer.finish_reason == "stop"
    assert upstream.last_request.body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ]},
        # Both results in one user turn, as the API wants them.
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": '{"temperature": 18}'},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "14:00"},
        ]},
    ]


@pytest.mark.parametrize(("choice", "wire"), [
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice_mapping(upstream: FakeUpstream, choice: Any, wire: dict[str, Any]) -> None:
    chunks(connection(upstream), ChatRequest(model="claude-test", messages=HELLO.messages, tools=(WEATHER_TOOL,),
                                             tool_choice=choice))

    assert upstream.last_request.body["tool_choice"] == wire


def test_complete_returns_parallel_tool_calls(upstream: FakeUpstream) -> None:
    upstream.tool_call = [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]

    result = completed(connection(upstream))

    assert [(call.name, json.loads(call.arguments)) for call in result.tool_calls] == [("a", {"x": 1}), ("b", {})]
    assert result.finish_reason == "tool_calls"


def test_streamed_tool_calls_are_numbered_from_zero(upstream: FakeUpstream) -> None:
    upstream.reasoning = "I need two tools."  # a thinking block takes content index 0
    upstream.tool_call = [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]

    result = streamed(connection(upstream), ChatRequest(model="claude-test", messages=HELLO.messages,
                                                        thinking_budget=1024))

    assert [(call.name, json.loads(call.arguments)) for call in result.tool_calls] == [("a", {"x": 1}), ("b", {})]
    assert result.reasoning == "I need two tools."


def test_extended_thinking_streams_reasoning(upstream: FakeUpstream) -> None:
    upstream.reasoning = "Two plus two is four."
    upstream.reply = "4"
    conn = connection(upstream)
    request = ChatRequest(model="claude-test", messages=HELLO.messages, thinking_budget=2048)

    received = chunks(conn, request)
    body = upstream.last_request.body
    result = completed(conn, request)

    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS + 2048  # the budget must stay below max_tokens
    assert len([chunk for chunk in received if chunk.reasoning]) > 1
    assert "".join(chunk.reasoning for chunk in received) == "Two plus two is four."
    assert "".join(chunk.text for chunk in received) == "4"
    assert (result.reasoning, result.text) == ("Two plus two is four.", "4")


# -- usage --------------------------------------------------------------------------------------

# Anthropic's prompt caching docs, "1-hour cache duration": a response mixing both durations.
ONE_HOUR_DOCS_USAGE = {
    "input_tokens": 2048, "cache_read_input_tokens": 1800, "cache_creation_input_tokens": 248, "output_tokens": 503,
    "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100},
}


def test_cache_writes_of_both_durations_streamed_and_not(upstream: FakeUpstream) -> None:
    upstream.raw_usage = ONE_HOUR_DOCS_USAGE
    expected = Usage(input_tokens=2048, cache_read_tokens=1800, cache_write_tokens=148, cache_write_1h_tokens=100,
                     output_tokens=503)

    assert [chunk.usage for chunk in chunks(connection(upstream)) if chunk.usage] == [expected]
    assert completed(connection(upstream)).usage == expected


USAGE_VECTORS = [
    pytest.param(
        # Anthropic's streaming docs: message_start then message_delta; the provisional output count
        # of 1 is replaced by the cumulative 15, never added to it.
        [{"input_tokens": 25, "output_tokens": 1}, {"output_tokens": 15}],
        Usage(input_tokens=25, output_tokens=15),
        id="anthropic-streaming-docs",
    ),
    pytest.param(
        # Anthropic's rate-limit docs: a 200K-token cached document and a 50-token question show
        # input_tokens 50 (total input 200,050); the output count is ours.
        [{"input_tokens": 50, "cache_read_input_tokens": 200_000, "cache_creation_input_tokens": 0,
          "output_tokens": 120}],
        Usage(input_tokens=50, cache_read_tokens=200_000, output_tokens=120),
        id="anthropic-rate-limit-docs",
    ),
    pytest.param(
        [{"input_tokens": 3, "cache_creation_input_tokens": 1842, "cache_read_input_tokens": 0, "output_tokens": 412,
          "output_tokens_details": {"thinking_tokens": 300}}],
        Usage(input_tokens=3, cache_write_tokens=1842, output_tokens=412, reasoning_tokens=300),
        id="cache-write-and-thinking",
    ),
    pytest.param(
        # Anthropic's prompt caching docs ("1-hour cache duration"): cache_creation_input_tokens is the
        # sum of the two durations in cache_creation.
        [ONE_HOUR_DOCS_USAGE],
        Usage(input_tokens=2048, cache_read_tokens=1800, cache_write_tokens=148, cache_write_1h_tokens=100,
              output_tokens=503),
        id="anthropic-prompt-caching-docs-1h",
    ),
    pytest.param(
        # The split by duration comes with message_start only; message_delta repeats the cumulative total.
        [{**ONE_HOUR_DOCS_USAGE, "output_tokens": 1},
         {"input_tokens": 2048, "cache_creation_input_tokens": 248, "cache_read_input_tokens": 1800,
          "output_tokens": 503}],
        Usage(input_tokens=2048, cache_read_tokens=1800, cache_write_tokens=148, cache_write_1h_tokens=100,
              output_tokens=503),
        id="split-from-message-start",
    ),
    pytest.param(
        # Writes a later cumulative total counts beyond the split are 5-minute ones, the default duration.
        [{**ONE_HOUR_DOCS_USAGE, "output_tokens": 1}, {"cache_creation_input_tokens": 300, "output_tokens": 503}],
        Usage(input_tokens=2048, cache_read_tokens=1800, cache_write_tokens=200, cache_write_1h_tokens=100,
              output_tokens=503),
        id="writes-beyond-the-split",
    ),
    pytest.param(
        [{"input_tokens": 5, "cache_creation_input_tokens": 40, "cache_creation": None, "output_tokens": 2}],
        Usage(input_tokens=5, cache_write_tokens=40, output_tokens=2),
        id="null-split",
    ),
    pytest.param(
        # Newer streams repeat cumulative input counts in message_delta; nulls there erase nothing.
        [{"input_tokens": 10, "cache_read_input_tokens": 7, "output_tokens": 1},
         {"input_tokens": 10, "cache_read_input_tokens": None, "output_tokens": 40}],
        Usage(input_tokens=10, cache_read_tokens=7, output_tokens=40),
        id="cumulative-delta",
    ),
]


@pytest.mark.parametrize(("usages", "expected"), USAGE_VECTORS)
def test_usage_from_anthropic(usages: list[dict[str, Any]], expected: Usage) -> None:
    assert usage_from_anthropic(*usages) == expected


@pytest.mark.parametrize(("wire", "expected"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("model_context_window_exceeded", "length"), ("pause_turn", "stop"),
    (None, None),
])
def test_stop_reasons(wire: str | None, expected: str | None) -> None:
    assert finish_reason_from_anthropic(wire) == expected


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind", "retryable"), [
    (401, "auth", False),
    (403, "auth", False),
    (404, "model_not_found", False),
    (400, "invalid_request", False),
    (500, "server", True),
    (529, "server", True),  # overloaded
])
def test_http_errors_map_to_kinds(upstream: FakeUpstream, status: int, kind: str, retryable: bool) -> None:
    upstream.fail_next(status)
    conn = connection(upstream)

    error, received = failure(lambda: adapter.stream(conn, HELLO))

    assert (error.kind, error.status, error.retryable) == (kind, status, retryable)
    assert received == []
    assert error.message.startswith("Fake Claude ") and f"(HTTP {status})" in error.message
    assert KEY not in error.message


def test_429_carries_retry_after(upstream: FakeUpstream) -> None:
    upstream.fail_next(429, retry_after=7)
    upstream.fail_next(429, retry_after=3)
    conn = connection(upstream)

    streamed_error, _ = failure(lambda: adapter.stream(conn, HELLO))
    completed_error, _ = failure(lambda: adapter.complete(conn, HELLO))

    assert (streamed_error.kind, streamed_error.retry_after, streamed_error.retryable) == ("rate_limit", 7.0, True)
    assert "retry in 7 seconds" in streamed_error.message
    assert (completed_error.kind, completed_error.retry_after) == ("rate_limit", 3.0)


def test_timeout(upstream: FakeUpstream) -> None:
    upstream.fail_next("slow", delay=2)
    upstream.fail_next("slow", delay=2)
    conn = connection(upstream, timeout=0.2)

    started = time.monotonic()
    streamed_error, _ = failure(lambda: adapter.stream(conn, HELLO))
    completed_error, _ = failure(lambda: adapter.complete(conn, HELLO))

    assert (streamed_error.kind, completed_error.kind) == ("timeout", "timeout")
    assert streamed_error.retryable and "did not answer in time" in streamed_error.message
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_a_network_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = Connection(kind="anthropic", label="Fake Claude", base_url=f"http://127.0.0.1:{port}", api_key=KEY)

    error, _ = failure(lambda: adapter.stream(conn, HELLO))

    assert (error.kind, error.retryable) == ("network", True)
    assert "Could not connect to Fake Claude" in error.message


def test_connection_cut_mid_stream_is_a_retryable_network_error(upstream: FakeUpstream) -> None:
    upstream.reply = "a b c d e f"
    upstream.fail_next("cut", cut_after=2)
    conn = connection(upstream)

    error, received = failure(lambda: adapter.stream(conn, HELLO))

    assert "".join(chunk.text for chunk in received) == "a b "
    assert all(chunk.usage is None for chunk in received)
    assert (error.kind, error.retryable) == ("network", True)
    assert "broke before the answer was complete" in error.message


def test_malformed_chunk_is_a_server_error_in_plain_words(upstream: FakeUpstream) -> None:
    upstream.reply = "a b c d"
    upstream.fail_next("malformed", cut_after=1)
    upstream.fail_next("malformed")
    conn = connection(upstream)

    error, received = failure(lambda: adapter.stream(conn, HELLO))
    completed_error, _ = failure(lambda: adapter.complete(conn, HELLO))

    assert "".join(chunk.text for chunk in received) == "a "
    assert error.kind == "server" and completed_error.kind == "server"
    assert error.message == "Fake Claude sent a malformed response that aspweb could not read; " \
                            "it is usually temporary."


def _status_error(status: int, error_type: str, message: str) -> anthropic.APIStatusError:
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    response = httpx2.Response(status, request=request, json=body)
    return anthropic.APIStatusError(f"Error code: {status}", response=response, body=body)


@pytest.mark.parametrize(("exc", "kind", "status"), [
    (_status_error(400, "billing_error", "Your credit balance is too low."), "quota", 400),
    (_status_error(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
     "invalid_request", 400),
    (_status_error(504, "timeout_error", "Request timed out."), "timeout", 504),
    # An error event inside a stream that started with 200: only its type tells what happened.
    (_status_error(200, "overloaded_error", "Overloaded"), "server", None),
    (_status_error(200, "rate_limit_error", "Slow down"), "rate_limit", None),
])
def test_error_types_map_to_kinds(exc: Exception, kind: str, status: int | None) -> None:
    error = adapter.map_error(exc, Connection(kind="anthropic", label="Claude", base_url="", api_key=KEY))

    assert (error.kind, error.status) == (kind, status)


def test_messages_never_hold_the_key() -> None:
    conn = Connection(kind="anthropic", label="Claude", base_url="", api_key="not-shaped-like-a-key")
    exc = _status_error(401, "authentication_error", "invalid x-api-key not-shaped-like-a-key")

    error = adapter.map_error(exc, conn)

    assert error.kind == "auth"
    assert "not-shaped-like-a-key" not in error.message and "[redacted]" in error.message


def test_tool_input_that_is_not_json_is_refused_before_calling(upstream: FakeUpstream) -> None:
    request = ChatRequest(model="claude-test", messages=(
        Message("user", "Go."),
        Message("assistant", tool_calls=(ToolCall("toolu_1", "run", "{not json"),)),
        Message("tool", "done", tool_call_id="toolu_1"),
    ))
    conn = connection(upstream)

    error, _ = failure(lambda: adapter.stream(conn, request))

    assert error.kind == "invalid_request" and "'run'" in error.message
    assert upstream.requests == []


def test_the_fakes_tool_use_stream_is_what_the_sdk_understands(upstream: FakeUpstream) -> None:
    """The fake's tool_use and input_json_delta events build the SDK's own final message."""
    upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    sdk = anthropic.Anthropic(base_url=upstream.base_url, api_key=KEY, max_retries=0)

    with sdk.messages.stream(model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "?"}]) as s:
        final = s.get_final_message()

    [block] = final.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
