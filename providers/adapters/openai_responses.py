"""The OpenAI Responses API (`POST /responses`), spoken natively to OpenAI and Azure OpenAI through the
official SDK's `responses.create`, for requests a client made in that format (ChatRequest.responses).

The answer comes back as the same neutral chunks as a chat completion's, so the call path (retries,
fallback to a deployment that speaks another format, the ledger) treats it like any call. Nothing is
stored at the provider (`store: false`): aspweb does not keep responses either (README, "Responses API").
"""

from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai

from .base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    FinishReason,
    ProviderError,
    ToolCall,
    ToolCallDelta,
    Usage,
    chunks_of,
    estimated_usage,
    kind_for_status,
    plain_message,
    redact,
    token_count,
)


def body(request: ChatRequest) -> dict[str, Any]:
    """The Responses API body: the client's input as the gateway checked it, with the settings the call
    path may have changed (the deployment's model name, an output cap under a budget)."""
    params: dict[str, Any] = {**(request.responses or {}), "model": request.model, "store": False}
    if request.max_tokens is not None:
        params["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.reasoning_effort is not None:
        params["reasoning"] = {**params.get("reasoning", {}), "effort": request.reasoning_effort}
    if metadata := request.extra.get("metadata"):  # only for kinds that accept it (calls._guarded)
        params["metadata"] = metadata
    return params


async def stream(api: openai.AsyncOpenAI, conn: Connection, request: ChatRequest) -> AsyncIterator[Chunk]:
    """Text, reasoning-summary and function-call deltas from the typed events, then one chunk with the usage
    and finish reason of `response.completed` (or `response.incomplete`). The SDK's exceptions are left to
    the caller to map (openai_compat.map_error)."""
    if not request.stream:
        async for chunk in chunks_of(completion(await api.responses.create(**body(request)), conn, request)):
            yield chunk
        return
    calls: dict[int, int] = {}  # output_index -> the call's index among the answer's function calls
    output: list[str] = []
    events = await api.responses.create(**body(request), stream=True)
    async with events as received:
        async for event in received:
            kind = event.type
            if kind == "response.output_text.delta" or kind == "response.refusal.delta":
                output.append(event.delta)
                yield Chunk(text=event.delta)
            elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
                output.append(event.delta)
                yield Chunk(reasoning=event.delta)
            elif kind == "response.output_item.added" and event.item.type == "function_call":
                calls[event.output_index] = len(calls)
                output.append(event.item.arguments or "")
                yield Chunk(tool_call=ToolCallDelta(calls[event.output_index], id=event.item.call_id,
                                                    name=event.item.name, arguments=event.item.arguments or ""))
            elif kind == "response.function_call_arguments.delta" and event.output_index in calls:
                output.append(event.delta)
                yield Chunk(tool_call=ToolCallDelta(calls[event.output_index], arguments=event.delta))
            elif kind in ("response.completed", "response.incomplete"):
                response = event.response
                usage = (usage_from_responses(response.usage.model_dump()) if response.usage is not None
                         else estimated_usage(request, "".join(output)))
                yield Chunk(usage=usage, finish_reason=finish_reason(response))
                return
            elif kind == "response.failed":
                raise failed_error(event.response.error, conn)
            elif kind == "error":
                raise failed_error(event, conn)
    raise ProviderError("network", f"The stream from {conn.label} ended before the response was complete; "
                                   "retrying usually helps.")


def completion(response: Any, conn: Connection, request: ChatRequest) -> Completion:
    """A whole `response` object as a Completion."""
    if response.status == "failed":
        raise failed_error(response.error, conn)
    result = Completion(finish_reason=finish_reason(response))
    for item in response.output or []:
        if item.type == "message":
            for part in item.content:
                result.text += getattr(part, "text", None) or getattr(part, "refusal", None) or ""
        elif item.type == "reasoning":
            result.reasoning += "".join(part.text for part in item.summary or [])
            result.reasoning += "".join(part.text for part in getattr(item, "content", None) or [])
        elif item.type == "function_call":
            result.tool_calls.append(ToolCall(item.call_id, item.name, item.arguments))
    output = result.text + result.reasoning + "".join(call.arguments for call in result.tool_calls)
    result.usage = (usage_from_responses(response.usage.model_dump()) if response.usage is not None
                    else estimated_usage(request, output))
    return result


def finish_reason(response: Any) -> FinishReason:
    """`incomplete` says why in `incomplete_details.reason`; a completed answer that calls functions ends for
    them, as a chat completion's `tool_calls` does."""
    if response.status == "incomplete":
        reason = getattr(response.incomplete_details, "reason", None)
        return "content_filter" if reason == "content_filter" else "length"
    if any(item.type == "function_call" for item in response.output or []):
        return "tool_calls"
    return "stop"


def usage_from_responses(usage: Mapping[str, Any]) -> Usage:
    """Normalise a Responses API `usage` object: `input_tokens` includes `input_tokens_details.cached_tokens`
    (and, where reported, `cache_write_tokens`), taken out of the uncached input; `output_tokens` includes
    `output_tokens_details.reasoning_tokens`, recorded but not added again."""
    details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    cached = token_count(details.get("cached_tokens"))
    written = token_count(details.get("cache_write_tokens"))
    return Usage(
        input_tokens=max(0, token_count(usage.get("input_tokens")) - cached - written),
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=token_count(usage.get("output_tokens")),
        reasoning_tokens=token_count(output_details.get("reasoning_tokens")),
    )


def failed_error(error: Any, conn: Connection) -> ProviderError:
    """A failure the API reports inside a 200 answer (a `response.failed` or `error` event, a failed
    response): its `code` says which kind."""
    code = str(getattr(error, "code", None) or "server_error")
    status = 429 if "rate_limit" in code else 400 if code.startswith("invalid") else 500
    kind = kind_for_status(status, code)
    detail = redact(str(getattr(error, "message", None) or ""), conn.api_key)
    return ProviderError(kind, plain_message(kind, conn.label, None, detail))

