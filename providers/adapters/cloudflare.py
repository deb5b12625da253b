"""Cloudflare Workers AI over REST: /accounts/{account_id}/ai/run/{model} and the model search API.

The body is Workers AI's own (`messages`, `stream`, `max_tokens`, `temperature`, `top_p`; anything else,
such as `top_k`, `seed` or `repetition_penalty`, through `ChatRequest.extra`). Workers AI has no `stop`
parameter, so stop sequences are not sent; Workers AI's default `max_tokens` is small (256 on most
models), so callers wanting long answers must set it. Streams are SSE `data: {"response": "..."}` lines
ending with `data: [DONE]`; some models add a `usage` object near the end. Where no usage comes back,
counts are estimated and flagged.
"""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    ErrorKind,
    Health,
    ImagePart,
    ModelInfo,
    ProviderError,
    TextPart,
    Usage,
    answer_object,
    cut_error,
    estimated_usage,
    kind_for_status,
    malformed_error,
    plain_message,
    pooled,
    redact,
    retry_after_seconds,
    timed_listing,
    uncounted_output,
)

# Workers AI's internal error codes whose meaning the HTTP status alone gets wrong
# (https://developers.cloudflare.com/workers-ai/platform/errors/).
_CODE_KINDS: dict[int, ErrorKind] = {
    5007: "model_not_found",  # 400 "No such model ... or task"
    3042: "model_not_found",  # 404 "The model name is invalid"
    5018: "model_not_found",  # 403 account not allowed to use a private model
    3041: "model_not_found",
    5016: "invalid_request",  # 403 the account has not agreed to the model's terms
    3036: "quota",  # 429 daily free allocation used up: waiting a few seconds will not help
    3040: "server",  # 429 out of capacity: Cloudflare's side, worth retrying
    3007: "timeout",  # 408
    3008: "timeout",
}


def _client(conn: Connection) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{conn.base_url.rstrip('/')}/accounts/{conn.extra.get('account_id', '')}/ai/",
        headers={"Authorization": f"Bearer {conn.api_key}", **conn.headers},
        timeout=httpx.Timeout(conn.timeout, connect=conn.connect_timeout),
    )


def error_from_response(response: httpx.Response, conn: Connection) -> ProviderError:
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    errors = payload.get("errors") if isinstance(payload, dict) else None
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    detail = "; ".join(str(e.get("message", "")) for e in errors)
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    codes = [e.get("code") for e in errors]
    kind = next((_CODE_KINDS[c] for c in codes if c in _CODE_KINDS), None) or kind_for_status(response.status_code, "")
    return ProviderError(
        kind, plain_message(kind, conn.label, response.status_code, redact(detail, conn.api_key), retry_after),
        status=response.status_code, retry_after=retry_after,
    )


def map_transport_error(exc: httpx.HTTPError, conn: Connection) -> ProviderError:
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError("timeout", plain_message("timeout", conn.label, None))
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return cut_error(conn)
    return ProviderError("network", plain_message("network", conn.label, None))


def _content(message_content: str | tuple) -> str | list[dict[str, Any]]:
    if isinstance(message_content, str):
        return message_content
    if not any(isinstance(part, ImagePart) for part in message_content):
        return "".join(part.text for part in message_content)
    return [
        {"type": "text", "text": part.text} if isinstance(part, TextPart)
        else {"type": "image_url", "image_url": {"url": part.url}}
        for part in message_content
    ]


def _body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": _content(m.content)} for m in request.messages]
    body: dict[str, Any] = {"messages": messages, "stream": stream}
    for name in ("max_tokens", "temperature", "top_p"):
        if getattr(request, name) is not None:
            body[name] = getattr(request, name)
    return {**body, **request.extra}


def _check(conn: Connection, request: ChatRequest) -> None:
    if request.tools:
        raise ProviderError(
            "invalid_request",
            f"{conn.label}: aspweb does not send tool definitions to Cloudflare Workers AI. "
            "Remove the tools from the request or use another provider.",
        )


def _usage(raw: Any, request: ChatRequest, text: str) -> Usage:
    """Workers AI's `usage` (`prompt_tokens`, `completion_tokens`, `total_tokens`), or an estimate without
    it. Tokens its total counts beyond its parts are output, as for every provider (`uncounted_output`)."""
    if isinstance(raw, dict) and isinstance(raw.get("prompt_tokens"), int) \
            and isinstance(raw.get("completion_tokens"), int):
        thoughts = uncounted_output(raw.get("total_tokens"), raw["prompt_tokens"], raw["completion_tokens"])
        return Usage(input_tokens=raw["prompt_tokens"], output_tokens=raw["completion_tokens"] + thoughts,
                     reasoning_tokens=thoughts)
    return estimated_usage(request, text)


async def stream(conn: Connection, request: ChatRequest) -> AsyncIterator[Chunk]:
    _check(conn, request)
    text, usage, done = "", None, False
    try:
        http = pooled(conn, _client)
        async with http.stream("POST", f"run/{request.model}", json=_body(request, stream=True)) as response:
            if response.status_code >= 400:
                await response.aread()
                raise error_from_response(response, conn)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    raise malformed_error(conn, "a stream event") from None
                if not isinstance(event, dict):
                    raise malformed_error(conn, "a stream event")
                usage = event.get("usage") or usage
                delta = event.get("response")
                if isinstance(delta, str) and delta:
                    text += delta
                    yield Chunk(text=delta)
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, conn) from None
    if not done:
        # A clean close without [DONE]: the answer may be cut short, so it is not passed off as complete.
        raise cut_error(conn)
    yield Chunk(usage=_usage(usage, request, text), finish_reason="stop")


async def complete(conn: Connection, request: ChatRequest) -> Completion:
    _check(conn, request)
    try:
        http = pooled(conn, _client)
        response = await http.post(f"run/{request.model}", json=_body(request, stream=False))
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, conn) from None
    if response.status_code >= 400:
        raise error_from_response(response, conn)
    payload = answer_object(response, conn)
    if payload.get("success") is False:
        raise error_from_response(response, conn)
    result = payload.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("response"), str):
        raise malformed_error(conn, "an answer without text")
    text = result["response"]
    return Completion(text=text, usage=_usage(result.get("usage"), request, text), finish_reason="stop")


def _context_window(model: dict) -> int | None:
    for prop in model.get("properties") or []:
        if prop.get("property_id") == "context_window":
            try:
                return int(prop.get("value"))
            except (TypeError, ValueError):
                return None
    return None


async def list_models(conn: Connection) -> list[ModelInfo]:
    try:
        http = pooled(conn, _client)
        response = await http.get("models/search", params={"task": "Text Generation", "per_page": 100})
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, conn) from None
    if response.status_code >= 400:
        raise error_from_response(response, conn)
    return [ModelInfo(m["name"], context_window=_context_window(m)) for m in response.json().get("result", [])]


async def health_check(conn: Connection) -> Health:
    return await timed_listing(conn, list_models)
