"""Anthropic messages wire format, through the official anthropic SDK."""

import anthropic

from .base import Connection, Health, ModelInfo, ProviderError, plain_message, redact, timed_listing
from .openai_compat import _kind_for, _retry_after


def client(conn: Connection) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key=conn.api_key,
        base_url=conn.base_url,
        timeout=anthropic.Timeout(conn.timeout, connect=conn.connect_timeout),
        max_retries=0,
        default_headers=conn.headers or None,
    )


def map_error(exc: Exception, conn: Connection) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError("timeout", plain_message("timeout", conn.label, None))
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError("network", plain_message("network", conn.label, None))
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        detail = redact(str(error.get("message") or ""), conn.api_key)
        retry_after = _retry_after(exc.response.headers.get("retry-after"))
        # 529 is Anthropic's "overloaded": a server condition, retryable.
        kind = "server" if status == 529 else _kind_for(status, str(error.get("type") or ""))
        return ProviderError(kind, plain_message(kind, conn.label, status, detail, retry_after),
                             status=status, retry_after=retry_after)
    return ProviderError("server", plain_message("server", conn.label, None, redact(str(exc), conn.api_key)))


async def list_models(conn: Connection) -> list[ModelInfo]:
    try:
        page = await client(conn).models.list(limit=100)
        return [ModelInfo(m.id, display_name=m.display_name or "") async for m in page]
    except Exception as exc:
        raise map_error(exc, conn) from None


async def health_check(conn: Connection) -> Health:
    return await timed_listing(conn, list_models)
