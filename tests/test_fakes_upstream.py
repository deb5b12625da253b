"""Tests of the fake LLM upstream, driven through the official SDKs over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import pairwise
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from tests.fakes.upstream import DEFAULT_REPLY, FakeUpstream

KEY = "sk-test-key"
MESSAGES = [{"role": "user", "content": "Say hello."}]
# What a cut stream may raise: the SDK's connection error, or the transport error left unwrapped.
STREAM_BROKEN = (openai.APIError, anthropic.APIError, httpx2.HTTPError)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


def openai_client(fake: FakeUpstream, api_key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.openai_base_url, api_key=api_key, max_retries=0)


def anthropic_client(fake: FakeUpstream, api_key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.base_url, api_key=api_key, max_retries=0)


def azure_client(fake: FakeUpstream, api_key: str = KEY) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=fake.base_url, api_key=api_key, api_version="2024-10-21", max_retries=0
    )


def openai_stream(fake: FakeUpstream, **kwargs: Any) -> Any:
    return openai_client(fake).chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
        **kwargs,
    )


def anthropic_create(fake: FakeUpstream, **kwargs: Any) -> Any:
    return anthropic_client(fake).messages.create(
        model="claude-test",
        max_tokens=100,
        messages=MESSAGES,
        **kwargs,
    )


# -- OpenAI ------------------------------------------------------------------------------------


def test_openai_chat_completion(fake: FakeUpstream) -> None:
    fake.reply = "Bonjour tout le monde"
    fake.usage = {"input_tokens": 11, "output_tokens": 7, "cached_tokens": 3, "reasoning_tokens": 2}

    completion = openai_client(fake).chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.created > 0
    assert completion.model == "gpt-test"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Bonjour tout le monde"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 7, 18)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 3
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 2


def test_openai_records_request(fake: FakeUpstream) -> None:
    openai_client(fake).chat.completions.create(model="gpt-test", messages=MESSAGES, temperature=0.5)

    request = fake.last_request
    assert (request.method, request.path, request.provider) == ("POST", "/v1/chat/completions", "openai")
    assert request.api_key == KEY
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {"model": "gpt-test", "messages": MESSAGES, "temperature": 0.5}
    assert fake.requests == [request]


def test_openai_default_usage_is_computed_from_request_and_reply(fake: FakeUpstream) -> None:
    messages = [{"role": "user", "content": "x" * 40}]

    completion = openai_client(fake).chat.completions.create(model="gpt-test", messages=messages)

    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 10  # 40 characters at ~4 characters per token
    assert completion.usage.completion_tokens == len(DEFAULT_REPLY.split())


def test_openai_stream_with_usage(fake: FakeUpstream) -> None:
    fake.reply = "one two three four"
    fake.usage = {"input_tokens": 5, "output_tokens": 4}

    chunks = list(openai_stream(fake, stream_options={"include_usage": True}))

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [chunk.choices[0].delta.content for chunk in chunks[1:] if chunk.choices]
    assert [text for text in contents if text] == ["one ", "two ", "three ", "four"]
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (5, 4, 9)
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_openai_stream_without_usage_has_no_usage_chunk(fake: FakeUpstream) -> None:
    chunks = list(openai_stream(fake))

    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == DEFAULT_REPLY


def test_openai_stream_wire_format(fake: FakeUpstream) -> None:
    response = httpx.post(
        fake.openai_base_url + "/chat/completions",
        json={"model": "gpt-test", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {KEY}"},
    )

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    frames = response.text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    assert all(frame.startswith("data: {") for frame in frames[:-2])


def test_openai_models_list(fake: FakeUpstream) -> None:
    fake.models = ["gpt-x", "gpt-y", "gpt-z"]

    models = list(openai_client(fake).models.list())

    assert [model.id for model in models] == ["gpt-x", "gpt-y", "gpt-z"]
    assert all(model.object == "model" and model.owned_by for model in models)
    assert fake.last_request.provider == "openai"


# -- Azure OpenAI ------------------------------------------------------------------------------


def test_azure_chat_completion(fake: FakeUpstream) -> None:
    completion = azure_client(fake).chat.completions.create(model="my-deployment", messages=MESSAGES)

    assert completion.choices[0].message.content == DEFAULT_REPLY
    request = fake.last_request
    assert request.path == "/openai/deployments/my-deployment/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.provider == "azure"
    assert request.headers["api-key"] == KEY
    assert request.api_key == KEY


def test_azure_stream(fake: FakeUpstream) -> None:
    stream = azure_client(fake).chat.completions.create(
        model="my-deployment", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_REPLY
    assert chunks[-1].usage is not None


def test_azure_requires_api_version(fake: FakeUpstream) -> None:
    response = httpx.post(
        fake.base_url + "/openai/deployments/my-deployment/chat/completions",
        json={"messages": MESSAGES},
        headers={"api-key": KEY},
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# -- Anthropic ---------------------------------------------------------------------------------


def test_anthropic_message(fake: FakeUpstream) -> None:
    fake.reply = "Salut"
    fake.usage = {"input_tokens": 12, "output_tokens": 3, "cached_tokens": 4, "cache_write_tokens": 6}

    message = anthropic_client(fake).messages.create(model="claude-test", max_tokens=100, messages=MESSAGES)

    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert message.role == "assistant"
    assert message.model == "claude-test"
    assert [(block.type, getattr(block, "text", None)) for block in message.content] == [("text", "Salut")]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 12
    assert message.usage.output_tokens == 3
    assert message.usage.cache_read_input_tokens == 4
    assert message.usage.cache_creation_input_tokens == 6
    request = fake.last_request
    assert (request.path, request.provider, request.api_key) == ("/v1/messages", "anthropic", KEY)
    assert "anthropic-version" in request.headers
    assert request.body["max_tokens"] == 100


def test_anthropic_stream_events(fake: FakeUpstream) -> None:
    fake.reply = "alpha beta gamma"
    fake.usage = {"input_tokens": 9, "output_tokens": 3, "cached_tokens": 2}

    events = list(
        anthropic_client(fake).messages.create(
            model="claude-test", max_tokens=100, messages=MESSAGES, stream=True
        )
    )

    types = [event.type for event in events]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert start.message.usage.input_tokens == 9
    assert start.message.usage.cache_read_input_tokens == 2
    texts = [event.delta.text for event in events if event.type == "content_block_delta"]
    assert texts == ["alpha ", "beta ", "gamma"]
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 3


def test_anthropic_stream_helper_builds_final_message(fake: FakeUpstream) -> None:
    with anthropic_client(fake).messages.stream(
        model="claude-test", max_tokens=100, messages=MESSAGES
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == DEFAULT_REPLY
    assert final.content[0].type == "text" and final.content[0].text == DEFAULT_REPLY
    assert final.usage.output_tokens == len(DEFAULT_REPLY.split())


def test_anthropic_stream_wire_format_includes_ping(fake: FakeUpstream) -> None:
    response = httpx.post(
        fake.base_url + "/v1/messages",
        json={"model": "claude-test", "max_tokens": 10, "messages": MESSAGES, "stream": True},
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    )

    event_lines = [line for line in response.text.splitlines() if line.startswith("event: ")]
    assert event_lines[:3] == ["event: message_start", "event: content_block_start", "event: ping"]
    assert event_lines[-1] == "event: message_stop"
    assert fake.last_request.api_key == KEY  # the documented x-api-key header works too


def test_anthropic_models_list(fake: FakeUpstream) -> None:
    fake.models = ["claude-a", "claude-b"]

    page = anthropic_client(fake).models.list()

    assert [model.id for model in page.data] == ["claude-a", "claude-b"]
    assert all(model.type == "model" and model.display_name for model in page.data)
    assert (page.has_more, page.first_id, page.last_id) == (False, "claude-a", "claude-b")
    assert fake.last_request.provider == "anthropic"


# -- auth and errors ---------------------------------------------------------------------------


def test_wrong_api_key_is_rejected_in_each_provider_shape() -> None:
    with FakeUpstream(api_key=KEY) as fake:
        with pytest.raises(openai.AuthenticationError) as openai_error:
            openai_client(fake, api_key="wrong").models.list()
        with pytest.raises(anthropic.AuthenticationError) as anthropic_error:
            anthropic_client(fake, api_key="wrong").models.list()
        with pytest.raises(openai.AuthenticationError):
            azure_client(fake, api_key="wrong").chat.completions.create(model="d", messages=MESSAGES)

        assert openai_error.value.status_code == 401
        assert openai_error.value.code == "invalid_api_key"
        assert openai_error.value.body["type"] == "invalid_request_error"
        assert anthropic_error.value.body == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "Incorrect API key provided."},
        }
        assert [request.api_key for request in fake.requests] == ["wrong"] * 3
        # The right key still works.
        assert openai_client(fake).models.list().data
        assert anthropic_client(fake).models.list().data


def test_fail_next_401_is_one_shot(fake: FakeUpstream) -> None:
    fake.fail_next("401")

    with pytest.raises(openai.AuthenticationError):
        openai_client(fake).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert openai_client(fake).chat.completions.create(model="gpt-test", messages=MESSAGES).choices


def test_429_has_retry_after(fake: FakeUpstream) -> None:
    fake.fail_next("429", retry_after=2)
    fake.fail_next(429, retry_after=7)

    with pytest.raises(openai.RateLimitError) as openai_error:
        openai_client(fake).chat.completions.create(model="gpt-test", messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError) as anthropic_error:
        anthropic_create(fake)

    assert openai_error.value.response.headers["retry-after"] == "2"
    assert openai_error.value.code == "rate_limit_exceeded"
    assert anthropic_error.value.response.headers["retry-after"] == "7"
    assert anthropic_error.value.body["error"]["type"] == "rate_limit_error"


def test_500_raises_internal_server_error(fake: FakeUpstream) -> None:
    fake.fail_next("500")
    fake.fail_next("500")

    with pytest.raises(openai.InternalServerError) as openai_error:
        list(openai_stream(fake))
    with pytest.raises(anthropic.InternalServerError) as anthropic_error:
        anthropic_create(fake, stream=True)

    assert openai_error.value.body["type"] == "server_error"
    assert anthropic_error.value.body["error"]["type"] == "api_error"


def test_faults_are_consumed_in_order(fake: FakeUpstream) -> None:
    fake.fail_next("429")
    fake.fail_next("500")
    client = openai_client(fake)

    with pytest.raises(openai.RateLimitError):
        client.models.list()
    with pytest.raises(openai.InternalServerError):
        client.models.list()
    assert client.models.list().data


def test_persistent_mode(fake: FakeUpstream) -> None:
    fake.mode = "503"
    client = openai_client(fake)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as error:
            client.models.list()
        assert error.value.status_code == 503
    fake.mode = "ok"
    assert client.models.list().data


def test_unknown_path_is_404_in_openai_shape(fake: FakeUpstream) -> None:
    response = httpx.post(
        fake.openai_base_url + "/completions", json={}, headers={"Authorization": "Bearer x"}
    )

    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert fake.last_request.provider is None


def test_invalid_settings_are_rejected(fake: FakeUpstream) -> None:
    with pytest.raises(ValueError):
        fake.fail_next("418")
    with pytest.raises(ValueError):
        fake.mode = "sometimes"
    with pytest.raises(ValueError):
        fake.usage = {"prompt_tokens": 3}
    with pytest.raises(ValueError):
        fake.usage_style = "mistral"


# -- raw usage objects, placed as each provider places them -------------------------------------

RAW_OPENAI_USAGE = {"prompt_tokens": 20, "completion_tokens": 151, "total_tokens": 553, "cost": 0.5}


def test_gemini_style_puts_usage_so_far_on_every_chunk_and_the_whole_on_the_last(fake: FakeUpstream) -> None:
    fake.reply, fake.usage_style, fake.raw_usage = "one two three", "gemini", RAW_OPENAI_USAGE

    chunks = list(openai_stream(fake, stream_options={"include_usage": True}))

    assert all(chunk.choices and chunk.usage is not None for chunk in chunks)
    assert [chunk.usage.completion_tokens for chunk in chunks[:-1]] == [0, 1, 2, 3]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.model_dump(exclude_none=True) == RAW_OPENAI_USAGE


def test_gemini_style_sends_no_usage_unasked(fake: FakeUpstream) -> None:
    fake.usage_style, fake.raw_usage = "gemini", RAW_OPENAI_USAGE

    assert all(chunk.usage is None for chunk in openai_stream(fake))


def test_groq_style_puts_usage_only_in_x_groq_of_the_finishing_chunk(fake: FakeUpstream) -> None:
    fake.usage_style, fake.raw_usage = "groq", RAW_OPENAI_USAGE

    chunks = list(openai_stream(fake, stream_options={"include_usage": True}))

    assert all(chunk.usage is None for chunk in chunks)
    first, last = chunks[0].model_extra["x_groq"], chunks[-1].model_extra["x_groq"]
    assert last == {"id": first["id"], "usage": RAW_OPENAI_USAGE} and first["id"].startswith("req_")
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all("x_groq" not in (chunk.model_extra or {}) for chunk in chunks[1:-1])


def test_openrouter_style_always_ends_with_a_usage_chunk(fake: FakeUpstream) -> None:
    fake.usage_style, fake.raw_usage = "openrouter", RAW_OPENAI_USAGE

    chunks = list(openai_stream(fake))

    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump(exclude_none=True) == RAW_OPENAI_USAGE
    assert all(chunk.usage is None for chunk in chunks[:-1])


@pytest.mark.parametrize("style", ["openai", "gemini", "groq", "openrouter"])
def test_a_whole_answer_carries_the_raw_usage_in_every_style(fake: FakeUpstream, style: str) -> None:
    fake.usage_style, fake.raw_usage = style, RAW_OPENAI_USAGE

    completion = openai_client(fake).chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert completion.usage.model_dump(exclude_none=True) == RAW_OPENAI_USAGE


RAW_ANTHROPIC_USAGE = {
    "input_tokens": 2048, "cache_read_input_tokens": 1800, "cache_creation_input_tokens": 248, "output_tokens": 503,
    "cache_creation": {"ephemeral_5m_input_tokens": 148, "ephemeral_1h_input_tokens": 100},
}


def test_anthropic_raw_usage_split_between_message_start_and_message_delta(fake: FakeUpstream) -> None:
    fake.raw_usage = RAW_ANTHROPIC_USAGE

    events = list(anthropic_create(fake, stream=True))
    message = anthropic_create(fake)

    start, delta = events[0].message.usage, events[-2].usage
    assert start.model_dump(exclude_none=True) == {**RAW_ANTHROPIC_USAGE, "output_tokens": 1}
    assert delta.model_dump(exclude_none=True) == {
        "input_tokens": 2048, "cache_creation_input_tokens": 248, "cache_read_input_tokens": 1800, "output_tokens": 503}
    assert message.usage.model_dump(exclude_none=True) == RAW_ANTHROPIC_USAGE


def test_anthropic_counts_split_writes_by_duration(fake: FakeUpstream) -> None:
    fake.usage = {"input_tokens": 7, "output_tokens": 2, "cache_write_tokens": 30, "cache_write_1h_tokens": 12}

    usage = anthropic_create(fake).usage

    assert usage.cache_creation_input_tokens == 42
    assert (usage.cache_creation.ephemeral_5m_input_tokens, usage.cache_creation.ephemeral_1h_input_tokens) == (30, 12)


def test_reset_forgets_the_raw_usage_and_its_style(fake: FakeUpstream) -> None:
    fake.usage_style, fake.raw_usage = "groq", RAW_OPENAI_USAGE

    fake.reset()

    assert (fake.usage_style, fake.raw_usage) == ("openai", None)


# -- cut and slow streams ----------------------------------------------------------------------


def test_cut_openai_stream_raises_without_usage(fake: FakeUpstream) -> None:
    fake.reply = "a b c d e f"
    fake.fail_next("cut")
    chunks = []

    with pytest.raises(STREAM_BROKEN):
        for chunk in openai_stream(fake, stream_options={"include_usage": True}):
            chunks.append(chunk)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a b c "  # half of the words by default
    assert all(chunk.usage is None for chunk in chunks)


def test_cut_anthropic_stream_raises_before_message_stop(fake: FakeUpstream) -> None:
    fake.fail_next("cut", cut_after=1)
    events = []

    with pytest.raises(STREAM_BROKEN):
        for event in anthropic_client(fake).messages.create(
            model="claude-test", max_tokens=100, messages=MESSAGES, stream=True
        ):
            events.append(event.type)

    assert events == ["message_start", "content_block_start", "content_block_delta"]


def test_error_event_fault_reports_an_error_inside_a_200_stream(fake: FakeUpstream) -> None:
    fake.reply = "a b c d e f"
    fake.fail_next("error_event", cut_after=2)
    fake.fail_next("error_event", cut_after=1)
    chunks, events = [], []

    with pytest.raises(openai.APIError, match="Provider disconnected unexpectedly"):
        for chunk in openai_stream(fake):
            chunks.append(chunk)
    with pytest.raises(anthropic.APIError, match="Overloaded"):
        for event in anthropic_client(fake).messages.create(
            model="claude-test", max_tokens=100, messages=MESSAGES, stream=True
        ):
            events.append(event.type)

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "a b "
    assert events == ["message_start", "content_block_start", "content_block_delta"]


def test_openai_error_event_stream_wire_format(fake: FakeUpstream) -> None:
    """As OpenRouter's: an SSE comment first, and the error in a chunk that finishes with "error"."""
    fake.fail_next("error_event", cut_after=0)
    response = httpx.post(
        fake.openai_base_url + "/chat/completions",
        json={"model": "gpt-test", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {KEY}"},
    )

    frames = response.text.split("\n\n")
    assert response.status_code == 200
    assert frames[0] == ": OPENROUTER PROCESSING" and frames[-1] == ""
    last = json.loads(frames[-2].removeprefix("data: "))
    assert last["error"] == {"code": "server_error", "message": "Provider disconnected unexpectedly"}
    assert last["choices"][0]["finish_reason"] == "error"


def test_connections_accepted_counts_kept_alive_connections_once(fake: FakeUpstream) -> None:
    client = openai_client(fake)
    for _ in range(3):
        client.models.list()

    assert (len(fake.requests), fake.connections_accepted) == (3, 1)


def test_cut_non_streaming_response_fails(fake: FakeUpstream) -> None:
    fake.fail_next("cut")

    with pytest.raises(openai.APIConnectionError):
        openai_client(fake).chat.completions.create(model="gpt-test", messages=MESSAGES)


def _content_arrival_gaps(chunks: Iterable[Any], is_content: Callable[[Any], bool]) -> list[float]:
    """Seconds between the arrivals of consecutive content chunks, as the client sees them."""
    times = [time.monotonic() for chunk in chunks if is_content(chunk)]
    return [later - earlier for earlier, later in pairwise(times)]


def test_chunk_delay_slows_openai_stream(fake: FakeUpstream) -> None:
    fake.reply = "one two three four five"
    fake.chunk_delay = 0.05

    gaps = _content_arrival_gaps(
        openai_stream(fake), lambda c: bool(c.choices and c.choices[0].delta.content)
    )

    assert len(gaps) == 4
    # Slack for scheduling jitter on the client side: a gap measured late shortens the next.
    assert sum(gaps) >= 4 * 0.05 * 0.8
    assert min(gaps) >= 0.05 * 0.8


def test_slow_fault_slows_anthropic_stream_once(fake: FakeUpstream) -> None:
    fake.reply = "one two three four"
    fake.fail_next("slow", delay=0.05)

    slow = _content_arrival_gaps(
        anthropic_create(fake, stream=True), lambda e: e.type == "content_block_delta"
    )
    fast = _content_arrival_gaps(
        anthropic_create(fake, stream=True), lambda e: e.type == "content_block_delta"
    )

    # Gaps are measured where the events arrive, so one that arrives late shortens the next: a tolerance.
    assert sum(slow) >= 3 * 0.05 * 0.8
    assert min(slow) >= 0.05 * 0.8
    assert sum(fast) < 0.05


def test_slow_fault_delays_non_streaming_response(fake: FakeUpstream) -> None:
    fake.fail_next("slow", delay=0.2)

    started = time.monotonic()
    anthropic_create(fake)

    assert time.monotonic() - started >= 0.2


# -- lifecycle ---------------------------------------------------------------------------------


def test_client_disconnect_is_recorded(fake: FakeUpstream) -> None:
    fake.reply = "w " * 20
    fake.chunk_delay = 0.02
    stream = openai_stream(fake)
    next(iter(stream))
    stream.close()

    deadline = time.monotonic() + 2
    while not fake.last_request.client_disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.last_request.client_disconnected


def test_reset_restores_defaults(fake: FakeUpstream) -> None:
    fake.reply = "changed"
    fake.models = ["m"]
    fake.mode = "500"
    fake.usage = {"input_tokens": 1000}
    with pytest.raises(openai.InternalServerError):
        openai_client(fake).models.list()
    fake.fail_next("429")
    fake.reset()

    assert fake.requests == []
    assert fake.mode == "ok"
    completion = openai_client(fake).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert completion.usage is not None and completion.usage.prompt_tokens < 1000
    assert [model.id for model in openai_client(fake).models.list()] == ["fake-model-a", "fake-model-b"]


def test_stop_closes_idle_keep_alive_connections_quickly() -> None:
    fake = FakeUpstream().start()
    client = openai_client(fake)
    client.models.list()  # leaves a keep-alive connection open on the server

    started = time.monotonic()
    fake.stop()

    assert time.monotonic() - started < 1
    with pytest.raises(openai.APIConnectionError):
        client.models.list()
    with pytest.raises(RuntimeError):
        _ = fake.base_url
