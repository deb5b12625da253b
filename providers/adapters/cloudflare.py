"""Cloudflare Workers AI over REST: /accounts/{account_id}/ai/run/{model} and the model search API."""

import httpx

from .base import Connection, Health, ModelInfo, ProviderError, plain_message, redact, timed_listing
from .openai_compat import _kind_for, _retry_after


def _client(conn: Connection) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{conn.base_url.rstrip('/')}/accounts/{conn.extra.get('account_id', '')}/ai/",
        headers={"Authorization": f"Bearer {conn.api_key}", **conn.headers},
        timeout=httpx.Timeout(conn.timeout, connect=conn.connect_timeout),
    )


def error_from_response(response: httpx.Response, conn: Connection) -> ProviderError:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        errors = []
    detail = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
    retry_after = _retry_after(response.headers.get("retry-after"))
    kind = _kind_for(response.status_code, "")
    return ProviderError(
        kind, plain_message(kind, conn.label, response.status_code, redact(detail, conn.api_key), retry_after),
        status=response.status_code, retry_after=retry_after,
    )


def map_transport_error(exc: httpx.HTTPError, conn: Connection) -> ProviderError:
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError("timeout", plain_message("timeout", conn.label, None))
    return ProviderError("network", plain_message("network", conn.label, None))


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
        async with _client(conn) as http:
            response = await http.get("models/search", params={"task": "Text Generation", "per_page": 100})
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, conn) from None
    if response.status_code >= 400:
        raise error_from_response(response, conn)
    return [ModelInfo(m["name"], context_window=_context_window(m)) for m in response.json().get("result", [])]


async def health_check(conn: Connection) -> Health:
    return await timed_listing(conn, list_models)
