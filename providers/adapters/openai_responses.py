"""The OpenAI Responses API (`POST /responses`), spoken natively to OpenAI and Azure OpenAI through the
official SDK (the request path of its `responses.create`), for requests a client made in that format
(ChatRequest.responses).

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
    as_list,
    as_object,
    as_text,
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
    the caller to map (openai_compat.map_error).

    Through the SDK's request path (`responses.create`'s URL, auth, errors and server-sent events) with each
    event and answer left as the JSON object it is, as for chat completions: building the SDK's typed event
    per event costs more CPU than the rest of a gateway call."""
    if not request.stream:
        answer = await api.post("/responses", body=body(request), cast_to=object)
        async for chunk in chunks_of(completion(as_object(answer), conn, request)):
            yield chunk
        return
    calls: dict[int, int] = {}  # output_index -> the call's index among the answer's function calls
    output: list[str] = []
    events = await api.post("/responses", body={**body(request), "stream": True}, cast_to=object, stream=True,
                            stream_cls=openai.AsyncStream[object])
    async with events as received:
        async for event in received:
            event = as_object(event)
            kind, delta = event.get("type"), as_text(event.get("delta"))
            if kind in ("response.output_text.delta", "response.refusal.delta"):
                output.append(delta)
                yield Chunk(text=delta)
            elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
                output.append(delta)
                yield Chunk(reasoning=delta)
            elif kind == "response.output_item.added" and as_object(event.get("item")).get("type") == "function_call":
                item, index = as_object(event.get("item")), len(calls)
                calls[event.get("output_index")] = index
                arguments = as_text(item.get("arguments"))
                output.append(arguments)
                yield Chunk(tool_call=ToolCallDelta(index, id=as_text(item.get("call_id")),
                                                    name=as_text(item.get("name")), arguments=arguments))
            elif kind == "response.function_call_arguments.delta" and event.get("output_index") in calls:
                output.append(delta)
                yield Chunk(tool_call=ToolCallDelta(calls[event["output_index"]], arguments=delta))
            elif kind in ("response.completed", "response.incomplete"):
                response = as_object(event.get("response"))
                usage = as_object(response.get("usage"))
                yield Chunk(usage=usage_from_responses(usage) if usage else estimated_usage(request, "".join(output)),
                            finish_reason=finish_reason(response), response_id=as_text(response.get("id")))
                return
            elif kind == "response.failed":
                raise failed_error(as_object(event.get("response")).get("error"), conn)
            elif kind == "error":
                raise failed_error(event, conn)
    raise ProviderError("network", f"The stream from {conn.label} ended before the response was complete; "
                                   "retrying usually helps.")


def completion(response: dict[str, Any], conn: Connection, request: ChatRequest) -> Completion:
    """A whole `response` object as a Completion."""
    if response.get("status") == "failed":
        raise failed_error(response.get("error"), conn)
    result = Completion(finish_reason=finish_reason(response), response_id=as_text(response.get("id")))
    for item in map(as_object, as_list(response.get("output"))):
        kind = item.get("type")
        if kind == "message":
            for part in map(as_object, as_list(item.get("content"))):
                result.text += as_text(part.get("text")) or as_text(part.get("refusal"))
        elif kind == "reasoning":
            parts = as_list(item.get("summary")) + as_list(item.get("content"))
            result.reasoning += "".join(as_text(as_object(part).get("text")) for part in parts)
        elif kind == "function_call":
            result.tool_calls.append(ToolCall(as_text(item.get("call_id")), as_text(item.get("name")),
                                              as_text(item.get("arguments"))))
    output = result.text + result.reasoning + "".join(call.arguments for call in result.tool_calls)
    usage = as_object(response.get("usage"))
    result.usage = usage_from_responses(usage) if usage else estimated_usage(request, output)
    return result


def finish_reason(response: dict[str, Any]) -> FinishReason:
    """`incomplete` says why in `incomplete_details.reason`; a completed answer that calls functions ends for
    them, as a chat completion's `tool_calls` does."""
    if response.get("status") == "incomplete":
        reason = as_object(response.get("incomplete_details")).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    if any(as_object(item).get("type") == "function_call" for item in as_list(response.get("output"))):
        return "tool_calls"
    return "stop"



def usage_from_responses(usage: Mapping[str, Any]) -> Usage:
    """Normalise a Responses API `usage` object: `input_tokens` includes `input_tokens_details.cached_tokens`
    (and, where reported, `cache_write_tokens`), taken out of the uncached input; `output_tokens` includes
    `output_tokens_details.reasoning_tokens`, recorded but not added again."""
    details = as_object(usage.get("input_tokens_details"))
    output_details = as_object(usage.get("output_tokens_details"))
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
    error = as_object(error)
    code = str(error.get("code") or "server_error")
    status = 429 if "rate_limit" in code else 400 if code.startswith("invalid") else 500
    kind = kind_for_status(status, code)
    detail = redact(str(error.get("message") or ""), conn.api_key)
    return ProviderError(kind, plain_message(kind, conn.label, None, detail))

