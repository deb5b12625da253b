"""Amazon Bedrock's Converse and ConverseStream APIs, through aiobotocore (botocore on aiohttp).

Why aiobotocore rather than boto3 in a thread: the call path is async from end to end (the gateway admits
and streams on the event loop, the playground's answers are tasks of its loop), and a Bedrock answer streams
for seconds to minutes. boto3 in a thread would hold one thread of a small pool for each streaming answer
for its whole length and hop threads for every event; aiobotocore runs botocore itself (the same request
serialisation, SigV4 signing, credential chain, error parsing and event-stream decoding) on aiohttp, the
transport the other adapters' clients already use, so a stream costs no thread. Measured (bench/bedrock_bench.py,
docs/benchmarks.md): alike one stream at a time; with 16 or 64 streams at once, botocore in the default executor
made the first token wait 0.3 to 1.4 s for a free thread where aiobotocore took 35 to 150 ms. Its clients are
pooled per connection settings and event loop like every other adapter's (base.pooled).

Credentials: the provider's access key id (Provider.extra, `aws_access_key_id`) with its secret access key
and optional session token (Provider.api_key, a JSON object, encrypted), or, when no key id is set,
botocore's default chain (environment, shared files, container or instance role). The region is
`extra["aws_region"]`; a base URL, when set, replaces botocore's endpoint (a VPC endpoint, or a test's fake).

Usage: Converse's `usage` carries `inputTokens`, `outputTokens`, `cacheReadInputTokens` and
`cacheWriteInputTokens` ("The number of input tokens read from / written to the cache for the request",
Bedrock's TokenUsage reference). `inputTokens` counts the uncached input only, as Anthropic's `input_tokens`
does; `cacheDetails` ([{"ttl": "5m"|"1h", "inputTokens"}]) splits the writes by duration.

Embeddings go through InvokeModel (`embed`, below), whose body is the model's own format: Amazon Titan Text
Embeddings and Cohere Embed are the families aspweb speaks.
"""

import asyncio
import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import exceptions as botoexc

from .base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    EmbeddingRequest,
    Embeddings,
    ErrorKind,
    FinishReason,
    Health,
    ImagePart,
    Message,
    ModelInfo,
    ProviderError,
    ToolCall,
    ToolCallDelta,
    Usage,
    chunks_of,
    cut_error,
    estimate_tokens,
    estimated_usage,
    is_vector,
    malformed_error,
    plain_message,
    pooled,
    redact,
    timed_listing,
    token_count,
)

DEFAULT_REGION = "us-east-1"


def credentials(conn: Connection) -> dict[str, str]:
    """The provider's own credentials as botocore's client arguments; empty for the default chain."""
    key_id = str(conn.extra.get("aws_access_key_id") or "")
    if not key_id:
        return {}
    try:
        secrets = json.loads(conn.api_key) if conn.api_key else {}
    except ValueError:
        secrets = {}
    secrets = secrets if isinstance(secrets, dict) else {}
    found = {"aws_access_key_id": key_id,
             "aws_secret_access_key": str(secrets.get("aws_secret_access_key") or ""),
             "aws_session_token": str(secrets.get("aws_session_token") or "")}
    return {name: value for name, value in found.items() if value}


class Client:
    """One bedrock-runtime client (and, when the catalog is listed, one bedrock client) for a connection on
    one event loop. Made on first use: aiobotocore builds its clients with `await`."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._session = get_session()
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def get(self, service: str = "bedrock-runtime") -> Any:
        async with self._lock:
            if service not in self._clients:
                conn = self._conn
                config = AioConfig(
                    connect_timeout=conn.connect_timeout, read_timeout=conn.timeout,
                    retries={"mode": "standard", "total_max_attempts": 1},  # the call path retries, not the client
                    # botocore's default is 10 connections: an 11th stream at once would wait for one to end.
                    max_pool_connections=1000,
                    user_agent_extra="aspweb",
                )
                creator = self._session.create_client(
                    service, region_name=str(conn.extra.get("aws_region") or DEFAULT_REGION),
                    endpoint_url=conn.base_url or None, config=config, **credentials(conn))
                self._clients[service] = await creator.__aenter__()
            return self._clients[service]

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


# -- the call -----------------------------------------------------------------------------------


async def stream(conn: Connection, request: ChatRequest) -> AsyncIterator[Chunk]:
    """ConverseStream's text, reasoning and tool-use deltas as they arrive, then one chunk with usage and the
    finish reason; a request that is not to stream is one Converse call, sent as the same chunks."""
    if not request.stream:
        async for chunk in chunks_of(await complete(conn, request)):
            yield chunk
        return
    params = _params(conn, request)
    tools: dict[int, int] = {}  # content block index -> tool call index, counted from 0
    arguments: dict[int, str] = {}
    output: list[str] = []
    usage: Mapping[str, Any] | None = None
    stop_reason: str | None = None
    stopped = False
    try:
        client = await pooled(conn, Client).get()
        response = await client.converse_stream(**params)
        events = response["stream"]
        try:
            async for event in events:
                if start := (event.get("contentBlockStart") or {}).get("start", {}).get("toolUse"):
                    index = tools.setdefault(event["contentBlockStart"].get("contentBlockIndex", 0), len(tools))
                    arguments[index] = ""
                    yield Chunk(tool_call=ToolCallDelta(index, id=start.get("toolUseId", ""),
                                                        name=start.get("name", "")))
                elif "contentBlockDelta" in event:
                    block = event["contentBlockDelta"]
                    delta = block.get("delta") or {}
                    if text := delta.get("text"):
                        output.append(text)
                        yield Chunk(text=text)
                    elif reasoning := (delta.get("reasoningContent") or {}).get("text"):
                        output.append(reasoning)
                        yield Chunk(reasoning=reasoning)
                    elif (piece := (delta.get("toolUse") or {}).get("input")) and \
                            block.get("contentBlockIndex", 0) in tools:
                        index = tools[block.get("contentBlockIndex", 0)]
                        arguments[index] += piece
                        output.append(piece)
                        yield Chunk(tool_call=ToolCallDelta(index, arguments=piece))
                elif "contentBlockStop" in event:
                    index = tools.get(event["contentBlockStop"].get("contentBlockIndex", 0))
                    if index is not None and not arguments[index]:  # a call without arguments sends none
                        yield Chunk(tool_call=ToolCallDelta(index, arguments="{}"))
                elif "messageStop" in event:
                    stop_reason = event["messageStop"].get("stopReason")
                    stopped = True
                elif "metadata" in event:
                    usage = event["metadata"].get("usage") or usage
        finally:
            events.close()
    except Exception as exc:
        raise map_error(exc, conn) from None
    if not stopped:
        raise cut_error(conn)
    yield Chunk(usage=usage_from_bedrock(usage) if usage else estimated_usage(request, "".join(output)),
                finish_reason=finish_reason_from_bedrock(stop_reason))


async def complete(conn: Connection, request: ChatRequest) -> Completion:
    try:
        client = await pooled(conn, Client).get()
        answer = await client.converse(**_params(conn, request))
    except Exception as exc:
        raise map_error(exc, conn) from None
    message = (answer.get("output") or {}).get("message")
    if not isinstance(message, dict):
        raise malformed_error(conn, "an answer without a message")
    result = Completion(finish_reason=finish_reason_from_bedrock(answer.get("stopReason")))
    for block in message.get("content") or []:
        if "text" in block:
            result.text += block["text"]
        elif "reasoningContent" in block:
            result.reasoning += (block["reasoningContent"].get("reasoningText") or {}).get("text", "")
        elif "toolUse" in block:
            use = block["toolUse"]
            result.tool_calls.append(ToolCall(use.get("toolUseId", ""), use.get("name", ""),
                                              json.dumps(use.get("input", {}))))
    usage = answer.get("usage")
    output = result.text + result.reasoning + "".join(call.arguments for call in result.tool_calls)
    result.usage = usage_from_bedrock(usage) if usage else estimated_usage(request, output)
    return result


def _params(conn: Connection, request: ChatRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"modelId": request.model, "messages": _messages(conn, request.messages)}
    if request.system:
        params["system"] = [{"text": request.system}]
        if request.cache_system:
            params["system"].append({"cachePoint": {"type": "default"}})
    inference = {name: value for name, value in (
        ("maxTokens", request.max_tokens), ("temperature", request.temperature), ("topP", request.top_p),
        ("stopSequences", list(request.stop) or None)) if value is not None}
    if inference:
        params["inferenceConfig"] = inference
    if tool_config := _tool_config(request):
        params["toolConfig"] = tool_config
    fields = dict(request.extra)
    if request.thinking_budget and "anthropic." in request.model:
        fields["thinking"] = {"type": "enabled", "budget_tokens": request.thinking_budget}
    if fields:
        params["additionalModelRequestFields"] = fields
    return params


def _messages(conn: Connection, messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Converse's turns alternate between user and assistant: tool results travel in a user turn, and
    consecutive turns of one role are merged into one."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        content = _content(conn, message)
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(content)
        else:
            wire.append({"role": role, "content": content})
    return wire


def _content(conn: Connection, message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"toolResult": {"toolUseId": message.tool_call_id, "content": [{"text": message.text}]}}]
    blocks: list[dict[str, Any]]
    if isinstance(message.content, str):
        blocks = [{"text": message.content}] if message.content else []
    else:
        blocks = [_image(conn, part.url) if isinstance(part, ImagePart) else {"text": part.text}
                  for part in message.content]
    for call in message.tool_calls:
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": _tool_input(conn, call)}})
    return blocks


def _tool_input(conn: Connection, call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments or "{}")
    except ValueError:
        raise ProviderError("invalid_request", f"The conversation holds a call of tool {call.name!r} whose "
                                               f"arguments are not JSON; {conn.label} accepts only JSON tool input.",
                            retryable=False) from None


_DATA_URL = re.compile(r"^data:image/(?P<format>png|jpeg|jpg|gif|webp);base64,(?P<data>.*)$", re.DOTALL)


def _image(conn: Connection, url: str) -> dict[str, Any]:
    """Converse takes an image's bytes (PNG, JPEG, GIF or WebP), never a link to it."""
    match = _DATA_URL.match(url)
    try:
        data = base64.b64decode(match["data"], validate=True) if match else None
    except (binascii.Error, ValueError):
        data = None
    if data is None:
        raise ProviderError("invalid_request", f"{conn.label} takes images as data: URLs of PNG, JPEG, GIF or WebP "
                                               "(base64), not links.", retryable=False)
    return {"image": {"format": match["format"].replace("jpg", "jpeg"), "source": {"bytes": data}}}


def _tool_config(request: ChatRequest) -> dict[str, Any] | None:
    """OpenAI's function tools as Converse's toolSpecs. Converse has no "none" choice: the tools are then left
    out, unless the conversation already holds tool calls (Converse then requires their definitions)."""
    used = any(m.tool_calls or m.role == "tool" for m in request.messages)
    if not request.tools or (request.tool_choice == "none" and not used):
        return None
    specs = []
    for tool in request.tools:
        function = (tool.get("function") or {}) if tool.get("type") == "function" else tool
        spec = {"name": function.get("name", ""),
                "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}}}
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    choice = request.tool_choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        config["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name", "")}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    return config


# -- embeddings ---------------------------------------------------------------------------------

# Amazon Titan Text Embeddings (the user guide's "Amazon Titan Embeddings G1 - Text" page, V2 and G1):
#   request  {"inputText": string, "dimensions": 1024 (default) | 512 | 256, "normalize": bool (default true),
#             "embeddingTypes": ["float" | "binary"]}   (G1 takes `inputText` only)
#   response {"embedding": [float, ...], "inputTextTokenCount": int, "embeddingsByType": {"float": [...]}}
# One text per InvokeModel: several inputs are several calls, at most _CONCURRENT_CALLS at once (and as many
# Cohere calls of 96 texts).
#
# Cohere Embed (the user guide's "Cohere Embed v3" and "Cohere Embed v4" pages):
#   request  {"texts": [string] (at most 96), "input_type": "search_document" | "search_query" |
#             "classification" | "clustering", "embedding_types": ["float" | "int8" | ...],
#             "truncate": "NONE" | ..., and for v4 "output_dimension": 256 | 512 | 1024 | 1536}
#   response {"id", "response_type": "embeddings_floats" | "embeddings_by_type", "texts",
#             "embeddings": [[float, ...]] or, by type, {"float": [[float, ...]]}}
# The body reports no tokens: Bedrock sends the input's count in the `X-Amzn-Bedrock-Input-Token-Count` header
# of InvokeModel answers (not in the InvokeModel API reference, but what its SDKs' users read; botocore gives it
# in ResponseMetadata.HTTPHeaders, lower-cased). Without it the input is estimated and flagged.
_TITAN_DIMENSIONS = (256, 512, 1024)
_COHERE_V4_DIMENSIONS = (256, 512, 1024, 1536)
_CONCURRENT_CALLS = 8
_COHERE_BATCH = 96
_INPUT_COUNT_HEADER = "x-amzn-bedrock-input-token-count"


async def embed(conn: Connection, request: EmbeddingRequest) -> Embeddings:
    """Embed `request.input` with a Titan Text Embeddings or Cohere Embed model through InvokeModel (with or
    without an inference-profile prefix: `us.cohere.embed-v4:0`). The vectors are floats; base64 is encoded
    by the gateway. `dimensions` goes to
    the models that take it (Titan V2's `dimensions`, Cohere v4's `output_dimension`) and is a 400 elsewhere."""
    model, family = request.model, _embeds(request.model)
    limit = asyncio.Semaphore(_CONCURRENT_CALLS)
    if family == "titan":
        v2 = "titan-embed-text-v2" in model
        _check_dimensions(conn, request, _TITAN_DIMENSIONS if v2 else ())
        jobs = [_titan(conn, request, text, v2, limit) for text in request.input]
    elif family == "cohere":
        v4 = "cohere.embed-v4" in model
        _check_dimensions(conn, request, _COHERE_V4_DIMENSIONS if v4 else ())
        jobs = [_cohere(conn, request, request.input[start:start + _COHERE_BATCH], v4, limit)
                for start in range(0, len(request.input), _COHERE_BATCH)]
    else:
        raise ProviderError("invalid_request", f"{conn.label}: aspweb embeds through Bedrock with Amazon Titan Text "
                                               f"Embeddings and Cohere Embed models, not {model}.", retryable=False)
    # Every call runs to its end even when another fails: each one answered is billed by Bedrock, so its
    # tokens go on the failure (ProviderError.billed) for the ledger, rather than being cut off unknown.
    results = await asyncio.gather(*jobs, return_exceptions=True)
    vectors: list[list[float] | str] = []
    tokens, estimated, failure = 0, False, None
    for result in results:
        if isinstance(result, BaseException):
            failure = failure or result
            continue
        part_vectors, part_tokens = result
        vectors.extend(part_vectors)
        tokens += part_tokens.input_tokens
        estimated = estimated or part_tokens.estimated
    if failure is not None:
        if isinstance(failure, ProviderError) and tokens:
            failure.billed = Usage(input_tokens=tokens, estimated=estimated)
        raise failure
    return Embeddings(vectors, Usage(input_tokens=tokens, estimated=estimated), model)


def _embeds(model: str) -> str | None:
    """The family of an embedding model id aspweb speaks: "titan", "cohere", or None."""
    if "amazon.titan-embed-text" in model or "amazon.titan-embed-g1-text" in model:
        return "titan"
    return "cohere" if "cohere.embed" in model else None


def _check_dimensions(conn: Connection, request: EmbeddingRequest, allowed: tuple[int, ...]) -> None:
    if request.dimensions is None or request.dimensions in allowed:
        return
    if allowed:
        choices = ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]}"
        text = f"{request.model} on {conn.label} takes dimensions of {choices}, not {request.dimensions}."
    else:
        text = f"{request.model} on {conn.label} does not take dimensions: its vectors have one size."
    raise ProviderError("invalid_request", text, retryable=False)


async def _invoke(conn: Connection, model: str, body: dict[str, Any],
                  limit: asyncio.Semaphore) -> tuple[Any, Mapping[str, str]]:
    """One InvokeModel call: the answer's JSON (read with orjson, as the direct transport's) and its HTTP
    headers."""
    async with limit:
        try:
            client = await pooled(conn, Client).get()
            answer = await client.invoke_model(modelId=model, body=json.dumps(body), contentType="application/json",
                                               accept="application/json")
            async with answer["body"] as stream:
                raw = await stream.read()
        except Exception as exc:
            raise map_error(exc, conn) from None
    try:
        parsed = orjson.loads(raw)
    except ValueError:
        raise malformed_error(conn) from None
    return parsed, (answer.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}


async def _titan(conn: Connection, request: EmbeddingRequest, text: str, v2: bool,
                 limit: asyncio.Semaphore) -> tuple[list[list[float] | str], Usage]:
    body: dict[str, Any] = {"inputText": text}
    if v2:
        body.update(normalize=True, embeddingTypes=["float"])
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
    answer, _ = await _invoke(conn, request.model, {**body, **request.extra}, limit)
    answer = answer if isinstance(answer, dict) else {}
    vector = answer.get("embedding")
    if not is_vector(vector):
        vector = (answer.get("embeddingsByType") or {}).get("float") if isinstance(
            answer.get("embeddingsByType"), dict) else None
    if not is_vector(vector):
        raise malformed_error(conn, "an embedding answer without a vector")
    return [vector], _input_usage(answer.get("inputTextTokenCount"), text)


async def _cohere(conn: Connection, request: EmbeddingRequest, texts: tuple[str, ...], v4: bool,
                  limit: asyncio.Semaphore) -> tuple[list[list[float] | str], Usage]:
    body: dict[str, Any] = {"texts": list(texts), "input_type": "search_document", "embedding_types": ["float"]}
    if v4 and request.dimensions is not None:
        body["output_dimension"] = request.dimensions
    answer, headers = await _invoke(conn, request.model, {**body, **request.extra}, limit)
    embeddings = answer.get("embeddings") if isinstance(answer, dict) else None
    if isinstance(embeddings, dict):  # response_type "embeddings_by_type"
        embeddings = embeddings.get("float")
    if not isinstance(embeddings, list) or len(embeddings) != len(texts) or not all(map(is_vector, embeddings)):
        raise malformed_error(conn, f"an answer without one float embedding for each of {len(texts)} texts")
    return embeddings, _input_usage(headers.get(_INPUT_COUNT_HEADER), "\n".join(texts))


def _input_usage(count: Any, text: str) -> Usage:
    """The input tokens Bedrock reported (a number, or the header's text), or an estimate of `text`'s,
    flagged."""
    try:
        return Usage(input_tokens=max(0, int(count)))
    except (TypeError, ValueError):
        return Usage(input_tokens=estimate_tokens(text), estimated=True)


# -- normalisation ------------------------------------------------------------------------------


def usage_from_bedrock(usage: Mapping[str, Any]) -> Usage:
    """Converse's TokenUsage in aspweb's classes: writes kept 1 hour (cacheDetails' "1h") apart from the
    5-minute ones; a total of writes beyond what the details name is 5-minute, the default duration."""
    details = usage.get("cacheDetails") if isinstance(usage.get("cacheDetails"), list) else []
    one_hour = sum(token_count(d.get("inputTokens")) for d in details if isinstance(d, dict) and d.get("ttl") == "1h")
    writes = max(token_count(usage.get("cacheWriteInputTokens")), one_hour)
    return Usage(
        input_tokens=token_count(usage.get("inputTokens")),
        cache_read_tokens=token_count(usage.get("cacheReadInputTokens")),
        cache_write_tokens=writes - one_hour,
        cache_write_1h_tokens=one_hour,
        output_tokens=token_count(usage.get("outputTokens")),
    )


_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def finish_reason_from_bedrock(value: str | None) -> FinishReason | None:
    return None if value is None else _STOP_REASONS.get(value, "stop")


# -- errors -------------------------------------------------------------------------------------

# Bedrock's error codes (the exception's name), which say more than the status.
_ERROR_CODES: dict[str, ErrorKind] = {
    "ThrottlingException": "rate_limit",
    "TooManyRequestsException": "rate_limit",
    "ServiceQuotaExceededException": "quota",
    "AccessDeniedException": "auth",
    "UnrecognizedClientException": "auth",
    "InvalidSignatureException": "auth",
    "SignatureDoesNotMatch": "auth",
    "IncompleteSignature": "auth",
    "MissingAuthenticationTokenException": "auth",
    "ExpiredTokenException": "auth",
    "ValidationException": "invalid_request",
    "ResourceNotFoundException": "model_not_found",
    "ModelNotReadyException": "server",
    "ServiceUnavailableException": "server",
    "InternalServerException": "server",
    "ModelErrorException": "server",
    "ModelStreamErrorException": "server",
    "ModelTimeoutException": "timeout",
}


def _sentence(kind: ErrorKind, conn: Connection, status: int | None, detail: str) -> str:
    if kind == "auth":
        code = f" (HTTP {status})" if status else ""
        text = (f"{conn.label} refused the AWS credentials{code}: an admin needs to check the access key, "
                "its permissions (bedrock:InvokeModel) and the account's access to this model in this region.")
        return text + (f" {conn.label} said: {detail[:300]}" if detail else "")
    return plain_message(kind, conn.label, status, detail)


def map_error(exc: Exception, conn: Connection) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    secrets = tuple(credentials(conn).values())
    if isinstance(exc, botoexc.ClientError):  # EventStreamError, an exception inside a stream, is one too
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "")
        code = code[:1].upper() + code[1:]  # inside a stream, the stream member's name: throttlingException
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        status = status if isinstance(status, int) and status >= 400 else None
        detail = redact(str(error.get("Message") or ""), *secrets)
        kind = _ERROR_CODES.get(code) or _kind_for_status(status)
        if kind == "invalid_request" and "model identifier" in detail.lower():
            kind = "model_not_found"
        return ProviderError(kind, _sentence(kind, conn, status, detail), status=status)
    if isinstance(exc, botoexc.NoCredentialsError | botoexc.PartialCredentialsError):
        return ProviderError("auth", f"{conn.label} has no AWS credentials: enter an access key on the provider's "
                                     "page, or give this server AWS credentials (environment, ~/.aws, or a role).")
    if isinstance(exc, botoexc.ReadTimeoutError | asyncio.TimeoutError):
        return ProviderError("timeout", plain_message("timeout", conn.label, None))
    if isinstance(exc, botoexc.EndpointConnectionError | botoexc.ConnectTimeoutError):
        return ProviderError("network", plain_message("network", conn.label, None))
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError | botoexc.ConnectionClosedError):
        return cut_error(conn)
    if isinstance(exc, botoexc.ParamValidationError):
        return ProviderError("invalid_request", plain_message("invalid_request", conn.label, None,
                                                              redact(str(exc), *secrets)))
    if isinstance(exc, botoexc.HTTPClientError | aiohttp.ClientError):
        return ProviderError("network", plain_message("network", conn.label, None))
    if isinstance(exc, botoexc.ResponseParserError | botoexc.InvalidRegionError | ValueError):
        return malformed_error(conn) if not isinstance(exc, botoexc.InvalidRegionError) else ProviderError(
            "invalid_request", f"{conn.label}: the region is not a valid AWS region name.", retryable=False)
    return ProviderError("server", plain_message("server", conn.label, None, redact(str(exc), *secrets)))


def _kind_for_status(status: int | None) -> ErrorKind:
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limit"
    if status == 404:
        return "model_not_found"
    if status is not None and 400 <= status < 500:
        return "invalid_request"
    return "server"


# -- catalog ------------------------------------------------------------------------------------


async def list_models(conn: Connection) -> list[ModelInfo]:
    """The region's foundation models that answer in text (ListFoundationModels, Bedrock's control plane), then
    its embedding models of the families `embed` speaks (output modality EMBEDDING), typed as such."""
    try:
        client = await pooled(conn, Client).get("bedrock")
        listed = await client.list_foundation_models(byOutputModality="TEXT")
        embedding = await client.list_foundation_models(byOutputModality="EMBEDDING")
    except Exception as exc:
        raise map_error(exc, conn) from None
    models = [ModelInfo(summary["modelId"], display_name=summary.get("modelName") or "")
              for summary in listed.get("modelSummaries") or [] if summary.get("modelId")]
    return models + [ModelInfo(summary["modelId"], display_name=summary.get("modelName") or "", type="embedding")
                     for summary in embedding.get("modelSummaries") or []
                     if _embeds(str(summary.get("modelId") or ""))]


async def health_check(conn: Connection) -> Health:
    return await timed_listing(conn, list_models)
