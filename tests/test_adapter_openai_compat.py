"""The OpenAI-compatible adapter against the fake upstream: real HTTP on loopback, through the openai SDK
(OpenAI, Azure OpenAI) and directly on aiohttp (every other kind).

The behavioural tests take `provider_kind` and run once over each transport: "openai" for the SDK,
"openai_compatible" for the direct one."""

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx2
import openai
import pytest

from providers.adapters import openai_compat, wire
from providers.adapters.base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    ImagePart,
    Message,
    ProviderError,
    TextPart,
    Usage,
    collect,
    estimate_tokens,
    pooled,
)
from providers.adapters.openai_compat import finish_reason_from_openai, usage_from_openai
from providers.kinds import KINDS
from tests.budgets_support import fake_dns
from tests.fakes.upstream import DEFAULT_REPLY, FakeUpstream

KEY = "sk-adapter-test-0123456789abcdef"
HELLO = ChatRequest(model="gpt-test", messages=(Message("user", "Say hello."),))
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def connection(fake: FakeUpstream, kind: str = "openai", **overrides: Any) -> Connection:
    values: dict[str, Any] = {"kind": kind, "label": "Fake OpenAI", "base_url": fake.openai_base_url,
                              "api_key": KEY}
    return Connection(**{**values, **overrides})


def chunks(conn: Connection, request: ChatRequest = HELLO) -> list[Chunk]:
    async def run() -> list[Chunk]:
        return [chunk async for chunk in openai_compat.stream(conn, request)]

    return asyncio.run(run())


def streamed(conn: Connection, request: ChatRequest = HELLO) -> Completion:
    return asyncio.run(collect(openai_compat.stream(conn, request)))


def completed(conn: Connection, request: ChatRequest = HELLO) -> Completion:
    return asyncio.run(openai_compat.complete(conn, request))


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


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["openai", "openai_compatible"], ids=["sdk", "direct"])
def provider_kind(request: pytest.FixtureRequest) -> str:
    """A kind called through the openai SDK, then one spoken to directly: the same behaviour is expected."""
    return request.param


# -- text ---------------------------------------------------------------------------------------


def test_stream_sends_text_in_several_chunks_then_usage_once(upstream: FakeUpstream, provider_kind: str) -> None:
    upstream.reply = "one two three four"
    upstream.usage = {"input_tokens": 20, "output_tokens": 4}

    received = chunks(connection(upstream, provider_kind))

    texts = [chunk.text for chunk in received if chunk.text]
    assert texts == ["one ", "two ", "three ", "four"]
    assert [chunk.usage for chunk in received if chunk.usage] == [Usage(input_tokens=20, output_tokens=4)]
    assert received[-1].usage is not None and received[-1].finish_reason == "stop"
    # Every event's `id`, on every chunk: a stream cut short still names its answer.
    assert len({chunk.response_id for chunk in received}) == 1
    assert re.fullmatch(r"chatcmpl-fake\d{8}", received[0].response_id)
    body = upstream.last_request.body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_complete_is_a_native_non_streamed_call(upstream: FakeUpstream, provider_kind: str) -> None:
    upstream.reply = "Bonjour"
    upstream.usage = {"input_tokens": 9, "output_tokens": 1}

    result = completed(connection(upstream, provider_kind))

    assert re.fullmatch(r"chatcmpl-fake\d{8}", result.response_id)  # the answer's `id`
    assert result == Completion(text="Bonjour", usage=Usage(input_tokens=9, output_tokens=1), finish_reason="stop",
                                response_id=result.response_id)
    assert "stream" not in upstream.last_request.body
    assert "stream_options" not in upstream.last_request.body


def test_request_is_translated_with_system_first_and_every_setting(upstream: FakeUpstream, provider_kind: str) -> None:
    request = ChatRequest(
        model="gpt-test",
        system="You are terse.",
        messages=(
            Message("user", "What is 2+2?"),
            Message("assistant", "4"),
            Message("user", "And 3+3?"),
        ),
        temperature=0.2,
        top_p=0.9,
        max_tokens=64,
        stop=("END",),
        extra={"seed": 7, "user": "alice"},
    )

    chunks(connection(upstream, provider_kind), request)

    body = upstream.last_request.body
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]
    assert (body["temperature"], body["top_p"], body["stop"]) == (0.2, 0.9, ["END"])
    assert (body["seed"], body["user"]) == (7, "alice")
    # OpenAI's reasoning models accept only max_completion_tokens; the preset says so.
    cap, other = ("max_completion_tokens", "max_tokens") if provider_kind == "openai" else \
        ("max_tokens", "max_completion_tokens")
    assert body[cap] == 64 and other not in body
    assert upstream.last_request.api_key == KEY


def test_other_compatible_servers_get_max_tokens(upstream: FakeUpstream) -> None:
    chunks(connection(upstream, "groq"), ChatRequest(model="llama", messages=HELLO.messages, max_tokens=32))

    body = upstream.last_request.body
    assert body["max_tokens"] == 32 and "max_completion_tokens" not in body


def test_images_travel_as_image_url_parts(upstream: FakeUpstream, provider_kind: str) -> None:
    picture = "data:image/png;base64,iVBORw0KGgo="
    request = ChatRequest(model="gpt-4o", messages=(
        Message("user", (TextPart("What is in these?"), ImagePart(picture), ImagePart("https://example.com/a.jpg"))),
    ))

    chunks(connection(upstream, provider_kind), request)

    assert upstream.last_request.body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": picture}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    ]}]


# -- tools and reasoning ------------------------------------------------------------------------


def test_tool_call_round_trip(upstream: FakeUpstream, provider_kind: str) -> None:
    conn = connection(upstream, provider_kind)
    upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
    ask = ChatRequest(model="gpt-test", messages=(Message("user", "Weather in Paris?"),),
                      tools=(WEATHER_TOOL,), tool_choice="auto")

    received = chunks(conn, ask)

    pieces = [chunk.tool_call for chunk in received if chunk.tool_call]
    assert len(pieces) > 2  # the id and name, then the arguments in several pieces
    assert {piece.index for piece in pieces} == {0}
    first = asyncio.run(collect(_replay(received)))
    [call] = first.tool_calls
    assert call.id.startswith("call_") and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "celsius"}
    assert first.finish_reason == "tool_calls" and first.text == ""
    assert upstream.last_request.body["tools"] == [WEATHER_TOOL]
    assert upstream.last_request.body["tool_choice"] == "auto"

    upstream.tool_call = None
    upstream.reply = "It is 18 degrees in Paris."
    answer = streamed(conn, ChatRequest(model="gpt-test", tools=(WEATHER_TOOL,), messages=(
        *ask.messages,
        Message("assistant", tool_calls=(call,)),
        Message("tool", '{"temperature": 18}', tool_call_id=call.id),
    )))

    assert answer.text == "It is 18 degrees in Paris." and answer.finish_reason == "stop"
    assert upstream.last_request.body["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.arguments}},
        ]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18}'},
    ]


async def _replay(received: list[Chunk]) -> AsyncIterator[Chunk]:
    for chunk in received:
        yield chunk


def test_complete_returns_tool_calls(upstream: FakeUpstream, provider_kind: str) -> None:
    upstream.tool_call = [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]

    result = completed(connection(upstream, provider_kind))

    assert [(call.name, json.loads(call.arguments)) for call in result.tool_calls] == [("a", {"x": 1}), ("b", {})]
    assert result.finish_reason == "tool_calls"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])  # DeepSeek's, OpenRouter's
def test_reasoning_deltas_from_compatible_servers(upstream: FakeUpstream, provider_kind: str, field: str) -> None:
    upstream.reasoning_field = field
    upstream.reasoning = "Two plus two is four."
    upstream.reply = "4"
    conn = connection(upstream, provider_kind)

    received = chunks(conn)
    result = completed(conn)

    assert "".join(chunk.reasoning for chunk in received) == "Two plus two is four."
    assert len([chunk for chunk in received if chunk.reasoning]) > 1
    assert "".join(chunk.text for chunk in received) == "4"
    assert (result.reasoning, result.text) == ("Two plus two is four.", "4")
    # Reasoning is part of the output count, recorded once more on its own.
    assert received[-1].usage == Usage(input_tokens=2, output_tokens=6, reasoning_tokens=5)


# -- usage --------------------------------------------------------------------------------------


def test_streamed_usage_with_cache_and_reasoning_tokens(upstream: FakeUpstream, provider_kind: str) -> None:
    upstream.usage = {"input_tokens": 2006, "output_tokens": 300, "cached_tokens": 1920, "reasoning_tokens": 64}

    assert streamed(connection(upstream, provider_kind)).usage == Usage(
        input_tokens=86, cache_read_tokens=1920, output_tokens=300, reasoning_tokens=64)


# Gemini's OpenAI-compatible endpoint, thoughts left out of completion_tokens but counted in total_tokens.
GEMINI_THINKING_USAGE = {"prompt_tokens": 20, "completion_tokens": 151, "total_tokens": 553}
# OpenRouter's usage accounting docs, "Response Format".
OPENROUTER_DOCS_USAGE = {
    "completion_tokens": 2, "completion_tokens_details": {"reasoning_tokens": 0}, "cost": 0.95,
    "cost_details": {"upstream_inference_cost": 19}, "prompt_tokens": 194,
    "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100, "audio_tokens": 0}, "total_tokens": 196,
}
# Groq's last streamed event carries the usage in x_groq, with its timings (seconds).
GROQ_USAGE = {"queue_time": 0.061348671, "prompt_tokens": 18, "prompt_time": 0.000211569, "completion_tokens": 439,
              "completion_time": 0.798181818, "total_tokens": 457, "total_time": 0.798393387}


@pytest.mark.parametrize(("style", "raw", "expected"), [
    pytest.param("gemini", GEMINI_THINKING_USAGE, Usage(input_tokens=20, output_tokens=533, reasoning_tokens=382),
                 id="gemini-on-every-event"),
    pytest.param("groq", GROQ_USAGE, Usage(input_tokens=18, output_tokens=439), id="groq-in-x_groq"),
    pytest.param("openrouter", OPENROUTER_DOCS_USAGE,
                 Usage(input_tokens=94, cache_write_tokens=100, output_tokens=2, reported_cost=Decimal("0.95")),
                 id="openrouter-cost"),
])
def test_usage_is_read_where_each_provider_puts_it(upstream: FakeUpstream, provider_kind: str, style: str,
                                                   raw: dict[str, Any], expected: Usage) -> None:
    upstream.usage_style, upstream.raw_usage = style, raw

    received = chunks(connection(upstream, provider_kind))
    whole = completed(connection(upstream, provider_kind))

    # Gemini's running counts on the events before the last are not the call's usage: the last one is.
    assert [chunk.usage for chunk in received if chunk.usage] == [expected]
    assert whole.usage == expected


USAGE_VECTORS = [
    pytest.param(
        # OpenAI's prompt caching guide, its example usage block.
        {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
         "prompt_tokens_details": {"cached_tokens": 1920},
         "completion_tokens_details": {"reasoning_tokens": 0, "accepted_prediction_tokens": 0,
                                       "rejected_prediction_tokens": 0}},
        Usage(input_tokens=86, cache_read_tokens=1920, output_tokens=300),
        id="openai-prompt-caching-guide",
    ),
    pytest.param(
        # OpenAI's reasoning guide (75 in, 1186 out of which 1024 reasoning), in chat-completions fields.
        {"prompt_tokens": 75, "completion_tokens": 1186, "total_tokens": 1261,
         "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 1024}},
        Usage(input_tokens=75, output_tokens=1186, reasoning_tokens=1024),
        id="openai-reasoning-guide",
    ),
    pytest.param(
        # OpenAI's usage API example splits 1000 input tokens into 400 cached, 100 written, 500 uncached.
        {"prompt_tokens": 1000, "completion_tokens": 10,
         "prompt_tokens_details": {"cached_tokens": 400, "cache_write_tokens": 100}},
        Usage(input_tokens=500, cache_read_tokens=400, cache_write_tokens=100, output_tokens=10),
        id="cache-writes",
    ),
    pytest.param(
        {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "prompt_tokens_details": None,
         "completion_tokens_details": None},
        Usage(input_tokens=12, output_tokens=5),
        id="server-without-details",
    ),
    pytest.param(
        # Gemini's OpenAI-compatible endpoint: a gemini-2.5-flash answer of 151 tokens after 382 thought
        # tokens, which only the total counts (20 + 151 + 382 = 553). Thoughts are billed as output.
        GEMINI_THINKING_USAGE,
        Usage(input_tokens=20, output_tokens=533, reasoning_tokens=382),
        id="gemini-thoughts-only-in-the-total",
    ),
    pytest.param(
        # The same thoughts also named in reasoning_tokens, still left out of completion_tokens: counted once.
        {"prompt_tokens": 21, "completion_tokens": 0, "total_tokens": 81,
         "completion_tokens_details": {"reasoning_tokens": 60}},
        Usage(input_tokens=21, output_tokens=60, reasoning_tokens=60),
        id="thoughts-named-and-left-out",
    ),
    pytest.param(
        # OpenRouter's usage accounting docs, their example usage object: `cost` is "the total amount charged
        # to your account"; prompt_tokens includes the 100 tokens written to the cache.
        OPENROUTER_DOCS_USAGE,
        Usage(input_tokens=94, cache_write_tokens=100, output_tokens=2, reported_cost=Decimal("0.95")),
        id="openrouter-usage-accounting-docs",
    ),
    pytest.param(
        # A free model: OpenRouter charged nothing, and says so.
        {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13, "cost": 0},
        Usage(input_tokens=10, output_tokens=3, reported_cost=Decimal("0")),
        id="openrouter-free-model",
    ),
    pytest.param(
        {"prompt_tokens": 10, "completion_tokens": 3, "cost": "0.5", "is_byok": False},
        Usage(input_tokens=10, output_tokens=3),
        id="a-cost-that-is-not-a-number-is-not-one",
    ),
]


@pytest.mark.parametrize(("usage", "expected"), USAGE_VECTORS)
def test_usage_from_openai(usage: dict[str, Any], expected: Usage) -> None:
    assert usage_from_openai(usage) == expected


@pytest.mark.parametrize(("wire", "expected"), [
    ("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"), ("function_call", "tool_calls"),
    ("content_filter", "content_filter"), ("max_tokens", "length"), ("eos", "stop"), (None, None),
])
def test_finish_reasons(wire: str | None, expected: str | None) -> None:
    assert finish_reason_from_openai(wire) == expected


# -- presets ------------------------------------------------------------------------------------


def test_cohere_gets_no_stream_options_and_an_estimated_usage(upstream: FakeUpstream) -> None:
    upstream.reply = "Hello there, friend."
    request = ChatRequest(model="command-r", system="Be kind.", messages=HELLO.messages)

    received = chunks(connection(upstream, "cohere"), request)

    assert "stream_options" not in upstream.last_request.body
    assert received[-1].usage == Usage(
        input_tokens=estimate_tokens("Be kind.\nSay hello."),
        output_tokens=estimate_tokens("Hello there, friend."),
        estimated=True,
    )


def test_openrouter_headers_and_prefixed_model_ids_reach_the_server(upstream: FakeUpstream) -> None:
    conn = connection(upstream, "openrouter", headers={"HTTP-Referer": "https://aspweb.example", "X-Title": "aspweb"})

    streamed(conn, ChatRequest(model="anthropic/claude-3-haiku", messages=HELLO.messages))

    request = upstream.last_request
    assert (request.headers["http-referer"], request.headers["x-title"]) == ("https://aspweb.example", "aspweb")
    assert request.body["model"] == "anthropic/claude-3-haiku"


def test_azure_calls_the_deployment_with_its_api_version(upstream: FakeUpstream) -> None:
    upstream.usage = {"input_tokens": 5, "output_tokens": 5}
    conn = connection(upstream, "azure_openai", base_url=upstream.base_url, extra={"api_version": "2024-10-21"})

    result = streamed(conn, ChatRequest(model="my-gpt4o-deployment", messages=HELLO.messages))

    assert result.text == "Hello from the fake upstream."
    assert result.usage == Usage(input_tokens=5, output_tokens=5)
    request = upstream.last_request
    assert request.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.headers["api-key"] == KEY


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind", "retryable"), [
    (401, "auth", False),
    (403, "auth", False),
    (404, "model_not_found", False),
    (400, "invalid_request", False),
    (500, "server", True),
    (503, "server", True),
])
def test_http_errors_map_to_kinds(upstream: FakeUpstream, provider_kind: str, status: int, kind: str,
                                  retryable: bool) -> None:
    upstream.fail_next(status)
    conn = connection(upstream, provider_kind)

    error, received = failure(lambda: openai_compat.stream(conn, HELLO))

    assert (error.kind, error.status, error.retryable) == (kind, status, retryable)
    assert received == []
    assert error.message.startswith("Fake OpenAI ") and f"(HTTP {status})" in error.message
    assert KEY not in error.message


def test_429_carries_retry_after(upstream: FakeUpstream, provider_kind: str) -> None:
    upstream.fail_next(429, retry_after=7)
    upstream.fail_next(429, retry_after=3)
    conn = connection(upstream, provider_kind)

    streamed_error, _ = failure(lambda: openai_compat.stream(conn, HELLO))
    completed_error, _ = failure(lambda: openai_compat.complete(conn, HELLO))

    assert (streamed_error.kind, streamed_error.retry_after, streamed_error.retryable) == ("rate_limit", 7.0, True)
    assert "retry in 7 seconds" in streamed_error.message
    assert (completed_error.kind, completed_error.retry_after) == ("rate_limit", 3.0)


def test_timeout(upstream: FakeUpstream, provider_kind: str) -> None:
    upstream.fail_next("slow", delay=2)
    upstream.fail_next("slow", delay=2)
    conn = connection(upstream, provider_kind, timeout=0.2)

    started = time.monotonic()
    streamed_error, _ = failure(lambda: openai_compat.stream(conn, HELLO))
    completed_error, _ = failure(lambda: openai_compat.complete(conn, HELLO))

    assert (streamed_error.kind, completed_error.kind) == ("timeout", "timeout")
    assert streamed_error.retryable and "did not answer in time" in streamed_error.message
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_a_network_error(provider_kind: str) -> None:
    conn = Connection(kind=provider_kind, label="Fake OpenAI", base_url=f"http://127.0.0.1:{closed_port()}/v1",
                      api_key=KEY)

    error, _ = failure(lambda: openai_compat.stream(conn, HELLO))

    assert (error.kind, error.retryable) == ("network", True)
    assert "Could not connect to Fake OpenAI" in error.message


def test_connection_cut_mid_stream_is_a_retryable_network_error(upstream: FakeUpstream, provider_kind: str) -> None:
    upstream.reply = "a b c d e f"
    upstream.fail_next("cut", cut_after=2)
    conn = connection(upstream, provider_kind)

    error, received = failure(lambda: openai_compat.stream(conn, HELLO))

    assert "".join(chunk.text for chunk in received) == "a b "
    assert all(chunk.usage is None for chunk in received)
    assert (error.kind, error.retryable) == ("network", True)
    assert "broke before the answer was complete" in error.message


def test_malformed_chunk_is_a_server_error_in_plain_words(upstream: FakeUpstream, provider_kind: str) -> None:
    upstream.reply = "a b c d"
    upstream.fail_next("malformed", cut_after=1)
    upstream.fail_next("malformed")
    conn = connection(upstream, provider_kind)

    error, received = failure(lambda: openai_compat.stream(conn, HELLO))
    completed_error, _ = failure(lambda: openai_compat.complete(conn, HELLO))

    assert "".join(chunk.text for chunk in received) == "a "
    assert error.kind == "server" and completed_error.kind == "server"
    assert error.message == "Fake OpenAI sent a malformed response that aspweb could not read; " \
                            "it is usually temporary."


def _status_error(cls: type[openai.APIStatusError], status: int, error: dict[str, Any]) -> openai.APIStatusError:
    request = httpx2.Request("POST", "https://api.example.com/v1/chat/completions")
    response = httpx2.Response(status, request=request, json={"error": error})
    return cls(f"Error code: {status}", response=response, body=error)


@pytest.mark.parametrize(("exc", "kind"), [
    (_status_error(openai.RateLimitError, 429, {"message": "You exceeded your current quota.",
                                                "type": "insufficient_quota", "code": "insufficient_quota"}),
     "quota"),
    (_status_error(openai.BadRequestError, 400, {"message": "The response was filtered.", "type": None,
                                                 "code": "content_filter"}), "content_filter"),
    (_status_error(openai.BadRequestError, 400, {"message": "This model's maximum context length is 128000 tokens.",
                                                 "type": "invalid_request_error",
                                                 "code": "context_length_exceeded"}), "invalid_request"),
    (_status_error(openai.APIStatusError, 402, {"message": "Insufficient credits", "code": 402}), "quota"),
    # An error event inside a stream that started with 200, as OpenRouter sends them.
    (openai.APIError("Provider returned error", httpx2.Request("POST", "https://openrouter.ai/api/v1"),
                     body={"code": 429, "message": "Rate limited upstream"}), "rate_limit"),
    # The same, as the direct transport raises them.
    (wire.StatusError(429, {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                            "code": "insufficient_quota"}, {}), "quota"),
    (wire.StatusError(400, {"message": "The response was filtered.", "code": "content_filter"}, {}),
     "content_filter"),
    (wire.StatusError(402, {"message": "Insufficient credits", "code": 402}, {}), "quota"),
    (wire.StatusError(502, "<html>Bad gateway</html>", {}), "server"),
    (wire.EventError({"code": 429, "message": "Rate limited upstream"}), "rate_limit"),
])
def test_error_bodies_map_to_kinds(exc: Exception, kind: str) -> None:
    error = openai_compat.map_error(exc, Connection(kind="openai", label="OpenAI", base_url="", api_key=KEY))

    assert error.kind == kind


@pytest.mark.parametrize("status_error", [
    lambda body: _status_error(openai.AuthenticationError, 401, body),
    lambda body: wire.StatusError(401, body, {}),
], ids=["sdk", "direct"])
def test_messages_never_hold_the_key(status_error: Callable[[dict[str, Any]], Exception]) -> None:
    conn = Connection(kind="openai", label="OpenAI", base_url="", api_key="not-shaped-like-a-key")
    exc = status_error({
        "message": "Incorrect API key provided: not-shaped-like-a-key. You can find your API key in your "
                   "dashboard, and sk-proj-abcdefghijklmnop is not it either.",
        "type": "invalid_request_error", "code": "invalid_api_key"})

    error = openai_compat.map_error(exc, conn)

    assert error.kind == "auth"
    assert "not-shaped-like-a-key" not in error.message and "sk-proj-abcdefghijklmnop" not in error.message
    assert "[redacted]" in error.message


def test_a_request_not_to_stream_gets_the_whole_answer_as_chunks(upstream: FakeUpstream, provider_kind: str) -> None:
    upstream.tool_call = [{"name": "a", "arguments": {"x": 1}}]
    conn = connection(upstream, provider_kind)
    request = replace(HELLO, stream=False)

    received = chunks(conn, request)

    assert "stream" not in upstream.last_request.body
    assert [(c.tool_call.index, c.tool_call.name, json.loads(c.tool_call.arguments))
            for c in received if c.tool_call] == [(0, "a", {"x": 1})]
    assert received[-1].finish_reason == "tool_calls" and received[-1].usage is not None
    whole, again = asyncio.run(collect(_replay(received))), completed(conn, request)
    assert (whole.text, [(c.name, c.arguments) for c in whole.tool_calls], whole.usage, whole.finish_reason) == (
        again.text, [(c.name, c.arguments) for c in again.tool_calls], again.usage, again.finish_reason)


def test_pooled_clients_are_closed_when_their_event_loop_ends(upstream: FakeUpstream, provider_kind: str) -> None:
    """Both transports' clients run on aiohttp, whose sessions must be closed on their own loop: the pool
    closes them as the loop shuts down."""
    conn = connection(upstream, provider_kind)
    make = openai_compat.client if provider_kind in openai_compat.SDK_KINDS else wire.Client
    clients: list[Any] = []

    async def run() -> None:
        async for _ in openai_compat.stream(conn, HELLO):
            pass
        clients.append(pooled(conn, make))
        assert not clients[0].is_closed()

    asyncio.run(run())
    assert clients[0].is_closed()


def test_an_error_event_inside_a_started_stream_is_mapped_like_an_error_status(upstream: FakeUpstream,
                                                                                provider_kind: str) -> None:
    """OpenRouter answers 200 and starts streaming (an SSE comment first), then reports its provider's failure
    as an event."""
    upstream.reply = "a b c d"
    upstream.fail_next("error_event", cut_after=2)
    conn = connection(upstream, provider_kind)

    error, received = failure(lambda: openai_compat.stream(conn, HELLO))

    assert "".join(chunk.text for chunk in received) == "a b "
    assert all(chunk.usage is None for chunk in received)
    assert (error.kind, error.status, error.retryable) == ("server", None, True)
    assert error.message == "Fake OpenAI had a server error; it is usually temporary. " \
                            "Fake OpenAI said: Provider disconnected unexpectedly"


@pytest.mark.parametrize("fault", ["401", "404", "429", "503", "cut", "malformed", "error_event", "slow"])
def test_both_transports_say_the_same_about_a_failure(upstream: FakeUpstream, fault: str) -> None:
    upstream.reply = "a b c d"
    said = []
    for kind in ("openai", "openai_compatible"):
        upstream.fail_next(fault, retry_after=4, delay=2)
        conn = connection(upstream, kind, timeout=0.2)
        error, _ = failure(lambda conn=conn: openai_compat.stream(conn, HELLO))
        said.append((error.kind, error.status, error.retry_after, error.message))

    assert said[0] == said[1]


# -- the transports -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [name for name, kind in KINDS.items() if kind.adapter == "openai_compat"])
def test_only_openai_and_azure_are_called_through_the_sdk(upstream: FakeUpstream, kind: str) -> None:
    """The SDK announces itself in its headers (User-Agent, x-stainless-*); the direct transport as aspweb."""
    azure = {"base_url": upstream.base_url, "extra": {"api_version": "2024-10-21"}} if kind == "azure_openai" else {}

    assert streamed(connection(upstream, kind, **azure)).text == DEFAULT_REPLY

    headers = upstream.last_request.headers
    through_sdk = kind in ("openai", "azure_openai")
    assert any(name.startswith("x-stainless-") for name in headers) == through_sdk
    assert headers["user-agent"].startswith("AsyncAzureOpenAI/" if kind == "azure_openai" else "AsyncOpenAI/") \
        if through_sdk else headers["user-agent"] == "aspweb"


def test_keyless_servers_get_no_authorization_header(upstream: FakeUpstream) -> None:
    streamed(connection(upstream, "ollama", api_key=""))
    assert "authorization" not in upstream.last_request.headers

    streamed(connection(upstream, "ollama"))
    assert upstream.last_request.headers["authorization"] == f"Bearer {KEY}"


def test_list_models(upstream: FakeUpstream, provider_kind: str) -> None:
    upstream.models = ["model-one", "model-two"]
    conn = connection(upstream, provider_kind)

    models = asyncio.run(openai_compat.list_models(conn))
    upstream.fail_next(401)
    error, _ = failure(lambda: openai_compat.list_models(conn))

    assert [model.id for model in models] == ["model-one", "model-two"]
    assert (upstream.last_request.method, upstream.last_request.path) == ("GET", "/v1/models")
    assert (error.kind, error.status) == ("auth", 401)


def test_listed_models_keep_their_context_window(monkeypatch: pytest.MonkeyPatch) -> None:
    async def listing(client: wire.Client, path: str) -> Any:
        return {"data": [{"id": "a", "context_length": 200000}, {"id": "b", "context_window": 8192}, {"id": "c"},
                         {"object": "model"}, "junk"]}

    monkeypatch.setattr(wire.Client, "get", listing)
    conn = Connection(kind="openrouter", label="OpenRouter", base_url="http://127.0.0.1:9/v1", api_key=KEY)

    models = asyncio.run(openai_compat.list_models(conn))

    assert [(model.id, model.context_window) for model in models] == [("a", 200000), ("b", 8192), ("c", None)]


def test_finished_calls_leave_their_connection_to_the_next(upstream: FakeUpstream, provider_kind: str) -> None:
    """A stream is read to the end of its body after `data: [DONE]`, so its connection goes back to the pool."""
    conn = connection(upstream, provider_kind)

    async def run() -> None:
        for _ in range(3):
            await collect(openai_compat.stream(conn, HELLO))
            await openai_compat.complete(conn, HELLO)

    asyncio.run(run())

    assert (len(upstream.requests), upstream.connections_accepted) == (6, 1)


def test_a_stream_left_early_lets_its_connection_go(upstream: FakeUpstream, provider_kind: str) -> None:
    """A caller that stops reading (a member who stops the answer, a timeout) closes the connection: the
    server stops sending at once instead of streaming into a buffer nobody reads."""
    upstream.reply = " ".join(["word"] * 100)
    upstream.chunk_delay = 0.02
    conn = connection(upstream, provider_kind)

    async def run() -> None:
        async with contextlib.aclosing(openai_compat.stream(conn, HELLO)) as stream:
            async for chunk in stream:
                if chunk.text:
                    break
        # Still inside the loop, so the pool has closed nothing yet.
        deadline = time.monotonic() + 1
        while not upstream.last_request.client_disconnected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    asyncio.run(run())

    assert upstream.last_request.client_disconnected


def test_a_proxy_from_the_environment_is_used(upstream: FakeUpstream, provider_kind: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", upstream.base_url)  # the fake answers requests sent to it as a proxy too
    conn = connection(upstream, provider_kind, base_url="http://provider.invalid/v1")

    assert streamed(conn).text == DEFAULT_REPLY
    assert upstream.last_request.headers["host"] == "provider.invalid"


# -- server-sent events -------------------------------------------------------------------------

EVENTS = (
    b": OPENROUTER PROCESSING\n\n"
    b'data: {"a": 1}\n\n'
    b"event: ping\n\n"  # no data: nothing to read
    b'event: message\nid: 7\nretry: 100\ndata: {"b":\ndata\ndata:  2}\n\n'  # one value over three lines
    b'data:{"c":\r\ndata: 3}\r\n\r\n'  # CRLF, the colon without its space
    b'data: {"d": 4}\r\rdata: [DONE]\n\n'
    b'data: {"e": 5}\n'  # the body ends before the event does
)


def decoded(pieces: list[bytes]) -> list[bytes]:
    decoder = wire.EventDecoder()
    return [data for piece in pieces for data in decoder.feed(piece)]


def test_event_data_is_read_as_the_format_says() -> None:
    events = decoded([EVENTS])

    assert events == [b'{"a": 1}', b'{"b":\n\n 2}', b'{"c":\n3}', b'{"d": 4}', b"[DONE]"]
    assert [json.loads(data) for data in events[:-1]] == [{"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}]


def test_event_data_is_the_same_however_the_body_arrives_in_pieces() -> None:
    whole = decoded([EVENTS])

    for cut in range(len(EVENTS) + 1):
        assert decoded([EVENTS[:cut], EVENTS[cut:]]) == whole, cut
    assert decoded([EVENTS[i:i + 1] for i in range(len(EVENTS))]) == whole


@pytest.mark.parametrize("provider_kind", ["openai", "openai_compatible"])
def test_a_base_url_naming_a_metadata_service_is_never_called(
        upstream: FakeUpstream, provider_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A row written past the form; the name answers on loopback here, so a call that went out would land.
    fake_dns(monkeypatch, {"metadata.google.internal": ["127.0.0.1"]})
    port = upstream.openai_base_url.split(":")[2].split("/")[0]
    conn = connection(upstream, provider_kind, base_url=f"http://metadata.google.internal:{port}/v1")

    with pytest.raises(ProviderError) as refused:
        chunks(conn)

    assert (refused.value.kind, refused.value.retryable) == ("invalid_request", False)
    assert refused.value.message == "Fake OpenAI: metadata.google.internal is a cloud metadata service."
    assert upstream.requests == []
