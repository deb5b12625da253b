"""Anthropic messages wire format, through the official anthropic SDK."""

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anthropic
import httpx2

from .base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    ErrorKind,
    FinishReason,
    Health,
    ImagePart,
    Message,
    ModelInfo,
    ProviderError,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    estimated_usage,
    kind_for_status,
    malformed_error,
    plain_message,
    pooled,
    redact,
    retry_after_seconds,
    timed_listing,
    token_count,
)
from .openai_compat import could_not_connect, transport_error

# The API requires max_tokens; this is the cap when the request sets none (thinking budgets come on top).
DEFAULT_MAX_TOKENS = 4096
# OpenAI's reasoning efforts as thinking budgets (the API's smallest budget is 1024 tokens); "none" and
# "minimal" think not at all.
EFFORT_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}


def client(conn: Connection) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key=conn.api_key,
        base_url=conn.base_url,
        timeout=anthropic.Timeout(conn.timeout, connect=conn.connect_timeout),
        max_retries=0,
        default_headers=conn.headers or None,
        http_client=anthropic.DefaultAioHttpClient(),  # as the OpenAI adapter's (openai_compat.client)
    )


# -- the call -----------------------------------------------------------------------------------


async def stream(conn: Connection, request: ChatRequest, *, make_client: Callable[[Connection], Any] = client,
                 headers: Mapping[str, str] | None = None) -> AsyncIterator[Chunk]:
    """Text, thinking and tool-call deltas as they arrive, then one chunk with usage and finish reason.
    `make_client` builds another of the SDK's clients (its Vertex client); `headers` go with this request
    only (a short-lived token)."""
    params = _params(conn, request)
    if headers:
        params["extra_headers"] = headers
    start_usage: dict[str, Any] | None = None  # input and cache counts come with message_start
    delta_usage: dict[str, Any] | None = None  # the last message_delta's counts are cumulative
    stop_reason: str | None = None
    message_id = ""  # from message_start, then on every chunk: a cut stream keeps it
    tools: dict[int, int] = {}  # content block index -> tool call index, counted from 0
    arguments: dict[int, str] = {}
    output: list[str] = []
    try:
        api = pooled(conn, make_client)
        async with await api.messages.create(**params, stream=True) as events:
            async for event in events:
                if event.type == "message_start":
                    message_id = event.message.id or ""
                    start_usage = event.message.usage.model_dump() if event.message.usage else None
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    index = tools.setdefault(event.index, len(tools))
                    arguments[index] = ""
                    block = event.content_block
                    yield Chunk(tool_call=ToolCallDelta(index, id=block.id, name=block.name), response_id=message_id)
                elif event.type == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        output.append(delta.text)
                        yield Chunk(text=delta.text, response_id=message_id)
                    elif delta.type == "thinking_delta" and delta.thinking:
                        output.append(delta.thinking)
                        yield Chunk(reasoning=delta.thinking, response_id=message_id)
                    elif delta.type == "input_json_delta" and event.index in tools and delta.partial_json:
                        index = tools[event.index]
                        arguments[index] += delta.partial_json
                        output.append(delta.partial_json)
                        yield Chunk(tool_call=ToolCallDelta(index, arguments=delta.partial_json),
                                    response_id=message_id)
                elif event.type == "content_block_stop" and event.index in tools:
                    if not arguments[tools[event.index]]:  # a call without arguments streams no JSON at all
                        yield Chunk(tool_call=ToolCallDelta(tools[event.index], arguments="{}"), response_id=message_id)
                elif event.type == "message_delta":
                    delta_usage = event.usage.model_dump() if event.usage else delta_usage
                    stop_reason = event.delta.stop_reason or stop_reason
    except Exception as exc:
        raise map_error(exc, conn) from None
    reported = start_usage is not None or delta_usage is not None
    usage = usage_from_anthropic(start_usage, delta_usage) if reported else estimated_usage(request, "".join(output))
    yield Chunk(usage=usage, finish_reason=finish_reason_from_anthropic(stop_reason), response_id=message_id)


async def complete(conn: Connection, request: ChatRequest, *,
                   make_client: Callable[[Connection], Any] = client,
                   headers: Mapping[str, str] | None = None) -> Completion:
    """One non-streamed call, mapped to the same types as the stream (`make_client` and `headers` as there)."""
    params = _params(conn, request)
    if headers:
        params["extra_headers"] = headers
    try:
        api = pooled(conn, make_client)
        message = await api.messages.create(**params)
    except Exception as exc:
        raise map_error(exc, conn) from None
    result = Completion(finish_reason=finish_reason_from_anthropic(message.stop_reason), response_id=message.id or "")
    for block in message.content:
        if block.type == "text":
            result.text += block.text
        elif block.type == "thinking":
            result.reasoning += block.thinking
        elif block.type == "tool_use":
            result.tool_calls.append(ToolCall(block.id, block.name, json.dumps(block.input)))
    output = result.text + result.reasoning + "".join(call.arguments for call in result.tool_calls)
    reported = message.usage is not None
    result.usage = usage_from_anthropic(message.usage.model_dump()) if reported else estimated_usage(request, output)
    return result


def _params(conn: Connection, request: ChatRequest) -> dict[str, Any]:
    budget = request.thinking_budget or _effort_budget(request)
    max_tokens = request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS + (budget or 0)
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": max_tokens,
        "messages": _messages(conn, request.messages),
    }
    if request.system:
        params["system"] = (
            [{"type": "text", "text": request.system,
              "cache_control": _cache_control(request.system_cache_ttl or "5m")}]
            if request.cache_system
            else request.system
        )
    if request.stop:
        params["stop_sequences"] = list(request.stop)
    if request.tools:
        params["tools"] = [_tool(tool) for tool in request.tools]
    if request.tool_choice is not None:
        params["tool_choice"] = _tool_choice(request.tool_choice)
    if budget:
        params["thinking"] = {"type": "enabled", "budget_tokens": budget}
    # The SDK no longer takes temperature and top_p as arguments (newer models refuse them); the API
    # still accepts them for the models that do.
    body = {name: value for name, value in (("temperature", request.temperature), ("top_p", request.top_p))
            if value is not None}
    body.update(request.extra)
    if body:
        params["extra_body"] = body
    return params


def _effort_budget(request: ChatRequest) -> int | None:
    """The thinking budget for a reasoning effort: less than the answer's cap, as the API requires, and no
    thinking where the cap leaves no room for the smallest budget."""
    budget = EFFORT_BUDGETS.get(request.reasoning_effort or "")
    if budget is None or request.max_tokens is None:
        return budget
    budget = min(budget, request.max_tokens - 1)
    return budget if budget >= EFFORT_BUDGETS["low"] else None


def _messages(conn: Connection, messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Anthropic's turns alternate: tool results travel in a user turn, and consecutive turns of one
    role (several tool results, or a result then a question) are merged into one."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        content = _content(conn, message)
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"] = _blocks(wire[-1]["content"]) + _blocks(content)
        else:
            wire.append({"role": role, "content": content})
    return wire


def _content(conn: Connection, message: Message) -> str | list[dict[str, Any]]:
    if message.role == "tool":
        result = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text}
        if message.cache:
            result["cache_control"] = _cache_control(message.cache)
        return [result]
    if message.role == "assistant" and message.tool_calls:
        return _blocks(message.text) + [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(conn, call)}
            for call in message.tool_calls
        ]
    if isinstance(message.content, str):
        return message.content
    return [_image(part.url) if isinstance(part, ImagePart) else _text(part) for part in message.content]


def _text(part: TextPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.cache:
        block["cache_control"] = _cache_control(part.cache)
    return block


def _cache_control(ttl: str) -> dict[str, str]:
    """A cache breakpoint: five minutes is Anthropic's default and goes without a ttl, as the docs write it."""
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if content else []


def _tool_input(conn: Connection, call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments or "{}")
    except ValueError:
        raise ProviderError(
            "invalid_request",
            f"The conversation holds a call of tool {call.name!r} whose arguments are not JSON; "
            f"{conn.label} accepts only JSON tool input.",
        ) from None


_DATA_URL = re.compile(r"^data:(?P<media_type>[^;,]+);base64,(?P<data>.*)$", re.DOTALL)


def _image(url: str) -> dict[str, Any]:
    if match := _DATA_URL.match(url):
        source = {"type": "base64", "media_type": match["media_type"], "data": match["data"]}
    else:
        source = {"type": "url", "url": url}
    return {"type": "image", "source": source}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's function format to Anthropic's; anything else (Anthropic's own tools) passes through."""
    if tool.get("type") != "function":
        return tool
    function = tool.get("function") or {}
    wire = {
        "name": function.get("name", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        wire["description"] = function["description"]
    return wire


def _tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
        return choice  # already Anthropic's shape
    return {"type": {"required": "any"}.get(choice, choice)}  # "auto" and "none" are spelled alike


# -- normalisation ------------------------------------------------------------------------------


def usage_from_anthropic(*usages: Mapping[str, Any] | None) -> Usage:
    """Normalise Anthropic `usage` objects: one from a message, or message_start's then the last
    message_delta's from a stream (a later non-null count wins: message_delta's are cumulative, and may
    repeat the input side message_start carried). The Claude CLI's result carries the same object.

    `input_tokens` already excludes cache reads (`cache_read_input_tokens`) and writes
    (`cache_creation_input_tokens`); `output_tokens` includes thinking
    (`output_tokens_details.thinking_tokens`), recorded but not added again. Writes come in two durations,
    billed apart, which `_cache_writes` splits.
    """
    merged: dict[str, Any] = {}
    for usage in usages:
        merged.update({name: value for name, value in (usage or {}).items() if value is not None})
    details = merged.get("output_tokens_details") or {}
    five_minutes, one_hour = _cache_writes(merged)
    return Usage(
        input_tokens=token_count(merged.get("input_tokens")),
        cache_read_tokens=token_count(merged.get("cache_read_input_tokens")),
        cache_write_tokens=five_minutes,
        cache_write_1h_tokens=one_hour,
        output_tokens=token_count(merged.get("output_tokens")),
        reasoning_tokens=token_count(details.get("thinking_tokens")),
    )


def _cache_writes(usage: Mapping[str, Any]) -> tuple[int, int]:
    """The tokens written to the cache for 5 minutes and for 1 hour.

    `cache_creation_input_tokens` is their total, `cache_creation` ({ephemeral_5m_input_tokens,
    ephemeral_1h_input_tokens}) splits it ("the current cache_creation_input_tokens field equals the sum of
    the values in the cache_creation object", Anthropic's prompt caching docs). Without the split every
    write is a 5-minute one, the default duration; so are writes a later cumulative total counts beyond
    the split (message_delta repeats the total, never the split). No token is lost where the two disagree.
    """
    split = usage.get("cache_creation")
    split = split if isinstance(split, Mapping) else {}
    one_hour = token_count(split.get("ephemeral_1h_input_tokens"))
    five_minutes = token_count(split.get("ephemeral_5m_input_tokens"))
    total = max(token_count(usage.get("cache_creation_input_tokens")), five_minutes + one_hour)
    return total - one_hour, one_hour


_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server tool paused a long turn; what came so far is complete
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason_from_anthropic(value: str | None) -> FinishReason | None:
    return None if value is None else _STOP_REASONS.get(value, "stop")


# -- errors -------------------------------------------------------------------------------------

# Anthropic's error types say more than the status, and are all an error event inside a stream has.
_ERROR_TYPES: dict[str, ErrorKind] = {
    "authentication_error": "auth",
    "permission_error": "auth",
    "billing_error": "quota",
    "not_found_error": "model_not_found",
    "rate_limit_error": "rate_limit",
    "invalid_request_error": "invalid_request",
    "request_too_large": "invalid_request",
    "timeout_error": "timeout",
    "api_error": "server",
    "overloaded_error": "server",
}


def map_error(exc: Exception, conn: Connection) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, anthropic.APITimeoutError) and not could_not_connect(exc):
        return ProviderError("timeout", plain_message("timeout", conn.label, None))
    if isinstance(exc, anthropic.APIConnectionError):
        return transport_error(exc.__cause__, conn)
    if isinstance(exc, httpx2.TransportError):  # the SDK does not wrap what breaks mid-stream
        return transport_error(exc, conn)
    if isinstance(exc, anthropic.APIStatusError):
        # An error event inside a stream arrives with the stream's 200: then only the type tells.
        status = exc.status_code if exc.status_code >= 400 else None
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        error_type = str(error.get("type") or "")
        detail = redact(str(error.get("message") or ""), conn.api_key)
        retry_after = retry_after_seconds(exc.response.headers.get("retry-after"))
        # 529 is Anthropic's "overloaded": a server condition, retryable.
        kind = _ERROR_TYPES.get(error_type) or (
            "server" if status in (None, 529) else kind_for_status(status, error_type))
        return ProviderError(kind, plain_message(kind, conn.label, status, detail, retry_after),
                             status=status, retry_after=retry_after)
    if isinstance(exc, anthropic.APIResponseValidationError | json.JSONDecodeError):
        return malformed_error(conn)
    return ProviderError("server", plain_message("server", conn.label, None, redact(str(exc), conn.api_key)))


# -- catalog ------------------------------------------------------------------------------------


async def list_models(conn: Connection) -> list[ModelInfo]:
    try:
        api = pooled(conn, client)
        return [ModelInfo(m.id, display_name=m.display_name or "") async for m in await api.models.list(limit=100)]
    except Exception as exc:
        raise map_error(exc, conn) from None


async def health_check(conn: Connection) -> Health:
    return await timed_listing(conn, list_models)
