"""POST /v1/embeddings: the request's checks, the answer in both encodings, the call path's ledger, budgets,
routes and fallback, and the model types that keep chat and embeddings apart. The official openai SDK is a
client of the live gateway; the adapter runs over both transports against the fake upstream."""

import asyncio
import base64
import json
import struct
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from django.core.cache import cache

from budgets.models import Budget
from gateway.models import Deployment, Route
from providers import bounds
from providers.adapters import openai_compat, openai_embeddings
from providers.adapters.base import Connection, EmbeddingRequest, Embeddings, ProviderError, Usage
from providers.models import Model, Price, Provider
from tests.fakes import upstream as upstream_module
from tests.fakes.upstream import FakeUpstream, embedding_base64, embedding_tokens, fake_embedding
from tests.gateway_support import OPENAI_MODEL, call, chat_body, live_server, make_key, make_providers
from usage.models import UsageRecord

EMBED_MODEL = "local/fake-embed"
TEXTS = ["The quick brown fox", "jumps over the lazy dog"]


def _embedding_model(provider: Provider, name: str = "fake-embed", price: str | None = "0.5") -> Model:
    model = Model.objects.create(provider=provider, name=name, type=Model.Type.EMBEDDING)
    if price is not None:
        Price.objects.create(model=model, input=Decimal(price), output=Decimal(0))
    return model


@pytest.fixture
def key(db: None, upstream: FakeUpstream) -> str:
    cache.clear()
    models = make_providers(upstream)
    _embedding_model(models[OPENAI_MODEL].provider)
    return make_key()[1]


@pytest.fixture
def live_key(transactional_db: None, upstream: FakeUpstream) -> tuple[Any, str]:
    """A key and its rows committed, for the gateway answering from threads of its own (a live server, or the
    ASGI app on a loop of its own)."""
    cache.clear()
    models = make_providers(upstream)
    _embedding_model(models[OPENAI_MODEL].provider)
    return make_key(name="live")


def embed_body(model: str = EMBED_MODEL, **fields: Any) -> dict[str, Any]:
    return {"model": model, "input": TEXTS, **fields}


def _floats(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# -- the answer and the ledger --------------------------------------------------------------------------------


def _upstream_answer(texts: list[str], encoding: str = "float", dimensions: int = 8) -> dict[str, Any]:
    """The fake upstream's answer, as it writes it."""
    data = [{"object": "embedding", "index": index,
             "embedding": embedding_base64(fake_embedding(text, dimensions)) if encoding == "base64"
             else fake_embedding(text, dimensions)} for index, text in enumerate(texts)]
    tokens = sum(embedding_tokens(text) for text in texts)
    return {"object": "list", "data": data, "model": "fake-embed",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_the_providers_answer_is_passed_on_as_it_came_with_its_record(key: str, upstream: FakeUpstream,
                                                                      encoding: str) -> None:
    answer = call("/v1/embeddings", embed_body(encoding_format=encoding), key=key)
    assert answer.status == 200, answer.content
    # The provider's own bytes, in the encoding asked for: its `model` is the provider's name for the model.
    assert answer.content == json.dumps(_upstream_answer(TEXTS, encoding)).encode()
    assert answer.headers["content-length"] == str(len(answer.content))
    assert upstream.last_request.body.get("encoding_format") == ("base64" if encoding == "base64" else None)
    tokens = sum(embedding_tokens(text) for text in TEXTS)
    record = UsageRecord.objects.get()
    assert (record.status, record.input_tokens, record.output_tokens, record.usage_estimated) == ("ok", tokens, 0,
                                                                                                  False)
    assert record.cost == Decimal("0.5") * tokens / 1_000_000
    assert "x-aspweb-cost" not in answer.headers  # known once the answer has been passed on, as on streams
    assert answer.headers["x-request-id"] == str(record.request_id)
    assert answer.headers["x-aspweb-model"] == "fake-embed"


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
def test_a_compressed_answer_is_passed_on_decompressed_without_a_length(db: None, upstream: FakeUpstream,
                                                                         kind: str) -> None:
    cache.clear()
    upstream.compress_answers = True  # as OpenAI's API answers a client that accepts gzip
    provider = Provider.objects.create(name="cloud", kind=kind, api_key="sk-upstream-0001", max_retries=0,
                                       base_url=upstream.openai_base_url)
    _embedding_model(provider, "fake-embed")
    answer = call("/v1/embeddings", {"model": "cloud/fake-embed", "input": TEXTS}, key=make_key()[1])
    assert answer.status == 200, answer.content
    # Both transports hand the body on decompressed: the provider's length is not its length any more.
    assert json.loads(answer.content) == _upstream_answer(TEXTS) and "content-length" not in answer.headers
    record = UsageRecord.objects.get()
    assert (record.input_tokens, record.usage_estimated) == (sum(embedding_tokens(text) for text in TEXTS), False)


def test_usage_written_before_the_vectors_is_read_too(key: str, upstream: FakeUpstream) -> None:
    # Far from the end of a long answer, where a server writes it first.
    upstream.embedding_dimensions = 3000
    upstream.raw_usage = {"prompt_tokens": 41, "total_tokens": 41}
    send_json = upstream_module._Handler._send_json

    def usage_first(handler: Any, status: int, payload: Any, *args: Any, **kwargs: Any) -> None:
        send_json(handler, status, {"usage": payload.pop("usage"), **payload}, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(upstream_module._Handler, "_send_json", usage_first)
        answer = call("/v1/embeddings", embed_body(), key=key)
    assert answer.status == 200 and answer.content.startswith(b'{"usage"')
    record = UsageRecord.objects.get()
    assert (record.input_tokens, record.usage_estimated) == (41, False)


def test_the_gateway_converts_floats_sent_for_base64(key: str, upstream: FakeUpstream) -> None:
    upstream.embedding_encodings = False  # a server that ignores `encoding_format`
    answer = call("/v1/embeddings", embed_body(input="one text", encoding_format="base64"), key=key)
    assert answer.status == 200, answer.content
    assert upstream.last_request.body["encoding_format"] == "base64"
    [item] = answer.json["data"]
    assert item["embedding"] == embedding_base64(fake_embedding("one text", 8))
    assert _floats(item["embedding"]) == fake_embedding("one text", 8)
    # Read and written by the gateway: the model as the client named it, and the cost known before answering.
    assert answer.json["model"] == EMBED_MODEL
    record = UsageRecord.objects.get()
    assert answer.headers["x-aspweb-cost"] == format(record.cost.normalize(), "f")


def test_a_body_that_breaks_off_is_the_providers_error_in_the_ledger(key: str, upstream: FakeUpstream) -> None:
    upstream.fail_next("cut")
    with pytest.raises(ProviderError) as caught:  # headers are gone: the answer ends short of its length
        call("/v1/embeddings", embed_body(), key=key)
    assert caught.value.kind == "network"
    record = UsageRecord.objects.get()
    assert (record.status, record.error_kind) == ("error", "network")
    assert record.input_tokens > 0 and record.usage_estimated  # what the provider was sent, estimated


@pytest.mark.parametrize("kind", ["openai", "azure_openai"])
@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_openai_and_azure_are_asked_for_the_clients_encoding(db: None, upstream: FakeUpstream, kind: str,
                                                              encoding: str) -> None:
    cache.clear()
    azure = {"base_url": upstream.base_url, "extra": {"api_version": "2024-10-21"}} if kind == "azure_openai" \
        else {"base_url": upstream.openai_base_url}
    provider = Provider.objects.create(name="cloud", kind=kind, api_key="sk-upstream-0001", max_retries=0, **azure)
    _embedding_model(provider, "text-embedding-3-small")
    answer = call("/v1/embeddings", {"model": "cloud/text-embedding-3-small", "input": "hi", "dimensions": 4,
                                     "encoding_format": encoding, "user": "alice"}, key=make_key()[1])
    assert answer.status == 200, answer.content
    sent = upstream.last_request
    assert sent.body["encoding_format"] == encoding and sent.body["dimensions"] == 4
    assert "user" not in sent.body  # recorded in the ledger, not sent on, as for chat
    if kind == "azure_openai":
        assert sent.path == "/openai/deployments/text-embedding-3-small/embeddings"
    vector = answer.json["data"][0]["embedding"]
    assert (_floats(vector) if encoding == "base64" else vector) == fake_embedding("hi", 4)
    assert UsageRecord.objects.get().end_user == "alice"


def test_tags_and_end_user_are_read_as_chat_reads_them(key: str) -> None:
    answer = call("/v1/embeddings", embed_body(metadata={"tags": "search,rag"}),
                  key=key, headers={"x-aspweb-tags": "nightly", "x-aspweb-end-user": "bob"})
    assert answer.status == 200, answer.content
    record = UsageRecord.objects.get()
    assert set(record.tags.split(",")) >= {"search", "rag", "nightly"} and record.end_user == "bob"


def test_a_provider_without_usage_has_its_input_estimated_and_flagged(key: str, upstream: FakeUpstream) -> None:
    upstream.raw_usage = {}
    assert call("/v1/embeddings", embed_body(), key=key).status == 200
    record = UsageRecord.objects.get()
    assert record.usage_estimated and record.input_tokens > 0 and record.output_tokens == 0


# -- refusals -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "param"), [
    ({"model": EMBED_MODEL}, "input"),
    ({"model": EMBED_MODEL, "input": 5}, "input"),
    ({"model": EMBED_MODEL, "input": {"text": "hi"}}, "input"),
    ({"model": EMBED_MODEL, "input": []}, "input"),
    ({"model": EMBED_MODEL, "input": [1, 2, 3]}, "input[0]"),
    ({"model": EMBED_MODEL, "input": [[1, 2], [3]]}, "input[0]"),
    ({"model": EMBED_MODEL, "input": ["ok", ""]}, "input[1]"),
    ({"model": EMBED_MODEL, "input": ""}, "input"),
    ({"model": EMBED_MODEL, "input": ["x"] * 2049}, "input"),
    ({"model": EMBED_MODEL, "input": "hi", "encoding_format": "hex"}, "encoding_format"),
    ({"model": EMBED_MODEL, "input": "hi", "dimensions": 0}, "dimensions"),
    ({"model": EMBED_MODEL, "input": "hi", "dimensions": "256"}, "dimensions"),
    ({"model": EMBED_MODEL, "input": "hi", "stream": True}, "stream"),
    ({"input": "hi"}, "model"),
])
def test_bad_input_is_a_400_naming_the_parameter(key: str, upstream: FakeUpstream, body: dict[str, Any],
                                                 param: str) -> None:
    answer = call("/v1/embeddings", body, key=key)
    assert answer.status == 400, answer.content
    assert answer.json["error"]["param"] == param and answer.json["error"]["type"] == "invalid_request_error"
    assert upstream.requests == [] and not UsageRecord.objects.exists()


def test_a_chat_model_asked_to_embed_and_an_embedding_model_asked_to_chat_are_400s(key: str,
                                                                                  upstream: FakeUpstream) -> None:
    wrong = call("/v1/embeddings", embed_body(OPENAI_MODEL), key=key)
    assert wrong.status == 400 and wrong.json["error"]["code"] == "model_wrong_type"
    assert wrong.json["error"]["message"].startswith(f"{OPENAI_MODEL} is not an embedding model:")
    chat = call("/v1/chat/completions", chat_body(EMBED_MODEL), key=key)
    assert chat.status == 400 and chat.json["error"]["code"] == "model_wrong_type"
    assert "POST /v1/embeddings" in chat.json["error"]["message"]
    assert upstream.requests == [] and not UsageRecord.objects.exists()


def test_provider_failures_keep_their_status(key: str, upstream: FakeUpstream) -> None:
    upstream.fail_next(429, retry_after=3)
    answer = call("/v1/embeddings", embed_body(), key=key)
    assert answer.status == 429 and answer.headers["retry-after"] == "3"
    assert answer.json["error"]["code"] == "upstream_rate_limited"
    upstream.fail_next(400)
    assert call("/v1/embeddings", embed_body(), key=key).json["error"]["code"] == "upstream_invalid_request"
    assert list(UsageRecord.objects.values_list("status", flat=True)) == ["error", "error"]


def test_a_kind_without_embeddings_says_so(key: str, upstream: FakeUpstream) -> None:
    _embedding_model(Provider.objects.get(name="claude"), "claude-embed")
    answer = call("/v1/embeddings", embed_body("claude/claude-embed"), key=key)
    assert answer.status == 400 and "offers no embeddings" in answer.json["error"]["message"]
    assert upstream.requests == []


def test_a_hard_budget_refuses_before_the_provider_is_asked(key: str, upstream: FakeUpstream) -> None:
    Budget.objects.create(name="Tight", amount=Decimal("0.000001"), hard_limit=True)
    answer = call("/v1/embeddings", embed_body(), key=key)
    assert answer.status == 429 and answer.json["error"]["code"] == "budget_exceeded"
    assert upstream.requests == []


def test_a_hard_budget_reserves_the_inputs_at_the_input_price_and_no_output() -> None:
    request = EmbeddingRequest(model="m", input=("héllo", "wörld!"))
    assert bounds.input_token_bound(request) == 2 * bounds.PER_MESSAGE_TOKENS + len("héllo".encode()) + \
        len("wörld!".encode())
    assert bounds.output_token_bound(request, None, caps_output=True) == 0


def test_a_budget_with_room_lets_the_call_through_and_is_charged(key: str, upstream: FakeUpstream) -> None:
    Budget.objects.create(name="Roomy", amount=Decimal("10"), hard_limit=True)
    assert call("/v1/embeddings", embed_body(), key=key).status == 200
    assert UsageRecord.objects.get().cost > 0


# -- routes -------------------------------------------------------------------------------------------------


@pytest.fixture
def second() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def test_a_route_falls_back_to_its_next_embedding_deployment(key: str, upstream: FakeUpstream,
                                                              second: FakeUpstream) -> None:
    route = Route.objects.create(name="embed")
    other = Provider.objects.create(name="other", kind="openai_compatible", base_url=second.openai_base_url,
                                    max_retries=0)
    Deployment.objects.create(route=route, model=Model.objects.get(name="fake-embed"), priority=1)
    Deployment.objects.create(route=route, model=_embedding_model(other), priority=2)
    # A chat model in the route is skipped by embeddings calls.
    Deployment.objects.create(route=route, model=Model.objects.get(provider__name="local", name="fake-model-a"),
                              priority=0)
    upstream.mode = "500"
    answer = call("/v1/embeddings", embed_body("embed"), key=key)
    assert answer.status == 200, answer.content
    assert answer.headers["x-aspweb-provider"] == "other"
    assert len(upstream.requests) == 1 and len(second.requests) == 1
    record = UsageRecord.objects.get()
    assert (record.provider_name, record.attempts, record.status) == ("other", 2, "ok")
    listed = {item["id"]: item["model_type"] for item in call("/v1/models", method="GET", key=key).json["data"]}
    assert listed["embed"] == "chat"  # a route mixing chat and embedding models lists as chat


# -- /v1/models ---------------------------------------------------------------------------------------------


def test_models_say_which_is_which(key: str) -> None:
    listed = call("/v1/models", method="GET", key=key).json["data"]
    types = {item["id"]: item["model_type"] for item in listed}
    assert types[EMBED_MODEL] == "embedding" and types[OPENAI_MODEL] == "chat"
    anthropic = call("/v1/models", method="GET", key=key, headers={"anthropic-version": "2023-06-01"}).json
    assert {item["id"]: item["model_type"] for item in anthropic["data"]}[EMBED_MODEL] == "embedding"


# -- the adapter over both transports -----------------------------------------------------------------------


def _embedded(conn: Connection, request: EmbeddingRequest) -> tuple[Embeddings, Usage, bytes]:
    """The adapter's answer, its usage before its body was read, and the body (b"" where there is none)."""

    async def run() -> tuple[Embeddings, Usage, bytes]:
        result = await openai_compat.embed(conn, request)
        before = result.usage
        body = b"".join([piece async for piece in result.body]) if result.body is not None else b""
        return result, before, body

    return asyncio.run(run())


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_the_adapter_passes_either_encoding_on_over_both_transports(upstream: FakeUpstream, kind: str,
                                                                    encoding: str) -> None:
    conn = Connection(kind=kind, label="Fake", base_url=upstream.openai_base_url, api_key="sk-adapter-0001")
    result, before, body = _embedded(conn, EmbeddingRequest(model="m", input=("a b", "c"), encoding=encoding))
    assert result.vectors == [] and json.loads(body) == {**_upstream_answer(["a b", "c"], encoding), "model": "m"}
    assert result.length == len(body)
    # The input's estimate until the body has been read; the provider's count after.
    assert before.estimated and result.usage == Usage(input_tokens=3)
    # The SDK is told floats (it would ask for base64); a server's default is floats, asked for by leaving it out.
    sent = upstream.requests[-1].body.get("encoding_format")
    assert sent == (encoding if kind == "openai" or encoding == "base64" else None)


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
def test_the_adapter_reads_floats_sent_for_base64(upstream: FakeUpstream, kind: str) -> None:
    upstream.embedding_encodings = False
    conn = Connection(kind=kind, label="Fake", base_url=upstream.openai_base_url, api_key="sk-adapter-0001")
    result, _, body = _embedded(conn, EmbeddingRequest(model="m", input=("a b", "c"), encoding="base64"))
    assert body == b"" and result.vectors == [fake_embedding("a b", 8), fake_embedding("c", 8)]
    assert result.usage == Usage(input_tokens=3)


@pytest.mark.parametrize("data", [[], [{"index": 0, "embedding": [1, "x"]}], [{"index": 0}],
                                  [{"index": 0, "embedding": [True]}], [{"index": 0, "embedding": []}],
                                  [{"index": 0, "embedding": [[1.0]]}], [{"index": 0, "embedding": None}],
                                  "not json"])
def test_a_malformed_answer_read_whole_is_a_server_error(upstream: FakeUpstream, data: Any) -> None:
    # Read whole: no vector in the encoding asked for (base64) begins it.
    conn = Connection(kind="openai_compatible", label="Fake", base_url=upstream.openai_base_url)
    raw = data.encode() if isinstance(data, str) else json.dumps(
        {"object": "list", "data": data, "usage": {"prompt_tokens": 1}}).encode()

    async def pieces(*args: Any) -> Any:  # what a broken server could send, as the transport hands it on
        yield len(raw)
        yield raw[:5]
        yield raw[5:]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(openai_embeddings, "_pieces", pieces)
        with pytest.raises(ProviderError) as caught:
            _embedded(conn, EmbeddingRequest(model="m", input=("a",), encoding="base64"))
    assert caught.value.kind == "server"


@pytest.mark.parametrize(("raw", "tokens"), [
    (b'{"usage": {"prompt_tokens": 7, "total_tokens": 7}}', 7),
    (b'{"usage":{"prompt_tokens":7,"prompt_tokens_details":{"cached_tokens":0}},"id":"e-1"}', 7),
    (b'{"data": [], "usage": null}', None), (b'{"usage": {"prompt_tokens": "7"}}', None),
    (b'{"usage": {"prompt_tokens": 7', None), (b'{"x": "usage"}', None), (b"", None),
    (b'{"usage": {"prompt_tokens": 3}, "model": "m", "usage": {"prompt_tokens": 5}}', 5),
])
def test_the_usage_of_a_passed_on_answer_is_read_where_it_can_be(raw: bytes, tokens: int | None) -> None:
    assert openai_embeddings._prompt_tokens(raw) == tokens


# -- the official SDK against the live gateway --------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["float", "base64", None])
def test_the_openai_sdk_embeds_through_the_live_gateway(upstream: FakeUpstream, live_key: tuple[Any, str],
                                                        encoding: str | None) -> None:
    api_key, raw_key = live_key
    with live_server() as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=raw_key, max_retries=0)
        extra = {"encoding_format": encoding} if encoding else {}  # None: the SDK's default, base64
        raw = client.embeddings.with_raw_response.create(model=EMBED_MODEL, input=TEXTS, **extra)
        result = raw.parse()
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model=EMBED_MODEL, input=[[1, 2, 3]])
    assert caught.value.body["param"] == "input[0]"
    # Asked for base64 itself, the SDK hands the text on; asked for nothing, it asks for base64 and decodes it.
    vectors = [_floats(item.embedding) if encoding == "base64" else item.embedding for item in result.data]
    assert vectors == [fake_embedding(text, 8) for text in TEXTS]
    tokens = sum(embedding_tokens(text) for text in TEXTS)
    assert result.usage.prompt_tokens == tokens and result.model == "fake-embed"  # the provider's answer
    sent = next(r for r in upstream.requests if r.path == "/v1/embeddings")
    assert sent.body.get("encoding_format") == (None if encoding == "float" else "base64")
    [record] = UsageRecord.objects.filter(api_key=api_key)
    assert str(record.request_id) == raw.headers["x-request-id"]
    assert (record.input_tokens, record.output_tokens, record.usage_estimated) == (tokens, 0, False)
    assert record.cost == Decimal("0.5") * tokens / 1_000_000


# -- the answer's encodings ---------------------------------------------------------------------------------


def _answer(vectors: list[Any], encoding: str) -> Any:
    import json

    from gateway.embeddings import embeddings_body
    from providers.adapters.base import Embeddings, Usage

    text = embeddings_body(Embeddings(vectors, Usage(input_tokens=5)), model="p/m", encoding=encoding, label="p")
    return json.loads(text)


def test_every_form_of_a_vector_answers_in_either_encoding() -> None:
    vector = [0.5, -0.25, 1.0]
    forms = [vector, embedding_base64(vector)]
    for form in forms:
        floats = _answer([form], "float")
        assert floats["data"][0]["embedding"] == vector and floats["usage"] == {"prompt_tokens": 5,
                                                                                 "total_tokens": 5}
        assert _floats(_answer([form], "base64")["data"][0]["embedding"]) == vector


@pytest.mark.parametrize(("vector", "encoding"), [
    # Not base64, not whole float32 values, nothing, and a number beyond float32's range.
    ("@@@", "float"), ("AAA=", "float"), ("", "float"), ("@@@", "base64"), ('A"\\', "base64"), ("", "base64"),
    ([1e300], "base64"),
])
def test_a_vector_that_cannot_be_converted_is_the_providers_error(vector: Any, encoding: str) -> None:
    with pytest.raises(ProviderError) as caught:
        _answer([vector], encoding)
    assert caught.value.kind == "server"


def test_over_http_a_body_that_breaks_off_ends_the_connection(upstream: FakeUpstream,
                                                              live_key: tuple[Any, str]) -> None:
    api_key, raw_key = live_key
    upstream.fail_next("cut")
    with live_server() as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key=raw_key, max_retries=0)
        with pytest.raises(openai.APIConnectionError):
            client.embeddings.create(model=EMBED_MODEL, input=TEXTS, encoding_format="float")
        # The server goes on serving: the next call is whole.
        assert len(client.embeddings.create(model=EMBED_MODEL, input=TEXTS, encoding_format="float").data) == 2
    first, second = UsageRecord.objects.filter(api_key=api_key).order_by("created_at")
    assert (first.status, first.error_kind, second.status) == ("error", "network", "ok")


def test_a_client_gone_mid_answer_leaves_a_cancelled_record(upstream: FakeUpstream, live_key: tuple[Any, str]) -> None:
    import threading

    from aspweb.asgi import application
    from tests.asgi_support import Received, asgi_request

    api_key, raw_key = live_key
    upstream.fail_next("stall", delay=2)  # the answer's first half, then a pause
    body = json.dumps(embed_body()).encode()
    headers = [(b"authorization", f"Bearer {raw_key}".encode()), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    outcome: list[Any] = []

    def gone_after_the_first_bytes(received: Received, finished: bool) -> bool:
        return bool(received.body)

    def run() -> None:  # a loop of its own, as uvicorn's
        try:
            outcome.append(asyncio.run(asgi_request(application, "POST", "/v1/embeddings", headers=headers,
                                                    body=body, disconnect_when=gone_after_the_first_bytes)))
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the gateway did not let go of a client that went away"
    [received] = outcome
    assert received.status == 200 and 0 < len(received.body) < int(received.headers["content-length"])
    record = UsageRecord.objects.get(api_key=api_key)
    assert (record.status, record.usage_estimated) == ("cancelled", True) and record.input_tokens > 0
