"""ruvLLM (RuVector's self-learning local engine) over its HTTP server, `ruvllm-server` (port 3000 by default).

The server's surface: `POST /query` with `{"query", "session_id"?}` answers `{"text", "model_used",
"context_size", "confidence", "latency_ms"}`; `POST /session` opens a session (`{"session_id"}`); `GET /health`
says whether it is up (`{"status", "version"}`); `POST /feedback` takes `{"query", "response", "quality"}`.
Errors come back as a status with a plain-text body. It takes no model, no sampling settings and no token cap,
reports no token usage and does not stream: ruvLLM picks its own model size for each query (its answer names
it). So:

- the preset model names (ruvector-auto, -fast, -quality, -balanced) tell traffic apart in aspweb's catalog,
  routes, budgets and dashboards; the server is asked the same way for each;
- tokens are estimated from what was sent and answered, and flagged; the model is local and costs nothing;
- an answer comes whole, as the one chunk of a stream.

**Conversations.** ruvLLM keeps a conversation's history in a session, and takes one query at a time. A chat
request carries the whole conversation, so aspweb maps it onto one session: after each answer it remembers
(in the shared cache, for a day) the session of the conversation that now ends with that answer, and the next
turn to the same model, whose earlier messages are exactly that conversation, continues the same session with
its new question alone. A conversation aspweb has not followed from its start (its first turn, one edited, one
whose session was forgotten) opens a new session, and its first query carries the system prompt and the earlier
turns as text, so the model reads what came before.
"""

import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from django.core.cache import cache

from ..kinds import get_kind
from .base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    Health,
    ImagePart,
    Message,
    ModelInfo,
    ProviderError,
    Usage,
    answer_object,
    chunks_of,
    estimate_tokens,
    kind_for_status,
    malformed_error,
    plain_message,
    pooled,
    redact,
)
from .cloudflare import map_transport_error

SESSION_SECONDS = 24 * 3600
_ROLES = {"user": "User", "assistant": "Assistant", "tool": "Tool"}


def _client(conn: Connection) -> httpx.AsyncClient:
    headers = {**conn.headers, **({"Authorization": f"Bearer {conn.api_key}"} if conn.api_key else {})}
    return httpx.AsyncClient(base_url=conn.base_url.rstrip("/"), headers=headers,
                             timeout=httpx.Timeout(conn.timeout, connect=conn.connect_timeout))


def _error(response: httpx.Response, conn: Connection) -> ProviderError:
    """ruvLLM answers an error with its status and a line of text."""
    if response.status_code == 404:  # no such path: the base URL is not a ruvLLM server's
        return ProviderError("server", f"{conn.label} has no {response.request.url.path} (HTTP 404): check that its "
                                       "base URL is the ruvLLM server's.", status=404, retryable=False)
    kind = kind_for_status(response.status_code, "")
    detail = redact(response.text.strip()[:300], conn.api_key)
    return ProviderError(kind, plain_message(kind, conn.label, response.status_code, detail),
                         status=response.status_code)


async def _post(conn: Connection, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        response = await pooled(conn, _client).post(path, json=body)
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, conn) from None
    if response.status_code >= 400:
        raise _error(response, conn)
    return answer_object(response, conn)


def _text(conn: Connection, message: Message) -> str:
    if not isinstance(message.content, str) and any(isinstance(part, ImagePart) for part in message.content):
        raise ProviderError("invalid_request", f"{conn.label} reads text only: remove the images from the "
                                               "conversation or use another provider.")
    return message.text


def _check(conn: Connection, request: ChatRequest) -> None:
    if request.tools:
        raise ProviderError("invalid_request", f"{conn.label}: ruvLLM takes no tool definitions. Remove the "
                                               "tools from the request or use another provider.")
    if not request.messages or request.messages[-1].role != "user":
        raise ProviderError("invalid_request", f"{conn.label} answers a question: the conversation must end "
                                               "with a user message.")


def _conversation_key(conn: Connection, request: ChatRequest, turns: list[tuple[str, str]]) -> str:
    """The conversation's name in the shared cache: the server, the model asked for (two panes of a comparison
    hold the same turns), the system prompt and the turns."""
    digest = hashlib.sha256(json.dumps([conn.base_url, request.model, request.system, turns]).encode()).hexdigest()
    return f"aspweb:ruvllm:session:{digest}"


async def _session(conn: Connection) -> str:
    payload = await _post(conn, "/session")
    session = payload.get("session_id")
    if isinstance(session, dict):  # a server that sends the whole session object
        session = session.get("id")
    if not isinstance(session, str) or not session:
        raise malformed_error(conn, "a session without an id")
    return session


def _first_query(system: str, earlier: list[tuple[str, str]], question: str) -> str:
    """A new session's query: the system prompt and the earlier turns as text, then the question."""
    parts = [system] if system else []
    if earlier:
        parts.append("Earlier in this conversation:\n" + "\n".join(f"{_ROLES[role]}: {text}" for role, text in earlier))
    parts.append(question)
    return "\n\n".join(parts)


async def complete(conn: Connection, request: ChatRequest) -> Completion:
    _check(conn, request)
    turns = [(message.role, _text(conn, message)) for message in request.messages]
    earlier, question = turns[:-1], turns[-1][1]
    session = await cache.aget(_conversation_key(conn, request, earlier)) if earlier else None
    if session is None:
        session = await _session(conn)
        query = _first_query(request.system, earlier, question)
    else:
        query = question
    payload = await _post(conn, "/query", {"query": query, "session_id": session})
    text = payload.get("text")
    if not isinstance(text, str):
        raise malformed_error(conn, "an answer without text")
    await cache.aset(_conversation_key(conn, request, [*turns, ("assistant", text)]), session,
                     SESSION_SECONDS)
    usage = Usage(input_tokens=estimate_tokens(query), output_tokens=estimate_tokens(text), estimated=True)
    return Completion(text=text, usage=usage, finish_reason="stop")


async def stream(conn: Connection, request: ChatRequest) -> AsyncIterator[Chunk]:
    async for chunk in chunks_of(await complete(conn, request)):
        yield chunk


async def health_check(conn: Connection) -> Health:
    started = time.perf_counter()
    try:
        response = await pooled(conn, _client).get("/health")
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, conn) from None
    latency_ms = round((time.perf_counter() - started) * 1000)
    if response.status_code >= 400:
        raise ProviderError("server", f"{conn.label} is up but not ready (HTTP {response.status_code}); "
                                      "it is usually still loading.", status=response.status_code)
    try:
        version = str(response.json().get("version") or "")
    except (ValueError, AttributeError):
        version = ""
    models = get_kind("ruvllm").models
    return Health(True, latency_ms, f"ruvLLM {version} is up.".replace("  ", " "), models)


async def list_models(conn: Connection) -> list[ModelInfo]:
    # The server lists no models (it picks one per query): the preset names, once it answers.
    await health_check(conn)
    return [ModelInfo(name) for name in get_kind("ruvllm").models]
