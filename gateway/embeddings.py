"""POST /v1/embeddings in OpenAI's shape: the request read and checked, the call made on the call path
(providers.embeddings: routes, fallback, budgets, the ledger), and the answer OpenAI's `list` of `embedding`
objects with its usage.

    {"model": "openai/text-embedding-3-small", "input": "text" | ["text", ...],
     "dimensions": 256, "encoding_format": "float" | "base64", "user": "end-user-id",
     "metadata": {"tags": "search,rag"}}

`encoding_format: "base64"` answers each vector as the base64 text of its little-endian float32 values, as
OpenAI does (the openai SDK asks for it by default and decodes it). The provider is asked for the same
encoding. Where it answers OpenAI's shape in it, that answer is passed on as it arrives (Embeddings.body:
providers/adapters/openai_embeddings.py) and the call is recorded after its last byte, so it carries no
`x-aspweb-cost`; otherwise (Bedrock, a server that ignores `encoding_format`) the gateway writes the answer,
encoding floats or unpacking base64 as the client asked. Admission (key, the model's permission, rate
limits, attribution) is the chat endpoints' own (gateway/api.py); the response cache does not apply.
"""

import base64
import binascii
import re
import struct
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from providers import calls
from providers import embeddings as embedding_calls
from providers.adapters.base import EmbeddingRequest, Embeddings, ProviderError

from . import api, openai_format
from .checks import (
    MAX_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_INPUTS,
    BadRequest,
    array,
    integer,
    model_name,
    obj,
    one_of,
    type_name,
    unicode_text,
)

_KNOWN = {"model", "input", "dimensions", "encoding_format", "user", "metadata"}

Encoding = Literal["float", "base64"]


@dataclass(frozen=True)
class ParsedEmbeddings:
    request: EmbeddingRequest
    encoding: Encoding
    # Attribution from the body (usage/attribution.py): `metadata.tags` and `user`, as chat reads them.
    tags: tuple[str, ...] = ()
    end_user: str = ""


def parse_embeddings(body: Any) -> ParsedEmbeddings:
    """The body as OpenAI documents it; anything else is a 400 naming the parameter. `input` is a string or
    an array of strings (token arrays are not taken: providers' tokenizers differ)."""
    body = obj(body, "body")
    unicode_text(body, dotted=False)
    for name in body:
        if name not in _KNOWN:
            raise BadRequest(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")
    model = model_name(body.get("model"))
    inputs = _inputs(body.get("input"))
    values = {name: value for name, value in body.items() if value is not None}
    dimensions = None
    if "dimensions" in values:
        dimensions = integer(values["dimensions"], "dimensions", 1, MAX_EMBEDDING_DIMENSIONS)
    encoding: Encoding = "float"
    if "encoding_format" in values and one_of(values["encoding_format"], "encoding_format", ("float", "base64")) \
            == "base64":
        encoding = "base64"
    _metadata, tags, end_user = openai_format.attribution_fields(values)  # chat's reading of `metadata` and `user`
    # `user` attributes the call in the ledger and is not sent on, as for chat.
    request = EmbeddingRequest(model=model, input=inputs, dimensions=dimensions, encoding=encoding)
    return ParsedEmbeddings(request, encoding, tags, end_user)


def _inputs(value: Any) -> tuple[str, ...]:
    if value is None:
        raise BadRequest("input is required: a string or an array of strings.", "input", "missing_required_parameter")
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list):
        items = array(value, "input", non_empty=True, most=MAX_EMBEDDING_INPUTS)
    else:
        raise BadRequest(f"input must be a string or an array of strings, not {type_name(value)}.", "input")
    for index, item in enumerate(items):
        where = "input" if isinstance(value, str) else f"input[{index}]"
        if not isinstance(item, str):
            raise BadRequest(f"input must be a string or an array of strings; {where} is {type_name(item)} "
                             "(token arrays are not supported).", where)
        if not item:
            raise BadRequest(f"{where} must not be empty.", where)
    return tuple(items)


# -- the answer -------------------------------------------------------------------------------------


def _base64(vector: list[float] | str) -> str:
    """The vector as OpenAI's base64 encoding sends it: its little-endian float32 values."""
    if isinstance(vector, str):
        if not _BASE64.fullmatch(vector):
            raise ValueError("not base64")
        return vector
    packed = struct.pack(f"<{len(vector)}f", *vector)  # OverflowError: a value beyond float32's range
    return base64.b64encode(packed).decode("ascii")


def _floats(vector: list[float] | str) -> list[float] | tuple[float, ...]:
    """The vector as numbers, unpacked where the provider sent base64."""
    if isinstance(vector, str):
        raw = base64.b64decode(vector, validate=True)
        if not raw or len(raw) % 4:
            raise ValueError("not whole float32 values")
        return struct.unpack(f"<{len(raw) // 4}f", raw)
    return vector


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def embeddings_body(result: Embeddings, *, model: str, encoding: Encoding, label: str) -> bytes:
    """OpenAI's embeddings answer as JSON: `data` in input order, `usage` with the input tokens the call was
    billed for. `label` names the provider in the error for vectors that cannot be converted. Written with
    orjson: thousands of floats took the standard library 5.4 ms to print, orjson 0.3 ms."""
    convert = _base64 if encoding == "base64" else _floats
    tokens = result.usage.prompt_tokens
    try:
        data = [{"object": "embedding", "index": index, "embedding": convert(vector)}
                for index, vector in enumerate(result.vectors)]
    except (ValueError, OverflowError, binascii.Error, struct.error):
        raise ProviderError("server", f"{label} sent an embedding that aspweb could not read; it is usually "
                                      "temporary.") from None
    return orjson.dumps({"object": "list", "data": data, "model": model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


# -- the endpoint -----------------------------------------------------------------------------------


@api.gateway_view("openai", "POST")
async def create(request: HttpRequest, record: calls.CallRecord) -> HttpResponse:
    admission, parsed = await api._admit(request, record, parse_embeddings)
    embedding_request: EmbeddingRequest = parsed.request
    answers = embedding_calls.embed(embedding_request, caller=admission.caller, record=record,
                                    prepared=admission.prepared)
    try:
        result = await anext(answers)
    except BaseException:
        await api._after_call(admission, record, None)
        raise
    if result.body is not None:  # the provider's own answer, passed on as it comes: its cost is known after
        response = StreamingHttpResponse(_passed_on(result.body, answers, admission, record),
                                         content_type="application/json")
        if result.length is not None:
            response["Content-Length"] = str(result.length)
        return api._answer_headers(response, admission, record, cost=False)
    try:
        try:
            body = embeddings_body(result, model=embedding_request.model, encoding=parsed.encoding,
                                   label=record.provider or "The provider")
        except ProviderError as exc:
            await answers.athrow(exc)  # recorded as the provider's error, and raised again
        await anext(answers, None)  # the call ends: recorded
    finally:
        await answers.aclose()
        await api._after_call(admission, record, None)
    response = HttpResponse(body, content_type="application/json")
    return api._answer_headers(response, admission, record, cost=True)


async def _passed_on(body: AsyncIterator[bytes], answers: AsyncGenerator[Embeddings, None], admission: api.Admission,
                     record: calls.CallRecord) -> AsyncIterator[bytes]:
    """The provider's answer as it arrives; the call recorded at its end. A body that breaks off is recorded as
    the provider's error and ends the response short of its length: the client's HTTP library reports it."""
    try:
        try:
            async for piece in body:
                yield piece
        except ProviderError as exc:
            await answers.athrow(exc)
        await anext(answers, None)
    finally:
        await body.aclose()
        await answers.aclose()
        await api._after_call(admission, record, None)
