"""The Vertex AI adapter against the fake Google token endpoint and Vertex endpoints on loopback: tokens are
minted from a service account's key (the fake checks the JWT's signature), kept, and sent as bearer tokens
to Gemini's OpenAI-compatible endpoint and to Claude's rawPredict / streamRawPredict."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.adapters import vertex, vertex_auth
from providers.adapters.base import ChatRequest, Chunk, Completion, Connection, Message, ProviderError, Usage
from tests.fakes.vertex import ANTHROPIC_VERSION, CLIENT_EMAIL, PROJECT, REGION, FakeVertex

GEMINI = "google/gemini-2.5-flash"
CLAUDE = "claude-sonnet-4-5@20250929"


def hello(model: str, **changes: Any) -> ChatRequest:
    return replace(ChatRequest(model=model, messages=(Message("user", "Say hello."),)), **changes)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeVertex]:
    with FakeVertex() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeVertex) -> Iterator[FakeVertex]:
    server.reset()
    vertex_auth._accounts.clear()  # each test starts without a kept token
    yield server
    vertex_auth._accounts.clear()


def connection(fake: FakeVertex, *, key: dict | None = None, **changes: Any) -> Connection:
    conn = Connection(kind="vertex", label="gcp", base_url=fake.vertex_base_url,
                      api_key=json.dumps(key or fake.key()), extra={"region": REGION}, timeout=5.0)
    return replace(conn, **changes)


def stream(conn: Connection, request: ChatRequest) -> list[Chunk]:
    async def run() -> list[Chunk]:
        return [chunk async for chunk in vertex.stream(conn, request)]

    return asyncio.run(run())


def complete(conn: Connection, request: ChatRequest) -> Completion:
    return asyncio.run(vertex.complete(conn, request))


def failure(conn: Connection, request: ChatRequest, streamed: bool = True) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        stream(conn, request) if streamed else complete(conn, request)
    return caught.value


def vertex_requests(fake: FakeVertex) -> list[Any]:
    return [request for request in fake.requests if request.path != "/token"]


# -- Gemini ------------------------------------------------------------------------------------


def test_gemini_streams_from_the_openai_compatible_endpoint_with_a_minted_token(fake: FakeVertex) -> None:
    fake.reply = "Hello from Gemini on Vertex."
    chunks = stream(connection(fake), hello(GEMINI))
    assert "".join(chunk.text for chunk in chunks) == "Hello from Gemini on Vertex."
    assert len([chunk for chunk in chunks if chunk.text]) > 1  # passed on as it came
    token_request, call = fake.requests
    assert token_request.path == "/token"
    assert call.path == f"/v1/projects/{PROJECT}/locations/{REGION}/endpoints/openapi/chat/completions"
    assert call.headers["authorization"] == "Bearer ya29.fake-0001"
    assert call.body["model"] == GEMINI and call.body["stream"] is True
    assert call.body["stream_options"] == {"include_usage": True}
    assert chunks[-1].finish_reason == "stop"


def test_the_key_never_travels_to_vertex(fake: FakeVertex) -> None:
    conn = connection(fake)
    stream(conn, hello(GEMINI))
    stream(conn, hello(CLAUDE))
    for request in vertex_requests(fake):
        sent = json.dumps(request.headers) + json.dumps(request.body)
        assert "PRIVATE KEY" not in sent and "service_account" not in sent


@pytest.mark.parametrize("streamed", [True, False])
def test_gemini_thoughts_counted_only_in_the_total_are_reasoning(fake: FakeVertex, streamed: bool) -> None:
    # Gemini's usage: thoughts are in total_tokens and in neither prompt_tokens nor completion_tokens.
    fake.usage_style = "gemini"
    fake.raw_usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 119}
    request = hello(GEMINI, stream=streamed)
    usage = stream(connection(fake), request)[-1].usage
    assert usage == Usage(input_tokens=12, output_tokens=107, reasoning_tokens=100)
    assert vertex_requests(fake)[-1].body.get("stream", False) is streamed


def test_gemini_answers_whole_when_not_streamed(fake: FakeVertex) -> None:
    fake.reply = "All at once."
    answer = complete(connection(fake), hello(GEMINI))
    assert answer.text == "All at once." and answer.finish_reason == "stop"
    assert "stream" not in vertex_requests(fake)[-1].body
    assert answer.usage.input_tokens > 0 and not answer.usage.estimated


def test_gemini_tool_calls_come_back(fake: FakeVertex) -> None:
    fake.tool_call = {"name": "lookup", "arguments": {"city": "Paris"}}
    answer = complete(connection(fake), hello(GEMINI))
    assert [(call.name, json.loads(call.arguments)) for call in answer.tool_calls] == [("lookup", {"city": "Paris"})]
    assert answer.finish_reason == "tool_calls"


# -- Claude ------------------------------------------------------------------------------------


def test_claude_streams_from_stream_raw_predict_with_vertex_anthropic_version(fake: FakeVertex) -> None:
    fake.reply = "Hello from Claude on Vertex."
    chunks = stream(connection(fake), hello(CLAUDE))
    assert "".join(chunk.text for chunk in chunks) == "Hello from Claude on Vertex."
    call = vertex_requests(fake)[-1]
    assert call.path.startswith(f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/")
    assert call.path.endswith(":streamRawPredict")
    assert call.headers["authorization"] == "Bearer ya29.fake-0001"
    assert call.body["anthropic_version"] == ANTHROPIC_VERSION  # the fake also refuses any other
    assert chunks[-1].finish_reason == "stop"


def test_claude_answers_whole_from_raw_predict(fake: FakeVertex) -> None:
    fake.reply = "Whole."
    answer = complete(connection(fake), hello(CLAUDE, max_tokens=50))
    assert answer.text == "Whole."
    call = vertex_requests(fake)[-1]
    assert call.path.endswith(":rawPredict") and call.body["max_tokens"] == 50


@pytest.mark.parametrize("streamed", [True, False])
def test_claude_usage_splits_cache_writes_by_duration(fake: FakeVertex, streamed: bool) -> None:
    fake.usage = {"input_tokens": 20, "output_tokens": 9, "cached_tokens": 300, "cache_write_tokens": 100,
                  "cache_write_1h_tokens": 40}
    conn, request = connection(fake), hello(CLAUDE)
    usage = stream(conn, request)[-1].usage if streamed else complete(conn, request).usage
    assert usage == Usage(input_tokens=20, cache_read_tokens=300, cache_write_tokens=100, cache_write_1h_tokens=40,
                          output_tokens=9)


def test_claude_tool_calls_come_back(fake: FakeVertex) -> None:
    fake.tool_call = {"name": "lookup", "arguments": {"city": "Oslo"}}
    answer = complete(connection(fake), hello(CLAUDE))
    assert [(call.name, json.loads(call.arguments)) for call in answer.tool_calls] == [("lookup", {"city": "Oslo"})]


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
def test_a_stream_stopped_early_lets_its_connection_go(fake: FakeVertex, model: str) -> None:
    fake.reply = "one two three four five six seven eight nine ten"
    fake.chunk_delay = 0.05
    conn = connection(fake)

    async def first_then_stop() -> tuple[str, bool]:
        async with contextlib.aclosing(vertex.stream(conn, hello(model))) as chunks:
            first = ""
            async for chunk in chunks:
                if first := chunk.text:
                    break
        # While the loop still runs (a worker serving other calls), the fake sees the connection go.
        deadline = time.monotonic() + 5
        while not vertex_requests(fake)[-1].client_disconnected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return first, vertex_requests(fake)[-1].client_disconnected

    assert asyncio.run(first_then_stop()) == ("one ", True)


# -- tokens ------------------------------------------------------------------------------------


def test_one_token_serves_many_calls(fake: FakeVertex) -> None:
    conn = connection(fake)
    for model in (GEMINI, CLAUDE, GEMINI, CLAUDE):
        stream(conn, hello(model))
    assert fake.mints == 1
    assert {request.headers["authorization"] for request in vertex_requests(fake)} == {"Bearer ya29.fake-0001"}


def test_calls_that_start_together_without_a_token_wait_for_one_mint(fake: FakeVertex) -> None:
    conn = connection(fake)

    async def together() -> list[list[Chunk]]:
        async def one(model: str) -> list[Chunk]:
            return [chunk async for chunk in vertex.stream(conn, hello(model))]

        return await asyncio.gather(*(one(model) for model in (GEMINI, CLAUDE) * 4))

    assert all(chunks[-1].finish_reason == "stop" for chunks in asyncio.run(together()))
    assert fake.mints == 1


def test_a_warm_call_mints_no_token(fake: FakeVertex, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = connection(fake)
    stream(conn, hello(GEMINI))

    def no_mint(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a warm call minted a token")

    monkeypatch.setattr(vertex_auth, "_mint", no_mint)  # what runs in a worker thread
    stream(conn, hello(GEMINI))
    complete(conn, hello(CLAUDE))
    assert fake.mints == 1


def test_a_token_is_minted_again_shortly_before_it_expires(fake: FakeVertex) -> None:
    conn = connection(fake)
    fake.expires_in = int(vertex_auth.REFRESH_MARGIN_SECONDS) - 1  # already within the margin
    stream(conn, hello(GEMINI))
    fake.expires_in = 3599
    stream(conn, hello(GEMINI))
    assert fake.mints == 2
    assert vertex_requests(fake)[-1].headers["authorization"] == "Bearer ya29.fake-0002"
    stream(conn, hello(CLAUDE))
    assert fake.mints == 2


def test_an_hour_later_the_token_is_minted_again(fake: FakeVertex) -> None:
    conn = connection(fake)
    with time_machine.travel(time.time(), tick=True) as clock:
        stream(conn, hello(GEMINI))
        clock.shift(3600 - vertex_auth.REFRESH_MARGIN_SECONDS / 2)
        stream(conn, hello(CLAUDE))
        assert fake.mints == 2
        stream(conn, hello(GEMINI))
    assert fake.mints == 2
    assert [request.headers["authorization"] for request in vertex_requests(fake)] == [
        "Bearer ya29.fake-0001", "Bearer ya29.fake-0002", "Bearer ya29.fake-0002"]


def test_each_key_has_its_own_token(fake: FakeVertex) -> None:
    stream(connection(fake), hello(GEMINI))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ProviderError) as caught:  # signed by a key the fake does not know
        stream(connection(fake, key=fake.key(key=other)), hello(GEMINI))
    assert caught.value.kind == "auth"
    assert fake.mints == 1


def test_a_token_vertex_refuses_is_forgotten_and_the_next_call_mints_another(fake: FakeVertex) -> None:
    conn = connection(fake)
    stream(conn, hello(GEMINI))
    fake.revoke()
    error = failure(conn, hello(GEMINI))
    assert (error.kind, error.status, error.retryable) == ("auth", 401, False)
    assert "Vertex AI User" in error.message
    assert stream(conn, hello(CLAUDE))[-1].finish_reason == "stop"
    assert fake.mints == 2


@pytest.mark.parametrize("refusal", ["invalid_grant", "unauthorized_client"])
def test_a_token_endpoint_that_refuses_the_service_account_is_auth_in_plain_words(
    fake: FakeVertex, refusal: str,
) -> None:
    fake.refuse = refusal
    conn = connection(fake)
    error = failure(conn, hello(GEMINI))
    assert (error.kind, error.retryable) == ("auth", False)
    assert error.message.startswith("Google refused gcp's service account key")
    assert refusal in error.message
    assert "PRIVATE KEY" not in error.message and CLIENT_EMAIL not in error.message
    assert vertex_requests(fake) == []


def test_a_signature_the_token_endpoint_cannot_verify_is_auth(fake: FakeVertex) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    error = failure(connection(fake, key=fake.key(key=other)), hello(CLAUDE), streamed=False)
    assert error.kind == "auth" and "Invalid JWT Signature" in error.message


def test_a_token_answer_that_is_not_json_is_server(fake: FakeVertex) -> None:
    fake.malformed_token = True
    error = failure(connection(fake), hello(GEMINI))
    assert (error.kind, error.retryable) == ("server", True)
    assert "could not read" in error.message and vertex_requests(fake) == []


def test_an_unreachable_token_endpoint_is_network(fake: FakeVertex) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = {**fake.key(), "token_uri": f"http://127.0.0.1:{port}/token"}
    error = failure(connection(fake, key=key), hello(GEMINI))
    assert (error.kind, error.retryable) == ("network", True)
    assert "token endpoint" in error.message


def test_a_stored_key_that_is_not_a_service_accounts_is_auth_without_echoing_it(fake: FakeVertex) -> None:
    error = failure(connection(fake, key=None, api_key="sk-not-json-at-all-1234567890"), hello(GEMINI))
    assert (error.kind, error.retryable) == ("auth", False)
    assert "sk-not-json" not in error.message and "paste the key again" in error.message


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
@pytest.mark.parametrize("streamed", [True, False])
@pytest.mark.parametrize(("status", "kind"), [(403, "auth"), (429, "rate_limit"), (404, "model_not_found"),
                                              (500, "server"), (503, "server")])
def test_vertex_errors_map_to_the_taxonomy(fake: FakeVertex, model: str, streamed: bool, status: int,
                                           kind: str) -> None:
    fake.fail_next(status)
    error = failure(connection(fake), hello(model), streamed)
    assert (error.kind, error.status) == (kind, status)
    assert error.retryable is (kind in ("rate_limit", "server"))
    assert error.message.startswith("gcp ")
    assert "PRIVATE KEY" not in error.message


def test_a_project_the_service_account_may_not_use_is_auth(fake: FakeVertex) -> None:
    error = failure(connection(fake, extra={"region": REGION, "project": "someone-elses"}), hello(GEMINI))
    assert (error.kind, error.status) == ("auth", 403)
    assert "someone-elses" in vertex_requests(fake)[-1].path


def test_the_project_setting_overrides_the_keys(fake: FakeVertex) -> None:
    fake.project = "billing-project"
    try:
        stream(connection(fake, extra={"region": REGION, "project": "billing-project"}), hello(CLAUDE))
    finally:
        fake.project = PROJECT
    assert "/projects/billing-project/" in vertex_requests(fake)[-1].path


# -- URLs, health and catalog --------------------------------------------------------------------


@pytest.mark.parametrize(("region", "root"), [
    ("us-central1", "https://us-central1-aiplatform.googleapis.com/v1"),
    ("europe-west4", "https://europe-west4-aiplatform.googleapis.com/v1"),
    ("global", "https://aiplatform.googleapis.com/v1"),
    ("eu", "https://aiplatform.eu.rep.googleapis.com/v1"),
])
def test_the_root_is_googles_endpoint_of_the_region(region: str, root: str) -> None:
    conn = Connection(kind="vertex", label="gcp", base_url="", extra={"region": region})
    assert vertex.root_url(conn) == root
    assert vertex.root_url(replace(conn, base_url="http://10.0.0.5/v1/")) == "http://10.0.0.5/v1"


def test_health_check_mints_a_token_and_reads_the_location(fake: FakeVertex) -> None:
    health = asyncio.run(vertex.health_check(connection(fake)))
    assert health.ok and f"project {PROJECT} in {REGION}" in health.message
    assert GEMINI in health.models and CLAUDE in health.models
    assert vertex_requests(fake)[-1].path == f"/v1/projects/{PROJECT}/locations/{REGION}"


def test_health_check_names_a_region_the_project_lacks(fake: FakeVertex) -> None:
    with pytest.raises(ProviderError) as caught:
        asyncio.run(vertex.health_check(connection(fake, extra={"region": "mars-north1"})))
    assert caught.value.kind == "invalid_request" and "mars-north1" in caught.value.message


# -- the key's checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "words"), [
    (lambda key: "not json", "JSON"),
    (lambda key: json.dumps([key]), "JSON object"),
    (lambda key: json.dumps({**key, "type": "authorized_user"}), "not a service account key"),
    (lambda key: json.dumps({k: v for k, v in key.items() if k != "private_key"}), "lacks private_key"),
    (lambda key: json.dumps({**key, "project_id": "Not A Project"}), "project_id"),
    (lambda key: json.dumps({**key, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
     "cannot be read as a private key"),
    (lambda key: json.dumps({**key, "token_uri": "http://169.254.169.254/token"}), "token_uri is refused"),
])
def test_a_key_that_is_not_a_usable_service_account_key_is_refused_in_words(fake: FakeVertex, change: Any,
                                                                             words: str) -> None:
    with pytest.raises(vertex_auth.KeyProblem) as caught:
        vertex_auth.parse_key(change(fake.key()))
    assert words in str(caught.value)
    assert "BEGIN" not in str(caught.value)


def test_a_key_as_downloaded_is_accepted(fake: FakeVertex) -> None:
    assert vertex_auth.parse_key(json.dumps(fake.key(), indent=2))["client_email"] == CLIENT_EMAIL
