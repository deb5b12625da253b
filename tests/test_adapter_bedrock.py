"""The Bedrock adapter, botocore (through aiobotocore) against the fake Bedrock on loopback: Converse and
ConverseStream's wire formats, SigV4 signatures, usage, tools, images and the error taxonomy."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer

from providers.adapters import bedrock
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
)
from tests.fakes.bedrock import ERRORS, KEY_ID, REGION, SECRET, FakeBedrock, event_message

MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
HELLO = ChatRequest(model=MODEL, messages=(Message("user", "Say hello."),))


@pytest.fixture
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock() as server:
        yield server


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """botocore's default chain sees only what a test gives it: no variables, files or instance role."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def connection(fake: FakeBedrock, secret: str = SECRET, token: str = "", **changes: Any) -> Connection:
    secrets = {"aws_secret_access_key": secret, **({"aws_session_token": token} if token else {})}
    conn = Connection(kind="bedrock", label="Bedrock", base_url=fake.base_url, api_key=json.dumps(secrets),
                      extra={"aws_region": REGION, "aws_access_key_id": KEY_ID}, timeout=5.0, connect_timeout=2.0)
    return replace(conn, **changes)


def stream(conn: Connection, request: ChatRequest = HELLO) -> list[Chunk]:
    async def run() -> list[Chunk]:
        return [chunk async for chunk in bedrock.stream(conn, request)]

    return asyncio.run(run())


def complete(conn: Connection, request: ChatRequest = HELLO) -> Completion:
    return asyncio.run(bedrock.complete(conn, request))


def failure(conn: Connection, request: ChatRequest = HELLO) -> tuple[str, ProviderError]:
    received: list[str] = []

    async def run() -> None:
        async for chunk in bedrock.stream(conn, request):
            received.append(chunk.text)

    with pytest.raises(ProviderError) as caught:
        asyncio.run(run())
    return "".join(received), caught.value


def test_the_event_stream_framing_is_what_botocore_decodes() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(event_message({":event-type": "messageStop"}, b'{"stopReason": "end_turn"}'))
    [message] = list(buffer)
    assert message.headers == {":event-type": "messageStop"}
    assert json.loads(message.payload) == {"stopReason": "end_turn"}


def test_stream_is_converse_stream_signed_and_yields_text_as_it_comes(fake: FakeBedrock) -> None:
    fake.reply = "One two three four."
    fake.usage = {"inputTokens": 21, "outputTokens": 6}
    chunks = stream(connection(fake))
    assert [c.text for c in chunks[:-1]] == ["One ", "two ", "three ", "four."]
    assert chunks[-1] == Chunk(usage=Usage(input_tokens=21, output_tokens=6), finish_reason="stop")
    sent = fake.last_request
    assert sent.path == f"/model/{MODEL}/converse-stream" and sent.signature_ok
    assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert f"/{REGION}/bedrock/aws4_request" in sent.headers["authorization"]
    assert sent.body == {"messages": [{"role": "user", "content": [{"text": "Say hello."}]}]}


def test_a_whole_answer_is_one_converse_call(fake: FakeBedrock) -> None:
    fake.usage = {"inputTokens": 9, "outputTokens": 5}
    chunks = stream(connection(fake), replace(HELLO, stream=False))
    assert "".join(c.text for c in chunks) == fake.reply
    assert chunks[-1].usage == Usage(input_tokens=9, output_tokens=5)
    assert fake.last_request.path == f"/model/{MODEL}/converse"


def test_system_prompt_history_and_inference_config(fake: FakeBedrock) -> None:
    request = ChatRequest(
        model=MODEL, system="Answer in French.", max_tokens=512, temperature=0.2, top_p=0.9, stop=("END",),
        cache_system=True, extra={"top_k": 5},
        messages=(Message("user", "Hi"), Message("assistant", "Bonjour"), Message("user", "How are you?")),
    )
    assert complete(connection(fake), request).text == fake.reply
    assert fake.last_request.body == {
        "messages": [{"role": "user", "content": [{"text": "Hi"}]},
                     {"role": "assistant", "content": [{"text": "Bonjour"}]},
                     {"role": "user", "content": [{"text": "How are you?"}]}],
        "system": [{"text": "Answer in French."}, {"cachePoint": {"type": "default"}}],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        "additionalModelRequestFields": {"top_k": 5},
    }


def test_cache_reads_and_writes_by_duration_reach_the_usage(fake: FakeBedrock) -> None:
    fake.usage = {"inputTokens": 12, "outputTokens": 30, "cacheReadInputTokens": 1800,
                  "cacheWriteInputTokens": 500, "cacheDetails": [{"ttl": "1h", "inputTokens": 200},
                                                                 {"ttl": "5m", "inputTokens": 300}]}
    expected = Usage(input_tokens=12, cache_read_tokens=1800, cache_write_tokens=300, cache_write_1h_tokens=200,
                     output_tokens=30)
    assert stream(connection(fake))[-1].usage == expected
    assert complete(connection(fake)).usage == expected
    assert expected.prompt_tokens == 2312


def test_without_usage_the_counts_are_estimated_and_flagged(fake: FakeBedrock) -> None:
    fake.send_usage = False
    assert stream(connection(fake))[-1].usage.estimated


def test_tools_go_as_tool_specs_and_a_streamed_tool_use_comes_back(fake: FakeBedrock) -> None:
    fake.reply = "Let me look."
    fake.tool_use = {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}
    tool = {"type": "function", "function": {"name": "weather", "description": "Weather now",
                                             "parameters": {"type": "object", "properties": {"city": {}}}}}
    request = replace(HELLO, tools=(tool,), tool_choice="required")
    chunks = stream(connection(fake), request)
    calls = [c.tool_call for c in chunks if c.tool_call]
    assert (calls[0].id, calls[0].name) == ("tooluse_1", "weather")
    assert json.loads("".join(c.arguments for c in calls)) == {"city": "Paris"}
    assert chunks[-1].finish_reason == "tool_calls"
    assert fake.last_request.body["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "weather", "description": "Weather now",
                                "inputSchema": {"json": {"type": "object", "properties": {"city": {}}}}}}],
        "toolChoice": {"any": {}},
    }
    whole = complete(connection(fake), request)
    assert whole.tool_calls == [ToolCall("tooluse_1", "weather", '{"city": "Paris"}')]


def test_tool_calls_and_results_in_the_history(fake: FakeBedrock) -> None:
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    request = ChatRequest(model=MODEL, tools=(tool,), tool_choice="none", messages=(
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(ToolCall("t1", "weather", '{"city": "Paris"}'),)),
        Message("tool", "18 C", tool_call_id="t1"),
        Message("user", "Thanks"),
    ))
    complete(connection(fake), request)
    body = fake.last_request.body
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "weather",
                                                       "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "18 C"}]}},
                                     {"text": "Thanks"}]},
    ]
    assert "toolChoice" not in body["toolConfig"]  # Converse requires the tools once the history holds calls


def test_images_travel_as_bytes_and_links_are_refused(fake: FakeBedrock) -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    request = ChatRequest(model=MODEL, messages=(Message("user", (TextPart("What is this?"), ImagePart(url))),))
    complete(connection(fake), request)
    image = fake.last_request.body["messages"][0]["content"][1]["image"]
    assert image["format"] == "png" and base64.b64decode(image["source"]["bytes"]) == png
    linked = ChatRequest(model=MODEL, messages=(Message("user", (ImagePart("https://example.com/a.png"),)),))
    _, error = failure(connection(fake), linked)
    assert error.kind == "invalid_request" and "data: URLs" in error.message


def test_reasoning_streams_apart_and_a_thinking_budget_goes_to_claude(fake: FakeBedrock) -> None:
    fake.reasoning = "Thinking it over."
    chunks = stream(connection(fake), replace(HELLO, thinking_budget=2048))
    assert "".join(c.reasoning for c in chunks) == "Thinking it over."
    assert fake.last_request.body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert complete(connection(fake)).reasoning == "Thinking it over."


@pytest.mark.parametrize(("stop", "finish"), [("max_tokens", "length"), ("guardrail_intervened", "content_filter"),
                                              ("stop_sequence", "stop")])
def test_stop_reasons(fake: FakeBedrock, stop: str, finish: str) -> None:
    fake.stop_reason = stop
    assert stream(connection(fake))[-1].finish_reason == finish


@pytest.mark.parametrize(("code", "kind"), [
    ("ThrottlingException", "rate_limit"), ("AccessDeniedException", "auth"),
    ("ValidationException", "model_not_found"), ("ResourceNotFoundException", "model_not_found"),
    ("ModelNotReadyException", "server"), ("ServiceUnavailableException", "server"),
    ("InternalServerException", "server"), ("ModelTimeoutException", "timeout"),
    ("ServiceQuotaExceededException", "quota"),
])
def test_errors_map_to_the_taxonomy_in_plain_words(fake: FakeBedrock, code: str, kind: str) -> None:
    fake.fail_next(code)
    _, error = failure(connection(fake))
    assert error.kind == kind and error.status == ERRORS[code][0]
    assert error.message.startswith("Bedrock ") and SECRET not in error.message
    assert error.retryable == (kind in {"rate_limit", "server", "timeout"})


def test_a_validation_error_about_the_request_is_invalid_request(fake: FakeBedrock) -> None:
    _, error = failure(connection(fake), replace(HELLO, messages=()))
    assert error.kind == "invalid_request" and error.status == 400 and not error.retryable


def test_an_exception_inside_the_stream_is_mapped_after_the_text_so_far(fake: FakeBedrock) -> None:
    fake.fail_next("ThrottlingException", in_stream=True)
    received, error = failure(connection(fake))
    assert received == "Hello "
    assert error.kind == "rate_limit" and error.retryable


def test_a_wrong_secret_is_refused_by_the_signature_check(fake: FakeBedrock) -> None:
    _, error = failure(connection(fake, secret="not/the/secret0123456789abcdefghijklmno"))
    assert error.kind == "auth" and error.status == 403 and "refused the AWS credentials" in error.message
    assert "not/the/secret" not in error.message
    assert fake.last_request.signature_ok is False


def test_an_unknown_key_id_is_refused(fake: FakeBedrock) -> None:
    conn = connection(fake)
    _, error = failure(replace(conn, extra={**conn.extra, "aws_access_key_id": "AKIAUNKNOWNKEY000001"}))
    assert error.kind == "auth" and "security token included in the request is invalid" in error.message


def test_a_session_token_is_sent_with_temporary_credentials() -> None:
    with FakeBedrock(session_token="FwoGZXIvYXdzEJr-session") as fake:
        assert complete(connection(fake, token="FwoGZXIvYXdzEJr-session")).text == fake.reply
        assert fake.last_request.headers["x-amz-security-token"] == "FwoGZXIvYXdzEJr-session"
        _, error = failure(connection(fake))
        assert error.kind == "auth"


@pytest.mark.usefixtures("no_aws_environment")
def test_without_a_key_the_default_chain_is_used(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    conn = replace(connection(fake), api_key="", extra={"aws_region": REGION})
    assert complete(conn).text == fake.reply
    assert fake.last_request.signature_ok


@pytest.mark.usefixtures("no_aws_environment")
def test_no_credentials_anywhere_says_so(fake: FakeBedrock) -> None:
    _, error = failure(replace(connection(fake), api_key="", extra={"aws_region": REGION}))
    assert error.kind == "auth" and "has no AWS credentials" in error.message
    assert fake.requests == []


def test_a_stream_cut_short_is_a_network_error(fake: FakeBedrock) -> None:
    fake.fail_next("cut", cut_after=3)
    received, error = failure(connection(fake))
    assert received == "Hello from "
    assert error.kind == "network" and error.retryable


def test_a_silent_server_is_a_timeout(fake: FakeBedrock) -> None:
    fake.fail_next("slow", delay=2.0)
    _, error = failure(connection(fake, timeout=0.5), replace(HELLO, stream=False))
    assert error.kind == "timeout" and error.retryable


def test_nothing_listening_is_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = Connection(kind="bedrock", label="Bedrock", base_url=f"http://127.0.0.1:{port}",
                      api_key=json.dumps({"aws_secret_access_key": SECRET}),
                      extra={"aws_region": REGION, "aws_access_key_id": KEY_ID}, timeout=2.0, connect_timeout=1.0)
    _, error = failure(conn)
    assert error.kind == "network" and "Could not connect to Bedrock" in error.message


def test_the_catalog_lists_text_and_embedding_models_and_proves_the_credentials(fake: FakeBedrock) -> None:
    fake.embedding_models = ("amazon.titan-embed-text-v2:0", "cohere.embed-v4:0", "amazon.titan-embed-image-v1")
    models = asyncio.run(bedrock.list_models(connection(fake)))
    assert [(m.id, m.type) for m in models] == [(model, "") for model in fake.models] + [
        ("amazon.titan-embed-text-v2:0", "embedding"), ("cohere.embed-v4:0", "embedding")]  # not the image model
    assert [r.path for r in fake.requests] == ["/foundation-models"] * 2 and fake.last_request.signature_ok
    health = asyncio.run(bedrock.health_check(connection(fake)))
    assert health.ok and "6 models listed" in health.message


def test_the_client_keeps_as_many_connections_as_the_other_adapters(fake: FakeBedrock) -> None:
    """botocore's pool holds 10 connections by default: an 11th stream at once would wait for one to end."""
    async def pool_size() -> int:
        client = await bedrock.pooled(connection(fake), bedrock.Client).get()
        return client.meta.config.max_pool_connections

    assert asyncio.run(pool_size()) == 1000
