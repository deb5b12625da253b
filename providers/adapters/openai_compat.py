"""OpenAI chat-completions wire format, for every OpenAI-compatible kind.

OpenAI and Azure OpenAI are called through the official openai SDK; Azure differs only in its client
(endpoint, API version, deployment names as model names). Every other kind speaks the same format
directly on aiohttp (`wire`): the SDK's request path alone costs about 0.85 ms a call, most of aspweb's
budget of 2 ms added to the time to the first token. After the transport all is shared: events and
answers are read as the JSON objects they are, and failures of both transports map to the same errors.
Server quirks come from the kind's preset (`stream_usage`, `max_tokens_param`).
"""

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import aiohttp
import httpx2
import openai

from ..kinds import get_kind
from . import openai_embeddings, openai_responses, wire
from .base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    EmbeddingRequest,
    Embeddings,
    FinishReason,
    Health,
    ImagePart,
    Message,
    ModelInfo,
    ProviderError,
    ToolCall,
    ToolCallDelta,
    Usage,
    as_list,
    as_object,
    as_text,
    chunks_of,
    cut_error,
    estimated_usage,
    kind_for_status,
    malformed_error,
    plain_message,
    pooled,
    redact,
    reported_cost,
    retry_after_seconds,
    timed_listing,
    token_count,
    uncounted_output,
)

# Called through the official SDK: a product requirement for OpenAI's own API (and Azure's, the same API).
SDK_KINDS = frozenset({"openai", "azure_openai"})


def client(conn: Connection) -> openai.AsyncOpenAI:
    common = {
        # Keyless servers (Ollama, vLLM) ignore the key, but the SDK insists on one.
        "api_key": conn.api_key or "unused",
        "timeout": openai.Timeout(conn.timeout, connect=conn.connect_timeout),
        # Retries belong to aspweb's call path, which knows about first tokens and fallbacks.
        "max_retries": 0,
        "default_headers": conn.headers or None,
        # aiohttp under the SDK (its own option): a third less CPU per call than its default httpx
        # client, whose HTTP parsing is pure Python (docs/benchmarks.md, Gateway).
        "http_client": openai.DefaultAioHttpClient(),
    }
    if conn.kind == "azure_openai":
        return openai.AsyncAzureOpenAI(
            azure_endpoint=conn.base_url, api_version=conn.extra.get("api_version"), **common
        )
    return openai.AsyncOpenAI(base_url=conn.base_url, **common)


# -- the call -----------------------------------------------------------------------------------


async def stream(conn: Connection, request: ChatRequest, *,
                 headers: Mapping[str, str] | None = None) -> AsyncIterator[Chunk]:
    """Text, reasoning and tool-call deltas as they arrive, then one chunk with usage and finish reason.
    For a request that is not to stream, the whole answer asked for at once, as the same chunks.
    `headers` go with this request only, on the direct transport (a short-lived token)."""
    if request.responses is not None and conn.kind in SDK_KINDS:
        # Asked in the Responses API's format, of a provider that speaks it: asked in it, natively.
        try:
            async for chunk in openai_responses.stream(pooled(conn, client), conn, request):
                yield chunk
        except Exception as exc:
            raise map_error(exc, conn) from None
        return
    if not request.stream:
        async for chunk in chunks_of(await complete(conn, request, headers=headers)):
            yield chunk
        return
    params = _params(conn, request)
    if get_kind(conn.kind).stream_usage:
        params["stream_options"] = {"include_usage": True}
    usage: Usage | None = None
    finish: FinishReason | None = None
    response_id = ""  # every event carries the answer's id, and so does every chunk: a cut stream keeps it
    output: list[str] = []  # for an estimate when the server reports no usage
    params["stream"] = True
    try:
        events: openai.AsyncStream[object] | contextlib.aclosing[AsyncIterator[Any]]
        if conn.kind in SDK_KINDS:
            # The SDK's request path (client, auth, headers, status errors, server-sent events, error events)
            # with each event left as the JSON object it is: building the SDK's typed chunk per event cost
            # more CPU than the rest of a gateway call (bench/gateway_bench.py breakdown).
            events = await pooled(conn, client).post("/chat/completions", body=params, cast_to=object, stream=True,
                                                     stream_cls=openai.AsyncStream[object])
        else:
            events = contextlib.aclosing(pooled(conn, wire.Client).events("chat/completions", params, headers))
        # Either way the connection is let go when the stream is: at its end, or when the caller stops early.
        async with events as received:
            async for event in received:
                event = as_object(event)
                response_id = response_id or as_text(event.get("id"))
                if usage_fields := _usage_fields(event):
                    usage = usage_from_openai(usage_fields)
                for choice in as_list(event.get("choices")):
                    choice = as_object(choice)
                    if choice.get("index"):  # only one answer is asked for; some servers leave the index out
                        continue
                    finish = finish_reason_from_openai(choice.get("finish_reason")) or finish
                    delta = as_object(choice.get("delta"))
                    if reasoning := _reasoning(delta):
                        output.append(reasoning)
                        yield Chunk(reasoning=reasoning, response_id=response_id)
                    if (content := delta.get("content")) and isinstance(content, str):
                        output.append(content)
                        yield Chunk(text=content, response_id=response_id)
                    for position, call in enumerate(as_list(delta.get("tool_calls"))):
                        call, function = as_object(call), as_object(as_object(call).get("function"))
                        piece = ToolCallDelta(
                            # Some servers leave out the index of a call sent whole in one delta.
                            index=call["index"] if isinstance(call.get("index"), int) else position,
                            id=as_text(call.get("id")),
                            name=as_text(function.get("name")),
                            arguments=as_text(function.get("arguments")),
                        )
                        output.append(piece.arguments)
                        yield Chunk(tool_call=piece, response_id=response_id)
    except Exception as exc:
        raise map_error(exc, conn) from None
    yield Chunk(usage=usage or estimated_usage(request, "".join(output)), finish_reason=finish,
                response_id=response_id)


async def complete(conn: Connection, request: ChatRequest, *,
                   headers: Mapping[str, str] | None = None) -> Completion:
    """One non-streamed call, mapped to the same types as the stream (the JSON read as it is, like the
    stream's events)."""
    try:
        if conn.kind in SDK_KINDS:
            answer = await pooled(conn, client).post("/chat/completions", body=_params(conn, request), cast_to=object)
        else:
            answer = await pooled(conn, wire.Client).post("chat/completions", _params(conn, request), headers)
    except Exception as exc:
        raise map_error(exc, conn) from None
    response = as_object(answer)
    choice = next((choice for choice in map(as_object, as_list(response.get("choices"))) if not choice.get("index")),
                  None)
    if choice is None:
        raise ProviderError("server", f"{conn.label} answered without a message; it is usually temporary.")
    message = as_object(choice.get("message"))
    calls = [
        ToolCall(as_text(call.get("id")), as_text(function.get("name")), as_text(function.get("arguments")))
        for call in map(as_object, as_list(message.get("tool_calls")))
        if (function := as_object(call.get("function")))
    ]
    text, reasoning = as_text(message.get("content")), _reasoning(message)
    output = text + reasoning + "".join(call.arguments for call in calls)
    usage_fields = _usage_fields(response)
    usage = usage_from_openai(usage_fields) if usage_fields else estimated_usage(request, output)
    return Completion(text=text, reasoning=reasoning, tool_calls=calls, usage=usage,
                      finish_reason=finish_reason_from_openai(choice.get("finish_reason")),
                      response_id=as_text(response.get("id")))


async def embed(conn: Connection, request: EmbeddingRequest) -> Embeddings:
    """One embeddings call (OpenAI's POST /embeddings, which every OpenAI-compatible kind serves at the same
    path), through the kind's transport: openai_embeddings.py."""
    sdk = pooled(conn, client) if conn.kind in SDK_KINDS else None
    return await openai_embeddings.embed(conn, request, sdk=sdk, map_error=map_error)


def _params(conn: Connection, request: ChatRequest) -> dict[str, Any]:
    # Azure routes by deployment: the SDK puts `model` into the URL, so a model's name is its deployment's.
    params: dict[str, Any] = {"model": request.model, "messages": _messages(request)}
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.max_tokens is not None:
        params[get_kind(conn.kind).max_tokens_param] = request.max_tokens
    if request.stop:
        params["stop"] = list(request.stop)
    if request.tools:
        params["tools"] = list(request.tools)
    if request.tool_choice is not None:
        params["tool_choice"] = request.tool_choice
    if request.reasoning_effort is not None:
        params["reasoning_effort"] = request.reasoning_effort
    params.update(request.extra)  # provider-specific parameters, as they are
    return params


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": request.system}] if request.system else []
    messages.extend(_message(message) for message in request.messages)
    return messages


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
    if message.role == "assistant":
        # A turn that only calls tools has null content, as the API itself returns it.
        wire: dict[str, Any] = {"role": "assistant", "content": message.text or (None if message.tool_calls else "")}
        if message.tool_calls:
            wire["tool_calls"] = [
                {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                for call in message.tool_calls
            ]
        return wire
    if isinstance(message.content, str):
        return {"role": "user", "content": message.content}
    return {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": part.url}}
            if isinstance(part, ImagePart)
            else {"type": "text", "text": part.text}
            for part in message.content
        ],
    }



def _reasoning(delta_or_message: dict[str, Any]) -> str:
    """Reasoning text from the fields OpenAI-compatible servers add: DeepSeek (and vLLM, Together, ...)
    send `reasoning_content`, OpenRouter (and Groq, Ollama) send `reasoning`."""
    extra = delta_or_message
    for name in ("reasoning_content", "reasoning"):
        if isinstance(extra.get(name), str) and extra[name]:
            return extra[name]
    return ""


# -- normalisation ------------------------------------------------------------------------------


def _usage_fields(event_or_answer: dict[str, Any]) -> dict[str, Any]:
    """The usage object of a stream event or an answer, where the server put it: `usage`, as OpenAI sends
    it (in a stream, on the last event only; Gemini's endpoint on every event, its counts so far, so the
    last one read wins), else `x_groq.usage`, where Groq's streams put it on their last event."""
    return as_object(event_or_answer.get("usage")) or as_object(as_object(event_or_answer.get("x_groq")).get("usage"))


def usage_from_openai(usage: Mapping[str, Any]) -> Usage:
    """Normalise a chat-completions `usage` object.

    - `prompt_tokens` includes the tokens read from the cache (`prompt_tokens_details.cached_tokens`) and,
      where a server reports them (OpenRouter), those written to it (`prompt_tokens_details.
      cache_write_tokens`): both are taken out of the uncached input.
    - `completion_tokens` includes `completion_tokens_details.reasoning_tokens`, recorded but not added
      again. Where `total_tokens` exceeds prompt plus completion (Gemini's thoughts), the difference is
      output too, and reasoning: a server that also names those thoughts in `reasoning_tokens` names the
      same tokens, so the larger of the two counts is the reasoning.
    - `cost` (OpenRouter: "the total amount charged to your account", in USD) is the reported cost. With
      the customer's own provider key (`is_byok`), that is OpenRouter's fee alone and the provider bills
      `cost_details.upstream_inference_cost` on that key: the call cost both. (Without it, the upstream
      cost is sent too, as part of `cost`, and is not added.)
    """
    prompt_details = as_object(usage.get("prompt_tokens_details"))
    completion_details = as_object(usage.get("completion_tokens_details"))
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens"))
    cache_read = token_count(prompt_details.get("cached_tokens"))
    cache_write = token_count(prompt_details.get("cache_write_tokens"))
    thoughts = uncounted_output(usage.get("total_tokens"), prompt, completion)
    return Usage(
        input_tokens=max(0, prompt - cache_read - cache_write),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=completion + thoughts,
        reasoning_tokens=max(token_count(completion_details.get("reasoning_tokens")), thoughts),
        reported_cost=_charged(usage),
    )


def _charged(usage: Mapping[str, Any]) -> Decimal | None:
    charged = reported_cost(usage.get("cost"))
    if charged is not None and usage.get("is_byok") is True:
        upstream = reported_cost(as_object(usage.get("cost_details")).get("upstream_inference_cost"))
        charged += upstream or 0
    return charged


_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",  # the deprecated single-function form
    "content_filter": "content_filter",
    "max_tokens": "length",  # some compatible servers say it Anthropic's way
}


def finish_reason_from_openai(value: str | None) -> FinishReason | None:
    """None while the answer goes on; a reason no table knows ends the answer normally."""
    return None if value is None else _FINISH_REASONS.get(value, "stop")


# -- errors -------------------------------------------------------------------------------------


def map_error(exc: Exception, conn: Connection) -> ProviderError:
    """A failure of either transport (the SDK's exceptions, or `wire`'s and aiohttp's) as the ProviderError
    it is, in the same words whichever transport met it."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, wire.StatusError):
        return status_error(exc.status, exc.body, exc.headers.get("retry-after"), conn)
    if isinstance(exc, wire.EventError):
        return event_error(exc.body, exc.message, conn)
    if isinstance(exc, openai.APITimeoutError) and not could_not_connect(exc):
        return ProviderError("timeout", plain_message("timeout", conn.label, None))
    if isinstance(exc, openai.APIConnectionError):
        return transport_error(exc.__cause__, conn)
    if isinstance(exc, openai.APIStatusError):
        return status_error(exc.status_code, exc.body, exc.response.headers.get("retry-after"), conn)
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError):
        return malformed_error(conn)
    if isinstance(exc, openai.APIError):
        return event_error(exc.body, exc.message, conn)
    if isinstance(exc, httpx2.TransportError):
        return transport_error(exc, conn)
    if isinstance(exc, aiohttp.ClientError | OSError):  # OSError: TimeoutError and ConnectionError among them
        return connection_error(exc, conn)
    return ProviderError("server", plain_message("server", conn.label, None, redact(str(exc), conn.api_key)))


def status_error(status: int, body: Any, retry_after_header: str | None, conn: Connection) -> ProviderError:
    """An answer with an error status; `body` the error object, as both transports unwrap it."""
    body = as_object(body)
    code = str(body.get("code") or body.get("type") or "")
    detail = redact(str(body.get("message") or ""), conn.api_key)
    retry_after = retry_after_seconds(retry_after_header)
    kind = kind_for_status(status, code)
    return ProviderError(kind, plain_message(kind, conn.label, status, detail, retry_after),
                         status=status, retry_after=retry_after)


def event_error(body: Any, message: str, conn: Connection) -> ProviderError:
    """An error event inside a stream that had started with 200 (OpenRouter and others send them);
    OpenRouter puts the HTTP status it would have used into `code`."""
    body = as_object(body)
    code = str(body.get("code") or body.get("type") or "")
    status = int(code) if code.isdigit() else None
    kind = kind_for_status(status or 500, code)
    detail = redact(str(body.get("message") or message), conn.api_key)
    return ProviderError(kind, plain_message(kind, conn.label, status, detail), status=status)


def connection_error(exc: Exception, conn: Connection) -> ProviderError:
    """A failure below HTTP on the direct transport, from aiohttp."""
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.InvalidURL):
        return ProviderError("network", plain_message("network", conn.label, None))
    if isinstance(exc, TimeoutError):  # aiohttp's connect and read timeouts among them
        return ProviderError("timeout", plain_message("timeout", conn.label, None))
    return cut_error(conn)


def transport_error(exc: BaseException | None, conn: Connection) -> ProviderError:
    """A failure below HTTP, from the httpx2 error both SDKs use (the openai SDK wraps it; the anthropic
    SDK lets a stream's through as it is)."""
    if exc is None or isinstance(exc, httpx2.ConnectError) or could_not_connect(exc):
        return ProviderError("network", plain_message("network", conn.label, None))
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderError("timeout", plain_message("timeout", conn.label, None))
    return cut_error(conn)


def could_not_connect(exc: BaseException | None) -> bool:
    """aiohttp, under the SDKs, hands a refused connection on as a connect timeout; the aiohttp error it
    came from says what happened."""
    while exc is not None:
        if isinstance(exc, aiohttp.ClientConnectorError):
            return True
        exc = exc.__cause__
    return False


# -- catalog ------------------------------------------------------------------------------------


async def list_models(conn: Connection) -> list[ModelInfo]:
    """The server's `/models`, read as the JSON it is on both transports. OpenRouter adds `context_length`,
    some servers `context_window`; Together says each model's `type` ("chat", "embedding", ...)."""
    try:
        if conn.kind in SDK_KINDS:
            listing = await pooled(conn, client).get("/models", cast_to=object)
        else:
            listing = await pooled(conn, wire.Client).get("models")
    except Exception as exc:
        raise map_error(exc, conn) from None
    return [
        ModelInfo(model["id"],
                  context_window=token_count(model.get("context_length") or model.get("context_window")) or None,
                  type="embedding" if model.get("type") == "embedding" else "")
        for model in map(as_object, as_list(as_object(listing).get("data")))
        if isinstance(model.get("id"), str)
    ]


async def health_check(conn: Connection) -> Health:
    return await timed_listing(conn, list_models)
