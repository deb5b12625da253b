"""The Cloudflare Workers AI adapter against the fake Workers AI REST API on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from providers.adapters import cloudflare
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
    estimate_tokens,
)
from tests.fakes.cloudflare import DEFAULT_ACCOUNT, FakeCloudflare

KEY = "cf-token-0123456789abcdefghij"
MODEL = "@cf/meta/llama-3.1-8b-instruct-fast"
HELLO = ChatRequest(model=MODEL, messages=(Message("user", "Say hello."),))


@pytest.fixture
def fake() -> Iterator[FakeCloudflare]:
    with FakeCloudflare(api_key=KEY) as server:
        yield server


def connection(fake: FakeCloudflare, **changes: Any) -> Connection:
    conn = Connection(kind="cloudflare", label="Workers AI", base_url=fake.api_base_url, api_key=KEY,
                      extra={"account_id": DEFAULT_ACCOUNT}, timeout=5.0)
    return replace(conn, **changes)


def stream(conn: Connection, request: ChatRequest = HELLO) -> list[Chunk]:
    async def run() -> list[Chunk]:
        return [chunk async for chunk in cloudflare.stream(conn, request)]

    return asyncio.run(run())


def complete(conn: Connection, request: ChatRequest = HELLO) -> Completion:
    return asyncio.run(cloudflare.complete(conn, request))


def stream_until_error(conn: Connection, request: ChatRequest = HELLO) -> tuple[str, ProviderError]:
    """The text received before the stream failed, and the error."""
    received: list[str] = []

    async def run() -> None:
        async for chunk in cloudflare.stream(conn, request):
            received.append(chunk.text)

    with pytest.raises(ProviderError) as caught:
        asyncio.run(run())
    return "".join(received), caught.value


def test_stream_posts_to_the_model_url_and_yields_text_as_it_comes(fake: FakeCloudflare) -> None:
    fake.reply = "One two three four five."
    fake.usage = {"prompt_tokens": 21, "completion_tokens": 6}
    chunks = stream(connection(fake))
    assert [c.text for c in chunks[:-1]] == ["One ", "two ", "three ", "four ", "five."]
    assert chunks[-1] == Chunk(usage=Usage(input_tokens=21, output_tokens=6), finish_reason="stop")
    sent = fake.last_request
    assert sent.method == "POST"
    assert sent.path == f"/client/v4/accounts/{DEFAULT_ACCOUNT}/ai/run/{MODEL}"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == {"messages": [{"role": "user", "content": "Say hello."}], "stream": True}


def test_text_is_passed_on_before_the_stream_ends(fake: FakeCloudflare) -> None:
    fake.reply = "one two three four"
    fake.chunk_delay = 0.1

    async def arrivals() -> list[float]:
        return [time.monotonic() async for chunk in cloudflare.stream(connection(fake), HELLO) if chunk.text]

    times = asyncio.run(arrivals())
    assert len(times) == 4
    assert times[-1] - times[0] >= 0.25  # each word came when sent, not all at the end


def test_system_prompt_history_and_parameters_go_in_the_body(fake: FakeCloudflare) -> None:
    request = ChatRequest(
        model=MODEL, system="Answer in French.", max_tokens=512, temperature=0.2, top_p=0.9, stop=("END",),
        extra={"top_k": 5, "seed": 7},
        messages=(Message("user", "Hi"), Message("assistant", "Bonjour"), Message("user", "How are you?")),
    )
    assert complete(connection(fake), request).text == fake.reply
    assert fake.last_request.body == {
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "How are you?"},
        ],
        "stream": False, "max_tokens": 512, "temperature": 0.2, "top_p": 0.9, "top_k": 5, "seed": 7,
    }


def test_images_become_content_parts(fake: FakeCloudflare) -> None:
    url = "data:image/png;base64,iVBORw0KGgo="
    request = ChatRequest(model=MODEL, messages=(Message("user", (TextPart("What is this?"), ImagePart(url))),))
    stream(connection(fake), request)
    assert fake.last_request.body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}},
    ]}]


def test_complete_reads_result_response_and_its_usage(fake: FakeCloudflare) -> None:
    fake.reply = "A whole answer."
    fake.usage = {"prompt_tokens": 40, "completion_tokens": 3}
    result = complete(connection(fake))
    assert result.text == "A whole answer."
    assert result.usage == Usage(input_tokens=40, output_tokens=3)
    assert result.finish_reason == "stop"
    assert fake.last_request.body["stream"] is False


@pytest.mark.parametrize("streamed", [True, False])
def test_tokens_the_total_counts_beyond_its_parts_are_output(fake: FakeCloudflare, streamed: bool) -> None:
    # A reasoning model whose 300 thinking tokens only the total counts: 40 + 12 + 300 = 352.
    fake.usage = {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 352}
    usage = stream(connection(fake))[-1].usage if streamed else complete(connection(fake)).usage
    assert usage == Usage(input_tokens=40, output_tokens=312, reasoning_tokens=300)


@pytest.mark.parametrize("streamed", [True, False])
def test_usage_is_estimated_and_flagged_when_the_model_reports_none(fake: FakeCloudflare, streamed: bool) -> None:
    fake.send_usage = False
    fake.reply = "Twelve chars" * 10
    request = replace(HELLO, system="Be kind.")
    usage = stream(connection(fake), request)[-1].usage if streamed else complete(connection(fake), request).usage
    assert usage == Usage(input_tokens=estimate_tokens("Be kind.\nSay hello."),
                          output_tokens=estimate_tokens(fake.reply), estimated=True)


@pytest.mark.parametrize(
    ("fault", "options", "kind", "status", "retryable"),
    [
        (401, {}, "auth", 401, False),
        (403, {}, "auth", 403, False),
        (404, {}, "model_not_found", 404, False),
        (400, {}, "invalid_request", 400, False),
        (408, {}, "timeout", 408, True),
        (429, {"retry_after": 3}, "rate_limit", 429, True),
        (429, {"code": 3036, "message": "You have used up your daily free allocation of 10,000 neurons."},
         "quota", 429, False),
        (429, {"code": 3040, "message": "No more data centers to forward the request to"}, "server", 429, True),
        (500, {}, "server", 500, True),
        (503, {}, "server", 503, True),
    ],
)
@pytest.mark.parametrize("streamed", [True, False])
def test_error_statuses_map_to_kinds_with_plain_messages(
    fake: FakeCloudflare, fault: int, options: dict[str, Any], kind: str, status: int, retryable: bool,
    streamed: bool,
) -> None:
    fake.fail_next(fault, **options)
    with pytest.raises(ProviderError) as caught:
        stream(connection(fake)) if streamed else complete(connection(fake))
    error = caught.value
    assert (error.kind, error.status, error.retryable) == (kind, status, retryable)
    assert error.message.startswith(("Workers AI ", "Could not connect to Workers AI"))
    assert "Workers AI said: " in error.message  # Cloudflare's own words follow the plain sentence
    assert options.get("message", "") in error.message
    assert KEY not in error.message
    if fault == 429 and kind == "rate_limit":
        assert error.retry_after == 3
        assert "retry in 3 seconds" in error.message


def test_an_unknown_model_is_model_not_found(fake: FakeCloudflare) -> None:
    with pytest.raises(ProviderError) as caught:
        stream(connection(fake), replace(HELLO, model="@cf/nobody/nothing"))
    assert (caught.value.kind, caught.value.status) == ("model_not_found", 400)
    assert "No such model @cf/nobody/nothing" in caught.value.message


def test_a_wrong_token_is_auth_and_never_echoed(fake: FakeCloudflare) -> None:
    wrong = "cf-token-wrong-wrong-wrong-123"
    fake.fail_next(401, message=f"Invalid token {wrong}")  # an upstream that quotes the token back
    with pytest.raises(ProviderError) as caught:
        complete(connection(fake, api_key=wrong))
    assert caught.value.kind == "auth"
    assert wrong not in caught.value.message and "[redacted]" in caught.value.message
    assert fake.last_request.api_key == wrong
    with pytest.raises(ProviderError) as caught:
        complete(connection(fake, api_key=wrong))  # the fake's own token check
    assert caught.value.kind == "auth"


def test_a_wrong_account_is_reported(fake: FakeCloudflare) -> None:
    with pytest.raises(ProviderError) as caught:
        complete(connection(fake, extra={"account_id": "not-my-account"}))
    assert caught.value.kind == "model_not_found"  # Cloudflare answers 404 "could not route"
    assert "perhaps your object identifier is invalid" in caught.value.message


@pytest.mark.parametrize("streamed", [True, False])
def test_timeout(fake: FakeCloudflare, streamed: bool) -> None:
    fake.fail_next("slow", delay=2.0)
    with pytest.raises(ProviderError) as caught:
        stream(connection(fake, timeout=0.3)) if streamed else complete(connection(fake, timeout=0.3))
    assert (caught.value.kind, caught.value.retryable) == ("timeout", True)
    assert caught.value.message == "Workers AI did not answer in time."


def test_connection_refused_is_network() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = Connection(kind="cloudflare", label="Workers AI", base_url=f"http://127.0.0.1:{port}/client/v4",
                      api_key=KEY, extra={"account_id": DEFAULT_ACCOUNT})
    for call in (stream, complete):
        with pytest.raises(ProviderError) as caught:
            call(conn)
        assert (caught.value.kind, caught.value.retryable) == ("network", True)
        assert caught.value.message.startswith("Could not connect to Workers AI")


def test_a_stream_cut_midway_is_network_after_the_text_already_sent(fake: FakeCloudflare) -> None:
    fake.reply = "one two three four five six"
    fake.fail_next("cut", cut_after=3)
    text, error = stream_until_error(connection(fake))
    assert text == "one two three "
    assert (error.kind, error.retryable) == ("network", True)
    assert "broke before the answer was complete" in error.message


def test_a_plain_answer_cut_midway_is_network(fake: FakeCloudflare) -> None:
    fake.fail_next("cut")
    with pytest.raises(ProviderError) as caught:
        complete(connection(fake))
    assert caught.value.kind == "network"


def test_a_malformed_stream_event_is_server(fake: FakeCloudflare) -> None:
    fake.reply = "one two three"
    fake.fail_next("malformed")
    text, error = stream_until_error(connection(fake))
    assert text == "one "
    assert (error.kind, error.retryable) == ("server", True)
    assert error.message == "Workers AI sent a stream event that aspweb could not read; it is usually temporary."


def test_a_malformed_plain_answer_is_server(fake: FakeCloudflare) -> None:
    fake.fail_next("malformed")
    with pytest.raises(ProviderError) as caught:
        complete(connection(fake))
    assert caught.value.kind == "server"


def test_tools_are_refused_before_any_request(fake: FakeCloudflare) -> None:
    tool = {"type": "function", "function": {"name": "now", "description": "The time", "parameters": {}}}
    with pytest.raises(ProviderError) as caught:
        stream(connection(fake), replace(HELLO, tools=(tool,)))
    assert (caught.value.kind, caught.value.retryable) == ("invalid_request", False)
    assert fake.requests == []


def test_list_models_and_health_check_use_the_model_search(fake: FakeCloudflare) -> None:
    fake.models = [MODEL, "@cf/qwen/qwq-32b"]
    models = asyncio.run(cloudflare.list_models(connection(fake)))
    assert [(m.id, m.context_window) for m in models] == [(MODEL, 128000), ("@cf/qwen/qwq-32b", 128000)]
    assert fake.last_request.path == f"/client/v4/accounts/{DEFAULT_ACCOUNT}/ai/models/search"
    assert fake.last_request.query["task"] == "Text Generation"
    health = asyncio.run(cloudflare.health_check(connection(fake)))
    assert health.ok and health.models == (MODEL, "@cf/qwen/qwq-32b")
