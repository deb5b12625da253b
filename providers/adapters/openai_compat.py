"""OpenAI chat-completions wire format, through the official openai SDK.

Serves every OpenAI-compatible kind; Azure differs only in its client (endpoint, API version,
deployment names as model names).
"""

import openai

from .base import Connection, Health, ModelInfo, ProviderError, plain_message, redact, timed_listing


def client(conn: Connection) -> openai.AsyncOpenAI:
    common = {
        # Keyless servers (Ollama, vLLM) ignore the key, but the SDK insists on one.
        "api_key": conn.api_key or "unused",
        "timeout": openai.Timeout(conn.timeout, connect=conn.connect_timeout),
        # Retries belong to aspweb's call path, which knows about first tokens and fallbacks.
        "max_retries": 0,
        "default_headers": conn.headers or None,
    }
    if conn.kind == "azure_openai":
        return openai.AsyncAzureOpenAI(
            azure_endpoint=conn.base_url, api_version=conn.extra.get("api_version"), **common
        )
    return openai.AsyncOpenAI(base_url=conn.base_url, **common)


def map_error(exc: Exception, conn: Connection) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("timeout", plain_message("timeout", conn.label, None))
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("network", plain_message("network", conn.label, None))
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        code = str(body.get("code") or body.get("type") or "")
        detail = redact(str(body.get("message") or ""), conn.api_key)
        retry_after = _retry_after(exc.response.headers.get("retry-after"))
        kind = _kind_for(status, code)
        return ProviderError(kind, plain_message(kind, conn.label, status, detail, retry_after),
                             status=status, retry_after=retry_after)
    return ProviderError("server", plain_message("server", conn.label, None, redact(str(exc), conn.api_key)))


def _kind_for(status: int, code: str):
    if status in (401, 403):
        return "auth"
    if status == 402 or code == "insufficient_quota":
        return "quota"
    if status == 429:
        return "rate_limit"
    if status == 404:
        return "model_not_found"
    if code == "content_filter" or code == "content_policy_violation":
        return "content_filter"
    if status == 408:
        return "timeout"
    if 400 <= status < 500:
        return "invalid_request"
    return "server"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


async def list_models(conn: Connection) -> list[ModelInfo]:
    try:
        page = await client(conn).models.list()
        models = [
            ModelInfo(
                m.id,
                context_window=getattr(m, "context_length", None) or getattr(m, "context_window", None),
            )
            async for m in page
        ]
    except Exception as exc:
        raise map_error(exc, conn) from None
    return models


async def health_check(conn: Connection) -> Health:
    return await timed_listing(conn, list_models)
