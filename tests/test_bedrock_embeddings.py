"""Embeddings through Amazon Bedrock's InvokeModel: Titan Text Embeddings and Cohere Embed in their own body
formats, botocore (through aiobotocore) against the fake Bedrock with every request's SigV4 signature checked;
then the official openai SDK as the application of the live gateway, both encodings, the ledger and errors."""

from __future__ import annotations

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

from gateway.models import ApiKey
from providers import services
from providers.adapters import bedrock
from providers.adapters.base import Connection, EmbeddingRequest, Embeddings, ProviderError
from providers.models import Model, Provider
from tests.fakes.bedrock import KEY_ID, REGION, SECRET, FakeBedrock
from tests.fakes.upstream import embedding_tokens, fake_embedding
from tests.gateway_support import live_server, make_key
from usage.models import UsageRecord

TITAN = "amazon.titan-embed-text-v2:0"
COHERE_V3 = "cohere.embed-english-v3"
COHERE_V4 = "cohere.embed-v4:0"
TEXTS = ("The quick brown fox", "jumps over", "the lazy dog")


@pytest.fixture
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock() as server:
        yield server


def connection(fake: FakeBedrock) -> Connection:
    return Connection(kind="bedrock", label="Bedrock", base_url=fake.base_url,
                      api_key=json.dumps({"aws_secret_access_key": SECRET}),
                      extra={"aws_region": REGION, "aws_access_key_id": KEY_ID}, timeout=5.0, connect_timeout=2.0)


def embed(fake: FakeBedrock, model: str, texts: tuple[str, ...] = TEXTS, **fields: Any) -> Embeddings:
    return asyncio.run(bedrock.embed(connection(fake), EmbeddingRequest(model=model, input=texts, **fields)))


def refusal(fake: FakeBedrock, model: str, texts: tuple[str, ...] = TEXTS, **fields: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        embed(fake, model, texts, **fields)
    return caught.value


def floats(vector: list[Any] | str) -> list[float]:
    assert isinstance(vector, list)
    return [float(value) for value in vector]


# -- the adapter ----------------------------------------------------------------------------------------------


def test_titan_embeds_one_text_a_call_signed_with_its_documented_fields(fake: FakeBedrock) -> None:
    result = embed(fake, TITAN, dimensions=256)
    assert [floats(vector) for vector in result.vectors] == [fake_embedding(text, 256) for text in TEXTS]
    assert result.usage.input_tokens == sum(embedding_tokens(text) for text in TEXTS)
    assert not result.usage.estimated and result.usage.output_tokens == 0
    assert len(fake.requests) == 3 and all(r.signature_ok for r in fake.requests)
    assert {r.path for r in fake.requests} == {f"/model/{TITAN}/invoke"}
    assert sorted(r.body["inputText"] for r in fake.requests) == sorted(TEXTS)
    assert fake.requests[0].body.keys() == {"inputText", "dimensions", "normalize", "embeddingTypes"}
    assert fake.requests[0].body["dimensions"] == 256 and fake.requests[0].body["embeddingTypes"] == ["float"]


def test_titan_without_dimensions_leaves_them_to_the_model(fake: FakeBedrock) -> None:
    result = embed(fake, TITAN, ("one text",))
    assert floats(result.vectors[0]) == fake_embedding("one text", 1024)
    assert "dimensions" not in fake.last_request.body


def test_titan_g1_is_sent_its_only_field(fake: FakeBedrock) -> None:
    result = embed(fake, "amazon.titan-embed-text-v1", ("one text",))
    assert fake.last_request.body == {"inputText": "one text"} and len(result.vectors[0]) == 1536


def test_several_titan_inputs_run_at_once_but_bounded(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bedrock, "_CONCURRENT_CALLS", 3)
    in_flight, peak = 0, 0
    real_get = bedrock.Client.get

    class Counting:
        def __init__(self, client: Any) -> None:
            self.client = client

        async def invoke_model(self, **params: Any) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.02)  # every call waiting, so that all that may start do
                return await self.client.invoke_model(**params)
            finally:
                in_flight -= 1

    async def get(self: bedrock.Client, service: str = "bedrock-runtime") -> Any:
        return Counting(await real_get(self, service))

    monkeypatch.setattr(bedrock.Client, "get", get)
    texts = tuple(f"text number {n}" for n in range(10))
    result = embed(fake, TITAN, texts, dimensions=512)
    assert peak == 3 and len(fake.requests) == 10
    assert [floats(vector) for vector in result.vectors] == [fake_embedding(text, 512) for text in texts]
    assert result.usage.input_tokens == 30


@pytest.mark.parametrize("model", [COHERE_V3, "cohere.embed-multilingual-v3", COHERE_V4, "us.cohere.embed-v4:0"])
def test_cohere_embeds_a_batch_with_tokens_from_the_header(fake: FakeBedrock, model: str) -> None:
    result = embed(fake, model)
    size = 1536 if "v4" in model else 1024
    assert [floats(vector) for vector in result.vectors] == [fake_embedding(text, size) for text in TEXTS]
    assert result.usage.input_tokens == sum(embedding_tokens(text) for text in TEXTS) and not result.usage.estimated
    [sent] = fake.requests
    assert sent.signature_ok and sent.path == f"/model/{model}/invoke"
    assert sent.body == {"texts": list(TEXTS), "input_type": "search_document", "embedding_types": ["float"]}


def test_cohere_v4_takes_dimensions_as_output_dimension(fake: FakeBedrock) -> None:
    result = embed(fake, COHERE_V4, dimensions=256)
    assert fake.last_request.body["output_dimension"] == 256 and len(result.vectors[0]) == 256


def test_more_than_96_texts_are_several_cohere_calls_in_order(fake: FakeBedrock) -> None:
    texts = tuple(f"passage {n}" for n in range(200))
    result = embed(fake, COHERE_V3, texts)
    assert sorted(len(r.body["texts"]) for r in fake.requests) == [8, 96, 96]
    assert [floats(vector) for vector in result.vectors] == [fake_embedding(text, 1024) for text in texts]
    assert result.usage.input_tokens == 400


def test_without_the_token_header_the_input_is_estimated_and_flagged(fake: FakeBedrock) -> None:
    fake.send_token_count = False
    result = embed(fake, COHERE_V3)
    assert result.usage.estimated and result.usage.input_tokens > 0


@pytest.mark.parametrize(("model", "dimensions", "words"), [
    (TITAN, 300, "takes dimensions of 256, 512 or 1024, not 300"),
    (COHERE_V4, 768, "takes dimensions of 256, 512, 1024 or 1536, not 768"),
    (COHERE_V3, 256, "does not take dimensions"),
    ("amazon.titan-embed-text-v1", 256, "does not take dimensions"),
])
def test_dimensions_a_model_does_not_take_are_refused_before_calling(fake: FakeBedrock, model: str, dimensions: int,
                                                                     words: str) -> None:
    error = refusal(fake, model, dimensions=dimensions)
    assert error.kind == "invalid_request" and not error.retryable and words in error.message
    assert fake.requests == []


def test_a_model_of_another_family_is_refused_naming_the_ones_spoken(fake: FakeBedrock) -> None:
    error = refusal(fake, "amazon.titan-embed-image-v1")
    assert error.kind == "invalid_request" and "Titan Text Embeddings and Cohere Embed" in error.message
    assert fake.requests == []


@pytest.mark.parametrize(("code", "kind"), [
    ("ThrottlingException", "rate_limit"), ("AccessDeniedException", "auth"),
    ("ValidationException", "model_not_found"), ("ServiceUnavailableException", "server"),
])
def test_errors_map_to_the_taxonomy_as_for_chat(fake: FakeBedrock, code: str, kind: str) -> None:
    fake.fail_next(code)
    error = refusal(fake, COHERE_V4)
    assert error.kind == kind and error.message.startswith("Bedrock ") and SECRET not in error.message


def test_a_failed_titan_call_fails_the_whole_request_carrying_what_the_others_were_billed(fake: FakeBedrock) -> None:
    fake.fail_next("ThrottlingException")
    error = refusal(fake, TITAN)
    assert error.kind == "rate_limit" and len(fake.requests) == 3  # the others ran to their end
    throttled = fake.requests[0].body["inputText"]
    answered = [text for text in TEXTS if text != throttled]
    assert error.billed is not None and error.billed.input_tokens == sum(map(embedding_tokens, answered))


def test_a_validation_error_about_the_body_is_invalid_request(fake: FakeBedrock) -> None:
    error = refusal(fake, COHERE_V3, extra={"input_type": "poetry"})
    assert error.kind == "invalid_request" and error.status == 400 and "input_type" in error.message


@pytest.mark.parametrize(("model", "answer"), [
    (TITAN, {"embedding": [], "inputTextTokenCount": "1"}),
    (TITAN, {"embedding": ["0.5", True], "inputTextTokenCount": "1"}),
    (COHERE_V3, {"embeddings": {"int8": [["1"]]}}),
    (COHERE_V3, {"embeddings": [["0.5"]] * 2}),  # two vectors for three texts
    (COHERE_V4, ["not", "an", "object"]),
])
def test_an_answer_without_the_vectors_is_a_server_error(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch,
                                                         model: str, answer: Any) -> None:
    async def invoke(*args: Any) -> tuple[Any, dict[str, str]]:
        return answer, {}

    monkeypatch.setattr(bedrock, "_invoke", invoke)
    error = refusal(fake, model)
    assert error.kind == "server" and "could not read" in error.message


def test_an_unknown_model_is_model_not_found(fake: FakeBedrock) -> None:
    assert refusal(fake, "cohere.embed-english-v9").kind == "model_not_found"


def test_a_wrong_secret_is_refused_by_the_signature_check(fake: FakeBedrock) -> None:
    conn = Connection(kind="bedrock", label="Bedrock", base_url=fake.base_url,
                      api_key=json.dumps({"aws_secret_access_key": "wrong/secret-0123456789abcdefghijklmn"}),
                      extra={"aws_region": REGION, "aws_access_key_id": KEY_ID}, timeout=5.0)
    with pytest.raises(ProviderError) as caught:
        asyncio.run(bedrock.embed(conn, EmbeddingRequest(model=TITAN, input=("hi",))))
    assert caught.value.kind == "auth" and not fake.last_request.signature_ok


# -- through the gateway ----------------------------------------------------------------------------------------


@pytest.fixture
def oai(fake: FakeBedrock, transactional_db: None) -> Iterator[tuple[openai.OpenAI, ApiKey]]:
    cache.clear()
    provider = Provider.objects.create(name="aws", kind="bedrock", base_url=fake.base_url, max_retries=0,
                                       api_key=json.dumps({"aws_secret_access_key": SECRET}),
                                       extra={"aws_region": REGION, "aws_access_key_id": KEY_ID})
    for name in (TITAN, COHERE_V3, COHERE_V4):  # priced from genai-prices where it knows the id: Titan
        services.model_add(provider=provider, name=name, actor="test", type=Model.Type.EMBEDDING)
    key, raw = make_key(name="bedrock-embeddings")
    with live_server() as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key=raw, max_retries=0), key


def _decoded(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.mark.parametrize("encoding", ["float", "base64", None])
def test_the_openai_sdk_embeds_with_titan_through_the_gateway(oai: tuple[openai.OpenAI, ApiKey], fake: FakeBedrock,
                                                              encoding: str | None) -> None:
    client, key = oai
    extra = {"encoding_format": encoding} if encoding else {}  # None: the SDK asks for base64 and decodes it
    raw = client.embeddings.with_raw_response.create(model=f"aws/{TITAN}", input=list(TEXTS), dimensions=256,
                                                     **extra)
    result = raw.parse()
    vectors = [_decoded(item.embedding) if encoding == "base64" else item.embedding for item in result.data]
    assert vectors == [fake_embedding(text, 256) for text in TEXTS]
    assert [item.index for item in result.data] == [0, 1, 2]
    tokens = sum(embedding_tokens(text) for text in TEXTS)
    assert result.usage.prompt_tokens == tokens and result.model == f"aws/{TITAN}"
    assert {r.body["dimensions"] for r in fake.requests} == {256}
    [record] = UsageRecord.objects.filter(api_key=key)
    assert (record.status, record.input_tokens, record.output_tokens, record.usage_estimated) == ("ok", tokens, 0,
                                                                                                  False)
    assert record.cost == Decimal("0.02") * tokens / 1_000_000 and record.cost > 0
    assert raw.headers["x-aspweb-cost"] == format(record.cost.normalize(), "f")


def test_a_retried_titan_request_records_the_texts_billed_before_it_failed(oai: tuple[openai.OpenAI, ApiKey],
                                                                           fake: FakeBedrock) -> None:
    client, key = oai
    Provider.objects.filter(name="aws").update(max_retries=1)
    cache.clear()
    fake.fail_next("ThrottlingException")  # the first of the first attempt's three calls
    result = client.embeddings.create(model=f"aws/{TITAN}", input=list(TEXTS))
    throttled = fake.requests[0].body["inputText"]
    assert len(fake.requests) == 6  # three, then all three again
    tokens = sum(map(embedding_tokens, TEXTS))
    billed_before = tokens - embedding_tokens(throttled)
    assert result.usage.prompt_tokens == tokens  # the answer's own usage
    [record] = UsageRecord.objects.filter(api_key=key)
    assert (record.status, record.input_tokens, record.attempts) == ("ok", tokens + billed_before, 2)
    assert record.cost == Decimal("0.02") * (tokens + billed_before) / 1_000_000


def test_the_openai_sdk_embeds_with_cohere_and_the_unpriced_call_is_recorded(oai: tuple[openai.OpenAI, ApiKey],
                                                                             fake: FakeBedrock) -> None:
    client, key = oai
    result = client.embeddings.create(model=f"aws/{COHERE_V4}", input=list(TEXTS), dimensions=512)
    assert [item.embedding for item in result.data] == [fake_embedding(text, 512) for text in TEXTS]
    tokens = sum(embedding_tokens(text) for text in TEXTS)
    assert result.usage.prompt_tokens == tokens
    [record] = UsageRecord.objects.filter(api_key=key)
    assert record.input_tokens == tokens and record.cost == 0 and record.unpriced


@pytest.mark.parametrize(("fault", "model", "dimensions", "status", "code"), [
    ("ThrottlingException", TITAN, None, 429, "upstream_rate_limited"),
    ("AccessDeniedException", COHERE_V4, None, 502, "upstream_auth_error"),
    (None, COHERE_V3, 256, 400, "upstream_invalid_request"),
    (None, TITAN, 100, 400, "upstream_invalid_request"),
])
def test_bedrock_errors_reach_the_application_in_the_gateways_shape(oai: tuple[openai.OpenAI, ApiKey],
                                                                    fake: FakeBedrock, fault: str | None, model: str,
                                                                    dimensions: int | None, status: int,
                                                                    code: str) -> None:
    client, key = oai
    if fault:
        fake.fail_next(fault)
    extra = {"dimensions": dimensions} if dimensions else {}
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model=f"aws/{model}", input=["hi"], encoding_format="float", **extra)
    assert caught.value.status_code == status and caught.value.code == code
    assert SECRET not in caught.value.message
    assert UsageRecord.objects.get(api_key=key).status == "error"
