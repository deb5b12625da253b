"""Google Vertex AI: Gemini through its OpenAI-compatible endpoint, Claude through the anthropic SDK's
Vertex client; both with an OAuth token minted from a service account's key (vertex_auth).

- A model id starting with "claude" is Claude (e.g. claude-sonnet-4-5@20250929): the Messages API at
  `…/publishers/anthropic/models/{model}:rawPredict` (`:streamRawPredict` when streamed), with
  `anthropic_version` in the body ("vertex-2023-10-16", as Anthropic's Vertex docs require) and no model.
- Any other id is a publisher's model (e.g. google/gemini-2.5-flash) at
  `…/projects/{project}/locations/{region}/endpoints/openapi/chat/completions`, in OpenAI's format,
  through the same code as every OpenAI-compatible kind; Gemini's thoughts, counted only in its
  `total_tokens`, are reasoning there too.

The root is `https://{region}-aiplatform.googleapis.com/v1` (`aiplatform.googleapis.com` for the global
region, `aiplatform.{us,eu}.rep.googleapis.com` for the multi-regions), or the provider's base URL where
set. The token goes with each request, so one client per provider and event loop serves every token.
"""

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from ..kinds import get_kind
from . import anthropic as anthropic_adapter
from . import openai_compat, vertex_auth, wire
from .base import (
    ChatRequest,
    Chunk,
    Completion,
    Connection,
    ErrorKind,
    Health,
    ModelInfo,
    ProviderError,
    kind_for_status,
    plain_message,
    pooled,
    redact,
    retry_after_seconds,
)

ANTHROPIC_VERSION = "vertex-2023-10-16"
# Google's error statuses that say more than the HTTP status (google.rpc.Code names).
_STATUS_KINDS: dict[str, ErrorKind] = {
    "RESOURCE_EXHAUSTED": "rate_limit", "PERMISSION_DENIED": "auth", "UNAUTHENTICATED": "auth",
    "NOT_FOUND": "model_not_found", "DEADLINE_EXCEEDED": "timeout", "UNAVAILABLE": "server",
}
# What the SDK's Vertex client is built with as its own token: Google refuses it (see claude_client).
_NO_TOKEN = "unset"  # noqa: S105 (not a secret: a value no server accepts)


def root_url(conn: Connection) -> str:
    """Where the API's paths start: the provider's base URL, or Google's endpoint for the region."""
    if conn.base_url:
        return conn.base_url.rstrip("/")
    region = str(conn.extra.get("region") or "")
    if region == "global":
        return "https://aiplatform.googleapis.com/v1"
    if region in ("us", "eu"):
        return f"https://aiplatform.{region}.rep.googleapis.com/v1"
    return f"https://{region}-aiplatform.googleapis.com/v1"


def project_id(conn: Connection, acct: vertex_auth.Account) -> str:
    return str(conn.extra.get("project") or acct.project_id)


def is_claude(model: str) -> bool:
    return model.startswith("claude")


# -- the call -----------------------------------------------------------------------------------


async def stream(conn: Connection, request: ChatRequest) -> AsyncIterator[Chunk]:
    acct, token = await vertex_auth.access_token(conn)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        if is_claude(request.model):
            chunks = anthropic_adapter.stream(_claude_conn(conn, acct), _claude_request(request),
                                              make_client=claude_client, headers=headers)
        else:
            chunks = openai_compat.stream(_openapi_conn(conn, acct), request, headers=headers)
        # Closed with this stream (a caller who stops early), so the connection is let go at once.
        async with contextlib.aclosing(chunks) as received:
            async for chunk in received:
                yield chunk
    except ProviderError as exc:
        raise _reworded(exc, conn, acct, token) from None


async def complete(conn: Connection, request: ChatRequest) -> Completion:
    acct, token = await vertex_auth.access_token(conn)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        if is_claude(request.model):
            return await anthropic_adapter.complete(_claude_conn(conn, acct), _claude_request(request),
                                                    make_client=claude_client, headers=headers)
        return await openai_compat.complete(_openapi_conn(conn, acct), request, headers=headers)
    except ProviderError as exc:
        raise _reworded(exc, conn, acct, token) from None


def _openapi_conn(conn: Connection, acct: vertex_auth.Account) -> Connection:
    """The connection the OpenAI-compatible code is given: the endpoint's URL, and no key (the service
    account's JSON must never become a header; the token goes with each request)."""
    base = f"{root_url(conn)}/projects/{project_id(conn, acct)}/locations/{conn.extra.get('region')}/endpoints/openapi"
    return dataclasses.replace(conn, base_url=base, api_key="")


def _claude_conn(conn: Connection, acct: vertex_auth.Account) -> Connection:
    return dataclasses.replace(conn, base_url=root_url(conn), api_key="",
                               extra={"project": project_id(conn, acct), "region": conn.extra.get("region")})


def _claude_request(request: ChatRequest) -> ChatRequest:
    return dataclasses.replace(request, extra={"anthropic_version": ANTHROPIC_VERSION, **request.extra})


def claude_client(conn: Connection) -> anthropic.AsyncAnthropicVertex:
    """The SDK's Vertex client for one project and region. Its own token is a placeholder that Google
    refuses: every request carries the minted one, so the SDK never looks for credentials of this server's
    (Application Default Credentials) in their stead."""
    return anthropic.AsyncAnthropicVertex(
        region=str(conn.extra["region"]),
        project_id=str(conn.extra["project"]),
        access_token=_NO_TOKEN,
        base_url=conn.base_url,
        timeout=anthropic.Timeout(conn.timeout, connect=conn.connect_timeout),
        max_retries=0,
        default_headers=conn.headers or None,
        http_client=anthropic.DefaultAioHttpClient(),
    )


def _reworded(exc: ProviderError, conn: Connection, acct: vertex_auth.Account, token: str) -> ProviderError:
    """Vertex's refusals in Vertex's terms: there is no API key, there are a service account and its roles.
    A 401 means the token is no good any more (revoked, or its key disabled): it is forgotten, so that the
    next call mints another."""
    if exc.kind != "auth":
        return exc
    if exc.status == 401:
        acct.forget(token)
    code = f" (HTTP {exc.status})" if exc.status else ""
    message = (f"{conn.label} refused the service account's access{code}. An admin needs to check that the "
               "Vertex AI API is enabled in the project and that the service account has the Vertex AI User "
               "role there.")
    if detail := _said(exc.message, conn.label):
        message += f" {conn.label} said: {detail}"
    return ProviderError("auth", message, status=exc.status, retryable=False)


def _said(message: str, label: str) -> str:
    marker = f" {label} said: "
    return message.split(marker, 1)[1] if marker in message else ""


# -- errors in Google's shape ------------------------------------------------------------------


def google_error(status: int, body: Any, retry_after_header: str | None, conn: Connection) -> ProviderError:
    """An error answered in Google's shape, {"error": {"code", "message", "status"}}, which the
    OpenAI-compatible endpoint sometimes sends inside a list."""
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    body = body if isinstance(body, dict) else {}
    kind = _STATUS_KINDS.get(str(body.get("status") or "")) or kind_for_status(status, "")
    detail = redact(str(body.get("message") or ""), conn.api_key)
    retry_after = retry_after_seconds(retry_after_header)
    return ProviderError(kind, plain_message(kind, conn.label, status, detail, retry_after),
                         status=status, retry_after=retry_after)


# -- catalog and health ------------------------------------------------------------------------


async def list_models(conn: Connection) -> list[ModelInfo]:
    """Vertex lists no models a project may call (its Model Garden lists thousands it may not): the
    preset's, which an admin extends by adding models by id."""
    return [ModelInfo(name) for name in get_kind(conn.kind).models]


async def health_check(conn: Connection) -> Health:
    """Mints a token (the key works) and reads the project's location (the project and region exist, and the
    service account may use Vertex AI there): no model is called, so nothing is billed."""
    started = time.perf_counter()
    acct, token = await vertex_auth.access_token(conn)
    project = project_id(conn, acct)
    region = conn.extra.get("region")
    plain = dataclasses.replace(conn, base_url=root_url(conn), api_key="")
    try:
        await pooled(plain, wire.Client).get(f"projects/{project}/locations/{region}",
                                             {"Authorization": f"Bearer {token}"})
    except wire.StatusError as exc:
        error = google_error(exc.status, exc.body, exc.headers.get("retry-after"), conn)
        if error.kind == "model_not_found":
            raise ProviderError("invalid_request", f"{conn.label}: project {project} has no region {region} "
                                                   "(or the service account may not see it).",
                                status=exc.status, retryable=False) from None
        raise _reworded(error, conn, acct, token) from None
    except Exception as exc:
        raise openai_compat.map_error(exc, plain) from None
    latency_ms = round((time.perf_counter() - started) * 1000)
    return Health(True, latency_ms, f"Connected to project {project} in {region}.",
                  tuple(m.id for m in await list_models(conn)))
