"""Embeddings in OpenAI's wire format (POST /embeddings, at the same path on every OpenAI-compatible kind):
OpenAI and Azure OpenAI through the openai SDK (its streaming-response API), the others through wire.py.

The provider is asked for the encoding the client asked for (`encoding_format`, left out for floats: every
server's default). Its answer is then OpenAI's own shape in that encoding, and it is passed on as it
arrives, bytes unchanged (`Embeddings.body`), with the number of bytes where the provider said it and sent
them uncompressed. Why: an answer of 8 vectors of 1,536 numbers is 130-270 KB, and reading and writing it
again cost the gateway more than a whole chat call adds (docs/benchmarks.md, Embeddings); a proxy that
passes the bytes on sends the first ones while the last are still arriving, and reads nothing but its usage.

What is read: the start of the answer, up to its first vector, which says the encoding the provider
actually used; and the usage object (`{"prompt_tokens", "total_tokens"}`), found in the last bytes (or in the
first, where a server writes it before `data`) when they have all come (`Embeddings.usage` is then set;
until then it is the input's estimate, flagged). A server that ignores `encoding_format` and answers floats
to a base64 request is read whole instead (`Embeddings.vectors`), and the gateway converts its numbers.
"""

import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import openai
import orjson

from . import wire
from .base import (
    Connection,
    EmbeddingRequest,
    Embeddings,
    ProviderError,
    Usage,
    as_list,
    as_object,
    as_text,
    estimate_tokens,
    is_vector,
    malformed_error,
    pooled,
)

# What turns a transport's exception into the ProviderError it is (openai_compat.map_error).
Errors = Callable[[Exception, Connection], ProviderError]

# The first vector's opening: `"embedding": [` (numbers) or `"embedding": "` (base64).
_FIRST_VECTOR = re.compile(rb'"embedding"\s*:\s*([\["])')
# How far into an answer the first vector may start (servers put `id`, `object`, `model` and the like first).
_HEAD_BYTES = 64 * 1024
# The end of an answer kept to find its usage in: the usage object and what follows it (`model`, `id`, ...).
_TAIL_BYTES = 4 * 1024


async def embed(conn: Connection, request: EmbeddingRequest, *, sdk: openai.AsyncOpenAI | None,
                map_error: Errors) -> Embeddings:
    """One embeddings call, through `sdk` where given, else wire.py: the answer passed on as it arrives where
    the provider used the encoding asked for, its vectors read otherwise. `usage.prompt_tokens` is the input;
    a server that reports none has its input estimated and flagged."""
    params: dict[str, Any] = {"model": request.model, "input": list(request.input)}
    if request.encoding == "base64" or sdk is not None:  # the SDK would ask for base64 when not told
        params["encoding_format"] = request.encoding
    if request.dimensions is not None:
        params["dimensions"] = request.dimensions
    params.update(request.extra)
    pieces = _pieces(conn, params, sdk)
    try:
        length = await anext(pieces)
        head = b""
        encoding = None
        async for piece in pieces:
            head += piece
            if (found := _FIRST_VECTOR.search(head)) is not None:
                encoding = "base64" if found.group(1) == b'"' else "float"
                break
            if len(head) > _HEAD_BYTES:
                break
        if encoding == request.encoding:
            result = Embeddings([], _estimated(request), length=length)
            result.body = _passed_on(result, conn, head, pieces, map_error)
            return result
        whole = head + b"".join([piece async for piece in pieces])
    except Exception as exc:
        await pieces.aclose()
        raise map_error(exc, conn) from None
    try:
        answer = orjson.loads(whole)
    except orjson.JSONDecodeError:
        raise malformed_error(conn, "an answer") from None
    return _read(answer, conn, request)


async def _pieces(conn: Connection, params: Mapping[str, Any], sdk: openai.AsyncOpenAI | None) -> AsyncIterator[Any]:
    """The answer: first its length in bytes (None where not known: a compressed or chunked answer), then its
    body's bytes as they arrive. Errors are the transport's own (map_error reads them)."""
    if sdk is not None:
        fields = {name: params[name] for name in ("model", "input", "encoding_format", "dimensions") if name in params}
        extra = {name: value for name, value in params.items() if name not in fields}
        async with sdk.embeddings.with_streaming_response.create(**fields, extra_body=extra or None) as response:
            yield _length(response.headers)
            async for piece in response.iter_bytes():
                yield piece
        return
    async with pooled(conn, wire.Client).answer("embeddings", params) as response:
        yield _length(response.headers)
        async for piece in response.content.iter_any():
            yield piece


def _length(headers: Mapping[str, str]) -> int | None:
    """The body's length as it is passed on: the provider's Content-Length, unless the body came compressed
    (the transports hand it on decompressed)."""
    if headers.get("content-encoding", "identity").lower() != "identity":
        return None
    length = headers.get("content-length", "")
    return int(length) if length.isdigit() else None


async def _passed_on(result: Embeddings, conn: Connection, head: bytes, pieces: AsyncIterator[bytes],
                     map_error: Errors) -> AsyncIterator[bytes]:
    """The answer's bytes, `head` first; at their end, `result.usage` from the answer's usage object. A body
    that breaks off raises the transport's error as a ProviderError."""
    tail = head[-_TAIL_BYTES:]
    try:
        if head:
            yield head
        async for piece in pieces:
            tail = piece[-_TAIL_BYTES:] if len(piece) >= _TAIL_BYTES else (tail + piece)[-_TAIL_BYTES:]
            yield piece
    except Exception as exc:
        raise map_error(exc, conn) from None
    finally:
        await pieces.aclose()
    tokens = _prompt_tokens(tail)
    if tokens is None and len(head) > len(tail):
        tokens = _prompt_tokens(head)
    if tokens is not None:
        result.usage = Usage(input_tokens=max(0, tokens))


def _prompt_tokens(data: bytes) -> int | None:
    """`usage.prompt_tokens` from the last `"usage": {...}` in `data`; None where there is none to read."""
    at = data.rfind(b'"usage"')
    if at < 0:
        return None
    start = data.find(b"{", at)
    if start < 0 or data[at + 7:start].strip() != b":":
        return None
    depth = 0
    for end in range(start, len(data)):
        depth += (data[end] == 0x7B) - (data[end] == 0x7D)  # { and }
        if depth == 0:
            break
    else:
        return None
    try:
        usage = orjson.loads(data[start:end + 1])
    except orjson.JSONDecodeError:
        return None
    return _whole(as_object(usage).get("prompt_tokens"))


def _read(answer: Any, conn: Connection, request: EmbeddingRequest) -> Embeddings:
    """A whole answer's vectors in input order (each item says which input it embeds: OpenAI's `index`), as
    the provider sent them: base64 text, or lists of numbers."""
    response = as_object(answer)
    items = [as_object(item) for item in as_list(response.get("data"))]
    items.sort(key=lambda item: _whole(item.get("index")) or 0)
    vectors = [item.get("embedding") for item in items]
    if len(vectors) != len(request.input) or not all(map(_vector, vectors)):
        raise malformed_error(conn, f"{len(vectors)} embeddings for {len(request.input)} inputs, or a malformed one,")
    prompt_tokens = _whole(as_object(response.get("usage")).get("prompt_tokens"))
    usage = Usage(input_tokens=max(0, prompt_tokens)) if prompt_tokens is not None else _estimated(request)
    return Embeddings(vectors, usage, as_text(response.get("model")))


def _estimated(request: EmbeddingRequest) -> Usage:
    """The input's tokens, estimated and flagged, for a server that reports none."""
    return Usage(input_tokens=sum(estimate_tokens(text) for text in request.input), estimated=True)


def _vector(value: Any) -> bool:
    """An embedding as sent: base64 text, or a non-empty list of numbers."""
    return bool(value) if isinstance(value, str) else is_vector(value)


def _whole(value: Any) -> int | None:
    """A JSON integer; None for anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
